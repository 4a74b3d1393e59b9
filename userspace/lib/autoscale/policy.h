// policy.h - one service's autoscaling policy: the signal and its target, the
// replica bounds, HPA's `behavior` (tolerance, stabilization windows, rate
// policies, selectPolicy), KPA's panic mode, and kvlb's own model-load and
// drain settings.
//
// The defaults are HPA's and Knative's where a field is theirs (policy.cpp's
// table is the one source; docs/autoscaler.md is generated from it).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvlb::autoscale {

using Millis = std::chrono::milliseconds;

// What the autoscaler measures per ready replica, and compares with `target`.
enum class Signal {
  KvUsage,      // KV-cache usage, 0..1 (target e.g. 0.8)
  Waiting,      // requests waiting in the replica's queue
  Inflight,     // connections in flight to the replica (the kernel's count: this node's)
  Concurrency,  // running + waiting, as the replica reports them (every node's requests)
  Saturation,   // max(waiting / queue_target, kv / kv_target): target 1.0
};

// HPA's scaling policy: at most `value` pods (or percent) per `period`.
enum class PolicyType { Pods, Percent };
struct RatePolicy {
  PolicyType type = PolicyType::Percent;
  int32_t value = 100;
  Millis period{15'000};
};

// HPA's selectPolicy: which of several policies' limits wins.
enum class SelectPolicy { Max, Min, Disabled };

struct ScalingRules {
  Millis stabilization{0};
  std::vector<RatePolicy> policies;
  SelectPolicy select = SelectPolicy::Max;
};

struct Policy {
  Signal signal = Signal::Saturation;
  double target = 1.0;        // per replica, in the signal's unit
  double queue_target = 4.0;  // Saturation: waiting per replica counted as full
  double kv_target = 0.8;     // Saturation: KV usage counted as full
  int32_t min_replicas = 1;
  int32_t max_replicas = 10;
  double tolerance = 0.1;      // HPA: no change while |ratio - 1| <= tolerance
  Millis sync_period{15'000};  // HPA: how often a recommendation is made
  Millis metric_window{0};     // the signal averaged over this window (0: latest sample)
  ScalingRules scale_up;       // HPA defaults (policy.cpp)
  ScalingRules scale_down;
  bool panic = false;               // KPA panic mode
  Millis stable_window{60'000};     // KPA: panic ends after this long without a panic reading
  Millis panic_window{6'000};       // KPA: the panic reading's averaging window (10% of stable)
  double panic_threshold = 2.0;     // KPA: panic when desired(panic window) / ready >= this
  Millis expected_startup{30'000};  // a replica's model load: not-ready replicas count as
                                    // capacity on its way for up to 2x this long
  Millis max_score_age{3'000};      // an older score is stale: treated as missing
  Millis drain_timeout{120'000};    // a draining replica with requests still in flight is
                                    // removed anyway after this long (logged)
};

// The policies the benchmark compares, by name: "kvlb" (the default), "hpa-kv"
// (HPA's algorithm and default behaviour on average KV usage, target 0.8),
// "hpa-waiting" (the same on waiting requests, target 5: the KEDA-on-queue
// set-up). Throws std::invalid_argument for an unknown name.
Policy named_policy(std::string_view name);
Policy default_policy();  // HPA's behaviour defaults, the Saturation signal

std::string_view signal_name(Signal s);
// "kv_usage", "waiting", "inflight", "concurrency", "saturation"; nullopt otherwise.
std::optional<Signal> parse_signal(std::string_view name);
inline constexpr std::string_view kSignalNames =
    "kv_usage, waiting, inflight, concurrency, saturation";
std::string_view select_name(SelectPolicy s);

// Checks a policy's consistency; returns "" or "<field>: <why>".
std::string validate(const Policy& p);

}  // namespace kvlb::autoscale
