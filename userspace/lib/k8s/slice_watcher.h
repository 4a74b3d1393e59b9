// slice_watcher.h - keeps one Service's endpoints current from the API server:
// list, then watch from the list's resourceVersion with bookmarks; a watch that
// ends is resumed from the last version seen; 410 Gone re-lists; any error backs
// off exponentially (with jitter) before the next attempt.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "k8s/endpoint_slices.h"
#include "k8s/kube_client.h"

namespace kvlb::k8s {

struct ServiceRef {
  std::string ns;
  std::string name;
  std::string port_name;  // the Service port's name ("" for an unnamed port)
};

class SliceWatcher {
 public:
  using OnChange = std::function<void(const std::vector<DiscoveredEndpoint>&)>;
  using OnError = std::function<void(const std::string&)>;

  SliceWatcher(const KubeClient& client, ServiceRef ref, OnChange on_change, OnError on_error);
  // Runs until `stop` is set (checked at least every 200 ms).
  void run(const std::atomic<bool>& stop);

  // For tests: the backoff sequence, capped.
  static std::chrono::milliseconds backoff(unsigned attempt);

 private:
  std::string list_path() const;
  bool list();
  const KubeClient& client_;
  ServiceRef ref_;
  OnChange on_change_;
  OnError on_error_;
  ServiceEndpoints state_;
};

}  // namespace kvlb::k8s
