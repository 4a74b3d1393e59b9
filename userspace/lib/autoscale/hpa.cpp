#include "autoscale/hpa.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvlb::autoscale {

namespace {

int32_t ceil_replicas(double x) {
  // A ratio from a few counts: 2.0000000000000004 is 2, not 3.
  double r = std::ceil(x - 1e-9);
  if (r > std::numeric_limits<int32_t>::max()) return std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(std::max(0.0, r));
}

}  // namespace

Calculation calculate(int32_t current, const std::vector<PodReading>& pods, double target,
                      double tolerance) {
  Calculation c;
  c.replicas = current;
  double sum = 0;
  for (const auto& p : pods) {
    if (!p.ready) {
      ++c.starting;
    } else if (!p.has_value) {
      ++c.missing;
    } else {
      ++c.ready;
      sum += p.value;
    }
  }
  if (c.ready == 0) {
    c.why = c.missing ? "no fresh score: no change" : "no ready replica: no change";
    return c;
  }
  c.average = sum / c.ready;
  c.ratio = c.average / target;
  bool up_with_starting = c.starting > 0 && c.ratio > 1.0;
  if (!up_with_starting && c.missing == 0) {
    if (std::fabs(1.0 - c.ratio) <= tolerance) {
      c.why = "within tolerance";
      return c;
    }
    c.replicas = ceil_replicas(c.ratio * c.ready);
    c.why = c.replicas > current   ? "above target"
            : c.replicas < current ? "below target"
                                   : "at target";
    return c;
  }
  // HPA's second reading: replicas without a score at the target when the
  // first reading scales down, at 0 when it scales up; starting replicas at 0
  // (capacity on its way) when it scales up.
  double sum2 = sum;
  int32_t n2 = c.ready;
  if (c.missing > 0) {
    if (c.ratio < 1.0) sum2 += target * c.missing;
    n2 += c.missing;
  }
  if (up_with_starting) n2 += c.starting;
  double ratio2 = sum2 / (n2 * target);
  if (std::fabs(1.0 - ratio2) <= tolerance || (c.ratio < 1.0 && ratio2 > 1.0) ||
      (c.ratio > 1.0 && ratio2 < 1.0)) {
    c.why = up_with_starting ? "starting replicas cover it" : "missing scores: within tolerance";
    return c;
  }
  int32_t r = ceil_replicas(ratio2 * n2);
  if ((ratio2 < 1.0 && r > current) || (ratio2 > 1.0 && r < current)) {
    c.why = "second reading reverses: no change";
    return c;
  }
  c.replicas = r;
  c.why = r > current ? "above target" : r < current ? "below target" : "at target";
  // kvlb: never scale down on missing data (HPA assumes it at the target).
  if (c.missing > 0 && c.replicas < current) {
    c.replicas = current;
    c.why = "missing scores: no scale-down";
  }
  return c;
}

int32_t Behavior::changed_within(Millis now, Millis period, bool up) const {
  int32_t n = 0;
  for (const auto& c : up ? ups_ : downs_)
    if (c.at > now - period) n += c.n;
  return n;
}

void Behavior::record_scale(Millis now, int32_t from, int32_t to) {
  if (to > from) ups_.push_back({now, to - from});
  if (to < from) downs_.push_back({now, from - to});
  // The longest policy period the validator allows is 30 minutes.
  const Millis keep{1'800'000};
  while (!ups_.empty() && ups_.front().at <= now - keep) ups_.pop_front();
  while (!downs_.empty() && downs_.front().at <= now - keep) downs_.pop_front();
}

int32_t scale_up_limit(int32_t current, const ScalingRules& r, const Behavior& b, Millis now) {
  if (r.select == SelectPolicy::Disabled) return current;
  bool pick_min = r.select == SelectPolicy::Min;
  int64_t result =
      pick_min ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int32_t>::min();
  for (const auto& p : r.policies) {
    int64_t start = int64_t{current} - b.changed_within(now, p.period, true) +
                    b.changed_within(now, p.period, false);
    int64_t proposed =
        p.type == PolicyType::Pods
            ? start + p.value
            : static_cast<int64_t>(std::ceil(static_cast<double>(start) * (1.0 + p.value / 100.0)));
    result = pick_min ? std::min(result, proposed) : std::max(result, proposed);
  }
  return static_cast<int32_t>(std::clamp<int64_t>(result, 0, std::numeric_limits<int32_t>::max()));
}

int32_t scale_down_limit(int32_t current, const ScalingRules& r, const Behavior& b, Millis now) {
  if (r.select == SelectPolicy::Disabled) return current;
  // Scaling down, "Min" is the smallest change: the highest limit.
  bool smallest_change = r.select == SelectPolicy::Min;
  int64_t result =
      smallest_change ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max();
  for (const auto& p : r.policies) {
    int64_t start = int64_t{current} - b.changed_within(now, p.period, true) +
                    b.changed_within(now, p.period, false);
    int64_t proposed = p.type == PolicyType::Pods
                           ? start - p.value
                           : static_cast<int64_t>(static_cast<double>(start) *
                                                  (1.0 - p.value / 100.0));  // truncated, as HPA
    result = smallest_change ? std::max(result, proposed) : std::min(result, proposed);
  }
  return static_cast<int32_t>(std::clamp<int64_t>(result, 0, std::numeric_limits<int32_t>::max()));
}

Behavior::Result Behavior::normalize(Millis now, int32_t current, int32_t recommended,
                                     const Policy& p) {
  Result out;
  // Stabilization: the lowest recommendation of the scale-up window, the
  // highest of the scale-down window, the current count between them.
  int32_t up = recommended, down = recommended;
  for (const auto& r : recommendations_) {
    if (r.at > now - p.scale_up.stabilization) up = std::min(up, r.replicas);
    if (r.at > now - p.scale_down.stabilization) down = std::max(down, r.replicas);
  }
  recommendations_.push_back({now, recommended});
  Millis keep = std::max(p.scale_up.stabilization, p.scale_down.stabilization);
  while (!recommendations_.empty() && recommendations_.front().at <= now - keep)
    recommendations_.pop_front();

  int32_t stabilized = current;
  if (stabilized < up) stabilized = up;
  if (stabilized > down) stabilized = down;
  if (stabilized != recommended) out.limit = "stabilization";

  out.replicas = stabilized;
  if (stabilized > current) {
    int32_t limit = std::max(scale_up_limit(current, p.scale_up, *this, now), current);
    int32_t allowed = p.max_replicas;
    const char* why = "max_replicas";
    if (allowed > limit) {
      allowed = limit;
      why = "scale-up policy";
    }
    if (stabilized > allowed) {
      out.replicas = allowed;
      out.limit = why;
    }
  } else if (stabilized < current) {
    int32_t limit = std::min(scale_down_limit(current, p.scale_down, *this, now), current);
    int32_t allowed = p.min_replicas;
    const char* why = "min_replicas";
    if (limit > allowed) {
      allowed = limit;
      why = "scale-down policy";
    }
    if (stabilized < allowed) {
      out.replicas = allowed;
      out.limit = why;
    }
  }
  return out;
}

}  // namespace kvlb::autoscale
