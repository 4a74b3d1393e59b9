#include "autoscale/scaler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace kvlb::autoscale {

namespace {

// A victim the ReplicaSet has not removed this long after its scale-down was
// patched (it removed another pod: one not ready, or a user's lower cost) is
// put back in service.
constexpr Millis kRemovalGrace{30'000};
// Samples kept per replica, whatever the windows and the tick (memory bound).
constexpr size_t kMaxSamples = 4096;

}  // namespace

double Scaler::signal_of(const ReplicaView& r) const {
  switch (p_.signal) {
    case Signal::KvUsage:
      return r.kv;
    case Signal::Waiting:
      return r.waiting;
    case Signal::Inflight:
      return r.inflight;
    case Signal::Concurrency:
      return r.running + r.waiting;
    case Signal::Saturation:
      return std::max(r.waiting / p_.queue_target, r.kv / p_.kv_target);
  }
  return 0;
}

bool Scaler::fresh(const ReplicaView& r) const {
  return r.has_score && r.score_age <= p_.max_score_age;
}

bool Scaler::idle(const ReplicaView& r) const {
  return fresh(r) && r.waiting == 0 && r.running == 0 && r.inflight <= 0;
}

double Scaler::window_mean(const std::string& pod, Millis now, Millis window) const {
  auto it = samples_.find(pod);
  if (it == samples_.end() || it->second.empty()) return 0;
  const auto& d = it->second;
  if (window.count() == 0) return d.back().value;
  double sum = 0;
  int n = 0;
  for (auto s = d.rbegin(); s != d.rend() && s->at > now - window; ++s) {
    sum += s->value;
    ++n;
  }
  return n ? sum / n : d.back().value;
}

std::vector<std::string> Scaler::drained_addresses() const {
  std::vector<std::string> out;
  for (const auto& [pod, addr] : drain_address_)
    if (!addr.empty()) out.push_back(addr);
  return out;
}

std::vector<Action> Scaler::tick(const Observation& o) {
  std::vector<Action> out;
  // The signal's samples: fresh scores of replicas still in service.
  Millis keep = std::max({p_.metric_window, p_.panic_window, Millis{1}});
  std::set<std::string> seen;
  for (const auto& r : o.replicas) {
    seen.insert(r.pod);
    if (r.terminating || !fresh(r)) continue;
    auto& d = samples_[r.pod];
    d.push_back({o.now, signal_of(r)});
    while (d.size() > kMaxSamples || (d.size() > 1 && d.front().at <= o.now - keep)) d.pop_front();
  }
  std::erase_if(samples_, [&](const auto& kv) { return !seen.count(kv.first); });

  int32_t spec = o.spec_replicas;
  progress_drains(o, spec, out);
  decide(o, spec, out);
  return out;
}

void Scaler::progress_drains(const Observation& o, int32_t& spec, std::vector<Action>& out) {
  std::map<std::string, const ReplicaView*> by_pod;
  for (const auto& r : o.replicas) by_pod[r.pod] = &r;

  std::vector<std::string> done;
  std::string notes;
  for (const auto& [pod, since] : draining_) {
    auto it = by_pod.find(pod);
    const ReplicaView* r = it == by_pod.end() ? nullptr : it->second;
    bool timed_out = o.now - since >= p_.drain_timeout;
    // A victim chosen while still starting that has become ready since (its
    // model loaded between two ticks) was never drained: drain it now, or it
    // takes new connections until it is removed.
    if (r && !r->terminating && r->ready && !r->address.empty() && drain_address_[pod].empty()) {
      drain_address_[pod] = r->address;
      out.push_back({Action::Kind::Drain, pod, r->address, 0, "", ""});
    }
    if (r && !r->terminating && r->ready && !idle(*r) && !timed_out) continue;
    if (r && !r->terminating && r->ready && !idle(*r)) {
      out.push_back(
          {Action::Kind::Event, pod, r->address, 0, "DrainTimeout",
           fmt::format("pod {} removed after its drain timeout ({} s) with {} running, "
                       "{} waiting, {} in flight",
                       pod, p_.drain_timeout.count() / 1000, r->running, r->waiting, r->inflight),
           true});
    }
    if (r && !r->terminating)
      out.push_back({Action::Kind::DeletionCost, pod, r->address, kVictimDeletionCost, "", ""});
    done.push_back(pod);
    notes += (notes.empty() ? "" : ", ") + pod;
  }
  if (!done.empty()) {
    int32_t to = std::max(spec - static_cast<int32_t>(done.size()), 0);
    out.push_back({Action::Kind::Scale, "", "", to, "drained",
                   fmt::format("scale {} -> {}: {} drained", spec, to, notes)});
    spec = to;
    for (const auto& pod : done) {
      draining_.erase(pod);
      removed_[pod] = o.now;
    }
  }

  // Victims the ReplicaSet should be removing.
  for (auto it = removed_.begin(); it != removed_.end();) {
    auto r = by_pod.find(it->first);
    if (r == by_pod.end() || r->second->terminating) {
      drain_address_.erase(it->first);
      it = removed_.erase(it);
      continue;
    }
    if (o.now - it->second > kRemovalGrace) {
      auto addr = drain_address_[it->first];
      if (!addr.empty()) out.push_back({Action::Kind::Undrain, it->first, addr, 0, "", ""});
      out.push_back({Action::Kind::Event, it->first, addr, 0, "VictimNotRemoved",
                     fmt::format("pod {} still runs {} s after the scale-down meant for it (the "
                                 "ReplicaSet removed another pod): back in service",
                                 it->first, kRemovalGrace.count() / 1000),
                     true});
      drain_address_.erase(it->first);
      it = removed_.erase(it);
      continue;
    }
    ++it;
  }
}

void Scaler::decide(const Observation& o, int32_t spec, std::vector<Action>& out) {
  const int32_t leaving = static_cast<int32_t>(draining_.size());
  const int32_t current = std::max(spec - leaving, 0);

  // Readings: replicas in service; starting ones (and ones asked for but not
  // created yet) are capacity on its way for up to twice the expected start-up.
  std::vector<PodReading> readings;
  double panic_load = 0;
  int32_t ready_with_value = 0;
  for (const auto& r : o.replicas) {
    if (r.terminating || draining_.count(r.pod) || removed_.count(r.pod)) continue;
    if (!r.ready) {
      if (r.age < 2 * p_.expected_startup) readings.push_back({false, false, 0});
      continue;
    }
    bool has = fresh(r) && samples_.count(r.pod);
    readings.push_back({true, has, has ? window_mean(r.pod, o.now, p_.metric_window) : 0});
    if (has) {
      panic_load += window_mean(r.pod, o.now, p_.panic_window);
      ++ready_with_value;
    }
  }
  int32_t in_service = 0;
  for (const auto& r : o.replicas)
    if (!r.terminating && !draining_.count(r.pod) && !removed_.count(r.pod)) ++in_service;
  for (int32_t i = in_service; i < current; ++i) readings.push_back({false, false, 0});

  Calculation calc = calculate(current, readings, p_.target, p_.tolerance);
  int32_t panic_wanted = static_cast<int32_t>(std::ceil(panic_load / p_.target - 1e-9));
  Panic::Result pr = panic_.step(o.now, ready_with_value, panic_wanted, p_);
  int32_t panic_floor = std::min(pr.floor, p_.max_replicas);

  status_.signal = calc.average;
  status_.target = p_.target;
  status_.current = current;
  status_.ready = calc.ready + calc.missing;
  status_.starting = calc.starting;
  status_.draining = leaving;
  status_.panic = pr.panicking;
  if (pr.entered)
    out.push_back(
        {Action::Kind::Event, "", "", panic_floor, "PanicStarted",
         fmt::format("panic mode: the last {} s need {} replicas, {} ready (threshold {}x)",
                     p_.panic_window.count() / 1000.0, panic_wanted, ready_with_value,
                     p_.panic_threshold)});
  if (pr.left)
    out.push_back({Action::Kind::Event, "", "", 0, "PanicEnded",
                   fmt::format("panic mode over: no panic reading for {} s",
                               p_.stable_window.count() / 1000)});

  bool sync_due = last_decision_.count() < 0 || o.now - last_decision_ >= p_.sync_period;
  int32_t desired = current;
  std::string why = calc.why, limited;
  if (sync_due) {
    if (last_decision_.count() < 0) behavior_.seed(o.now, current);
    last_decision_ = o.now;
    if (current > p_.max_replicas) {
      desired = p_.max_replicas;
      why = "above max_replicas";
    } else if (current < p_.min_replicas) {
      desired = p_.min_replicas;
      why = "below min_replicas";
    } else {
      auto n = behavior_.normalize(o.now, current, calc.replicas, p_);
      desired = n.replicas;
      limited = n.limit;
    }
    if (pr.panicking) {
      if (panic_floor > desired) {
        desired = panic_floor;
        why = "panic";
      }
      if (desired < current) {
        desired = current;
        limited = "panic: no scale-down";
      }
    }
  } else if (pr.panicking && panic_floor > current) {
    desired = panic_floor;  // a burst is not kept waiting for the next sync
    why = "panic";
  } else {
    return;
  }
  status_.desired = desired;
  status_.why = why;
  status_.limited_by = limited;
  status_.decided_at = o.now;
  if (desired == current) return;

  std::string numbers =
      fmt::format("{} {:.3f} per ready replica (target {}), {} ready, {} starting, {} draining{}{}",
                  signal_name(p_.signal), calc.average, p_.target, calc.ready, calc.starting,
                  leaving, pr.panicking ? fmt::format(", panic: {} needed", panic_wanted) : "",
                  limited.empty() ? "" : ", limited by " + limited);

  if (desired > current) {
    int32_t need = desired - current;
    // Draining replicas serve at once: take them back first, newest drain first.
    std::vector<std::pair<Millis, std::string>> d;
    for (const auto& [pod, since] : draining_) d.push_back({since, pod});
    std::sort(d.rbegin(), d.rend());
    std::string back;
    for (const auto& [since, pod] : d) {
      if (need == 0) break;
      auto addr = drain_address_[pod];
      if (!addr.empty()) out.push_back({Action::Kind::Undrain, pod, addr, 0, "", ""});
      back += (back.empty() ? "" : ", ") + pod;
      draining_.erase(pod);
      drain_address_.erase(pod);
      --need;
    }
    int32_t to = desired + static_cast<int32_t>(draining_.size());
    if (to != spec) out.push_back({Action::Kind::Scale, "", "", to, why, ""});
    out.push_back({Action::Kind::Event, "", "", desired, "ScaledUp",
                   fmt::format("{} -> {} replicas ({}): {}{}", current, desired, why, numbers,
                               back.empty() ? "" : "; drain cancelled for " + back)});
    ++status_.decisions["up/" + why];
  } else {
    // Victims: starting replicas first, newest first (the ReplicaSet removes
    // not-ready pods before ready ones whatever their cost), then the least
    // loaded ready ones.
    std::vector<const ReplicaView*> cand;
    for (const auto& r : o.replicas)
      if (!r.terminating && !draining_.count(r.pod) && !removed_.count(r.pod)) cand.push_back(&r);
    std::sort(cand.begin(), cand.end(), [&](const ReplicaView* a, const ReplicaView* b) {
      if (a->ready != b->ready) return !a->ready;
      if (!a->ready) return a->age < b->age;
      double la = window_mean(a->pod, o.now, p_.metric_window),
             lb = window_mean(b->pod, o.now, p_.metric_window);
      if (la != lb) return la < lb;
      if (a->inflight != b->inflight) return a->inflight < b->inflight;
      return a->pod < b->pod;
    });
    int32_t n = std::min<int32_t>(current - desired, static_cast<int32_t>(cand.size()));
    std::string victims;
    for (int32_t i = 0; i < n; ++i) {
      const auto* r = cand[static_cast<size_t>(i)];
      draining_[r->pod] = o.now;
      // Only a ready victim is in the data plane: a starting one has nothing
      // to drain (until it becomes ready: progress_drains).
      drain_address_[r->pod] = r->ready ? r->address : "";
      if (r->ready && !r->address.empty())
        out.push_back({Action::Kind::Drain, r->pod, r->address, 0, "", ""});
      victims += (victims.empty() ? "" : ", ") + r->pod;
    }
    out.push_back({Action::Kind::Event, "", "", desired, "ScalingDown",
                   fmt::format("{} -> {} replicas ({}): {}; draining {}", current, desired, why,
                               numbers, victims)});
    ++status_.decisions["down/" + why];
  }
  behavior_.record_scale(o.now, current, desired);
  status_.draining = static_cast<int32_t>(draining_.size());
}

}  // namespace kvlb::autoscale
