// membership.h - the live agents, from what they publish on the score bus.
//
// An agent that owns replicas publishes their scores every round: to the
// agents that receive them (those balancing the same services) that is its
// sign of life, and it is gone when none arrived for `peer_timeout` (two
// intervals). Every agent also sends a heartbeat once per `heartbeat_interval`
// (1 s), heard by all: an agent heard only that way is gone after three missed
// heartbeats. So each agent's inbound traffic grows with the replicas of the
// services it balances, not with the number of nodes, while a silent owner is
// still noticed within two intervals. A clean stop says goodbye. Time is this
// agent's monotonic clock only: when a message arrived here.
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
  Membership(Peer self, uint64_t owner_timeout_ns, uint64_t heartbeat_timeout_ns);

  // A message from another agent (one from this agent's own id is ignored):
  // scores or a heartbeat make it live, a goodbye removes it. False when it
  // was refused (table full).
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
  // Changes whenever live() does (ownership is recomputed only then).
  uint64_t version() const { return version_; }
  uint64_t joins() const { return joins_; }
  uint64_t leaves() const { return leaves_; }

 private:
  void rebuild();
  struct Seen {
    std::string node;
    uint64_t last_scores_ns = 0;  // 0: none seen
    uint64_t last_heartbeat_ns = 0;
  };
  bool silent(const Seen& s, uint64_t now_ns) const;
  Peer self_;
  uint64_t owner_timeout_ns_, heartbeat_timeout_ns_;
  std::map<std::string, Seen> peers_;
  std::vector<Peer> live_;
  uint64_t joins_ = 0, leaves_ = 0;
  uint64_t version_ = 0;
};

}  // namespace kvlb::cluster
