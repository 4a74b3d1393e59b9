// The selection header is the code the kernel runs; these tests drive it with
// fixed random seeds.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "selection/array_pick.h"
#include "selection/select_defaults.h"

namespace {

// The shipped defaults, with a 1 s staleness bound.
kvlb_select_cfg cfg() {
  kvlb_select_cfg c = kvlb::default_select_cfg();
  c.stale_ns = 1'000'000'000ull;
  return c;
}

constexpr uint64_t kNow = 10'000'000'000ull;

kvlb_counters ctr(uint64_t picks, int64_t inflight) {
  kvlb_counters c{};
  c.picks = picks;
  c.inflight = inflight;
  return c;
}

kvlb_score fresh(uint32_t waiting, uint16_t kv, uint8_t state = KVLB_STATE_ACTIVE) {
  kvlb_score s{};
  s.waiting = waiting;
  s.kv_permille = kv;
  s.weight = 100;
  s.state = state;
  s.updated_ns = kNow - 10'000'000;  // 10 ms old
  return s;
}

kvlb_view view(uint32_t id, const kvlb_score& s, int64_t inflight = 0, uint64_t picks = 0) {
  kvlb_counters c = ctr(picks, inflight);
  kvlb_view v{};
  auto conf = cfg();
  v.backend_id = id;
  kvlb_view_make(&v, &s, &c, &conf, kNow);
  return v;
}

// A service's backends as arrays, picked the way the kernel picks (pick.bpf.h).
struct Service {
  std::vector<kvlb_score> scores;
  std::vector<kvlb_counters> counters;
  uint8_t policy = KVLB_POLICY_P2C_QUEUE_KV;
  uint8_t choices = 2;

  int pick(uint64_t seed) {
    int idx = kvlb::pick_from_arrays(policy, choices, scores.data(), counters.data(),
                                     static_cast<uint32_t>(scores.size()), cfg(), kNow, seed);
    if (idx < 0) return -1;
    counters[idx].picks++;
    counters[idx].inflight++;
    return idx;
  }
};

}  // namespace

TEST(SampleSlot, CandidatesAreDistinctAndInRange) {
  for (uint32_t n = 1; n <= 40; ++n) {
    for (uint32_t k = 1; k <= std::min<uint32_t>(n, KVLB_MAX_CHOICES); ++k) {
      for (uint32_t start = 0; start < n; ++start) {
        for (uint32_t r = 0; r < 50; r += 7) {
          std::set<uint32_t> seen;
          for (uint32_t i = 0; i < k; ++i) {
            uint32_t s = kvlb_sample_slot(n, k, i, start, r * 2654435761u + i);
            ASSERT_LT(s, n);
            seen.insert(s);
          }
          ASSERT_EQ(seen.size(), k) << "n=" << n << " k=" << k << " start=" << start;
        }
      }
    }
  }
}

TEST(SampleSlot, EveryBackendIsSampledEquallyOften) {
  for (uint32_t n : {2u, 3u, 5u, 8u, 13u}) {
    for (uint32_t k : {2u, 3u}) {
      if (k > n) continue;
      std::vector<int> hits(n, 0);
      kvlb_rng rng;
      kvlb_rng_seed(&rng, 42);
      const int rounds = 60000;
      for (int t = 0; t < rounds; ++t) {
        uint32_t start = kvlb_rng_next(&rng) % n;
        for (uint32_t i = 0; i < k; ++i)
          ++hits[kvlb_sample_slot(n, k, i, start, kvlb_rng_next(&rng))];
      }
      double expect = double(rounds) * k / n;
      for (uint32_t s = 0; s < n; ++s)
        EXPECT_NEAR(hits[s], expect, expect * 0.03) << "n=" << n << " k=" << k << " slot=" << s;
    }
  }
}

TEST(NumChoices, BoundedByBackendsAndLimit) {
  EXPECT_EQ(kvlb_num_choices(KVLB_POLICY_P2C_QUEUE_KV, 2, 8), 2u);
  EXPECT_EQ(kvlb_num_choices(KVLB_POLICY_P2C_QUEUE_KV, 8, 3), 3u);
  EXPECT_EQ(kvlb_num_choices(KVLB_POLICY_P2C_QUEUE_KV, 200, 256), (uint32_t)KVLB_MAX_CHOICES);
  EXPECT_EQ(kvlb_num_choices(KVLB_POLICY_P2C_QUEUE_KV, 0, 5), 2u);
  EXPECT_EQ(kvlb_num_choices(KVLB_POLICY_RANDOM, 4, 5), 1u);
  EXPECT_EQ(kvlb_num_choices(KVLB_POLICY_RANDOM, 4, 0), 0u);
}

