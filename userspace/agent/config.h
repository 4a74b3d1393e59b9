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
#include "agent/settings.h"
#include "scoring/suspects.h"

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
  // The node the replica runs on (EndpointSlice nodeName; "" for static
  // backends): with score sharing, that node's agent scrapes it.
  std::string node;
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
  uint8_t choices = KVLB_DEFAULT_CHOICES;
  std::vector<BackendConfig> backends;
  // Keep-alive rebalancing (docs/keepalive.md): close idle pooled connections
  // to backends that are no longer a good choice. On by default in socket mode
  // (measured: docs/benchmarks.md section 10); off in gateway mode, where it
  // cannot run.
  bool keepalive_rebalance = true;
  // Discovered endpoints left out because the service has more than
  // KVLB_MAX_SLOTS (set by discovery; see backends_from_endpoints).
  size_t dropped_backends = 0;
};

// Gateway mode (mode: gateway): the settings as written; validated by
// parse_config, turned into the programs' constants by program_settings().
struct GatewayConfig {
  std::string interfaces;  // comma-separated
  std::string xdp_mode = "auto";
  std::string snat_ipv4, snat_ipv6;
  uint16_t port_lo = 0, port_hi = 0;
  uint32_t flows = 0;
  std::chrono::milliseconds idle{}, closing{}, sweep_every{};
  // Flow sync between the gateways of a group (docs/gateway.md).
  std::string sync_group;  // "" : off
  std::string sync_peers;  // comma-separated SNAT addresses of the other gateways
  std::chrono::milliseconds sync_refresh{};
  bool flow_sync() const { return !sync_group.empty(); }
  std::vector<std::string> interface_list() const;
  std::vector<std::string> sync_peer_list() const;
};

// Keep-alive rebalancing's agent-wide settings (the keepalive.* rows of settings.h).
struct KeepaliveSettings {
  std::chrono::milliseconds interval{};  // how often a round runs
  std::chrono::milliseconds idle{};      // a response ended at least this long ago
  uint32_t margin_milli = 0;             // best backend beats this one by (milli-requests)
  uint32_t max_closes_per_second = 0;
};

// Score sharing between agents (cluster.*; docs/cluster.md): on when
// nats_servers is set.
struct ClusterSettings {
  std::string nats_servers;  // comma-separated nats:// or tls:// URLs
  std::string agent_id;      // "" : $NODE_NAME, else the host name
  std::string subject_prefix;
  uint32_t redundancy = 1;
  std::chrono::milliseconds peer_timeout{};
  std::chrono::milliseconds heartbeat_interval{};
  std::chrono::milliseconds fallback_after{};
  std::chrono::milliseconds fallback_scrape_interval{};
  std::filesystem::path ca_file, credentials_file, password_file;
  std::string user;
  uint32_t inbox_limit = 0;
  bool enabled() const { return !nats_servers.empty(); }
  std::vector<std::string> server_list() const;
};

// The scalar settings' defaults, bounds and meaning are in one table
// (settings.h); a default-constructed AgentConfig holds the defaults.
struct AgentConfig {
  AgentConfig() { apply_setting_defaults(*this); }
  bool gateway_mode = false;  // mode: gateway
  GatewayConfig gateway;
  std::string cgroup;  // absolute, or relative to the cgroup v2 mount; socket mode
  std::filesystem::path bpffs;
  std::filesystem::path pin_dir;
  std::chrono::milliseconds scrape_interval{};
  std::chrono::milliseconds scrape_timeout{};  // 0: same as the interval
  size_t max_scrape_bytes = 0;
  ScrapeClient scrape_client = ScrapeClient::Auto;
  unsigned down_after_failures = 0;
  std::chrono::milliseconds stale_after{};
  uint32_t kv_permille_per_pick = 0;
  uint32_t failure_threshold = 0;  // passive health; 0: off
  std::chrono::milliseconds failure_cooldown{};
  scoring::SuspectRules suspects;
  uint32_t max_sockets = 0;
  bool host_network_only = false;
  uint32_t bypass_mark = 0;
  std::filesystem::path admin_socket;
  std::string admin_listen;
  bool kubernetes_in_cluster = false;
  bool kubernetes_allow_insecure_http = false;
  std::filesystem::path kubeconfig;
  KeepaliveSettings keepalive;
  ClusterSettings cluster;
  std::vector<ServiceConfig> services;
  bool uses_keepalive_rebalance() const {
    for (const auto& s : services)
      if (s.keepalive_rebalance) return true;
    return false;
  }
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
