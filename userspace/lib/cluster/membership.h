// membership.h - the live agents, from their heartbeats on the score bus.
//
// Every agent publishes a heartbeat each round. A peer is live from its first
// heartbeat until `timeout` passes without one, or until it says goodbye (an
// agent that stops cleanly). Time is this agent's monotonic clock only: when a
// heartbeat arrived here, never a time written by the peer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/ownership.h"
#include "cluster/score_message.h"

namespace kvlb::cluster {

// A flood of made-up agent ids must not grow the table without bound.
inline constexpr size_t kMaxPeers = 4096;

class Membership {
 public:
  Membership(Peer self, uint64_t timeout_ns);

  // A heartbeat or goodbye from another agent (one from this agent's own id is
  // ignored). False when it was refused (table full).
  bool heard(const Message& m, uint64_t now_ns);
  // Peers silent for longer than the timeout leave; returns their ids.
  std::vector<std::string> expire(uint64_t now_ns);
  // Every peer counts as heard at `until_ns` (at least): after this agent was
  // off the bus (where it heard nobody), the others get until then plus one
  // timeout to be heard again before they are taken for gone.
  void refresh_all(uint64_t until_ns);

  // Every live agent, this one included, in id order.
  const std::vector<Peer>& live() const { return live_; }
  bool knows(const std::string& id) const { return id == self_.id || peers_.count(id) > 0; }
  const Peer& self() const { return self_; }
  uint64_t joins() const { return joins_; }
  uint64_t leaves() const { return leaves_; }

 private:
  void rebuild();
  struct Seen {
    std::string node;
    uint64_t last_ns = 0;
  };
  Peer self_;
  uint64_t timeout_ns_;
  std::map<std::string, Seen> peers_;
  std::vector<Peer> live_;
  uint64_t joins_ = 0, leaves_ = 0;
};

}  // namespace kvlb::cluster