TEST(ViewMake, AssignmentsSinceScoreRaiseKvAndQueueOnlyWhenQueuing) {
  auto conf = cfg();
  kvlb_view v{};
  kvlb_score idle = fresh(0, 300);
  idle.picks_at_score = 10;
  kvlb_counters c = ctr(14, 4);  // 4 picks since the score
  v.backend_id = 1;
  kvlb_view_make(&v, &idle, &c, &conf, kNow);
  EXPECT_EQ(v.waiting, 0u);  // not queuing: new requests join the running batch
  EXPECT_EQ(v.kv, 300u + 4 * conf.kv_permille_per_pick);
  EXPECT_FALSE(v.stale);

  kvlb_score queuing = fresh(3, 600);
  queuing.picks_at_score = 10;
  v.backend_id = 1;
  kvlb_view_make(&v, &queuing, &c, &conf, kNow);
  EXPECT_EQ(v.waiting, 3u + 4);

  kvlb_score full = fresh(0, 940);
  full.picks_at_score = 10;
  v.backend_id = 1;
  kvlb_view_make(&v, &full, &c, &conf, kNow);
  EXPECT_EQ(v.waiting, 4u);  // 940 + 4 assignments >= 950: the cache is full, they queue
}

TEST(ViewMake, ClosedConnectionsDoNotCountAsUnseenLoad) {
  auto conf = cfg();
  kvlb_view v{};
  kvlb_score idle = fresh(0, 300);
  idle.picks_at_score = 10;
  kvlb_counters c = ctr(110, 2);  // 100 picks since the score, but only 2 still open
  v.backend_id = 1;
  kvlb_view_make(&v, &idle, &c, &conf, kNow);
  EXPECT_EQ(v.kv, 300u + 2 * conf.kv_permille_per_pick);
  EXPECT_EQ(v.waiting, 0u);
  kvlb_counters old_conns = ctr(110, 500);  // many open, but from before the score
  v.backend_id = 1;
  kvlb_view_make(&v, &idle, &old_conns, &conf, kNow);
  EXPECT_EQ(v.kv, 300u + 100 * conf.kv_permille_per_pick);
}

TEST(ViewMake, StaleAndIneligible) {
  auto conf = cfg();
  kvlb_view v{};
  kvlb_score old = fresh(0, 100);
  old.updated_ns = kNow - 2'000'000'000ull;
  v.backend_id = 1;
  kvlb_view_make(&v, &old, nullptr, &conf, kNow);
  EXPECT_TRUE(v.stale);
  EXPECT_TRUE(v.eligible);
  kvlb_score never{};
  v.backend_id = 1;
  kvlb_view_make(&v, &never, nullptr, &conf, kNow);
  EXPECT_TRUE(v.stale);
  kvlb_score draining = fresh(0, 0, KVLB_STATE_DRAINING);
  v.backend_id = 1;
  kvlb_view_make(&v, &draining, nullptr, &conf, kNow);
  EXPECT_FALSE(v.eligible);
  kvlb_score down = fresh(0, 0, KVLB_STATE_DOWN);
  v.backend_id = 1;
  kvlb_view_make(&v, &down, nullptr, &conf, kNow);
  EXPECT_FALSE(v.eligible);
  v.backend_id = KVLB_BACKEND_NONE;
  kvlb_view_make(&v, &never, nullptr, &conf, kNow);
  EXPECT_FALSE(v.eligible);
  kvlb_counters negative = ctr(0, -5);
  v.backend_id = 1;
  kvlb_view_make(&v, &never, &negative, &conf, kNow);
  EXPECT_EQ(v.inflight, 0);
}

TEST(Prefer, QueueThenKvThenInflight) {
  const uint8_t p = KVLB_POLICY_P2C_QUEUE_KV;
  auto a = view(1, fresh(1, 100)), b = view(2, fresh(2, 0));
  EXPECT_TRUE(kvlb_prefer(p, &a, &b));  // fewer waiting wins over lower KV
  EXPECT_FALSE(kvlb_prefer(p, &b, &a));
  a = view(1, fresh(2, 100));
  b = view(2, fresh(2, 200));
  EXPECT_TRUE(kvlb_prefer(p, &a, &b));
  a = view(1, fresh(2, 100), 3);
  b = view(2, fresh(2, 100), 1);
  EXPECT_TRUE(kvlb_prefer(p, &b, &a));
  EXPECT_FALSE(kvlb_prefer(p, &a, &a));  // a tie is not a preference
}

