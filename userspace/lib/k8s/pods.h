// pods.h - a workload's pods as the autoscaler needs them (list by the scale's
// label selector), the pod-deletion-cost annotation that makes a ReplicaSet
// remove a chosen pod first when scaled down, and the draining label by which
// every node's agent learns that a pod is being drained.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "k8s/api_error.h"
#include "k8s/api_time.h"
#include "k8s/kube_client.h"

namespace kvlb::k8s {

// Lower cost goes first on scale-down (ReplicaSet controller, Kubernetes >= 1.22).
inline constexpr std::string_view kPodDeletionCost = "controller.kubernetes.io/pod-deletion-cost";

// A pod being drained before its removal carries kDrainingLabel=kDrainingValue:
// the autoscaler sets it, and every agent watches the pods that carry it
// (a label, so the API server selects them: a watch of draining pods only) and
// takes their endpoints as draining. docs/autoscaler.md, "Draining on every node".
inline constexpr std::string_view kDrainingLabel = "kvlb.io/draining";
inline constexpr std::string_view kDrainingValue = "true";

struct PodInfo {
  std::string name;
  std::string pod_ip;        // status.podIP, "" before it is scheduled
  std::string phase;         // Pending, Running, Succeeded, Failed, Unknown
  bool ready = false;        // condition Ready=True
  bool terminating = false;  // metadata.deletionTimestamp is set
  std::optional<WallTime> created;
  std::string resource_version;
  std::map<std::string, std::string> annotations;
  std::map<std::string, std::string> labels;
  bool draining() const {
    auto it = labels.find(std::string(kDrainingLabel));
    return it != labels.end() && it->second == kDrainingValue;
  }
};

// One Pod object; throws std::invalid_argument naming the field when malformed.
PodInfo pod_info_of(const nlohmann::json& pod);

// Pods in `ns` matching `label_selector` (the string form, e.g. a Scale's
// status.selector; "" lists every pod in the namespace).
ApiResult<std::vector<PodInfo>> list_pods(const KubeClient& c, std::string_view ns,
                                          std::string_view label_selector);

// Sets the pod's deletion-cost annotation (a string holding an int32, as
// Kubernetes requires); returns the pod as patched.
ApiResult<PodInfo> set_deletion_cost(const KubeClient& c, std::string_view ns, std::string_view pod,
                                     int32_t cost);

// Sets (on) or removes (off) the pod's draining label; returns the pod as patched.
ApiResult<PodInfo> set_draining(const KubeClient& c, std::string_view ns, std::string_view pod,
                                bool on);

}  // namespace kvlb::k8s
