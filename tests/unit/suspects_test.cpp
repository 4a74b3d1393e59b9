// Suspect backends: found from the kernel's counts against the replica's own
// reports, bounded to the median of their peers, cleared when they work.
#include "scoring/suspects.h"

#include <gtest/gtest.h>

using namespace kvlb::scoring;

namespace {

// Backends scraped every 50 ms: key 1 is the one under watch, getting `rate`
// connections a second that stay open `lifetime` seconds and reporting
// `running`; key 2 is its peer, reporting `peer_running`.
struct Feed {
  SuspectTracker& t;
  uint32_t key;
  double now = 0;
  uint64_t picks = 0;
  double carry = 0;
  uint32_t peer_running = 3;
  // Returns whether the backend ended suspect.
  bool run(double seconds, double rate, double lifetime, uint32_t running) {
    const uint32_t peer = key + 1000;
    for (double end = now + seconds; now < end; now += 0.05) {
      carry += rate * 0.05;
      while (carry >= 1) {
        ++picks;
        carry -= 1;
      }
      t.observe(key, {now, picks, static_cast<int64_t>(rate * lifetime + 0.5), true, 0, running});
      t.observe(peer, {now, 0, 2, true, 0, peer_running});
      t.update(key, t.last_work(peer));
    }
    return t.suspect(key);
  }
};

}  // namespace

TEST(Suspects, AReplicaFailingFastWhileReportingIdleIsFound) {
  SuspectTracker t;
  Feed liar{t, 1};
  EXPECT_TRUE(liar.run(3, 12, 0.002, 0));
  EXPECT_NE(t.reason(1).find("mean lifetime"), std::string::npos) << t.reason(1);
  EXPECT_EQ(t.events(), 1u);
}

TEST(Suspects, HealthyBackendsAreNot) {
  SuspectTracker t;
  // Busy and saying so.
  EXPECT_FALSE((Feed{t, 1}.run(3, 12, 8.0, 5)));
  // Idle: no connections, nothing running.
  EXPECT_FALSE((Feed{t, 2}.run(3, 0, 0, 0)));
  // Long streaming connections between scrapes that miss the running count:
  // their lifetime gives them away as real work.
  EXPECT_FALSE((Feed{t, 3}.run(3, 12, 2.0, 0)));
  // A few short requests: under the minimum of connections (5 in 2 s).
  EXPECT_FALSE((Feed{t, 4}.run(3, 1, 0.002, 0)));
  EXPECT_EQ(t.events(), 0u);
}

TEST(Suspects, ProbationDoublesAndWorkClearsAtOnce) {
  SuspectTracker t;
  Feed liar{t, 1};
  ASSERT_TRUE(liar.run(3, 12, 0.002, 0));  // found at about 2 s, the window's length
  // Bounded, it gets no connections: it stays a suspect for the probation (10 s).
  EXPECT_TRUE(liar.run(8.5, 0, 0, 0));
  EXPECT_FALSE(liar.run(1, 0, 0, 0));
  // Given traffic again, it is found again, for twice as long.
  ASSERT_TRUE(liar.run(3, 12, 0.002, 0));
  EXPECT_EQ(t.events(), 2u);
  EXPECT_TRUE(liar.run(15, 0, 0, 0));
  EXPECT_FALSE(liar.run(6, 0, 0, 0));
  // Found once more, but then it reports work: cleared at the next scrape.
  ASSERT_TRUE(liar.run(3, 12, 0.002, 0));
  EXPECT_FALSE(liar.run(0.05, 12, 2.0, 3));
}

TEST(Suspects, WithoutPeersDoingWorkNobodyIsSuspect) {
  // Every backend getting short connections and reporting nothing running:
  // health checks or /v1/models calls through the VIP, not a lying replica.
  SuspectTracker t;
  Feed probed{t, 1};
  probed.peer_running = 0;
  EXPECT_FALSE(probed.run(4, 20, 0.001, 0));
  EXPECT_EQ(t.events(), 0u);
}

TEST(Suspects, DisabledFindsNothing) {
  SuspectRules r;
  r.enabled = false;
  SuspectTracker t(r);
  EXPECT_FALSE((Feed{t, 1}.run(4, 12, 0.002, 0)));
}

TEST(Suspects, TheBoundIsNoBetterThanTheMedianPeer) {
  auto score = [](uint32_t w, uint16_t kv) {
    kvlb_score s{};
    s.waiting = w;
    s.kv_permille = kv;
    return s;
  };
  std::vector<PeerLoad> peers = {{score(0, 300), 2}, {score(2, 500), 4}, {score(5, 900), 9}};
  auto b = bound_suspect(score(0, 0), 0, peers);
  EXPECT_EQ(b.waiting, 3u);        // median 2, strictly above
  EXPECT_EQ(b.kv_permille, 500);   // at least the median
  EXPECT_EQ(b.inflight_bias, 5u);  // median in-flight 4, plus one, minus its own 0
  // A suspect already worse than the median keeps its own values.
  auto worse = bound_suspect(score(9, 950), 10, peers);
  EXPECT_EQ(worse.waiting, 9u);
  EXPECT_EQ(worse.kv_permille, 950);
  EXPECT_EQ(worse.inflight_bias, 0u);
  EXPECT_EQ(bound_suspect(score(0, 0), 0, {}).waiting, 0u);  // no peers: unchanged
}
