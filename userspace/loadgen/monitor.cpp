#include "monitor.h"

#include <algorithm>

#include "engines/engine_stats.h"
#include "scrape/scraper.h"
#include "stats.h"

namespace kvlb::loadgen {

ReplicaMonitor::ReplicaMonitor(std::vector<std::string> urls, std::chrono::milliseconds interval)
    : interval_(interval) {
  for (auto& u : urls) series_.push_back(ReplicaSeries{std::move(u), {}, {}, {}, {}, 0});
}

ReplicaMonitor::~ReplicaMonitor() {
  stop();
}

void ReplicaMonitor::start() {
  if (series_.empty()) return;
  thread_ = std::thread([this] { loop(); });
}

void ReplicaMonitor::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ReplicaMonitor::loop() {
  Scraper scraper(ScrapeOptions{std::chrono::milliseconds(1000), 4 << 20});
  std::vector<std::string> urls;
  for (const auto& s : series_) urls.push_back(s.url);
  scraper.set_targets(urls);
  const auto t0 = std::chrono::steady_clock::now();
  auto next = t0;
  while (!stop_) {
    const auto& results = scraper.scrape_all();
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = 0; i < results.size(); ++i) {
      auto& s = series_[i];
      auto ex = results[i].ok() ? engines::extract_stats(results[i].body, engines::Engine::Auto)
                                : engines::ExtractResult{};
      if (!ex.stats) {
        ++s.failed_scrapes;
        continue;
      }
      s.t.push_back(t);
      s.waiting.push_back(ex.stats->waiting);
      s.running.push_back(ex.stats->running);
      s.kv.push_back(ex.stats->kv_usage.value_or(0));
    }
    next += interval_;
    while (!stop_ && std::chrono::steady_clock::now() < next)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

nlohmann::json series_summary(const ReplicaSeries& s, double from_s, bool with_series) {
  std::vector<double> waiting, kvs;
  for (size_t i = 0; i < s.t.size(); ++i)
    if (s.t[i] >= from_s) {
      waiting.push_back(s.waiting[i]);
      kvs.push_back(s.kv[i]);
    }
  auto w = summarize(waiting), kv = summarize(kvs);
  nlohmann::json j = {
      {"url", s.url},         {"samples", waiting.size()}, {"failed_scrapes", s.failed_scrapes},
      {"waiting_max", w.max}, {"waiting_p99", w.p99},      {"waiting_mean", w.mean},
      {"kv_max", kv.max},     {"kv_mean", kv.mean}};
  if (with_series)
    j["series"] = {{"t", s.t}, {"waiting", s.waiting}, {"running", s.running}, {"kv", s.kv}};
  return j;
}

nlohmann::json queue_trend(const std::vector<ReplicaSeries>& replicas, double from_s, double to_s) {
  double growth_per_s = 0, mean_total = 0, last_total = 0;
  for (const auto& s : replicas) {
    double n = 0, st = 0, sw = 0, stt = 0, stw = 0, last = 0;
    for (size_t i = 0; i < s.t.size() && i < s.waiting.size(); ++i) {
      if (s.t[i] < from_s || s.t[i] > to_s) continue;
      n += 1;
      st += s.t[i];
      sw += s.waiting[i];
      stt += s.t[i] * s.t[i];
      stw += s.t[i] * s.waiting[i];
      last = s.waiting[i];
    }
    if (n < 2) continue;
    double var = stt - st * st / n;
    if (var > 0) growth_per_s += (stw - st * sw / n) / var;
    mean_total += sw / n;
    last_total += last;
  }
  return {{"queue_growth_per_min", growth_per_s * 60},
          {"waiting_total_mean", mean_total},
          {"waiting_total_last", last_total}};
}

nlohmann::json ReplicaMonitor::to_json(bool with_series, double from_s) const {
  auto arr = nlohmann::json::array();
  for (const auto& s : series_) arr.push_back(series_summary(s, from_s, with_series));
  return arr;
}

}  // namespace kvlb::loadgen
