// scaler.h - one service's autoscaler, without I/O: each tick it gets what the
// data plane and Kubernetes show (replicas, readiness, the scores the balancer
// uses, the kernel's in-flight counts) and returns the actions to take (scale,
// drain, undrain, deletion cost, an Event). The live autoscaler, its tests and
// the virtual-time simulator run this same code.
//
// A decision (every sync_period, or at once when panic mode starts):
//   HPA's calculation (hpa.h) over the ready replicas' signal, starting
//   replicas counted as capacity on its way; HPA's behaviour; KPA's panic
//   floor (panic.h); min/max.
// Scale up: draining replicas are taken back first (they serve at once), then
//   the workload's replicas are raised.
// Scale down loses nothing: the victims (starting replicas first, newest
//   first, as the ReplicaSet would pick them; then the least loaded) are
//   drained in the data plane; once a victim is idle (its fresh score shows
//   nothing running or waiting and the kernel counts nothing in flight), or
//   its drain_timeout passed, it gets the lowest pod-deletion-cost and the
//   workload's replicas go down by one for it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "autoscale/hpa.h"
#include "autoscale/panic.h"
#include "autoscale/policy.h"

namespace kvlb::autoscale {

// The pod-deletion-cost a victim gets: below anything a user sets by hand.
inline constexpr int32_t kVictimDeletionCost = -1'000'000;

struct ReplicaView {
  std::string pod;      // the pod's name (the harness: the replica's name)
  std::string address;  // ip:port in the data plane; "" while it has none
  bool ready = false;   // serving (Ready, in the EndpointSlice as ready)
  bool terminating = false;
  Millis age{0};  // since the pod was created
  bool has_score = false;
  double waiting = 0, running = 0, kv = 0;  // from the balancer's scores
  double inflight = 0;                      // the kernel's in-flight count
  Millis score_age{0};
};

struct Observation {
  Millis now{0};
  int32_t spec_replicas = 0;  // the workload's scale (spec.replicas)
  std::vector<ReplicaView> replicas;
};

struct Action {
  enum class Kind { Scale, Drain, Undrain, DeletionCost, Event };
  Kind kind;
  std::string pod, address;  // Drain/Undrain/DeletionCost
  int32_t replicas = 0;      // Scale: the new spec.replicas; DeletionCost: the cost
  std::string reason;        // Event: CamelCase reason; Scale: why
  std::string message;       // Event and log: the numbers behind it
  bool warning = false;      // Event type Warning
};

// The last decision and the state behind it (status, metrics, kvlbctl).
struct ScalerStatus {
  double signal = 0;  // the average per ready replica over metric_window
  double target = 0;
  int32_t current = 0, desired = 0, ready = 0, starting = 0, draining = 0;
  bool panic = false;
  std::string why;         // the last decision's reason
  std::string limited_by;  // what bounded it, if anything
  Millis decided_at{-1};
  std::map<std::string, uint64_t> decisions;  // "up/above target", "down/below target", ...
};

class Scaler {
 public:
  explicit Scaler(Policy p) : p_(std::move(p)) {}

  std::vector<Action> tick(const Observation& o);

  const ScalerStatus& status() const { return status_; }
  const Policy& policy() const { return p_; }
  const std::map<std::string, Millis>& draining() const { return draining_; }
  // The data-plane addresses this scaler drained and has not given back
  // (draining victims, and removed ones the ReplicaSet has not deleted yet).
  std::vector<std::string> drained_addresses() const;

  // The signal of one replica (public for tests and the simulator).
  double signal_of(const ReplicaView& r) const;

 private:
  struct Sample {
    Millis at;
    double value;
  };
  double window_mean(const std::string& pod, Millis now, Millis window) const;
  bool fresh(const ReplicaView& r) const;
  bool idle(const ReplicaView& r) const;
  // Victims whose drain is over are removed (spec goes down by them).
  void progress_drains(const Observation& o, int32_t& spec, std::vector<Action>& out);
  void decide(const Observation& o, int32_t spec, std::vector<Action>& out);

  Policy p_;
  Behavior behavior_;
  Panic panic_;
  ScalerStatus status_;
  Millis last_decision_{-1};
  std::map<std::string, std::deque<Sample>> samples_;  // by pod
  std::map<std::string, Millis> draining_;             // pod -> drain start
  std::map<std::string, std::string> drain_address_;   // pod -> address drained
  std::map<std::string, Millis> removed_;              // pod -> when its scale-down was patched
};

}  // namespace kvlb::autoscale
