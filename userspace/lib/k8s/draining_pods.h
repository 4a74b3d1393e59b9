// draining_pods.h - the pods of one namespace that carry the draining label
// (k8s/pods.h, kDrainingLabel), kept current by a ListWatcher on a
// label-selected list and watch: the API server sends only those pods, and a
// DELETED event for a pod whose label is removed (it leaves the selection).
#pragma once

#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "k8s/list_watcher.h"

namespace kvlb::k8s {

// The list path of the draining pods of `ns` (the watch adds its parameters).
std::string draining_pods_path(std::string_view ns);

// More drained pods than this in one namespace is not a drain but a broken or
// hostile API: the list or event is refused (memory stays bounded).
inline constexpr size_t kMaxDrainingPods = 4096;

class DrainingPods final : public WatchedState {
 public:
  // A PodList; every item is checked again for the label (a server that
  // ignored the selector must not drain the namespace). Throws
  // std::invalid_argument on a malformed list, a pod name that is not a DNS-1123
  // subdomain, or more than kMaxDrainingPods drained pods.
  void apply_list(const nlohmann::json& list) override;
  // ADDED/MODIFIED with the label: draining; without it (or DELETED): not.
  WatchAction apply_event(const nlohmann::json& event) override;
  const std::string& resource_version() const override { return resource_version_; }

  const std::set<std::string>& names() const { return names_; }

 private:
  void apply_list_checked(const nlohmann::json& list);
  WatchAction apply_event_checked(const nlohmann::json& event);
  std::set<std::string> names_;
  std::string resource_version_;
};

}  // namespace kvlb::k8s
