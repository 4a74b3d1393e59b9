// The simulator's autoscaling loop (cluster_sim.h: AutoscaleSpec) and the
// figures of `kvlb-sim autoscale` (autoscale_run.h), on small fixed-seed runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "autoscale_run.h"
#include "cluster_sim.h"
#include "selection/select_defaults.h"

using namespace kvlb;

namespace {

constexpr double kStartup = 30;

sim::SimResult run(const std::string& policy, const std::string& profile, size_t initial,
                   uint64_t seed = 7) {
  sim::SimConfig cfg;
  cfg.select = default_select_cfg();
  cfg.seed = seed;
  cfg.profile.seed = seed;
  sim::AutoscaleSpec as;
  as.policy = sim::parse_policy_choice(policy, 1, 10);
  as.initial = initial;
  as.startup_s = kStartup;
  cfg.autoscale = as;
  auto steps = sim::parse_load_profile(profile);
  auto arrivals = sim::profile_arrivals(steps, seed);
  auto specs = loadgen::synthetic_openorca(arrivals.size(), seed);
  return sim::simulate(cfg, sim::parse_balancer("kvlb-p2c-queue-kv"), specs, arrivals);
}

int32_t max_existing(const sim::SimResult& r) {
  int32_t m = 0;
  for (const auto& c : r.autoscale.counts) m = std::max(m, c.existing);
  return m;
}

const sim::ReplicaLife& life_of(const sim::SimResult& r, const std::string& name) {
  for (const auto& l : r.autoscale.lives)
    if (l.name == name) return l;
  throw std::runtime_error("no replica " + name);
}

}  // namespace

TEST(AutoscaleSim, ScalesUpAfterAStepAndServesEveryRequest) {
  auto r = run("kvlb:min=2", "2@60,12@90", 2);
  ASSERT_FALSE(r.autoscale.scales.empty());
  // 2 req/s needs 2 replicas (a Poisson burst may ask for a third): the big
  // scale-up comes with the step.
  for (const auto& sc : r.autoscale.scales) {
    if (sc.t < 60) {
      EXPECT_LE(sc.to, 3) << "at " << sc.t << " s";
    }
  }
  EXPECT_GE(max_existing(r), 7);  // 12 req/s needs ~7.5 replicas of ~1.6 req/s
  for (const auto& q : r.requests) EXPECT_TRUE(q.ok()) << q.error;
}

TEST(AutoscaleSim, StartingReplicasGetNoPicksUntilTheirModelIsLoaded) {
  auto r = run("kvlb", "2@60,12@90", 2);
  size_t to_new = 0;
  for (const auto& q : r.requests) {
    const auto& l = life_of(r, q.replica);
    ASSERT_GE(l.active, 0) << q.replica << " got a pick and never became active";
    if (l.created > 0) {  // created by a scale-up (the initial ones are warm)
      EXPECT_GE(q.sent, l.created + kStartup) << q.replica << " picked while loading";
      ++to_new;
    }
  }
  EXPECT_GT(to_new, 100u);  // the new replicas did serve once loaded
}

TEST(AutoscaleSim, DrainedReplicasGetNoNewPicksAndLeaveOnlyWhenIdle) {
  // A burst, then a trickle: scale-down soon after it (no stabilization).
  auto r = run("kvlb:down_stabilization=0s", "12@90,1@150", 8);
  size_t drained = 0, deleted = 0;
  for (const auto& l : r.autoscale.lives) {
    drained += !l.drained.empty();
    deleted += l.deleted >= 0;
  }
  ASSERT_GT(drained, 0u);
  ASSERT_GT(deleted, 0u);
  EXPECT_EQ(r.autoscale.cut, 0u);
  for (const auto& q : r.requests) {
    ASSERT_TRUE(q.ok()) << q.error;
    const auto& l = life_of(r, q.replica);
    for (auto [from, to] : l.drained)
      EXPECT_FALSE(q.sent >= from && (to < 0 || q.sent < to)) << q.replica << " picked drained";
    if (l.deleted >= 0) {
      EXPECT_LE(q.end, l.deleted) << q.replica << " deleted while busy";
    }
  }
  EXPECT_LT(r.autoscale.counts.back().existing, 8);
}

