#include "autoscale/policy.h"

#include <fmt/format.h>

#include <stdexcept>

namespace kvlb::autoscale {

namespace {

// HPA's default behaviour (k8s.io/kubernetes pkg/apis/autoscaling/v2
// defaults): scale up by at most 100% or 4 pods per 15 s, whichever is more,
// no stabilization; scale down by at most 100% per 15 s after a 300 s
// stabilization window.
ScalingRules hpa_scale_up() {
  return {Millis{0},
          {{PolicyType::Percent, 100, Millis{15'000}}, {PolicyType::Pods, 4, Millis{15'000}}},
          SelectPolicy::Max};
}
ScalingRules hpa_scale_down() {
  return {Millis{300'000}, {{PolicyType::Percent, 100, Millis{15'000}}}, SelectPolicy::Max};
}

}  // namespace

Policy default_policy() {
  Policy p;
  p.scale_up = hpa_scale_up();
  p.scale_down = hpa_scale_down();
  return p;
}

Policy named_policy(std::string_view name) {
  Policy p = default_policy();
  if (name == "kvlb") {
    // kvlb's default, chosen by sweeping the simulator over the load
    // profile (docs/benchmarks.md, "Autoscaling in virtual time"): the
    // replicas' own concurrency (running + waiting: every node's requests, as
    // the replica counts them), read every 5 s over a 10 s window, KPA's panic
    // mode for bursts, a 15 s scale-down stabilization (a victim is drained
    // before it goes, so a quick scale-down loses nothing). The count
    // includes the queue, so the target sets how much queueing the SLO
    // tolerates; it is per model: the concurrency per replica at which p99
    // TTFT still meets the SLO (22 for the emulated replica and a 2-s SLO;
    // docs/autoscaler.md says how to measure it).
    p.signal = Signal::Concurrency;
    p.target = 22;
    p.sync_period = Millis{5'000};
    p.metric_window = Millis{10'000};
    p.scale_down.stabilization = Millis{15'000};
    p.panic = true;
    return p;
  }
  if (name == "hpa-kv") {
    p.signal = Signal::KvUsage;
    p.target = 0.8;
    return p;
  }
  if (name == "hpa-waiting") {
    p.signal = Signal::Waiting;
    p.target = 5.0;
    return p;
  }
  throw std::invalid_argument(fmt::format("unknown policy '{}' (kvlb, hpa-kv, hpa-waiting)", name));
}

std::string_view signal_name(Signal s) {
  switch (s) {
    case Signal::KvUsage:
      return "kv_usage";
    case Signal::Waiting:
      return "waiting";
    case Signal::Inflight:
      return "inflight";
    case Signal::Concurrency:
      return "concurrency";
    case Signal::Saturation:
      return "saturation";
  }
  return "?";
}

std::optional<Signal> parse_signal(std::string_view name) {
  for (auto s : {Signal::KvUsage, Signal::Waiting, Signal::Inflight, Signal::Concurrency,
                 Signal::Saturation})
    if (signal_name(s) == name) return s;
  return std::nullopt;
}

std::string_view select_name(SelectPolicy s) {
  switch (s) {
    case SelectPolicy::Max:
      return "Max";
    case SelectPolicy::Min:
      return "Min";
    case SelectPolicy::Disabled:
      return "Disabled";
  }
  return "?";
}

std::string validate(const Policy& p) {
  if (!(p.target > 0)) return "target: must be above 0";
  if (p.signal == Signal::KvUsage && p.target > 1.0)
    return "target: a KV usage target is a fraction, at most 1";
  if (p.signal == Signal::Saturation && !(p.queue_target > 0))
    return "queue_target: must be above 0";
  if (p.signal == Signal::Saturation && !(p.kv_target > 0 && p.kv_target <= 1.0))
    return "kv_target: must be in (0, 1]";
  if (p.min_replicas < 1) return "min_replicas: must be at least 1";
  if (p.max_replicas < p.min_replicas) return "max_replicas: must be at least min_replicas";
  if (!(p.tolerance >= 0 && p.tolerance < 1)) return "tolerance: must be in [0, 1)";
  if (p.sync_period.count() < 100) return "sync_period: must be at least 100ms";
  if (p.metric_window.count() < 0) return "metric_window: must not be negative";
  for (const auto* r : {&p.scale_up, &p.scale_down}) {
    const char* which = r == &p.scale_up ? "behavior.scaleUp" : "behavior.scaleDown";
    if (r->stabilization.count() < 0 || r->stabilization.count() > 3'600'000)
      return fmt::format("{}.stabilizationWindowSeconds: must be in [0, 3600]", which);
    if (r->policies.empty() && r->select != SelectPolicy::Disabled)
      return fmt::format("{}.policies: at least one unless selectPolicy is Disabled", which);
    for (size_t i = 0; i < r->policies.size(); ++i) {
      const auto& rp = r->policies[i];
      if (rp.value <= 0) return fmt::format("{}.policies[{}].value: must be above 0", which, i);
      if (rp.period.count() <= 0 || rp.period.count() > 1'800'000)
        return fmt::format("{}.policies[{}].periodSeconds: must be in (0, 1800]", which, i);
    }
  }
  if (p.panic) {
    if (!(p.panic_threshold > 1.0)) return "panic.threshold: must be above 1";
    if (p.panic_window.count() <= 0 || p.panic_window > p.stable_window)
      return "panic.window: must be above 0 and at most panic.stable_window";
  }
  if (p.expected_startup.count() < 0) return "expected_startup: must not be negative";
  if (p.max_score_age.count() <= 0) return "max_score_age: must be above 0";
  if (p.drain_timeout.count() <= 0) return "drain_timeout: must be above 0";
  return "";
}

}  // namespace kvlb::autoscale
