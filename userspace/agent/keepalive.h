// keepalive.h - keep-alive rebalancing, the agent's side: which backends are no
// longer a good choice for the connections pooled on them (bpf/lib/shed.h, over
// the same views the kernel's comparison builds), and a rate-limited round of
// closing the idle ones through a SocketCloser (the kernel's iterator, or an
// in-memory one in tests). docs/keepalive.md has the design and the idle rule.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/map_store.h"
#include "dataplane/socket_closer.h"
#include "kvlb_maps.h"

extern "C" {
#include "select.h"
}

namespace kvlb::agent {

struct AgentConfig;

// (backend id, enum kvlb_shed_reason) for every shed backend of `services`
// (keys in the services map): per service, each backend is compared with the
// service's best eligible backend, as the kernel would see both now.
std::vector<std::pair<uint32_t, uint32_t>> shed_decisions(
    const MapStore& maps, const std::vector<kvlb_service_key>& services, const kvlb_select_cfg& cfg,
    uint64_t margin_milli, uint64_t now_ns);

// What rebalancing did since the agent started (the admin API renders it).
struct KeepaliveStats {
  bool available = false;
  std::string unavailable_reason;  // when not available
  uint64_t rounds = 0;
  std::array<uint64_t, KVLB_SHED_REASON_COUNT> closed{};   // by reason
  std::array<uint64_t, KVLB_RB_VERDICT_COUNT> verdicts{};  // sockets seen, by verdict
  size_t shed_backends = 0;                                // in the last round
  size_t namespaces = 0;                                   // visited in the last round
  uint64_t errors = 0;
  std::string last_error;
  std::string last_logged;  // the last logged error's kind (numbers dropped)
};

// Closes at most max_per_second a second on average (a token bucket holding
// one second's worth), whatever the round interval.
class CloseBudget {
 public:
  explicit CloseBudget(uint32_t max_per_second) : rate_(max_per_second), tokens_(max_per_second) {}
  // Tokens available at `now` (whole closes).
  uint32_t available(std::chrono::steady_clock::time_point now);
  void spend(uint64_t n);
  void set_rate(uint32_t max_per_second);

 private:
  uint32_t rate_;
  double tokens_;
  std::chrono::steady_clock::time_point last_{};
};

class KeepaliveRebalancer {
 public:
  explicit KeepaliveRebalancer(SocketCloser& closer, uint32_t max_closes_per_second);

  // A round in three steps, so that the socket walk runs without the agent's
  // lock: plan() (decide the shed set, mark it, take the budget) and finish()
  // (count) read and write the agent's state; walk() touches only the kernel.
  struct Plan {
    size_t shed = 0;      // backends shed
    uint32_t budget = 0;  // closes allowed
    uint64_t idle_ns = 0;
    bool walk = false;  // something to close and budget for it
  };
  Plan plan(const AgentConfig& cfg, const MapStore& maps, uint64_t now_ns,
            std::chrono::steady_clock::time_point now);
  CloseRound walk(const Plan& p);
  void finish(const Plan& p, const CloseRound& r);
  // All three (tests). Throws on a map error.
  void round(const AgentConfig& cfg, const MapStore& maps, uint64_t now_ns,
             std::chrono::steady_clock::time_point now);
  KeepaliveStats& stats() { return stats_; }
  const KeepaliveStats& stats() const { return stats_; }

 private:
  SocketCloser& closer_;
  CloseBudget budget_;
  KeepaliveStats stats_;
};

// The services map keys of the services with keepalive_rebalance on.
std::vector<kvlb_service_key> rebalanced_services(const AgentConfig& cfg);

}  // namespace kvlb::agent
