// slice_watcher.h - keeps one Service's endpoints current from the API server:
// its EndpointSlices (label kubernetes.io/service-name) through a ListWatcher.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "k8s/endpoint_slices.h"
#include "k8s/kube_client.h"
#include "k8s/list_watcher.h"

namespace kvlb::k8s {

struct ServiceRef {
  std::string ns;
  std::string name;
  std::string port_name;  // the Service port's name ("" for an unnamed port)
};

class SliceWatcher {
 public:
  using OnChange = std::function<void(const std::vector<DiscoveredEndpoint>&)>;
  using OnError = ListWatcher::OnError;

  SliceWatcher(const KubeClient& client, const ServiceRef& ref, OnChange on_change,
               OnError on_error);
  SliceWatcher(const SliceWatcher&) = delete;  // the watcher holds state_ by reference
  SliceWatcher& operator=(const SliceWatcher&) = delete;
  // Runs until `stop` is set (checked at least every 200 ms).
  void run(const std::atomic<bool>& stop) { watcher_.run(stop); }

 private:
  ServiceEndpoints state_;
  ListWatcher watcher_;
};

}  // namespace kvlb::k8s
