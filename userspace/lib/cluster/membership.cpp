#include "cluster/membership.h"

#include <algorithm>

namespace kvlb::cluster {

Membership::Membership(Peer self, uint64_t owner_timeout_ns, uint64_t heartbeat_timeout_ns)
    : self_(std::move(self)),
      owner_timeout_ns_(owner_timeout_ns),
      heartbeat_timeout_ns_(heartbeat_timeout_ns) {
  rebuild();
}

bool Membership::silent(const Seen& s, uint64_t now_ns) const {
  // Scores seen lately: an owner, held to the short timeout. (One that stops
  // owning anything this agent sees is taken for gone until its next
  // heartbeat: harmless, it owns nothing here.)
  if (s.last_scores_ns && now_ns <= s.last_scores_ns + heartbeat_timeout_ns_)
    return now_ns > s.last_scores_ns + owner_timeout_ns_;
  return now_ns > s.last_heartbeat_ns + heartbeat_timeout_ns_;
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
  if (m.kind != MessageKind::Heartbeat && m.kind != MessageKind::Scores) return true;
  auto it = peers_.find(m.publisher);
  if (it == peers_.end()) {
    if (peers_.size() >= kMaxPeers) return false;
    it = peers_.emplace(m.publisher, Seen{m.node, 0, 0}).first;
    ++joins_;
    rebuild();
  } else if (it->second.node != m.node) {
    it->second.node = m.node;
    rebuild();
  }
  (m.kind == MessageKind::Scores ? it->second.last_scores_ns : it->second.last_heartbeat_ns) =
      now_ns;
  return true;
}

std::vector<std::string> Membership::expire(uint64_t now_ns) {
  std::vector<std::string> gone;
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (silent(it->second, now_ns)) {
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
  for (auto& [id, seen] : peers_) {
    if (seen.last_scores_ns) seen.last_scores_ns = std::max(seen.last_scores_ns, until_ns);
    seen.last_heartbeat_ns = std::max(seen.last_heartbeat_ns, until_ns);
  }
}

void Membership::rebuild() {
  ++version_;
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
