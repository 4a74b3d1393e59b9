#include "k8s/workload_scale.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvlb::k8s {

using nlohmann::json;

std::string_view kind_name(WorkloadKind k) {
  return k == WorkloadKind::Deployment ? "Deployment" : "StatefulSet";
}

std::optional<WorkloadKind> parse_workload_kind(std::string_view s) {
  if (s == "Deployment") return WorkloadKind::Deployment;
  if (s == "StatefulSet") return WorkloadKind::StatefulSet;
  return std::nullopt;
}

namespace {

std::string_view resource(WorkloadKind k) {
  return k == WorkloadKind::Deployment ? "deployments" : "statefulsets";
}

std::string describe(std::string_view verb, std::string_view ns, WorkloadKind k,
                     std::string_view name) {
  return fmt::format("{} {}/scale {}/{}", verb, resource(k), ns, name);
}

std::optional<int32_t> int32_field(const json& j) {
  if (!j.is_number_integer()) return std::nullopt;
  auto v = j.get<int64_t>();
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    return std::nullopt;
  return static_cast<int32_t>(v);
}

}  // namespace

std::optional<std::string> scale_path(std::string_view ns, WorkloadKind kind,
                                      std::string_view name) {
  if (!is_dns1123_label(ns) || !is_dns1123_subdomain(name)) return std::nullopt;
  return fmt::format("/apis/apps/v1/namespaces/{}/{}/{}/scale", ns, resource(kind), name);
}

namespace {
ApiResult<Scale> parse_scale_object(const json& j);
}

ApiResult<Scale> parse_scale(std::string_view body) {
  auto j = json::parse(body, nullptr, false);
  // json::value() throws when a field has another type than asked ("kind":
  // {}): an answer is never allowed to throw past here.
  try {
    return parse_scale_object(j);
  } catch (const std::exception& e) {
    return bad_response("scale", e.what());
  }
}

namespace {
ApiResult<Scale> parse_scale_object(const json& j) {
  if (!j.is_object() || !j.contains("kind") || j["kind"] != "Scale")
    return bad_response("scale", "not a Scale object");
  Scale s;
  const auto& md = j.value("metadata", json::object());
  if (!md.is_object() || !md.contains("resourceVersion") || !md["resourceVersion"].is_string())
    return bad_response("scale", "no metadata.resourceVersion");
  s.resource_version = md["resourceVersion"];
  // Kubernetes omits zero values: a missing spec.replicas is 0 replicas.
  const auto spec = j.value("spec", json::object());
  const auto status = j.value("status", json::object());
  if (!spec.is_object() || !status.is_object()) return bad_response("scale", "spec/status");
  if (spec.contains("replicas")) {
    auto v = int32_field(spec["replicas"]);
    if (!v) return bad_response("scale", "spec.replicas is not an int32");
    s.spec_replicas = *v;
  }
  if (status.contains("replicas")) {
    auto v = int32_field(status["replicas"]);
    if (!v) return bad_response("scale", "status.replicas is not an int32");
    s.status_replicas = *v;
  }
  if (status.contains("selector")) {
    if (!status["selector"].is_string()) return bad_response("scale", "status.selector");
    s.selector = status["selector"];
  }
  return s;
}
}  // namespace

ApiResult<Scale> get_scale(const KubeClient& c, std::string_view ns, WorkloadKind kind,
                           std::string_view name) {
  auto path = scale_path(ns, kind, name);
  if (!path) return bad_input(fmt::format("invalid namespace or name: {}/{}", ns, name));
  auto r = c.get(*path);
  if (!r.success()) return api_error(r, describe("get", ns, kind, name));
  return parse_scale(r.body);
}

ApiResult<Scale> set_replicas(const KubeClient& c, std::string_view ns, WorkloadKind kind,
                              std::string_view name, int32_t replicas,
                              const std::string& expected_rv) {
  auto path = scale_path(ns, kind, name);
  if (!path) return bad_input(fmt::format("invalid namespace or name: {}/{}", ns, name));
  if (replicas < 0) return bad_input(fmt::format("negative replica count {}", replicas));
  if (expected_rv.empty())
    return bad_input("set_replicas needs the resourceVersion the count was computed from");
  // The resourceVersion in a patch is a precondition: the server refuses the
  // patch (409) when the object changed since.
  json patch = {{"metadata", {{"resourceVersion", expected_rv}}},
                {"spec", {{"replicas", replicas}}}};
  auto r = c.patch_merge(*path, patch.dump());
  if (!r.success()) return api_error(r, describe("patch", ns, kind, name));
  return parse_scale(r.body);
}

ApiResult<Scale> scale_to(const KubeClient& c, std::string_view ns, WorkloadKind kind,
                          std::string_view name, const ScaleDecision& decide, int max_attempts) {
  std::optional<ApiError> last;
  for (int attempt = 0; attempt < std::max(1, max_attempts); ++attempt) {
    auto cur = get_scale(c, ns, kind, name);
    if (!cur) return cur;
    auto want = decide(*cur);
    if (!want || *want == cur->spec_replicas) return cur;
    auto r = set_replicas(c, ns, kind, name, *want, cur->resource_version);
    if (r || r.error().code != ApiErrc::Conflict) return r;
    last = r.error();
  }
  ApiError e = *last;
  e.message = fmt::format("{} (still conflicting after {} attempts)", e.message, max_attempts);
  return e;
}

}  // namespace kvlb::k8s
