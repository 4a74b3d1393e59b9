#include "discovery.h"

#include "common/printable.h"
#include "common/stable_hash.h"
#include "k8s/draining_pods.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <thread>
#include <tuple>

namespace kvlb::agent {

std::string agent_node_name() {
  if (const char* n = std::getenv("NODE_NAME"); n && *n) return n;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

std::vector<BackendConfig> backends_from_endpoints(const ServiceConfig& svc,
                                                   const std::vector<k8s::DiscoveredEndpoint>& eps,
                                                   std::string_view node, size_t* dropped) {
  struct Ranked {
    bool draining;
    bool elsewhere;  // not on this node: this node's own replicas are always kept
                     // (with score sharing this agent is the one that scrapes them)
    uint64_t rank;
    const k8s::DiscoveredEndpoint* e;
  };
  std::vector<Ranked> ranked;
  ranked.reserve(eps.size());
  std::set<std::string> seen;
  for (const auto& e : eps) {
    if (e.address.family != svc.vip.family) continue;
    auto key = e.address.to_string();
    if (!seen.insert(key).second) continue;  // listed by two slices: one backend
    ranked.push_back({e.state != KVLB_STATE_ACTIVE, e.node_name.empty() || e.node_name != node,
                      stable_hash(node, key), &e});
  }
  *dropped = 0;
  if (ranked.size() > KVLB_MAX_SLOTS) {
    std::partial_sort(ranked.begin(), ranked.begin() + KVLB_MAX_SLOTS, ranked.end(),
                      [](const Ranked& a, const Ranked& b) {
                        return std::tie(a.draining, a.elsewhere, a.rank) <
                               std::tie(b.draining, b.elsewhere, b.rank);
                      });
    *dropped = ranked.size() - KVLB_MAX_SLOTS;
    ranked.resize(KVLB_MAX_SLOTS);
  }
  std::vector<BackendConfig> out;
  out.reserve(ranked.size());
  for (const auto& r : ranked) {
    BackendConfig b;
    b.address = r.e->address;
    b.metrics_url = "http://" + r.e->address.to_string() + "/metrics";
    b.state = r.e->state;
    b.node = r.e->node_name;
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<k8s::DiscoveredEndpoint> with_drained_pods(std::vector<k8s::DiscoveredEndpoint> eps,
                                                       const std::set<std::string>& drained) {
  for (auto& e : eps)
    if (e.state == KVLB_STATE_ACTIVE && !e.pod_name.empty() && drained.count(e.pod_name))
      e.state = KVLB_STATE_DRAINING;
  return eps;
}

Discovery::Discovery(const AgentConfig& cfg) : node_(agent_node_name()) {
  if (!cfg.uses_kubernetes()) return;
  client_ = std::make_unique<k8s::KubeClient>(
      cfg.kubernetes_in_cluster
          ? k8s::in_cluster_config()
          : k8s::kubeconfig_file(cfg.kubeconfig, cfg.kubernetes_allow_insecure_http));
  for (const auto& svc : cfg.services) {
    if (!svc.kubernetes) continue;
    k8s::ServiceRef ref{svc.kubernetes->ns, svc.kubernetes->service, svc.kubernetes->port_name};
    auto name = svc.name;
    threads_.emplace_back([this, ref, name] {
      k8s::SliceWatcher w(
          *client_, ref,
          [this, name](const std::vector<k8s::DiscoveredEndpoint>& eps) {
            std::lock_guard lock(mu_);
            found_[name] = eps;
            changed_ = true;
          },
          [name](const std::string& err) { spdlog::warn("discovery for {}: {}", name, err); });
      w.run(stop_);
    });
    spdlog::info("service {}: discovering endpoints of {}/{} port '{}'", svc.name, ref.ns, ref.name,
                 ref.port_name);
  }
  // One watch of the drained pods per namespace of the discovered services.
  std::set<std::string> namespaces;
  for (const auto& svc : cfg.services)
    if (svc.kubernetes) namespaces.insert(svc.kubernetes->ns);
  for (const auto& ns : namespaces) {
    threads_.emplace_back([this, ns] {
      k8s::DrainingPods pods;
      k8s::ListWatcher w(
          *client_, "drained pods of " + ns, k8s::draining_pods_path(ns), pods,
          [this, ns, &pods] {
            std::lock_guard lock(mu_);
            auto& now = drained_[ns];
            if (now == pods.names()) return;
            now = pods.names();
            changed_ = true;
            spdlog::info(
                "namespace {}: {} pods drained ({}): their endpoints take no new "
                "connections",
                ns, now.size(), fmt::join(now, ", "));
          },
          [ns](const std::string& err) { spdlog::warn("discovery in {}: {}", ns, err); });
      w.run(stop_);
    });
  }
}

namespace {

// The VIP of a Service object: its ClusterIP and the TCP port of the configured
// name. The object is untrusted: any field of an unexpected type, or a port out
// of range, is an error with the reason. family 0 when no port matches.
Endpoint service_vip(const std::string& body, const std::string& name,
                     const KubernetesServiceRef& ref) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  try {
    const auto& spec = j.at("spec");
    const std::string ip = spec.value("clusterIP", "");
    if (ip.empty() || ip == "None")
      throw std::runtime_error(fmt::format("service {}: {}/{} has no ClusterIP (headless): set vip",
                                           name, ref.ns, ref.service));
    for (const auto& p : spec.value("ports", nlohmann::json::array())) {
      if (p.value("name", "") != ref.port_name || p.value("protocol", "TCP") != "TCP") continue;
      const int64_t port = p.value("port", int64_t{0});
      auto ep = port >= 1 && port <= 65535
                    ? Endpoint::parse_address(ip, static_cast<uint16_t>(port))
                    : std::nullopt;
      if (!ep)
        throw std::runtime_error(
            fmt::format("service {}: bad ClusterIP {} or port {}", name, printable(ip), port));
      return *ep;
    }
    return {};
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(
        fmt::format("service {}: malformed Service object: {}", name, e.what()));
  }
}

}  // namespace

void Discovery::resolve_cluster_ips(AgentConfig& cfg, std::chrono::seconds patience) const {
  for (auto& svc : cfg.services) {
    if (!svc.kubernetes || svc.vip.family) continue;
    const auto& ref = *svc.kubernetes;
    auto path = fmt::format("/api/v1/namespaces/{}/services/{}", ref.ns, ref.service);
    auto deadline = std::chrono::steady_clock::now() + patience;
    std::string why;
    for (unsigned attempt = 0;; ++attempt) {
      auto r = client_->get(path);
      if (r.ok()) {
        svc.vip = service_vip(r.body, svc.name, ref);
        if (!svc.vip.family)
          throw std::runtime_error(fmt::format("service {}: {}/{} has no TCP port named '{}'",
                                               svc.name, ref.ns, ref.service, ref.port_name));
        spdlog::info("service {}: vip {} from the ClusterIP of {}/{}", svc.name,
                     svc.vip.to_string(), ref.ns, ref.service);
        break;
      }
      why = r.error.empty() ? fmt::format("HTTP {}: {}", r.status, r.body.substr(0, 200)) : r.error;
      if (std::chrono::steady_clock::now() >= deadline)
        throw std::runtime_error(
            fmt::format("service {}: cannot read {}: {}", svc.name, path, why));
      spdlog::warn("service {}: reading {} failed ({}), retrying", svc.name, path, why);
      std::this_thread::sleep_for(k8s::ListWatcher::backoff(attempt));
    }
  }
}

Discovery::~Discovery() {
  stop_ = true;
  for (auto& t : threads_) t.join();
}

std::optional<AgentConfig> Discovery::effective(const AgentConfig& cfg, bool force) {
  std::lock_guard lock(mu_);
  if (!client_ || (!changed_ && !force)) return std::nullopt;
  changed_ = false;
  AgentConfig out = cfg;
  for (auto& svc : out.services) {
    if (!svc.kubernetes) continue;
    svc.backends.clear();
    auto it = found_.find(svc.name);
    if (it == found_.end()) continue;  // not listed yet: no backend, connect() is refused
    size_t dropped = 0;
    auto drained = drained_.find(svc.kubernetes->ns);
    svc.backends = backends_from_endpoints(
        svc,
        drained == drained_.end() ? it->second : with_drained_pods(it->second, drained->second),
        node_, &dropped);
    if (std::exchange(dropped_logged_[svc.name], dropped) != dropped && dropped)
      spdlog::warn(
          "service {}: {} endpoints, {} balanced from this node ({} is the most a service "
          "balances); {} left out here (subset chosen per node: other nodes balance them)",
          svc.name, svc.backends.size() + dropped, svc.backends.size(), KVLB_MAX_SLOTS, dropped);
    svc.dropped_backends = dropped;
  }
  return out;
}

}  // namespace kvlb::agent
