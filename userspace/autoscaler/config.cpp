#include "autoscaler/config.h"

#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/duration.h"
#include "common/printable.h"
#include "k8s/kube_client.h"

namespace kvlb::autoscaler {

namespace {

[[noreturn]] void fail(const std::string& field, const std::string& why) {
  throw std::invalid_argument(field + ": " + why);
}

void only_keys(const YAML::Node& n, const std::string& where, std::set<std::string> keys) {
  if (!n.IsMap()) fail(where.empty() ? "(top level)" : where, "must be a mapping");
  for (const auto& kv : n) {
    if (!kv.first.IsScalar())
      fail(where.empty() ? "(top level)" : where, "a key that is not a name");
    auto k = kv.first.as<std::string>();
    // The key goes into the message as the file had it, made printable (a
    // NUL or an escape sequence would cut or garble the error).
    if (!keys.count(k))
      fail(where.empty() ? printable(k) : where + "." + printable(k), "unknown field");
  }
}

std::string text(const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) fail(field, "must be a string");
  return n.as<std::string>();
}

std::chrono::milliseconds duration(const YAML::Node& n, const std::string& field) {
  auto d = parse_duration(text(n, field));
  if (!d) fail(field, "not a duration (e.g. 15s, 500ms, 2m)");
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

double number(const YAML::Node& n, const std::string& field) {
  try {
    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark(), "");
    return n.as<double>();
  } catch (const YAML::Exception&) {
    fail(field, "must be a number");
  }
}

int32_t integer(const YAML::Node& n, const std::string& field, int64_t lo, int64_t hi) {
  int64_t v = 0;
  try {
    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark(), "");
    v = n.as<int64_t>();
  } catch (const YAML::Exception&) {
    fail(field, "must be an integer");
  }
  if (v < lo || v > hi) fail(field, fmt::format("must be in [{}, {}]", lo, hi));
  return static_cast<int32_t>(v);
}

bool flag(const YAML::Node& n, const std::string& field) {
  try {
    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark(), "");
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    fail(field, "must be true or false");
  }
}

// HPA's behavior.scaleUp / scaleDown block.
void rules(const YAML::Node& n, const std::string& where, autoscale::ScalingRules& r) {
  only_keys(n, where, {"stabilizationWindowSeconds", "selectPolicy", "policies"});
  if (n["stabilizationWindowSeconds"])
    r.stabilization = std::chrono::seconds(
        integer(n["stabilizationWindowSeconds"], where + ".stabilizationWindowSeconds", 0, 3600));
  if (n["selectPolicy"]) {
    auto s = text(n["selectPolicy"], where + ".selectPolicy");
    if (s == "Max")
      r.select = autoscale::SelectPolicy::Max;
    else if (s == "Min")
      r.select = autoscale::SelectPolicy::Min;
    else if (s == "Disabled")
      r.select = autoscale::SelectPolicy::Disabled;
    else
      fail(where + ".selectPolicy", "must be Max, Min or Disabled");
  }
  if (n["policies"]) {
    if (!n["policies"].IsSequence()) fail(where + ".policies", "must be a list");
    r.policies.clear();
    for (size_t i = 0; i < n["policies"].size(); ++i) {
      auto w = fmt::format("{}.policies[{}]", where, i);
      const auto& p = n["policies"][i];
      only_keys(p, w, {"type", "value", "periodSeconds"});
      if (!p["type"] || !p["value"] || !p["periodSeconds"])
        fail(w, "needs type, value and periodSeconds");
      autoscale::RatePolicy rp;
      auto t = text(p["type"], w + ".type");
      if (t == "Pods")
        rp.type = autoscale::PolicyType::Pods;
      else if (t == "Percent")
        rp.type = autoscale::PolicyType::Percent;
      else
        fail(w + ".type", "must be Pods or Percent");
      rp.value = integer(p["value"], w + ".value", 1, 100000);
      rp.period = std::chrono::seconds(integer(p["periodSeconds"], w + ".periodSeconds", 1, 1800));
      r.policies.push_back(rp);
    }
  }
}

