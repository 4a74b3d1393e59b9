// workload_scale.h - a Deployment's or StatefulSet's replica count through its
// scale subresource (autoscaling/v1 Scale), as the HPA does: read the scale,
// then a merge patch that carries the resourceVersion it was computed from, so a
// concurrent change (a rollout, a user's kubectl scale) makes the write fail with
// 409 instead of being overwritten.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "k8s/api_error.h"
#include "k8s/kube_client.h"

namespace kvlb::k8s {

enum class WorkloadKind { Deployment, StatefulSet };

std::string_view kind_name(WorkloadKind k);  // "Deployment"
std::optional<WorkloadKind> parse_workload_kind(
    std::string_view s);  // "Deployment" / "StatefulSet"

struct Scale {
  int32_t spec_replicas = 0;    // desired
  int32_t status_replicas = 0;  // what the controller has created
  std::string selector;         // status.selector: the pods' label selector, string form
  std::string resource_version;
};

// Path of the scale subresource; validates the names (nullopt when invalid).
std::optional<std::string> scale_path(std::string_view ns, WorkloadKind kind,
                                      std::string_view name);

// A Scale object's fields; BadResponse when it is not one.
ApiResult<Scale> parse_scale(std::string_view body);

ApiResult<Scale> get_scale(const KubeClient& c, std::string_view ns, WorkloadKind kind,
                           std::string_view name);

// Sets spec.replicas if the scale is still at `expected_rv` (Conflict otherwise).
// Returns the scale the server answered with.
ApiResult<Scale> set_replicas(const KubeClient& c, std::string_view ns, WorkloadKind kind,
                              std::string_view name, int32_t replicas,
                              const std::string& expected_rv);

// Reads the scale, asks `decide` for the replica count (nullopt: leave it), and
// writes it; on 409 reads again and asks again (the decision is recomputed from
// the fresh scale, never replayed), up to `max_attempts` writes. Returns the
// final scale (unchanged when `decide` declined), or the last error.
using ScaleDecision = std::function<std::optional<int32_t>(const Scale&)>;
ApiResult<Scale> scale_to(const KubeClient& c, std::string_view ns, WorkloadKind kind,
                          std::string_view name, const ScaleDecision& decide, int max_attempts = 5);

}  // namespace kvlb::k8s
