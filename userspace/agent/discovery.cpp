#include "discovery.h"

#include <spdlog/spdlog.h>

namespace kvlb::agent {

Discovery::Discovery(const AgentConfig& cfg) {
  if (!cfg.uses_kubernetes()) return;
  client_ = std::make_unique<k8s::KubeClient>(cfg.kubernetes_in_cluster
                                                  ? k8s::in_cluster_config()
                                                  : k8s::kubeconfig_file(cfg.kubeconfig));
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
