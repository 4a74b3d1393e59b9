#include "k8s/draining_pods.h"

#include <stdexcept>

#include <fmt/format.h>

#include "k8s/kube_client.h"
#include "k8s/pods.h"

namespace kvlb::k8s {

using nlohmann::json;

namespace {

PodInfo checked_pod(const json& pod) {
  auto p = pod_info_of(pod);
  if (!is_dns1123_subdomain(p.name))
    throw std::invalid_argument("pod: metadata.name is not a DNS-1123 subdomain");
  return p;
}

void check_bound(size_t n) {
  if (n > kMaxDrainingPods)
    throw std::invalid_argument(fmt::format("more than {} pods labelled {} in one namespace",
                                            kMaxDrainingPods, kDrainingLabel));
}

}  // namespace

std::string draining_pods_path(std::string_view ns) {
  return fmt::format("/api/v1/namespaces/{}/pods?labelSelector={}", ns,
                     url_encode(fmt::format("{}={}", kDrainingLabel, kDrainingValue)));
}

void DrainingPods::apply_list(const json& list) {
  decoding("pod list", [&] { apply_list_checked(list); });
}

WatchAction DrainingPods::apply_event(const json& event) {
  return decoding("pod watch event", [&] { return apply_event_checked(event); });
}

void DrainingPods::apply_list_checked(const json& list) {
  if (!list.is_object() || list.value("kind", json()) != "PodList" || !list.contains("items") ||
      !list["items"].is_array())
    throw std::invalid_argument("not a PodList with items");
  std::set<std::string> next;
  for (const auto& item : list["items"])
    if (auto p = checked_pod(item); p.draining()) {
      next.insert(std::move(p.name));
      check_bound(next.size());
    }
  auto rv = resource_version_of(list, "PodList");
  names_ = std::move(next);
  resource_version_ = std::move(rv);
}

WatchAction DrainingPods::apply_event_checked(const json& event) {
  std::string type, rv;
  const json* obj = nullptr;
  if (auto done = watch_envelope(event, type, obj, rv, resource_version_)) return *done;
  auto p = checked_pod(*obj);
  bool changed;
  if (type != "DELETED" && p.draining()) {
    if (!names_.count(p.name)) check_bound(names_.size() + 1);
    changed = names_.insert(p.name).second;
  } else {
    changed = names_.erase(p.name) > 0;
  }
  if (!rv.empty()) resource_version_ = rv;
  return changed ? WatchAction::Changed : WatchAction::None;
}

}  // namespace kvlb::k8s
