// endpoint_slices.h - a Service's backends from its EndpointSlices
// (discovery.k8s.io/v1), maintained from a list and a watch.
//
// Conditions map to kvlb states as Kubernetes defines them: ready -> active;
// serving and terminating -> draining (finish what runs, take nothing new); not
// serving -> left out. The port is chosen by name (the Service's port name).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/endpoint.h"
#include "k8s/list_watcher.h"
#include "kvlb_maps.h"

namespace kvlb::k8s {

struct DiscoveredEndpoint {
  Endpoint address;  // ip:port
  kvlb_backend_state state = KVLB_STATE_ACTIVE;
  std::string node_name;
  std::string pod_name;  // targetRef.name when it is a Pod
  bool operator==(const DiscoveredEndpoint& o) const {
    return address == o.address && state == o.state && node_name == o.node_name &&
           pod_name == o.pod_name;
  }
};

// The endpoints of one EndpointSlice object for `port_name` ("" matches an unnamed
// port). Throws std::invalid_argument with the reason on a malformed object (a
// field of an unexpected type included), and nothing else.
std::vector<DiscoveredEndpoint> endpoints_of_slice(const nlohmann::json& slice,
                                                   const std::string& port_name);

// One Service's endpoints, from its slices (label kubernetes.io/service-name).
class ServiceEndpoints final : public WatchedState {
 public:
  explicit ServiceEndpoints(std::string port_name) : port_name_(std::move(port_name)) {}

  // Replaces everything with a list response (kind EndpointSliceList); remembers
  // its resourceVersion for the watch. Throws std::invalid_argument on a
  // malformed list (and only that: a field of an unexpected type included).
  void apply_list(const nlohmann::json& list) override;
  // Applies one watch event line ({"type":..., "object":...}). BOOKMARK only moves
  // the resourceVersion; ERROR 410 (Gone: the version is too old) asks for a
  // re-list. Throws std::invalid_argument on a malformed event.
  WatchAction apply_event(const nlohmann::json& event) override;

  // The merged endpoints (deduplicated by address, the most available state wins).
  std::vector<DiscoveredEndpoint> endpoints() const;
  const std::string& resource_version() const override { return resource_version_; }

 private:
  void apply_list_checked(const nlohmann::json& list);
  WatchAction apply_event_checked(const nlohmann::json& event);
  std::string port_name_;
  std::string resource_version_;
  std::map<std::string, std::vector<DiscoveredEndpoint>> slices_;  // by slice name
};

}  // namespace kvlb::k8s