ServiceConfig service(const YAML::Node& n, const std::string& w) {
  only_keys(
      n, w,
      {"service", "namespace", "workload", "port", "policy", "signal", "target", "queue_target",
       "kv_target", "min_replicas", "max_replicas", "tolerance", "sync_period", "metric_window",
       "expected_startup", "max_score_age", "drain_timeout", "panic", "behavior"});
  ServiceConfig s;
  if (!n["service"]) fail(w + ".service", "required (the agent's service name)");
  s.service = text(n["service"], w + ".service");
  s.ns = n["namespace"] ? text(n["namespace"], w + ".namespace") : "default";
  if (!k8s::is_dns1123_label(s.ns)) fail(w + ".namespace", "not a valid namespace name");
  if (!n["workload"]) fail(w + ".workload", "required (kind and name)");
  const auto& wl = n["workload"];
  only_keys(wl, w + ".workload", {"kind", "name"});
  auto kind = wl["kind"] ? text(wl["kind"], w + ".workload.kind") : "Deployment";
  auto k = k8s::parse_workload_kind(kind);
  if (!k) fail(w + ".workload.kind", "must be Deployment or StatefulSet");
  s.kind = *k;
  if (!wl["name"]) fail(w + ".workload.name", "required");
  s.workload = text(wl["name"], w + ".workload.name");
  if (!k8s::is_dns1123_subdomain(s.workload)) fail(w + ".workload.name", "not a valid name");
  if (!n["port"]) fail(w + ".port", "required (the replicas' port)");
  s.port = static_cast<uint16_t>(integer(n["port"], w + ".port", 1, 65535));
  if (n["policy"]) s.policy_name = text(n["policy"], w + ".policy");
  try {
    s.policy = autoscale::named_policy(s.policy_name);
  } catch (const std::invalid_argument& e) {
    fail(w + ".policy", e.what());
  }
  auto& p = s.policy;
  if (n["signal"]) {
    auto sig = autoscale::parse_signal(text(n["signal"], w + ".signal"));
    if (!sig) fail(w + ".signal", fmt::format("must be one of {}", autoscale::kSignalNames));
    p.signal = *sig;
  }
  if (n["target"]) p.target = number(n["target"], w + ".target");
  if (n["queue_target"]) p.queue_target = number(n["queue_target"], w + ".queue_target");
  if (n["kv_target"]) p.kv_target = number(n["kv_target"], w + ".kv_target");
  if (n["min_replicas"]) p.min_replicas = integer(n["min_replicas"], w + ".min_replicas", 1, 10000);
  if (n["max_replicas"]) p.max_replicas = integer(n["max_replicas"], w + ".max_replicas", 1, 10000);
  if (n["tolerance"]) p.tolerance = number(n["tolerance"], w + ".tolerance");
  if (n["sync_period"]) p.sync_period = duration(n["sync_period"], w + ".sync_period");
  if (n["metric_window"]) p.metric_window = duration(n["metric_window"], w + ".metric_window");
  if (n["expected_startup"])
    p.expected_startup = duration(n["expected_startup"], w + ".expected_startup");
  if (n["max_score_age"]) p.max_score_age = duration(n["max_score_age"], w + ".max_score_age");
  if (n["drain_timeout"]) p.drain_timeout = duration(n["drain_timeout"], w + ".drain_timeout");
  if (n["panic"]) {
    const auto& pn = n["panic"];
    only_keys(pn, w + ".panic", {"enabled", "window", "stable_window", "threshold"});
    if (pn["enabled"]) p.panic = flag(pn["enabled"], w + ".panic.enabled");
    if (pn["window"]) p.panic_window = duration(pn["window"], w + ".panic.window");
    if (pn["stable_window"])
      p.stable_window = duration(pn["stable_window"], w + ".panic.stable_window");
    if (pn["threshold"]) p.panic_threshold = number(pn["threshold"], w + ".panic.threshold");
  }
  if (n["behavior"]) {
    only_keys(n["behavior"], w + ".behavior", {"scaleUp", "scaleDown"});
    if (n["behavior"]["scaleUp"])
      rules(n["behavior"]["scaleUp"], w + ".behavior.scaleUp", p.scale_up);
    if (n["behavior"]["scaleDown"])
      rules(n["behavior"]["scaleDown"], w + ".behavior.scaleDown", p.scale_down);
  }
  if (auto why = autoscale::validate(p); !why.empty())
    fail(w + "." + why.substr(0, why.find(':')), why.substr(why.find(':') + 2));
  return s;
}

}  // namespace

