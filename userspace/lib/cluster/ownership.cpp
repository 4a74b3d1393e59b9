#include "cluster/ownership.h"

#include <algorithm>

#include "common/stable_hash.h"

namespace kvlb::cluster {

std::vector<std::string> owners(std::string_view replica, std::string_view replica_node,
                                const std::vector<Peer>& live, unsigned redundancy) {
  if (!replica_node.empty()) {
    // The agent next to the replica: its scrape never crosses the network. With
    // several agents on one node (tests, a gateway host beside a kubelet), the
    // rendezvous order picks among them.
    std::vector<const Peer*> local;
    for (const auto& p : live)
      if (p.node == replica_node) local.push_back(&p);
    if (!local.empty()) {
      auto best = std::max_element(local.begin(), local.end(), [&](const Peer* a, const Peer* b) {
        auto ha = stable_hash(a->id, replica), hb = stable_hash(b->id, replica);
        return ha != hb ? ha < hb : a->id < b->id;
      });
      return {(*best)->id};
    }
  }
  std::vector<std::pair<uint64_t, const std::string*>> ranked;
  ranked.reserve(live.size());
  for (const auto& p : live) ranked.emplace_back(stable_hash(p.id, replica), &p.id);
  const size_t n = std::min<size_t>(std::max(1u, redundancy), ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + n, ranked.end(), [](auto& a, auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  });
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(*ranked[i].second);
  return out;
}

bool owns(std::string_view agent_id, std::string_view replica, std::string_view replica_node,
          const std::vector<Peer>& live, unsigned redundancy) {
  for (const auto& o : owners(replica, replica_node, live, redundancy))
    if (o == agent_id) return true;
  return false;
}

}  // namespace kvlb::cluster
