// supervisor.h - the agent's runtime: it owns the data plane, the Agent (which
// reconciles and scrapes), Kubernetes discovery and the admin listeners; runs
// the scrape loop; takes signals; and reloads the configuration
// transactionally (load new programs, fill the maps, swap the programs in; on
// any failure the old programs and configuration stay in force).
//
// Threads: the loop thread runs everything above; the admin server's thread
// serves requests. They share the Agent under one mutex, which the loop does
// not hold while a round scrapes and parses (Agent::collect).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "agent/admin_api.h"
#include "agent/admin_server.h"
#include "agent/agent.h"
#include "agent/cluster_sync.h"
#include "agent/flow_sync.h"
#include "agent/config.h"
#include "agent/discovery.h"
#include "agent/keepalive.h"
#include "dataplane/dataplane.h"
#include "dataplane/socket_closer.h"

namespace kvlb::agent {

struct SupervisorOptions {
  std::string config_path;
  bool keep_dataplane = false;                     // on exit, leave programs and pins in place
  std::chrono::nanoseconds log_scores_every{0};    // 0: no periodic score log
  std::chrono::nanoseconds watch_config_every{0};  // 0: reload on SIGHUP only
};

// The data plane's options for a configuration (resolves the cgroup; with
// host_network_only, reads this network namespace's cookie).
DataPlaneOptions dataplane_options(const AgentConfig& cfg);

class Supervisor {
 public:
  // `cfg`: validated. Nothing is touched until run().
  Supervisor(SupervisorOptions opts, AgentConfig cfg);
  ~Supervisor();
  // Sets up (discovery, data plane, maps, attach, listeners), then loops until
  // SIGTERM or SIGINT. Returns the process's exit code.
  int run();

 private:
  int loop();
  void apply_discovery();
  void scrape_round();
  // Gateway mode: the sweep program, then a fresh snapshot for the admin API.
  void gateway_round();
  // Keep-alive rebalancing: one round (opens the iterator on first use).
  void keepalive_round();
  // For the admin API (under mu_): null while no service rebalances.
  const KeepaliveStats* keepalive_stats() const {
    if (keepalive_) return &keepalive_->stats();
    return keepalive_tried_ ? &keepalive_unavailable_ : nullptr;
  }
  // Score sharing: the NATS connection and the cluster logic (no server needs
  // to be up: the agent falls back to scraping until one is).
  void start_cluster();
  void flow_sync_round();
  // Transactional reload; `why` names the trigger in the log.
  void reload(const char* why);
  // Why a new configuration cannot be applied while running ("" when it can).
  std::string immutable_change(const AgentConfig& next) const;
  // Leaves the data plane in place or removes it, by how the run ended.
  void shut_down(int rc);

  SupervisorOptions opts_;
  AgentConfig cfg_;  // the configuration file's, as last loaded
  std::unique_ptr<Discovery> discovery_;
  std::unique_ptr<DataPlane> dp_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<AdminServer> admin_;
  std::mutex mu_;  // the Agent: the loop and the admin thread take turns
  bool serving_ = false;
  // Keep-alive rebalancing (some service has it on): the kernel's closer and
  // the rounds' logic; its stats are shown with keepalive_tried_ even when the
  // kernel cannot run it.
  std::unique_ptr<SocketCloser> closer_;
  std::unique_ptr<KeepaliveRebalancer> keepalive_;
  KeepaliveStats keepalive_unavailable_;
  bool keepalive_tried_ = false;
  std::unique_ptr<GatewayView> gateway_;  // gateway mode: the admin API's snapshot (under mu_)
  std::unique_ptr<ClusterSync> cluster_;  // score sharing (cluster.nats_servers set)
  std::unique_ptr<FlowSync> flow_sync_;   // gateway mode with gateway.sync_group set
};

}  // namespace kvlb::agent
