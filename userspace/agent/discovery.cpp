#include "discovery.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <thread>

namespace kvlb::agent {

Discovery::Discovery(const AgentConfig& cfg) {
  if (!cfg.uses_kubernetes()) return;
  client_ = std::make_unique<k8s::KubeClient>(
      cfg.kubernetes_in_cluster ? k8s::in_cluster_config() : k8s::kubeconfig_file(cfg.kubeconfig));
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
}

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
        auto j = nlohmann::json::parse(r.body, nullptr, false);
        auto ip = j.is_object() ? j["spec"].value("clusterIP", "") : "";
        if (ip.empty() || ip == "None")
          throw std::runtime_error(
              fmt::format("service {}: {}/{} has no ClusterIP (headless): set vip", svc.name,
                          ref.ns, ref.service));
        for (const auto& p : j["spec"].value("ports", nlohmann::json::array()))
          if (p.value("name", "") == ref.port_name && p.value("protocol", "TCP") == "TCP") {
            auto ep = Endpoint::parse_address(ip, static_cast<uint16_t>(p.value("port", 0)));
            if (!ep || !ep->port)
              throw std::runtime_error(fmt::format("service {}: bad ClusterIP {}", svc.name, ip));
            svc.vip = *ep;
          }
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
      std::this_thread::sleep_for(k8s::SliceWatcher::backoff(attempt));
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
    for (const auto& e : it->second) {
      if (e.address.family != svc.vip.family) continue;
      BackendConfig b;
      b.address = e.address;
      b.metrics_url = "http://" + e.address.to_string() + "/metrics";
      b.state = e.state;
      svc.backends.push_back(b);
    }
  }
  return out;
}

}  // namespace kvlb::agent
