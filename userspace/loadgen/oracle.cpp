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

std::string OraclePicker::pick() {
  const auto& results = scraper_->scrape_all();
  const size_t n = targets_.size();
  std::tuple<double, double, double> best{1e300, 1e300, 1e300};
  size_t best_i = rr_ % n;
  bool have = false;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (rr_ + k) % n;  // rotate the start so exact ties spread
    if (!results[i].ok()) continue;
    auto ex = engines::extract_stats(results[i].body, engines::Engine::Auto);
    if (!ex.stats) continue;
    std::tuple<double, double, double> key{ex.stats->waiting, ex.stats->kv_usage.value_or(0),
                                           ex.stats->running};
    if (!have || key < best) {
      best = key;
      best_i = i;
      have = true;
    }
  }
  ++rr_;
  return targets_[best_i].base_url;
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
