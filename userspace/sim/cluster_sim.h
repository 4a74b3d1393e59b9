// cluster_sim.h - an experiment in virtual time: N replicas running the same
// engine model as kvlb-replica-sim, a balancer, and the load generator's
// arrivals and datasets, driven by a discrete-event clock instead of sockets.
//
// The kvlb balancers run select.h (the code the kernel runs) on scores that a
// simulated agent refreshes every scrape interval, and on exact in-kernel
// counters (picks, in-flight), exactly as the socket LB sees them.
#pragma once

#include <string>
#include <vector>

#include "client.h"
#include "dataset.h"
#include "monitor.h"
#include "replica_model/vllm_v0_model.h"
#include "scoring/suspects.h"

extern "C" {
#include "select.h"
}

namespace kvlb::sim {

struct BalancerSpec {
  std::string name;  // as in the live harness: kube-proxy, haproxy-leastconn, kvlb-p2c-kv, ...
  bool oracle = false;
  uint8_t policy = KVLB_POLICY_RANDOM;
  uint8_t choices = KVLB_DEFAULT_CHOICES;  // the agent's; 0: all backends
};

// Parses a balancer name: the live harness names (kube-proxy, haproxy-leastconn,
// haproxy-random2, nginx-random2-leastconn, oracle, kvlb-<policy>) or a policy of
// select.h (random, least-inflight, p2c-kv, p2c-queue-kv, p2c-score), optionally
// with ":k" choices ("p2c-queue-kv:8", "least-inflight:all"). Throws on unknown names.
BalancerSpec parse_balancer(const std::string& text);

// What parse_balancer accepts, one line per form, for --help-balancers.
std::string balancer_help();

struct SimConfig {
  size_t replicas = 8;
  // The first `lying` replicas fail every request at once (an HTTP 500 with no
  // work done) and so report themselves idle: the lying replica the agent's
  // suspect detection (scoring/suspects.h, run here as in the agent) bounds.
  size_t lying = 0;
  scoring::SuspectRules suspects;
  replica::EngineProfile profile;
  double scrape_interval_s = 0.05;
  double monitor_interval_s = 0.25;
  kvlb_select_cfg select{};
  // The in-kernel correction for connections assigned since the last score
  // (select.h: kvlb_view_make). Off for ablation: every pick sees its score as
  // if it had just been taken (no assignments unseen).
  bool pick_correction = true;
  uint64_t seed = 1;
};

struct SimResult {
  std::vector<loadgen::RequestResult> requests;  // same shape as the live load generator's
  std::vector<loadgen::ReplicaSeries> replicas;
  uint64_t events = 0;
  uint64_t suspect_events = 0;  // times a replica turned suspect
};

SimResult simulate(const SimConfig& cfg, const BalancerSpec& balancer,
                   const std::vector<loadgen::RequestSpec>& specs,
                   const std::vector<double>& arrivals);

}  // namespace kvlb::sim
