// panic.h - Knative's KPA panic mode, for bursts: when the replicas a short
// window's load needs reach `panic_threshold` times the ready ones, the
// autoscaler acts on that short window at once, never scales down, and keeps
// the highest count it asked for until a whole stable window has passed
// without a panic reading (knative.dev/serving pkg/autoscaler/scaling).
#pragma once

#include <cstdint>

#include "autoscale/policy.h"

namespace kvlb::autoscale {

class Panic {
 public:
  struct Result {
    bool panicking = false;
    bool entered = false, left = false;
    int32_t floor = 0;  // panicking: the replicas to hold at least (KPA's maxPanicPods)
  };

  // One reading at `now`: `ready` replicas serve, `wanted` replicas are what
  // the panic window's load needs (ceil(load / target)).
  Result step(Millis now, int32_t ready, int32_t wanted, const Policy& p);

  bool panicking() const { return since_set_; }

 private:
  bool since_set_ = false;
  Millis last_over_{0};  // KPA's panicTime: the last panic reading
  int32_t max_wanted_ = 0;
};

}  // namespace kvlb::autoscale
