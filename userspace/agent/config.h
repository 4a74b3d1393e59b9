// config.h - kvlb-agent configuration: YAML in, validated struct out.
//
// Validation is strict and complete before anything is touched: an unknown key,
// a missing field or an invalid value is a ConfigError naming the field path
// (e.g. "services[0].backends[2].address") and the reason, and the agent does
// not start half-configured.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/endpoint.h"
#include "engines/engine_stats.h"
#include "kvlb_maps.h"
#include "scrape/scraper.h"
#include "scoring/suspects.h"
#include "selection/select_defaults.h"

namespace kvlb::agent {

class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string field, std::string reason)
      : std::runtime_error(field + ": " + reason), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

struct BackendConfig {
  Endpoint address;
  std::string metrics_url;
  engines::Engine engine = engines::Engine::Auto;
  uint16_t weight = 100;
  kvlb_backend_state state = KVLB_STATE_ACTIVE;  // active or draining
};

// A Service whose backends come from its EndpointSlices.
struct KubernetesServiceRef {
  std::string ns;
  std::string service;
  std::string port_name;  // the Service port's name ("" for an unnamed port)
};

struct ServiceConfig {
  std::string name;
  Endpoint vip;  // family 0: the Kubernetes Service's ClusterIP and port, resolved at start
  std::optional<KubernetesServiceRef> kubernetes;  // else: static backends
  kvlb_policy policy = KVLB_POLICY_P2C_QUEUE_KV;
  // 4: the best or near-best p99 TTFT across load, burstiness and scrape interval
  // in the simulator sweep (docs/benchmarks.md); bounded by the backend count.
  uint8_t choices = 4;
  std::vector<BackendConfig> backends;
  // Discovered endpoints left out because the service has more than
  // KVLB_MAX_SLOTS (set by discovery; see backends_from_endpoints).
  size_t dropped_backends = 0;
};

struct AgentConfig {
  std::string cgroup;  // absolute, or relative to the cgroup v2 mount
  std::filesystem::path bpffs = "/sys/fs/bpf";
  std::filesystem::path pin_dir = "/sys/fs/bpf/kvlb";
  std::chrono::milliseconds scrape_interval{50};
  std::chrono::milliseconds scrape_timeout{0};  // 0: same as the interval
  size_t max_scrape_bytes = 4 * 1024 * 1024;
  // auto: kvlb's own HTTP/1.1 client for http:// URLs with an IP address,
  // libcurl for the rest; curl: libcurl for everything.
  ScrapeClient scrape_client = ScrapeClient::Auto;
  unsigned down_after_failures = 3;
  // Selection tunables: defaults from bpf/lib/select.h's table.
  std::chrono::milliseconds stale_after{default_select_cfg().stale_ns / 1'000'000};
  uint32_t kv_permille_per_pick = default_select_cfg().kv_permille_per_pick;
  // Passive health: after this many failed connects in a row (0: off) a backend
  // is skipped for `failure_cooldown` unless nothing else is eligible.
  uint32_t failure_threshold = default_select_cfg().fail_threshold;
  std::chrono::milliseconds failure_cooldown{default_select_cfg().fail_cooldown_ns / 1'000'000};
  // Backends whose reports the kernel's counts contradict (see
  // scoring/suspects.h): bounded to the median and reported.
  scoring::SuspectRules suspects;
  // Balanced sockets the kernel tracks at once (the socket table, preallocated:
  // ~80 bytes each). Beyond it connections are balanced but not counted.
  uint32_t max_sockets = KVLB_MAX_SOCKETS;
  // Balance only connections made in the agent's own (the host's) network namespace.
  bool host_network_only = false;
  // SO_MARK the agent puts on its own scrape sockets; the socket LB never
  // rebalances marked sockets. 0: no mark.
  uint32_t bypass_mark = 0x6b766c62;  // "kvlb"
  // Admin API: a unix socket (root only), and optionally a TCP address for a
  // Prometheus server (loopback unless you mean otherwise).
  std::filesystem::path admin_socket = "/run/kvlb/agent.sock";
  std::string admin_listen;
  // Kubernetes API access, for services with a `kubernetes:` block.
  bool kubernetes_in_cluster = false;
  bool kubernetes_allow_insecure_http = false;  // a kubeconfig http:// server (token in clear)
  std::filesystem::path kubeconfig;
  std::vector<ServiceConfig> services;
  bool uses_kubernetes() const {
    for (const auto& s : services)
      if (s.kubernetes) return true;
    return false;
  }
};

// Throws ConfigError for unknown names (the names: common/names.h).
kvlb_policy parse_policy(const std::string& name, const std::string& field);

// Parses and validates. Throws ConfigError (and nothing else) for any document.
AgentConfig parse_config(const std::string& yaml_text);
AgentConfig load_config(const std::filesystem::path& file);

}  // namespace kvlb::agent
