#include "autoscale/panic.h"

#include <algorithm>

namespace kvlb::autoscale {

Panic::Result Panic::step(Millis now, int32_t ready, int32_t wanted, const Policy& p) {
  Result r;
  if (!p.panic) return r;
  // No ready replica: every reading is "over" (KPA treats the count as 1).
  double over = static_cast<double>(wanted) / std::max(ready, 1);
  bool is_over = wanted > 0 && over >= p.panic_threshold;
  if (is_over) {
    if (!since_set_) r.entered = true;
    since_set_ = true;
    last_over_ = now;
  } else if (since_set_ && now - last_over_ > p.stable_window) {
    since_set_ = false;
    max_wanted_ = 0;
    r.left = true;
  }
  if (since_set_) {
    max_wanted_ = std::max(max_wanted_, wanted);
    r.floor = max_wanted_;
  }
  r.panicking = since_set_;
  return r;
}

}  // namespace kvlb::autoscale