TEST(Prefer, KvPolicyIgnoresQueue) {
  auto a = view(1, fresh(10, 100)), b = view(2, fresh(0, 200));
  EXPECT_TRUE(kvlb_prefer(KVLB_POLICY_P2C_KV, &a, &b));
  EXPECT_FALSE(kvlb_prefer(KVLB_POLICY_P2C_QUEUE_KV, &a, &b));
}

TEST(Prefer, LeastInflightAndStaleFallback) {
  auto a = view(1, fresh(0, 900), 1), b = view(2, fresh(0, 100), 5);
  EXPECT_TRUE(kvlb_prefer(KVLB_POLICY_LEAST_INFLIGHT, &a, &b));
  kvlb_score old = fresh(0, 100);
  old.updated_ns = 1;
  auto s = view(3, old, 5);
  EXPECT_TRUE(kvlb_prefer(KVLB_POLICY_P2C_QUEUE_KV, &a, &s));  // stale: in-flight decides
}

TEST(Prefer, ScorePolicyWeighsAndNormalisesByWeight) {
  auto conf = cfg();
  kvlb_score big = fresh(2, 500);
  big.weight = 200;  // twice the capacity
  kvlb_score small = fresh(1, 500);
  kvlb_view a{}, b{};
  a.backend_id = 1;
  kvlb_view_make(&a, &big, nullptr, &conf, kNow);
  b.backend_id = 2;
  kvlb_view_make(&b, &small, nullptr, &conf, kNow);
  EXPECT_EQ(a.score, (2 * 1000u + 500) * 100 / 200);
  EXPECT_EQ(b.score, (1 * 1000u + 500));
  EXPECT_TRUE(kvlb_prefer(KVLB_POLICY_P2C_SCORE, &a, &b));
}

TEST(Prefer, IneligibleNeverWins) {
  auto a = view(1, fresh(0, 0, KVLB_STATE_DRAINING)), b = view(2, fresh(50, 1000));
  EXPECT_FALSE(kvlb_prefer(KVLB_POLICY_P2C_QUEUE_KV, &a, &b));
  EXPECT_TRUE(kvlb_prefer(KVLB_POLICY_P2C_QUEUE_KV, &b, &a));
}

TEST(Pick, BusyBackendIsAvoidedByP2cQueueKv) {
  Service s;
  s.scores = {fresh(20, 990), fresh(0, 300), fresh(0, 300)};
  s.counters.resize(3);
  std::vector<int> hits(3, 0);
  for (uint64_t seed = 1; seed <= 3000; ++seed) {
    ++hits[s.pick(seed)];
    // Short connections, and a fresh score before every pick.
    for (auto& c : s.counters) c = kvlb_counters{};
  }
  EXPECT_EQ(hits[0], 0);  // two distinct candidates always include an idle one
  EXPECT_NEAR(hits[1], 1500, 150);
  EXPECT_NEAR(hits[2], 1500, 150);
}

TEST(Pick, TiesAreBrokenUniformlyWhenAllBackendsAreCompared) {
  // One busy backend and two equal idle ones, every backend compared: the idle
  // ones must share evenly, whichever follows the busy one in the ring.
  Service s;
  s.choices = 4;
  s.scores = {fresh(20, 990), fresh(0, 300), fresh(0, 300)};
  s.counters.resize(3);
  std::vector<int> hits(3, 0);
  for (uint64_t seed = 1; seed <= 6000; ++seed) {
    ++hits[s.pick(seed)];
    for (auto& c : s.counters) c = kvlb_counters{};
  }
  EXPECT_EQ(hits[0], 0);
  EXPECT_NEAR(hits[1], 3000, 200);
  EXPECT_NEAR(hits[2], 3000, 200);
}

TEST(Pick, RandomIsUniform) {
  Service s;
  s.policy = KVLB_POLICY_RANDOM;
  s.scores = {fresh(20, 990), fresh(0, 300), fresh(0, 300), fresh(0, 0)};
  s.counters.resize(4);
  std::vector<int> hits(4, 0);
  for (uint64_t seed = 1; seed <= 8000; ++seed) ++hits[s.pick(seed)];
  for (int h : hits) EXPECT_NEAR(h, 2000, 200);
}