namespace {
AutoscalerConfig parse_document(const std::string& yaml_text);
}

AutoscalerConfig parse_config(const std::string& yaml_text) {
  try {
    return parse_document(yaml_text);
  } catch (const YAML::Exception& e) {
    // A conversion yaml-cpp refuses somewhere not checked above.
    fail("(file)", std::string("not a valid configuration: ") + e.what());
  }
}

namespace {
AutoscalerConfig parse_document(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail("(file)", std::string("not valid YAML: ") + e.what());
  }
  AutoscalerConfig c;
  only_keys(root, "",
            {"agent_socket", "kubeconfig", "allow_insecure_http", "interval", "leader_election",
             "admin", "services"});
  if (root["agent_socket"]) c.agent_socket = text(root["agent_socket"], "agent_socket");
  if (root["kubeconfig"]) c.kubeconfig = text(root["kubeconfig"], "kubeconfig");
  if (root["allow_insecure_http"])
    c.allow_insecure_http = flag(root["allow_insecure_http"], "allow_insecure_http");
  if (root["interval"]) c.interval = duration(root["interval"], "interval");
  if (c.interval < std::chrono::milliseconds(100) || c.interval > std::chrono::minutes(1))
    fail("interval", "must be in [100ms, 1m]");
  if (const auto& le = root["leader_election"]) {
    only_keys(le, "leader_election", {"enabled", "namespace", "name", "identity"});
    if (le["enabled"]) c.leader_election = flag(le["enabled"], "leader_election.enabled");
    if (le["namespace"]) c.lease_namespace = text(le["namespace"], "leader_election.namespace");
    if (le["name"]) c.lease_name = text(le["name"], "leader_election.name");
    if (le["identity"]) c.identity = text(le["identity"], "leader_election.identity");
    if (!k8s::is_dns1123_label(c.lease_namespace))
      fail("leader_election.namespace", "not a valid namespace name");
    if (!k8s::is_dns1123_subdomain(c.lease_name)) fail("leader_election.name", "not a valid name");
  }
  if (c.identity.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    c.identity = host;
  }
  if (const auto& a = root["admin"]) {
    only_keys(a, "admin", {"socket", "listen"});
    if (a["socket"]) c.admin_socket = text(a["socket"], "admin.socket");
    if (a["listen"]) c.admin_listen = text(a["listen"], "admin.listen");
  }
  if (!root["services"] || !root["services"].IsSequence() || root["services"].size() == 0)
    fail("services", "a list of at least one service");
  std::set<std::string> names;
  for (size_t i = 0; i < root["services"].size(); ++i) {
    auto s = service(root["services"][i], fmt::format("services[{}]", i));
    if (!names.insert(s.ns + "/" + s.workload).second)
      fail(fmt::format("services[{}].workload", i), "already scaled by another entry");
    c.services.push_back(std::move(s));
  }
  return c;
}
}  // namespace

AutoscalerConfig load_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::invalid_argument(file.string() + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1u << 20))
    throw std::invalid_argument(file.string() + ": larger than 1 MiB");
  return parse_config(ss.str());
}

}  // namespace kvlb::autoscaler
