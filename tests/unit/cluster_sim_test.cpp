#include "cluster_sim.h"

#include <gtest/gtest.h>

#include <map>

#include "arrivals.h"
#include "report.h"
#include "selection/select_defaults.h"

using namespace kvlb;

namespace {

struct SimRun {
  sim::SimResult r;
  nlohmann::json summary;
};

SimRun run(const std::string& balancer, double rps, double duration, uint64_t seed = 5) {
  sim::SimConfig cfg;
  cfg.select = default_select_cfg();
  cfg.seed = seed;
  cfg.profile.seed = seed;
  auto specs = loadgen::synthetic_openorca(static_cast<size_t>(rps * duration), seed);
  loadgen::ArrivalConfig ac;
  ac.rps = rps;
  auto arrivals = loadgen::schedule(ac, specs.size());
  auto r = sim::simulate(cfg, sim::parse_balancer(balancer), specs, arrivals);
  return {r, loadgen::summarize_run(r.requests, 0)};
}

}  // namespace

TEST(ClusterSim, EveryRequestCompletesWithItsOutputLength) {
  auto [r, s] = run("kvlb-p2c-queue-kv", 4, 60);
  EXPECT_EQ(s["ok"], 240);
  for (const auto& q : r.requests) {
    ASSERT_TRUE(q.ok()) << q.error;
    EXPECT_EQ(q.output_tokens, q.expected_output);
    EXPECT_GE(q.first, q.sent);
    EXPECT_GE(q.end, q.first);
  }
}

TEST(ClusterSim, DeterministicForASeed) {
  auto a = run("kvlb-p2c-kv", 6, 60), b = run("kvlb-p2c-kv", 6, 60);
  ASSERT_EQ(a.r.requests.size(), b.r.requests.size());
  for (size_t i = 0; i < a.r.requests.size(); ++i) {
    EXPECT_EQ(a.r.requests[i].replica, b.r.requests[i].replica);
    EXPECT_DOUBLE_EQ(a.r.requests[i].end, b.r.requests[i].end);
  }
}

TEST(ClusterSim, LoadAwareBalancersKeepQueuesShorterThanRandomAtHighLoad) {
  auto max_wait = [](const SimRun& x) {
    double m = 0;
    for (const auto& s : x.r.replicas)
      for (double w : s.waiting) m = std::max(m, w);
    return m;
  };
  auto random = run("kube-proxy", 12, 300), leastconn = run("haproxy-leastconn", 12, 300),
       kvlb = run("kvlb-p2c-queue-kv", 12, 300);
  EXPECT_GT(max_wait(random), 2 * max_wait(leastconn));
  EXPECT_GT(max_wait(random), 2 * max_wait(kvlb));
  EXPECT_GT(random.summary["ttft_s"]["p99"].get<double>(),
            2 * kvlb.summary["ttft_s"]["p99"].get<double>());
}

TEST(ClusterSim, ParsesBalancerNames) {
  EXPECT_TRUE(sim::parse_balancer("oracle").oracle);
  EXPECT_EQ(sim::parse_balancer("kube-proxy").policy, KVLB_POLICY_RANDOM);
  auto lc = sim::parse_balancer("haproxy-leastconn");
  EXPECT_EQ(lc.policy, KVLB_POLICY_LEAST_INFLIGHT);
  EXPECT_EQ(lc.choices, 0);  // all backends
  auto k = sim::parse_balancer("kvlb-p2c-queue-kv:8");
  EXPECT_EQ(k.policy, KVLB_POLICY_P2C_QUEUE_KV);
  EXPECT_EQ(k.choices, 8);
  EXPECT_THROW(sim::parse_balancer("round-robin"), std::invalid_argument);
}
