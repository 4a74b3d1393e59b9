// socket_closer.h - keep-alive rebalancing's kernel side, behind a seam: mark
// backends shed, then close the idle pooled connections to them. The kernel's
// implementation (kernel_socket_closer.h) runs bpf/rebalance.bpf.c's socket
// iterator; tests give the agent's logic an in-memory one.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kvlb_maps.h"

namespace kvlb {

// What one round did, over every network namespace it visited.
struct CloseRound {
  // Balanced, established sockets, by verdict (enum kvlb_rebalance_verdict);
  // backend_ok counts the sockets to backends that are not shed.
  std::array<uint64_t, KVLB_RB_VERDICT_COUNT> verdicts{};
  // Closed, by why their backend was shed (enum kvlb_shed_reason).
  std::array<uint64_t, KVLB_SHED_REASON_COUNT> closed{};
  size_t namespaces = 0;            // visited
  std::vector<std::string> errors;  // namespaces that could not be visited, and why
  uint64_t closed_total() const {
    uint64_t n = 0;
    for (auto c : closed) n += c;
    return n;
  }
};

class SocketCloser {
 public:
  virtual ~SocketCloser() = default;
  // The shed set: (backend id, enum kvlb_shed_reason) for every shed backend;
  // every other backend's connections are kept.
  virtual void set_shed(const std::vector<std::pair<uint32_t, uint32_t>>& shed) = 0;
  // Closes at most `budget` idle pooled connections to shed backends (idle:
  // bpf/lib/idle.h, the last response ended at least idle_ns ago).
  virtual CloseRound close_idle(uint64_t idle_ns, uint32_t budget) = 0;
};

}  // namespace kvlb
