// oracle.h - the "oracle" balancer of the experiments: before every request it
// reads every replica's metrics (instant, exact state) and sends the request to
// the replica with the fewest waiting, then the lowest KV usage, then the fewest
// running. The limit any balancer working from metrics can approach.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engines/engine_stats.h"

namespace kvlb {
class Scraper;
}

namespace kvlb::loadgen {

struct OracleTarget {
  std::string base_url;     // http://ip:port
  std::string metrics_url;  // http://ip:port/metrics
};

class OraclePicker {
 public:
  explicit OraclePicker(std::vector<OracleTarget> targets);
  ~OraclePicker();
  // The base URL to send the next request to.
  std::string pick();

 private:
  std::vector<OracleTarget> targets_;
  std::unique_ptr<Scraper> scraper_;
  size_t rr_ = 0;  // tie rotation
};

// The oracle's order, the one definition (the live picker and the simulator's
// oracle): fewest waiting, then lowest KV usage, then fewest running. Returns
// the index of the best of `stats` (empty entries skipped), scanning from
// `rotation` so that exact ties spread; -1 when every entry is empty.
int oracle_choice(const std::vector<std::optional<engines::EngineStats>>& stats, size_t rotation);

// Parses "base=metrics,base=metrics" or "base,base" (metrics = base + /metrics).
std::vector<OracleTarget> parse_oracle_targets(const std::string& text);

}  // namespace kvlb::loadgen
