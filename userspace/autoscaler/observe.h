// observe.h - what one autoscaling round sees of a service, assembled from the
// agent's admin API (the scores the data plane balances on and the kernel's
// in-flight counts) and Kubernetes (the workload's scale and its pods): the
// scaler's Observation. Pure: unit-tested on recorded answers.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoscale/scaler.h"
#include "autoscaler/config.h"
#include "k8s/api_time.h"
#include "k8s/pods.h"
#include "k8s/workload_scale.h"

namespace kvlb::autoscaler {

struct BackendScore {
  std::string state;  // active, draining, down
  double waiting = 0, running = 0, kv = 0, inflight = 0;
  double score_age_s = -1;  // -1: never scored
  bool stale = true;
};

struct AgentView {
  std::map<std::string, std::vector<std::string>> services;  // name -> backend addresses
  std::map<std::string, BackendScore> backends;              // address -> score
};

// From GET /v1/services and GET /v1/backends; throws std::invalid_argument
// naming what is malformed.
AgentView agent_view_of(const nlohmann::json& services, const nlohmann::json& backends);

// "10.0.0.1:8000", "[fd00::1]:8000": the agent's spelling of a backend.
std::string backend_address(const std::string& pod_ip, uint16_t port);

autoscale::Observation observation_of(const ServiceConfig& svc, const k8s::Scale& scale,
                                      const std::vector<k8s::PodInfo>& pods, const AgentView& agent,
                                      autoscale::Millis now, k8s::WallTime wall_now);

// The draining-label writes that make the pods' labels match `draining` (the
// scaler's drains, by pod name): set on a drained pod without it, removed from
// any other pod that carries it (a drain this scaler cancelled or finished, or
// one a previous leader left behind). The pod name and whether to set it.
std::vector<std::pair<std::string, bool>> drain_label_writes(
    const std::vector<k8s::PodInfo>& pods,
    const std::map<std::string, autoscale::Millis>& draining);

}  // namespace kvlb::autoscaler
