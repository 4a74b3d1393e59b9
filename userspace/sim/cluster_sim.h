// cluster_sim.h - an experiment in virtual time: N replicas running the same
// engine model as kvlb-replica-sim, a balancer, and the load generator's
// arrivals and datasets, driven by a discrete-event clock instead of sockets.
//
// The kvlb balancers run select.h (the code the kernel runs) on scores that a
// simulated agent refreshes every scrape interval, and on exact in-kernel
// counters (picks, in-flight), exactly as the socket LB sees them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autoscale/policy.h"
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

// The autoscaling loop, as in a cluster: kvlb-autoscaler's Scaler (the live
// code) every `interval_s` on an Observation built as the live autoscaler's
// (autoscaler/observe.cpp), a ReplicaSet that creates pods `creation_delay_s`
// after a scale-up and deletes (not ready first, then the lowest
// pod-deletion-cost, then the newest) at once on a scale-down, and replicas
// that load their model for `startup_s` before the balancer sees them.
//
// A replica's life: Starting (exists, not in the balancer, no score) ->
// Active -> Draining (in the balancer as draining: no new picks, finishes what
// it has; Undrain puts it back) -> Terminating (deleted by the ReplicaSet: out
// of the balancer at once, still counted for `termination_s`) -> Removed. A
// request still on a replica when it is deleted is cut (counted; the scaler
// should keep it 0).
struct AutoscaleSpec {
  std::optional<autoscale::Policy> policy;  // none: "static", `initial` replicas throughout
  size_t initial = 2;                       // Active at t = 0 (warm before the load starts)
  double startup_s = 30;                    // the model load
  double interval_s = 1;                    // the autoscaler's loop
  double creation_delay_s = 1;              // scale patched -> pod created
  double termination_s = 1;                 // deleted -> gone (counted as existing)
};

struct SimConfig {
  size_t replicas = 8;  // without `autoscale`; with it, autoscale->initial
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
  std::optional<AutoscaleSpec> autoscale;
};

// One replica's life under autoscaling (times in seconds; -1: did not happen).
struct ReplicaLife {
  std::string name;  // "r<index>", the request results' `replica`
  double created = 0, active = -1, deleted = -1, gone = -1;
  std::vector<std::pair<double, double>> drained;  // [from, to) out of new picks by a drain
  int32_t deletion_cost = 0;
  uint64_t cut = 0;  // requests it still had when deleted
};

// The replica counts after each change.
struct CountSample {
  double t = 0;
  int32_t spec = 0;
  int32_t existing = 0;  // starting + ready + terminating: what costs replica-seconds
  int32_t starting = 0;
  int32_t ready = 0;    // in the balancer (active or draining)
  int32_t serving = 0;  // in the balancer and eligible for new picks
};

struct ScaleChange {
  double t = 0;
  int32_t from = 0, to = 0;
  std::string why;
};

struct AutoscaleResult {
  std::vector<ReplicaLife> lives;  // by replica index
  std::vector<CountSample> counts;
  std::vector<ScaleChange> scales;         // every spec.replicas patch
  std::map<std::string, uint64_t> events;  // the Scaler's Events by reason
  uint64_t cut = 0;                        // requests cut by scale-down
  uint64_t ticks = 0;
};

struct SimResult {
  std::vector<loadgen::RequestResult> requests;  // same shape as the live load generator's
  std::vector<loadgen::ReplicaSeries> replicas;
  uint64_t events = 0;
  uint64_t suspect_events = 0;  // times a replica turned suspect
  AutoscaleResult autoscale;    // with SimConfig::autoscale
};

SimResult simulate(const SimConfig& cfg, const BalancerSpec& balancer,
                   const std::vector<loadgen::RequestSpec>& specs,
                   const std::vector<double>& arrivals);

}  // namespace kvlb::sim
