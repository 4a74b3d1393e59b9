#include "scoring/score.h"

#include <algorithm>
#include <cmath>

namespace kvlb::scoring {

static uint32_t to_u32(double v) {
  if (!(v > 0)) return 0;
  return v >= 4294967295.0 ? 0xffffffffu : static_cast<uint32_t>(std::lround(v));
}

kvlb_score make_score(const engines::EngineStats& stats, uint16_t weight, kvlb_backend_state state,
                      uint64_t taken_ns, uint64_t picks) {
  kvlb_score s{};
  s.waiting = to_u32(stats.waiting);
  s.running = to_u32(stats.running);
  // Engines without a KV gauge (TGI, llama.cpp) score 0 here; the comparison
  // then falls through to the queue and in-flight counts.
  double kv = std::clamp(stats.kv_usage.value_or(0.0), 0.0, 1.0);
  s.kv_permille = static_cast<uint16_t>(std::lround(kv * 1000.0));
  s.weight = weight;
  s.state = static_cast<uint8_t>(state);
  s.updated_ns = taken_ns;
  s.picks_at_score = picks;
  return s;
}

}  // namespace kvlb::scoring
