#include "autoscaler/observe.h"

#include <stdexcept>

namespace kvlb::autoscaler {

using nlohmann::json;

namespace {

double num(const json& o, const char* key, double fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return fallback;
  if (!it->is_number())
    throw std::invalid_argument(std::string("backend.") + key + ": not a number");
  return it->get<double>();
}

}  // namespace

AgentView agent_view_of(const json& services, const json& backends) {
  AgentView v;
  if (!services.is_array()) throw std::invalid_argument("/v1/services: not a list");
  if (!backends.is_array()) throw std::invalid_argument("/v1/backends: not a list");
  for (const auto& s : services) {
    if (!s.is_object() || !s.contains("name") || !s["name"].is_string())
      throw std::invalid_argument("/v1/services: an entry without a name");
    auto& list = v.services[s["name"].get<std::string>()];
    if (s.contains("backends") && s["backends"].is_array())
      for (const auto& b : s["backends"])
        if (b.is_string()) list.push_back(b.get<std::string>());
  }
  for (const auto& b : backends) {
    if (!b.is_object() || !b.contains("address") || !b["address"].is_string())
      throw std::invalid_argument("/v1/backends: an entry without an address");
    BackendScore s;
    s.state = b.value("state", "");
    s.waiting = num(b, "waiting", 0);
    s.running = num(b, "running", 0);
    s.kv = num(b, "kv_usage", 0);
    s.inflight = num(b, "inflight", 0);
    s.score_age_s = num(b, "score_age_s", -1);
    s.stale = b.value("stale", true);
    v.backends[b["address"].get<std::string>()] = s;
  }
  return v;
}

std::string backend_address(const std::string& pod_ip, uint16_t port) {
  if (pod_ip.find(':') != std::string::npos) return "[" + pod_ip + "]:" + std::to_string(port);
  return pod_ip + ":" + std::to_string(port);
}

autoscale::Observation observation_of(const ServiceConfig& svc, const k8s::Scale& scale,
                                      const std::vector<k8s::PodInfo>& pods, const AgentView& agent,
                                      autoscale::Millis now, k8s::WallTime wall_now) {
  autoscale::Observation o;
  o.now = now;
  o.spec_replicas = scale.spec_replicas;
  auto members = agent.services.find(svc.service);
  for (const auto& p : pods) {
    autoscale::ReplicaView r;
    r.pod = p.name;
    r.terminating = p.terminating || p.phase == "Failed" || p.phase == "Succeeded";
    r.age = p.created ? std::chrono::duration_cast<autoscale::Millis>(wall_now - *p.created)
                      : autoscale::Millis{0};
    if (!p.pod_ip.empty()) r.address = backend_address(p.pod_ip, svc.port);
    // Serving: Ready in Kubernetes and balanced by the agent for this service.
    bool balanced = false;
    if (members != agent.services.end() && !r.address.empty())
      for (const auto& a : members->second) balanced |= a == r.address;
    auto b = r.address.empty() ? agent.backends.end() : agent.backends.find(r.address);
    r.ready = p.ready && balanced && b != agent.backends.end() && b->second.state != "down";
    if (b != agent.backends.end()) {
      const auto& s = b->second;
      r.has_score = !s.stale && s.score_age_s >= 0;
      r.score_age = autoscale::Millis{static_cast<int64_t>(s.score_age_s * 1000)};
      r.waiting = s.waiting;
      r.running = s.running;
      r.kv = s.kv;
      r.inflight = s.inflight;
    }
    o.replicas.push_back(std::move(r));
  }
  return o;
}

std::vector<std::pair<std::string, bool>> drain_label_writes(
    const std::vector<k8s::PodInfo>& pods,
    const std::map<std::string, autoscale::Millis>& draining) {
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& p : pods) {
    bool want = draining.count(p.name) > 0;
    if (p.draining() != want && !(want && p.terminating)) out.emplace_back(p.name, want);
  }
  return out;
}

}  // namespace kvlb::autoscaler
