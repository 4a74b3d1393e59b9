// hpa.h - the Horizontal Pod Autoscaler's algorithm, as Kubernetes runs it
// (pkg/controller/podautoscaler: replica_calculator.go and horizontal.go),
// written from its documented behaviour for a per-pod metric:
//
//   desired = ceil(current_ready * average / target), no change while
//   |average / target - 1| <= tolerance; pods still starting count as 0 when
//   that would scale up (capacity on its way), pods without a metric count as
//   at the target on a scale-down and 0 on a scale-up, and if that second
//   reading flips the direction or lands within tolerance nothing changes;
//
//   then the behaviour: the scale-up recommendation is the lowest of the
//   window's, the scale-down one the highest (stabilization); the change is
//   limited by the rate policies over their periods (selectPolicy picks the
//   largest or smallest limit); min/max clamp last.
//
// kvlb's one deliberate difference: no scale-down at all while any ready
// replica's score is missing or stale (HPA would assume it at the target).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "autoscale/policy.h"

namespace kvlb::autoscale {

// One replica as the calculator sees it.
struct PodReading {
  bool ready = false;      // serving: counted in the average
  bool has_value = false;  // a fresh score (ready replicas only)
  double value = 0;        // the signal, averaged over the metric window
};

struct Calculation {
  int32_t replicas = 0;  // the recommendation (before behaviour and clamps)
  double average = 0;    // the signal's average over ready replicas with a value
  double ratio = 0;      // average / target
  int32_t ready = 0, starting = 0, missing = 0;
  std::string why;  // "within tolerance", "scale up", "missing data: no scale-down", ...
};

// HPA's replica calculation for `current` replicas (the scale's spec).
Calculation calculate(int32_t current, const std::vector<PodReading>& pods, double target,
                      double tolerance);

// HPA's behaviour: recommendation history and scale events of one target.
class Behavior {
 public:
  struct Result {
    int32_t replicas = 0;
    std::string limit;  // "" or what bounded it: "stabilization", "scale-up policy",
                        // "scale-down policy", "max_replicas", "min_replicas"
  };

  // The replicas to set now, for HPA's `recommended` at `now` with `current`
  // replicas. Records `recommended` in the stabilization history.
  Result normalize(Millis now, int32_t current, int32_t recommended, const Policy& p);

  // Puts `replicas` in the stabilization history at `now`, as if recommended:
  // a (re)started autoscaler then waits a whole scale-down window before it
  // removes anything (HPA would scale down at its first sync).
  void seed(Millis now, int32_t replicas) { recommendations_.push_back({now, replicas}); }

  // Records a change that was made (the policies' periods count them).
  void record_scale(Millis now, int32_t from, int32_t to);

  // Replicas added (or removed) within `period` before `now`.
  int32_t changed_within(Millis now, Millis period, bool up) const;

 private:
  struct Rec {
    Millis at;
    int32_t replicas;
  };
  struct Change {
    Millis at;
    int32_t n;
  };
  std::deque<Rec> recommendations_;
  std::deque<Change> ups_, downs_;
};

// The scale-up and scale-down limits of a set of rules (HPA's
// calculateScaleUpLimitWithScalingRules and its scale-down twin), exposed for
// tests: `added`/`removed` are the changes within each policy's period.
int32_t scale_up_limit(int32_t current, const ScalingRules& r, const Behavior& b, Millis now);
int32_t scale_down_limit(int32_t current, const ScalingRules& r, const Behavior& b, Millis now);

}  // namespace kvlb::autoscale
