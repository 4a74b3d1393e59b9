// ownership.h - which agent scrapes which replica (docs/cluster.md).
//
// A replica on a node that runs a live agent is that agent's alone. Any other
// replica (static configuration, a gateway host's backends, a node without
// kvlb) goes to the `redundancy` live agents ranked highest by a rendezvous
// hash of (agent id, replica address): every agent computes the same answer
// from the same membership, and when an agent leaves only its replicas move.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvlb::cluster {

struct Peer {
  std::string id;    // agent id
  std::string node;  // the node it runs on
};

// The owners of one replica among `live` (which must include the caller).
// `replica_node`: the node the replica runs on ("" when unknown).
std::vector<std::string> owners(std::string_view replica, std::string_view replica_node,
                                const std::vector<Peer>& live, unsigned redundancy);

bool owns(std::string_view agent_id, std::string_view replica, std::string_view replica_node,
          const std::vector<Peer>& live, unsigned redundancy);

}  // namespace kvlb::cluster
