// config.h - kvlb-autoscaler's configuration file: where the scores come from
// (the agent's admin socket), the Kubernetes API, leader election, and one
// policy per service (autoscale/policy.h, its fields named as in HPA where
// they are HPA's: a `behavior:` block can be pasted from an HPA).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "autoscale/policy.h"
#include "k8s/workload_scale.h"

namespace kvlb::autoscaler {

struct ServiceConfig {
  std::string service;  // the agent's service name (its backends are the replicas)
  std::string ns;       // the workload's namespace
  k8s::WorkloadKind kind = k8s::WorkloadKind::Deployment;
  std::string workload;  // the Deployment's or StatefulSet's name
  uint16_t port = 0;     // the replicas' port: pod IP + port is the backend's address
  std::string policy_name = "kvlb";
  autoscale::Policy policy;
};

struct AutoscalerConfig {
  std::filesystem::path agent_socket = "/run/kvlb/agent.sock";
  std::string kubeconfig;            // "" = in-cluster
  bool allow_insecure_http = false;  // tests: an http:// API server in the kubeconfig
  std::chrono::milliseconds interval{1000};
  bool leader_election = true;
  std::string lease_namespace = "kvlb-system";
  std::string lease_name = "kvlb-autoscaler";
  std::string identity;  // "" = the host name
  std::filesystem::path admin_socket = "/run/kvlb/autoscaler.sock";
  std::string admin_listen;  // "" = none; loopback for a Prometheus scrape
  std::vector<ServiceConfig> services;
};

// Parses and validates; throws agent-style errors "<field>: <why>"
// (std::invalid_argument) naming the field, e.g. "services[1].behavior.scaleDown.policies[0].type".
AutoscalerConfig parse_config(const std::string& yaml_text);
AutoscalerConfig load_config(const std::filesystem::path& file);

}  // namespace kvlb::autoscaler
