// discovery.h - Kubernetes discovery for the agent: one EndpointSlice watcher
// thread per service that names a Kubernetes Service; the main loop folds what
// they found into the configuration it applies.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "agent/config.h"
#include "k8s/kube_client.h"
#include "k8s/slice_watcher.h"

namespace kvlb::agent {

// The backends of one Kubernetes service from its discovered endpoints: those of
// the VIP's address family, ready ones active, terminating ones draining. A
// service balances at most KVLB_MAX_SLOTS replicas: beyond that, every active
// endpoint comes before any draining one, then the endpoints on this node (with
// score sharing this node's agent is the one that scrapes them), and within each
// group the endpoints are ranked by a rendezvous hash of (`node`, address), so each node keeps its
// own deterministic subset and, across nodes, every replica gets traffic (as
// deterministic subsetting does in large L4 balancers). `*dropped` counts the
// endpoints left out.
std::vector<BackendConfig> backends_from_endpoints(const ServiceConfig& svc,
                                                   const std::vector<k8s::DiscoveredEndpoint>& eps,
                                                   std::string_view node, size_t* dropped);

// The endpoints with the drained pods' endpoints taken as draining: a pod the
// autoscaler drains carries the draining label (k8s/pods.h), which every
// node's agent watches, so every node stops sending it new connections while
// its EndpointSlice still lists it ready. Only active endpoints change.
std::vector<k8s::DiscoveredEndpoint> with_drained_pods(std::vector<k8s::DiscoveredEndpoint> eps,
                                                       const std::set<std::string>& drained);

// The name this agent goes by in subsetting: $NODE_NAME (the DaemonSet sets it
// from the downward API), else the host name.
std::string agent_node_name();

class Discovery {
 public:
  // Throws std::runtime_error when the API access is misconfigured.
  explicit Discovery(const AgentConfig& cfg);

  // Fills in the VIP of every Kubernetes service that has none from its
  // Service's ClusterIP and the port of the configured name. Retries with
  // backoff for up to `patience`; throws std::runtime_error with the reason.
  void resolve_cluster_ips(AgentConfig& cfg, std::chrono::seconds patience) const;
  ~Discovery();  // stops and joins the watchers

  // The configuration to apply: `cfg` with every Kubernetes service's backends
  // replaced by its discovered endpoints. nullopt when nothing changed since
  // the last call, unless `force`.
  std::optional<AgentConfig> effective(const AgentConfig& cfg, bool force = false);

 private:
  std::unique_ptr<k8s::KubeClient> client_;
  std::string node_;
  std::mutex mu_;
  std::map<std::string, std::vector<k8s::DiscoveredEndpoint>> found_;  // by service name
  std::map<std::string, std::set<std::string>> drained_;  // by namespace: pods labelled draining
  bool changed_ = true;
  std::map<std::string, size_t> dropped_logged_;  // by service: the count last logged
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace kvlb::agent
