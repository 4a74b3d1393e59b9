#include "k8s/pods.h"

#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::k8s {

using nlohmann::json;

namespace {

const json& object_at(const json& j, const char* key, const char* what) {
  static const json empty = json::object();
  if (!j.contains(key)) return empty;
  if (!j[key].is_object())
    throw std::invalid_argument(fmt::format("pod: {} is not an object", what));
  return j[key];
}

std::string string_at(const json& j, const char* key, const char* what) {
  if (!j.contains(key)) return "";
  if (!j[key].is_string())
    throw std::invalid_argument(fmt::format("pod: {} is not a string", what));
  return j[key];
}

template <class F>
auto decoded(std::string_view what, F&& f) -> ApiResult<decltype(f())> {
  try {
    return f();
  } catch (const std::exception& e) {  // invalid_argument, or json type errors
    return bad_response(what, e.what());
  }
}

}  // namespace

PodInfo pod_info_of(const json& pod) {
  if (!pod.is_object()) throw std::invalid_argument("pod: not an object");
  const auto& md = object_at(pod, "metadata", "metadata");
  const auto& st = object_at(pod, "status", "status");
  PodInfo p;
  p.name = string_at(md, "name", "metadata.name");
  if (p.name.empty()) throw std::invalid_argument("pod: metadata.name is missing");
  p.resource_version = string_at(md, "resourceVersion", "metadata.resourceVersion");
  p.terminating = md.contains("deletionTimestamp") && !md["deletionTimestamp"].is_null();
  auto created = string_at(md, "creationTimestamp", "metadata.creationTimestamp");
  if (!created.empty()) {
    p.created = parse_time(created);
    if (!p.created) throw std::invalid_argument("pod: bad metadata.creationTimestamp " + created);
  }
  for (const auto& [k, v] : object_at(md, "annotations", "metadata.annotations").items()) {
    if (!v.is_string()) throw std::invalid_argument("pod: annotation " + k + " is not a string");
    p.annotations[k] = v;
  }
  for (const auto& [k, v] : object_at(md, "labels", "metadata.labels").items()) {
    if (!v.is_string()) throw std::invalid_argument("pod: label " + k + " is not a string");
    p.labels[k] = v;
  }
  p.pod_ip = string_at(st, "podIP", "status.podIP");
  p.phase = string_at(st, "phase", "status.phase");
  if (st.contains("conditions")) {
    if (!st["conditions"].is_array())
      throw std::invalid_argument("pod: status.conditions is not an array");
    for (const auto& c : st["conditions"])
      if (c.is_object() && c.value("type", "") == "Ready")
        p.ready = c.value("status", "") == "True";
  }
  return p;
}

ApiResult<std::vector<PodInfo>> list_pods(const KubeClient& c, std::string_view ns,
                                          std::string_view label_selector) {
  if (!is_dns1123_label(ns)) return bad_input(fmt::format("invalid namespace \"{}\"", ns));
  auto path = fmt::format("/api/v1/namespaces/{}/pods", ns);
  if (!label_selector.empty()) path += "?labelSelector=" + url_encode(label_selector);
  auto what = fmt::format("list pods {} -l {}", ns, label_selector);
  auto r = c.get(path);
  if (!r.success()) return api_error(r, what);
  return decoded(what, [&] {
    auto j = json::parse(r.body);
    if (!j.is_object() || j.value("kind", "") != "PodList")
      throw std::invalid_argument("not a PodList");
    std::vector<PodInfo> out;
    for (const auto& item : j.value("items", json::array())) out.push_back(pod_info_of(item));
    return out;
  });
}

namespace {

// A merge patch of the pod's metadata (RFC 7386: null removes a key).
ApiResult<PodInfo> patch_metadata(const KubeClient& c, std::string_view ns, std::string_view pod,
                                  const json& metadata, const std::string& what) {
  if (!is_dns1123_label(ns) || !is_dns1123_subdomain(pod))
    return bad_input(fmt::format("invalid namespace or pod name: {}/{}", ns, pod));
  json patch = {{"metadata", metadata}};
  auto r = c.patch_merge(fmt::format("/api/v1/namespaces/{}/pods/{}", ns, pod), patch.dump());
  if (!r.success()) return api_error(r, what);
  return decoded(what, [&] { return pod_info_of(json::parse(r.body)); });
}

}  // namespace

ApiResult<PodInfo> set_deletion_cost(const KubeClient& c, std::string_view ns, std::string_view pod,
                                     int32_t cost) {
  return patch_metadata(c, ns, pod,
                        {{"annotations", {{std::string(kPodDeletionCost), std::to_string(cost)}}}},
                        fmt::format("patch pod {}/{} deletion cost {}", ns, pod, cost));
}

ApiResult<PodInfo> set_draining(const KubeClient& c, std::string_view ns, std::string_view pod,
                                bool on) {
  json value = on ? json(std::string(kDrainingValue)) : json(nullptr);
  return patch_metadata(
      c, ns, pod, {{"labels", {{std::string(kDrainingLabel), value}}}},
      fmt::format("patch pod {}/{} label {} {}", ns, pod, kDrainingLabel, on ? "set" : "removed"));
}

}  // namespace kvlb::k8s
