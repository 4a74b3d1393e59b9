#include "agent/keepalive.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/settings.h"
#include "common/names.h"

extern "C" {
#include "shed.h"
}

namespace kvlb::agent {

std::vector<std::pair<uint32_t, uint32_t>> shed_decisions(
    const MapStore& maps, const std::vector<kvlb_service_key>& services, const kvlb_select_cfg& cfg,
    uint64_t margin_milli, uint64_t now_ns) {
  // The iterator sees backends, not services: a backend is shed only when every
  // service that lists it sheds it, and a service without rebalancing keeps all
  // of its backends (its pooled connections are not ours to close).
  auto rebalanced = [&](const kvlb_service_key& k) {
    return std::any_of(services.begin(), services.end(), [&](const kvlb_service_key& s) {
      return std::memcmp(&s, &k, sizeof(k)) == 0;
    });
  };
  std::map<uint32_t, uint32_t> reason;
  std::set<uint32_t> kept;
  for (const auto& [key, svc] : maps.services()) {
    const uint32_t n = std::min<uint32_t>(svc.backend_count, KVLB_MAX_SLOTS);
    if (!rebalanced(key)) {
      kept.insert(svc.slots, svc.slots + n);
      continue;
    }
    std::vector<kvlb_view> views(n);
    std::vector<uint8_t> draining(n, 0);
    const kvlb_view* best = nullptr;
    for (uint32_t i = 0; i < n; ++i) {
      auto& v = views[i];
      v.backend_id = svc.slots[i];
      const kvlb_score s = maps.score(v.backend_id);
      const kvlb_counters c = maps.counters(v.backend_id);
      kvlb_view_make(&v, &s, &c, &cfg, now_ns);
      draining[i] = s.state == KVLB_STATE_DRAINING;
      if (!best || kvlb_prefer(svc.policy, &v, best)) best = &v;
    }
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t r = kvlb_shed_reason(svc.policy, &views[i], best, draining[i], margin_milli);
      const uint32_t id = views[i].backend_id;
      if (r == KVLB_SHED_NONE)
        kept.insert(id);
      else
        reason[id] = std::max(reason[id], r);
    }
  }
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (auto [id, r] : reason)
    if (!kept.count(id)) out.emplace_back(id, r);
  return out;
}

uint32_t CloseBudget::available(std::chrono::steady_clock::time_point now) {
  if (last_ != std::chrono::steady_clock::time_point{}) {
    const double dt = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min<double>(rate_, tokens_ + dt * rate_);
  }
  last_ = now;
  return static_cast<uint32_t>(tokens_);
}

void CloseBudget::spend(uint64_t n) {
  tokens_ = std::max(0.0, tokens_ - static_cast<double>(n));
}

void CloseBudget::set_rate(uint32_t max_per_second) {
  rate_ = max_per_second;
  tokens_ = std::min<double>(tokens_, rate_);
}

KeepaliveRebalancer::KeepaliveRebalancer(SocketCloser& closer, uint32_t max_closes_per_second)
    : closer_(closer), budget_(max_closes_per_second) {
  stats_.available = true;
}

std::vector<kvlb_service_key> rebalanced_services(const AgentConfig& cfg) {
  std::vector<kvlb_service_key> out;
  for (const auto& s : cfg.services)
    if (s.keepalive_rebalance && s.vip.family) out.push_back(service_key(s.vip));
  return out;
}

KeepaliveRebalancer::Plan KeepaliveRebalancer::plan(const AgentConfig& cfg, const MapStore& maps,
                                                    uint64_t now_ns,
                                                    std::chrono::steady_clock::time_point now) {
  budget_.set_rate(cfg.keepalive.max_closes_per_second);
  const auto select = program_settings(cfg, 0).select;
  const auto shed =
      shed_decisions(maps, rebalanced_services(cfg), select, cfg.keepalive.margin_milli, now_ns);
  closer_.set_shed(shed);
  stats_.shed_backends = shed.size();
  ++stats_.rounds;
  Plan p;
  p.shed = shed.size();
  p.idle_ns = static_cast<uint64_t>(cfg.keepalive.idle.count()) * 1'000'000ull;
  // Nothing shed, or no budget: no socket walk at all.
  p.budget = shed.empty() ? 0 : budget_.available(now);
  p.walk = p.budget > 0;
  return p;
}

CloseRound KeepaliveRebalancer::walk(const Plan& p) {
  return closer_.close_idle(p.idle_ns, p.budget);
}

namespace {
// An error's kind: its text without numbers (pids, paths), for logging once.
std::string error_kind(const std::string& e) {
  std::string k;
  for (char c : e)
    if (c < '0' || c > '9') k += c;
  return k;
}
}  // namespace

void KeepaliveRebalancer::finish(const Plan& p, const CloseRound& r) {
  budget_.spend(r.closed_total());
  for (size_t i = 0; i < r.closed.size(); ++i) stats_.closed[i] += r.closed[i];
  for (size_t i = 0; i < r.verdicts.size(); ++i) stats_.verdicts[i] += r.verdicts[i];
  stats_.namespaces = r.namespaces;
  for (const auto& e : r.errors) {
    ++stats_.errors;
    stats_.last_error = e;
  }
  // Once per kind of error, not once per round and namespace (a missing
  // capability would otherwise fill the log); the metric counts every one.
  if (!r.errors.empty() && error_kind(r.errors.front()) != stats_.last_logged) {
    stats_.last_logged = error_kind(r.errors.front());
    spdlog::warn("keepalive rebalancing: {} namespace(s) not walked: {}", r.errors.size(),
                 r.errors.front());
  }
  if (r.closed_total())
    spdlog::info(
        "keepalive rebalancing: closed {} idle pooled connections ({} poor choice, {} draining) "
        "to {} shed backends; {} in flight, {} too recent, {} over the budget",
        r.closed_total(), r.closed[KVLB_SHED_POOR_CHOICE], r.closed[KVLB_SHED_DRAINING], p.shed,
        r.verdicts[KVLB_RB_IN_FLIGHT], r.verdicts[KVLB_RB_TOO_RECENT], r.verdicts[KVLB_RB_BUDGET]);
}

void KeepaliveRebalancer::round(const AgentConfig& cfg, const MapStore& maps, uint64_t now_ns,
                                std::chrono::steady_clock::time_point now) {
  const Plan p = plan(cfg, maps, now_ns, now);
  if (p.walk) finish(p, walk(p));
}

}  // namespace kvlb::agent