TEST(Pick, LeastInflightWithAllChoicesIsExact) {
  Service s;
  s.policy = KVLB_POLICY_LEAST_INFLIGHT;
  s.choices = 4;
  s.scores = {fresh(0, 0), fresh(0, 0), fresh(0, 0), fresh(0, 0)};
  s.counters = {ctr(0, 5), ctr(0, 2), ctr(0, 7), ctr(0, 3)};
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    s.counters = {ctr(0, 5), ctr(0, 2), ctr(0, 7), ctr(0, 3)};
    EXPECT_EQ(s.pick(seed), 1);
  }
}

TEST(Pick, PicksBetweenScoresSpreadInsteadOfHerding) {
  // All backends look identical at the score; the kernel's own counters must
  // spread the next picks rather than send them all to one.
  Service s;
  s.choices = 8;
  for (int i = 0; i < 8; ++i) s.scores.push_back(fresh(0, 200));
  s.counters.resize(8);
  std::vector<int> hits(8, 0);
  for (uint64_t seed = 1; seed <= 80; ++seed) ++hits[s.pick(seed)];
  for (int h : hits) EXPECT_EQ(h, 10);  // all-choices + exact correction: perfectly even
}

TEST(Pick, DrainingAndDownAreNeverPickedAndFallbackScanFindsHealthy) {
  Service s;
  s.scores = {fresh(0, 0, KVLB_STATE_DRAINING), fresh(0, 0, KVLB_STATE_DOWN),
              fresh(0, 0, KVLB_STATE_DRAINING), fresh(30, 999), fresh(0, 0, KVLB_STATE_DOWN)};
  s.counters.resize(5);
  for (uint64_t seed = 1; seed <= 500; ++seed) EXPECT_EQ(s.pick(seed), 3);
}

TEST(Pick, PassiveHealthBenchesAFailingBackendForTheCooldown) {
  Service s;
  s.scores = {fresh(0, 100), fresh(0, 100), fresh(0, 100)};
  s.counters.resize(3);
  s.counters[1].consecutive_failures = 1;
  s.counters[1].last_failure_ns = kNow - 1'000'000'000ull;  // 1 s ago, cool-down is 5 s
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    EXPECT_NE(s.pick(seed), 1);
    for (auto& c : s.counters) c.picks = c.inflight = 0;
  }
  s.counters[1].last_failure_ns = kNow - 6'000'000'000ull;  // cool-down over: tried again
  int hits = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    hits += s.pick(seed) == 1;
    for (auto& c : s.counters) c.picks = c.inflight = 0;
  }
  EXPECT_GT(hits, 50);
}

TEST(Pick, WhenEveryBackendIsCoolingConnectionsAreStillTried) {
  Service s;
  s.scores = {fresh(0, 100), fresh(0, 100)};
  s.counters.resize(2);
  for (auto& c : s.counters) {
    c.consecutive_failures = 3;
    c.last_failure_ns = kNow - 1000;
  }
  EXPECT_GE(s.pick(1), 0);
}

TEST(Pick, NoEligibleBackendPicksNothing) {
  Service s;
  s.scores = {fresh(0, 0, KVLB_STATE_DRAINING), fresh(0, 0, KVLB_STATE_DOWN)};
  s.counters.resize(2);
  EXPECT_EQ(s.pick(7), -1);
  Service empty;
  EXPECT_EQ(empty.pick(7), -1);
}

TEST(ViewMake, TheAgentsInflightBiasCountsAsConnections) {
  // A suspect backend's score carries a bias: it compares as if it had that
  // many more connections open (the correction for unseen load still uses the
  // real count).
  kvlb_score s = fresh(0, 0);
  s.inflight_bias = 5;
  auto v = view(1, s, 1, 3);
  EXPECT_EQ(v.inflight, 6);
  EXPECT_EQ(v.kv,
            cfg().kv_permille_per_pick);  // one unseen assignment (capped by the real in-flight 1)
}

TEST(Pick, ABiasedBackendLosesLeastInflightAndTheTieBreak) {
  for (uint8_t policy : {uint8_t{KVLB_POLICY_LEAST_INFLIGHT}, uint8_t{KVLB_POLICY_P2C_QUEUE_KV}}) {
    Service s;
    s.policy = policy;
    s.choices = 3;
    s.scores = {fresh(0, 0), fresh(0, 0), fresh(0, 0)};
    s.scores[0].inflight_bias = 3;  // looks idle, but bounded by the agent
    s.counters.resize(3);
    std::vector<int> hits(3, 0);
    for (uint64_t seed = 1; seed <= 600; ++seed) {
      ++hits[s.pick(seed)];
      for (auto& c : s.counters) c = kvlb_counters{};
    }
    EXPECT_EQ(hits[0], 0) << int(policy);
  }
}
