#include "oracle.h"

#include <sstream>
#include <stdexcept>
#include <tuple>

#include "common/strings.h"
#include "engines/engine_stats.h"
#include "scrape/scraper.h"

namespace kvlb::loadgen {

OraclePicker::OraclePicker(std::vector<OracleTarget> targets)
    : targets_(std::move(targets)),
      scraper_(std::make_unique<Scraper>(ScrapeOptions{std::chrono::milliseconds(500), 4 << 20})) {
  if (targets_.empty()) throw std::invalid_argument("the oracle needs at least one target");
  std::vector<std::string> urls;
  for (const auto& t : targets_) urls.push_back(t.metrics_url);
  scraper_->set_targets(urls);
}

OraclePicker::~OraclePicker() = default;

int oracle_choice(const std::vector<std::optional<engines::EngineStats>>& stats, size_t rotation) {
  const size_t n = stats.size();
  std::tuple<double, double, double> best{};
  int best_i = -1;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (rotation + k) % n;  // rotate the start so exact ties spread
    if (!stats[i]) continue;
    std::tuple<double, double, double> key{stats[i]->waiting, stats[i]->kv_usage.value_or(0),
                                           stats[i]->running};
    if (best_i < 0 || key < best) {
      best = key;
      best_i = static_cast<int>(i);
    }
  }
  return best_i;
}

std::string OraclePicker::pick() {
  const auto& results = scraper_->scrape_all();
  std::vector<std::optional<engines::EngineStats>> stats(targets_.size());
  for (size_t i = 0; i < results.size(); ++i)
    if (results[i].ok())
      stats[i] = engines::extract_stats(results[i].body, engines::Engine::Auto).stats;
  const int best = oracle_choice(stats, rr_);
  const size_t chosen = best >= 0 ? static_cast<size_t>(best) : rr_ % targets_.size();
  ++rr_;
  return targets_[chosen].base_url;
}

std::vector<OracleTarget> parse_oracle_targets(const std::string& text) {
  std::vector<OracleTarget> out;
  for (const auto& item : split_list(text)) {
    auto eq = item.find('=');
    OracleTarget t;
    t.base_url = item.substr(0, eq);
    t.metrics_url = eq == std::string::npos ? t.base_url + "/metrics" : item.substr(eq + 1);
    if (t.base_url.rfind("http://", 0) != 0)
      throw std::invalid_argument("oracle target '" + t.base_url + "' must start with http://");
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace kvlb::loadgen
