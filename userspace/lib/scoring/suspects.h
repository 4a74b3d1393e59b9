// suspects.h - backends whose reports the kernel's own counts contradict.
//
// A replica that fails every request at once (a broken engine answering 500, a
// proxy with nothing behind it) reports 0 waiting and 0% KV: to every
// score-based policy it looks like the best backend there is, and passive health
// does not see it (its TCP connects succeed). What gives it away is what the
// kernel counts, against what its peers do: its picks keep climbing while it
// reports nothing running, the connections it gets close at once (their mean
// lifetime, by Little's law, is mean in-flight x time / picks), and meanwhile its
// peers report real work. Without that contrast (every backend getting short
// connections, as health checks through the VIP do) nobody is suspect: at L4 a
// failed request and a quick successful one look the same.
//
// A suspect is not ejected (it may be right, and traffic is what tells): its
// score is bounded so that it looks no better than the median of its peers, and
// it is reported. It stays a suspect for a probation that doubles each time it
// is found again (10 s, 20 s, ... up to 5 min), and is cleared at once when it
// reports work running.
//
// The agent and the simulator use this same code.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "kvlb_maps.h"

namespace kvlb::scoring {

struct SuspectRules {
  bool enabled = true;
  double window_s = 2.0;         // look back at least this long, and at least 10 scrapes
  uint64_t min_picks = 5;        // connections the backend got in the window
  double max_lifetime_s = 0.05;  // their mean lifetime below this
  double probation_s = 10.0;     // doubled at each new finding, at most 300 s
  bool operator==(const SuspectRules&) const = default;
};

// One backend at one scrape.
struct Observation {
  double t = 0;          // seconds, any monotonic origin
  uint64_t picks = 0;    // kernel picks so far
  int64_t inflight = 0;  // kernel in-flight now
  bool scraped = false;  // the scrape succeeded: waiting and running are its report
  uint32_t waiting = 0;
  uint32_t running = 0;
};

class SuspectTracker {
 public:
  explicit SuspectTracker(SuspectRules rules = {}) : rules_(rules) {}

  // Records one scrape of backend `key` (a stable id).
  void observe(uint32_t key, const Observation& o);
  // When `key` last reported work (running or waiting); -infinity if never.
  double last_work(uint32_t key) const;
  // After a round's observations: decides for `key`, given when its peers (the
  // backends it is compared with) last reported work. Constant time per call
  // unless the backend got enough connections to be examined. Returns true
  // when it turned suspect or stopped being one.
  bool update(uint32_t key, double peers_last_work);
  bool suspect(uint32_t key) const;
  // Why it is a suspect (for logs, the admin API and kvlbctl); "" when it is not.
  std::string reason(uint32_t key) const;
  uint64_t events() const { return events_; }  // times a backend turned suspect
  void forget(uint32_t key) { state_.erase(key); }
  const SuspectRules& rules() const { return rules_; }

 private:
  struct State {
    std::deque<Observation> window;
    double last_work = -1e300;
    bool suspect = false;
    double until = 0;      // probation end
    unsigned strikes = 0;  // findings, for the doubling probation
    double last_clear = 0;
    std::string reason;
  };
  SuspectRules rules_;
  std::map<uint32_t, State> state_;
  uint64_t events_ = 0;
};

// A peer's view, for the bound.
struct PeerLoad {
  kvlb_score score;
  int64_t inflight = 0;
};

// The score to write for a suspect backend: its own, made no better than the
// median of `peers` (the active, non-suspect backends it is compared with):
// waiting above their median, KV at least their median, and an in-flight bias
// that puts it above their median in-flight. Unchanged when there are no peers.
kvlb_score bound_suspect(const kvlb_score& own, int64_t own_inflight,
                         const std::vector<PeerLoad>& peers);

}  // namespace kvlb::scoring