TEST(AutoscaleSim, StaticKeepsItsReplicas) {
  auto r = run("static", "2@30,12@60", 4);
  EXPECT_TRUE(r.autoscale.scales.empty());
  for (const auto& c : r.autoscale.counts) {
    EXPECT_EQ(c.existing, 4);
    EXPECT_EQ(c.serving, 4);
  }
}

TEST(AutoscaleSim, ParsesProfilesAndPolicies) {
  auto p = sim::parse_load_profile("2@120,12@240,20@60,4@180");
  ASSERT_EQ(p.size(), 4u);
  EXPECT_DOUBLE_EQ(sim::profile_length(p), 600);
  EXPECT_DOUBLE_EQ(sim::step_time(p), 120);
  EXPECT_DOUBLE_EQ(sim::rate_at(p, 370), 20);
  EXPECT_THROW(sim::parse_load_profile("2@0"), std::invalid_argument);
  EXPECT_THROW(sim::parse_load_profile("fast@10"), std::invalid_argument);

  EXPECT_FALSE(sim::parse_policy_choice("static", 1, 14).has_value());
  auto k = sim::parse_policy_choice("kvlb:sync_period=2s:target=0.7:panic=off:min=3", 1, 14);
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->sync_period.count(), 2000);
  EXPECT_DOUBLE_EQ(k->target, 0.7);
  EXPECT_FALSE(k->panic);
  EXPECT_EQ(k->min_replicas, 3);
  EXPECT_EQ(k->max_replicas, 14);
  EXPECT_THROW(sim::parse_policy_choice("kvlb:speed=2", 1, 14), std::invalid_argument);
  EXPECT_THROW(sim::parse_policy_choice("kvlb:target=0", 1, 14), std::invalid_argument);
  EXPECT_THROW(sim::parse_policy_choice("keda", 1, 14), std::invalid_argument);
}

TEST(AutoscaleSim, PoissonArrivalsFollowTheProfile) {
  auto p = sim::parse_load_profile("2@100,20@100");
  auto a = sim::profile_arrivals(p, 3);
  auto before = std::count_if(a.begin(), a.end(), [](double t) { return t < 100; });
  auto after = static_cast<long>(a.size()) - before;
  EXPECT_NEAR(before, 200, 45);  // Poisson: sd ~14
  EXPECT_NEAR(after, 2000, 150);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_LT(a.back(), 200);
}

TEST(AutoscaleSim, FiguresByHand) {
  // 0-10 s: 2 replicas; 10-20 s: 4; a scale up then down (one reversal).
  sim::SimResult r;
  r.autoscale.counts = {{0, 2, 2, 0, 2, 2}, {10, 4, 4, 2, 2, 2}};
  r.autoscale.scales = {{5, 2, 4, "up"}, {15, 4, 3, "drained"}, {16, 3, 2, "drained"}};
  auto at = [&](double sent, double ttft) {
    loadgen::RequestResult q;
    q.sent = sent;
    q.first = sent + ttft;
    q.end = q.first + 1;
    r.requests.push_back(q);
  };
  // The step at 10 s: slow requests at 11-12 s, fast from 13 s on.
  for (int i = 0; i < 10; ++i) at(i, 0.1);
  at(11, 5);
  at(12, 5);
  for (int i = 13; i < 20; ++i) at(i, 0.1);
  auto p = sim::parse_load_profile("1@10,2@10");
  sim::FigureRules rules;
  rules.rolling_s = 3;
  auto f = sim::run_figures(r, p, rules);
  EXPECT_DOUBLE_EQ(f["replica_seconds"].get<double>(), 2 * 10 + 4 * 10);
  EXPECT_EQ(f["peak_replicas"], 4);
  EXPECT_EQ(f["reversals"], 1);
  EXPECT_NEAR(f["slo_attainment"].get<double>(), 17.0 / 19, 1e-12);
  // Over the SLO while 11 or 12 s is in the last 3 s: t in [11, 14]; under from 15.
  EXPECT_DOUBLE_EQ(f["recovery_s"].get<double>(), 5);
}
