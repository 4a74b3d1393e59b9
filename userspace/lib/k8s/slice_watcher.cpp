#include "slice_watcher.h"

#include <fmt/format.h>

namespace kvlb::k8s {

SliceWatcher::SliceWatcher(const KubeClient& client, const ServiceRef& ref, OnChange on_change,
                           OnError on_error)
    : state_(ref.port_name),
      watcher_(
          client, fmt::format("{}/{}", ref.ns, ref.name),
          fmt::format("/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector="
                      "kubernetes.io%2Fservice-name%3D{}",
                      ref.ns, ref.name),
          state_, [this, on_change = std::move(on_change)] { on_change(state_.endpoints()); },
          std::move(on_error)) {}

}  // namespace kvlb::k8s
