#include "cluster/membership.h"

#include <algorithm>

namespace kvlb::cluster {

Membership::Membership(Peer self, uint64_t timeout_ns)
    : self_(std::move(self)), timeout_ns_(timeout_ns) {
  rebuild();
}

bool Membership::heard(const Message& m, uint64_t now_ns) {
  if (m.publisher == self_.id) return true;
  if (m.kind == MessageKind::Leaving) {
    if (peers_.erase(m.publisher)) {
      ++leaves_;
      rebuild();
    }
    return true;
  }
  if (m.kind != MessageKind::Heartbeat) return true;
  auto it = peers_.find(m.publisher);
  if (it == peers_.end()) {
    if (peers_.size() >= kMaxPeers) return false;
    peers_.emplace(m.publisher, Seen{m.node, now_ns});
    ++joins_;
    rebuild();
    return true;
  }
  it->second.last_ns = now_ns;
  if (it->second.node != m.node) {
    it->second.node = m.node;
    rebuild();
  }
  return true;
}

std::vector<std::string> Membership::expire(uint64_t now_ns) {
  std::vector<std::string> gone;
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (now_ns > it->second.last_ns + timeout_ns_) {
      gone.push_back(it->first);
      it = peers_.erase(it);
      ++leaves_;
    } else {
      ++it;
    }
  }
  if (!gone.empty()) rebuild();
  return gone;
}

void Membership::refresh_all(uint64_t until_ns) {
  for (auto& [id, seen] : peers_) seen.last_ns = std::max(seen.last_ns, until_ns);
}

void Membership::rebuild() {
  live_.clear();
  bool self_added = false;
  for (const auto& [id, seen] : peers_) {
    if (!self_added && self_.id < id) {
      live_.push_back(self_);
      self_added = true;
    }
    live_.push_back({id, seen.node});
  }
  if (!self_added) live_.push_back(self_);
}

}  // namespace kvlb::cluster
