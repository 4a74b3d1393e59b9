#include "agent/supervisor.h"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <fstream>
#include <random>
#include <sstream>

#include <spdlog/spdlog.h>

#include "agent/admin_api.h"
#include "agent/settings.h"
#include "common/failpoint.h"
#include "common/printable.h"
#include "common/fs_mounts.h"
#include "cluster/nats_score_bus.h"
#include "dataplane/kernel_socket_closer.h"

namespace kvlb::agent {
namespace {

// What identifies the file's content for change detection (stat follows
// symlinks, so a Kubernetes ConfigMap's ..data swap is seen too).
struct FileStamp {
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  bool operator!=(const FileStamp& o) const {
    return ino != o.ino || size != o.size || mtime.tv_sec != o.mtime.tv_sec ||
           mtime.tv_nsec != o.mtime.tv_nsec;
  }
};

FileStamp stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {st.st_ino, st.st_size, st.st_mtim};
}

// The Kubernetes services and API access: fixed for the life of the process.
std::vector<std::string> kubernetes_refs(const AgentConfig& c) {
  std::vector<std::string> v;
  for (const auto& svc : c.services)
    if (svc.kubernetes)
      v.push_back(svc.name + "=" + svc.kubernetes->ns + "/" + svc.kubernetes->service + ":" +
                  svc.kubernetes->port_name);
  v.push_back(c.kubeconfig.string() + (c.kubernetes_in_cluster ? "+in-cluster" : ""));
  return v;
}

}  // namespace

// What a gateway host must be for the gateway to work, checked before anything
// is attached: forwarding on (the route lookup in XDP refuses to forward
// otherwise, and the stack forwards what XDP passes), and the SNAT ports clear
// of the ports local sockets use (a backend's answer to one of them would be
// taken for a gateway flow). Throws with the sysctl to change.
static void check_gateway_host(const AgentConfig& cfg) {
  auto read = [](const char* path) {
    std::ifstream in(path);
    std::string v;
    std::getline(in, v);
    return v;
  };
  if (!cfg.gateway.snat_ipv4.empty() && read("/proc/sys/net/ipv4/conf/all/forwarding") != "1")
    throw std::runtime_error(
        "gateway mode: IPv4 forwarding is off (sysctl net.ipv4.conf.all.forwarding=1)");
  if (!cfg.gateway.snat_ipv6.empty() && read("/proc/sys/net/ipv6/conf/all/forwarding") != "1")
    throw std::runtime_error(
        "gateway mode: IPv6 forwarding is off (sysctl net.ipv6.conf.all.forwarding=1)");
  // A packet the program hands to the stack (larger than the next hop's MTU:
  // in generic mode, coalesced GRO/GSO packets; or a next hop not resolved yet)
  // is translated already, its source the gateway's own SNAT address: IPv4
  // drops it as a martian unless accept_local is on. Measured: without it, 1 s
  // retransmissions made the live p99 TTFT 1.48 s against 0.47 s.
  if (!cfg.gateway.snat_ipv4.empty() && read("/proc/sys/net/ipv4/conf/all/accept_local") != "1")
    for (const auto& ifname : cfg.gateway.interface_list())
      if (read(("/proc/sys/net/ipv4/conf/" + ifname + "/accept_local").c_str()) != "1")
        throw std::runtime_error(fmt::format(
            "gateway mode: accept_local is off on {}: packets the gateway hands to the stack "
            "(above the MTU, or to a next hop not resolved yet) would be dropped as martians "
            "(sysctl net.ipv4.conf.{}.accept_local=1, or net.ipv4.conf.all.accept_local=1)",
            ifname, ifname));
  unsigned lo = 0, hi = 0;
  std::istringstream range(read("/proc/sys/net/ipv4/ip_local_port_range"));
  if (range >> lo >> hi && !(cfg.gateway.port_hi < lo || cfg.gateway.port_lo > hi))
    throw std::runtime_error(fmt::format(
        "gateway.snat_port_min..max ({}-{}) overlaps the host's ip_local_port_range ({}-{}): "
        "move one of them",
        cfg.gateway.port_lo, cfg.gateway.port_hi, lo, hi));
}

DataPlaneOptions dataplane_options(const AgentConfig& cfg) {
  DataPlaneOptions o;
  o.bpffs_root = cfg.bpffs;
  o.pin_dir = cfg.pin_dir;
  if (cfg.gateway_mode) {
    o.gateway_interfaces = cfg.gateway.interface_list();
    o.xdp_mode = cfg.gateway.xdp_mode == "native"    ? XdpMode::Native
                 : cfg.gateway.xdp_mode == "generic" ? XdpMode::Generic
                                                     : XdpMode::Auto;
  } else {
    o.cgroup = resolve_cgroup(cfg.cgroup);
  }
  o.program = program_settings(cfg, cfg.host_network_only ? current_netns_cookie() : 0);
  return o;
}

Supervisor::Supervisor(SupervisorOptions opts, AgentConfig cfg)
    : opts_(std::move(opts)), cfg_(std::move(cfg)) {}

Supervisor::~Supervisor() = default;

int Supervisor::run() {
  // Kubernetes: API access and VIPs from ClusterIPs come first: nothing is
  // attached until the configuration is complete (and signals still work here).
  if (cfg_.uses_kubernetes()) {
    try {
      discovery_ = std::make_unique<Discovery>(cfg_);
      discovery_->resolve_cluster_ips(cfg_, std::chrono::seconds(30));
    } catch (const std::exception& e) {
      spdlog::error("kubernetes: {}", e.what());
      return 1;
    }
  }
  try {
    // Loaded, not yet attached: the maps are filled from the configuration
    // first (an upgrade to a new map layout starts with empty maps of that layout).
    if (cfg_.gateway_mode) check_gateway_host(cfg_);
    auto opts = dataplane_options(cfg_);
    if (opts.program.host_netns_cookie)
      spdlog::info("host_network_only: balancing only network namespace cookie {}",
                   opts.program.host_netns_cookie);
    dp_ = DataPlane::load(opts);
  } catch (const std::exception& e) {
    spdlog::error("cannot set up the data plane: {}", e.what());
    return 1;
  }
  serving_ = dp_->adopted();  // an adopted data plane was serving before us
  int rc = 0;
  try {
    rc = loop();
  } catch (const std::exception& e) {
    spdlog::error("agent failed: {}", e.what());
    rc = 1;
  }
  shut_down(rc);
  return rc;
}

int Supervisor::loop() {
  agent_ = std::make_unique<Agent>(cfg_, *dp_);
  agent_->apply_config();
  dp_->attach();
  serving_ = true;
  if (cfg_.cluster.enabled()) start_cluster();
  if (!cfg_.admin_socket.empty() || !cfg_.admin_listen.empty()) {
    admin_ = std::make_unique<AdminServer>(
        cfg_.admin_socket, cfg_.admin_listen, [this](const AdminRequest& r) {
          std::lock_guard lock(mu_);
          return admin_route(*agent_, r,
                             {gateway_.get(), flow_sync_ ? &flow_sync_->stats() : nullptr,
                              keepalive_stats(), cluster_ ? &cluster_->stats() : nullptr});
        });
    spdlog::info("admin API on {}{}", cfg_.admin_socket.string(),
                 cfg_.admin_listen.empty() ? "" : " and " + cfg_.admin_listen);
  }
  spdlog::info("kvlb-agent running: {} backends, scrape every {} ms{}", agent_->backends().size(),
               cfg_.scrape_interval.count(), dp_->adopted() ? " (adopted pinned data plane)" : "");

  // Signals are taken synchronously (sigtimedwait is the loop's sleep); the
  // caller blocked them before any thread started.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  FileStamp seen = stamp(opts_.config_path);
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int> jitter(900, 1100);
  auto next_log = std::chrono::steady_clock::now() + opts_.log_scores_every;
  auto next_watch = std::chrono::steady_clock::now() + opts_.watch_config_every;
  auto next_sweep = std::chrono::steady_clock::now();
  auto next_keepalive = std::chrono::steady_clock::now();
  if (cfg_.gateway_mode) gateway_round();
  for (;;) {
    const auto round_start = std::chrono::steady_clock::now();
    apply_discovery();
    scrape_round();
    flow_sync_round();
    const auto now = std::chrono::steady_clock::now();
    if (cfg_.gateway_mode && now >= next_sweep) {
      next_sweep = now + cfg_.gateway.sweep_every;
      gateway_round();
    }
    if (!cfg_.gateway_mode && cfg_.uses_keepalive_rebalance() && now >= next_keepalive) {
      next_keepalive = now + cfg_.keepalive.interval;
      keepalive_round();
    }
    if (opts_.log_scores_every.count() > 0 && now >= next_log) {
      std::lock_guard lock(mu_);
      log_scores(*agent_);
      next_log += opts_.log_scores_every;
    }
    if (opts_.watch_config_every.count() > 0 && now >= next_watch) {
      next_watch = now + opts_.watch_config_every;
      if (stamp(opts_.config_path) != seen) {
        seen = stamp(opts_.config_path);
        reload("config file changed");
      }
    }
    // +-10% jitter: agents on many nodes drift apart instead of scraping every
    // replica in lockstep.
    auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.scrape_interval) *
                  jitter(rng) / 1000;
    auto wait = round_start + period - std::chrono::steady_clock::now();
    if (wait < std::chrono::nanoseconds(0)) wait = std::chrono::nanoseconds(0);
    timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000),
                static_cast<long>(wait.count() % 1'000'000'000)};
    int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("signal {}: stopping", sig);
      return 0;
    }
    if (sig == SIGHUP) {
      seen = stamp(opts_.config_path);
      reload("SIGHUP");
    }
  }
}

void Supervisor::apply_discovery() {
  if (!discovery_) return;
  auto eff = discovery_->effective(cfg_);
  if (!eff) return;
  std::lock_guard lock(mu_);
  // An API object is untrusted input: if what it asks for cannot be applied,
  // the previous state is put back and the agent goes on.
  const AgentConfig previous = agent_->config();
  try {
    agent_->reconfigure(*eff, *dp_);
    spdlog::info("discovery: {} backends", agent_->backends().size());
  } catch (const std::exception& e) {
    spdlog::error("discovery: cannot apply the discovered endpoints, keeping the previous ones: {}",
                  e.what());
    agent_->reconfigure(previous, *dp_);
  }
}

void Supervisor::scrape_round() {
  // The scrape itself (network waits, parsing) runs without the lock: one slow
  // replica never blocks the admin API or the liveness probe.
  std::unique_lock lock(mu_);
  if (cluster_) cluster_->before_round(*agent_, monotonic_ns());
  auto round = agent_->begin_round();
  lock.unlock();
  agent_->collect(round);
  lock.lock();
  if (cluster_) cluster_->fill_shared(*agent_, round, monotonic_ns());
  agent_->finish_round(round);
  if (cluster_) cluster_->publish(*agent_, monotonic_ns());
}

// The NATS connection's settings (cluster.*) for `id`, a connection of this
// agent's: score sharing, or the gateways' flow sync.
static cluster::NatsOptions nats_options(const ClusterSettings& cs, const std::string& name) {
  cluster::NatsOptions o;
  o.servers = cs.server_list();
  o.name = name;
  o.ca_file = cs.ca_file.string();
  o.credentials_file = cs.credentials_file.string();
  o.user = cs.user;
  if (!cs.password_file.empty()) {
    std::ifstream in(cs.password_file);
    if (!in)
      throw std::runtime_error("cluster.password_file: cannot read " + cs.password_file.string());
    std::getline(in, o.password);
  }
  o.inbox_limit = cs.inbox_limit;
  return o;
}

void Supervisor::start_cluster() {
  const auto& cs = cfg_.cluster;
  const std::string node = agent_node_name();
  const std::string id = cs.agent_id.empty() ? node : cs.agent_id;
  if (!cluster::valid_name(id) || !cluster::valid_name(node))
    throw std::runtime_error(fmt::format(
        "cluster: agent id '{}' / node '{}' is not a valid name (1-253 of A-Z a-z 0-9 . _ -): "
        "set cluster.agent_id",
        printable(id, 64), printable(node, 64)));
  cluster_ = std::make_unique<ClusterSync>(
      cfg_, std::make_unique<cluster::NatsScoreBus>(nats_options(cs, "kvlb-agent/" + id)), id,
      node);
  spdlog::info("cluster: agent {} on node {}, sharing scores over NATS ({}), redundancy {}", id,
               node, cs.nats_servers, cs.redundancy);
  if (cfg_.gateway_mode && cfg_.gateway.flow_sync()) {
    flow_sync_ = std::make_unique<FlowSync>(
        cfg_, std::make_unique<cluster::NatsScoreBus>(nats_options(cs, "kvlb-gateway/" + id)), id);
    spdlog::info("gateway: flow sync with group {} on {}", cfg_.gateway.sync_group,
                 flows_subject(cs.subject_prefix, cfg_.gateway.sync_group));
  }
}

void Supervisor::flow_sync_round() {
  if (!flow_sync_) return;
  std::lock_guard lock(mu_);
  try {
    flow_sync_->round(*agent_, *dp_);
  } catch (const std::exception& e) {
    spdlog::error("gateway flow sync: {}", e.what());
  }
}

void Supervisor::gateway_round() {
  std::lock_guard lock(mu_);
  try {
    auto view = std::make_unique<GatewayView>();
    view->swept = (gateway_ ? gateway_->swept : 0) + dp_->gateway_sweep();
    view->stats = dp_->gateway_stats();
    view->flows = dp_->gateway_flows();
    for (const auto& a : dp_->gateway_attachments())
      view->attachments.emplace_back(a.interface, a.mode);
    gateway_ = std::move(view);
  } catch (const std::exception& e) {
    spdlog::error("gateway sweep: {}", e.what());
  }
}

void Supervisor::keepalive_round() {
  std::unique_lock lock(mu_);
  if (!keepalive_tried_) {
    keepalive_tried_ = true;
    try {
      closer_ = KernelSocketCloser::open(cfg_.pin_dir, dp_->options().cgroup);
      keepalive_ =
          std::make_unique<KeepaliveRebalancer>(*closer_, cfg_.keepalive.max_closes_per_second);
      spdlog::info(
          "keepalive rebalancing on (every {} ms, idle {} ms, margin {}, at most {} closes/s)",
          cfg_.keepalive.interval.count(), cfg_.keepalive.idle.count(), cfg_.keepalive.margin_milli,
          cfg_.keepalive.max_closes_per_second);
    } catch (const std::exception& e) {
      keepalive_unavailable_.unavailable_reason = e.what();
      spdlog::error(
          "keepalive rebalancing is not available: {}; pooled connections stay where they "
          "were placed",
          e.what());
    }
  }
  if (!keepalive_) return;
  auto failed = [this](const std::exception& e) {
    ++keepalive_->stats().errors;
    keepalive_->stats().last_error = e.what();
    spdlog::error("keepalive rebalancing: {}", e.what());
  };
  KeepaliveRebalancer::Plan plan;
  try {
    plan =
        keepalive_->plan(agent_->config(), *dp_, monotonic_ns(), std::chrono::steady_clock::now());
  } catch (const std::exception& e) {
    return failed(e);
  }
  if (!plan.walk) return;
  // The walk (every TCP socket of every client namespace) without the lock:
  // the admin API and the next scrape round do not wait for it.
  lock.unlock();
  CloseRound r;
  try {
    r = keepalive_->walk(plan);
  } catch (const std::exception& e) {
    lock.lock();
    return failed(e);
  }
  lock.lock();
  keepalive_->finish(plan, r);
}

std::string Supervisor::immutable_change(const AgentConfig& next) const {
  if (next.gateway_mode != cfg_.gateway_mode ||
      next.gateway.interfaces != cfg_.gateway.interfaces ||
      next.gateway.xdp_mode != cfg_.gateway.xdp_mode)
    return "mode and the gateway's interfaces cannot change while running (restart the agent)";
  if (kubernetes_refs(next) != kubernetes_refs(cfg_))
    return "the Kubernetes services or API access cannot change while running (restart the "
           "agent)";
  const auto& a = next.cluster;
  const auto& b = cfg_.cluster;
  if (a.nats_servers != b.nats_servers || a.agent_id != b.agent_id ||
      a.subject_prefix != b.subject_prefix || a.redundancy != b.redundancy ||
      a.peer_timeout != b.peer_timeout || a.heartbeat_interval != b.heartbeat_interval ||
      a.fallback_after != b.fallback_after ||
      a.fallback_scrape_interval != b.fallback_scrape_interval || a.ca_file != b.ca_file ||
      a.credentials_file != b.credentials_file || a.user != b.user ||
      a.password_file != b.password_file || a.inbox_limit != b.inbox_limit)
    return "the cluster.* settings cannot change while running (restart the agent)";
  if (next.cgroup != cfg_.cgroup || next.bpffs != cfg_.bpffs || next.pin_dir != cfg_.pin_dir)
    return "cgroup, bpffs and pin_dir cannot change while running (restart the agent)";
  return "";
}

void Supervisor::reload(const char* why) {
  // Validate fully first: the old configuration stays in force on any error.
  AgentConfig next;
  try {
    next = load_config(opts_.config_path);
    if (discovery_) discovery_->resolve_cluster_ips(next, std::chrono::seconds(5));
  } catch (const std::exception& e) {
    spdlog::error("{}: new configuration rejected, keeping the old one: {}", why, e.what());
    return;
  }
  if (auto reason = immutable_change(next); !reason.empty()) {
    spdlog::error("{}: new configuration rejected, keeping the old one: {}", why, reason);
    return;
  }
  // Discovered backends carry over: a reload never empties a Kubernetes service.
  AgentConfig applied = next;
  if (discovery_)
    if (auto eff = discovery_->effective(next, true)) applied = std::move(*eff);
  std::lock_guard lock(mu_);
  // Transactional: new programs (when their load-time settings changed) are
  // loaded first, then the maps are filled, then the programs are swapped into
  // the pinned links (all or nothing). Any failure leaves the old programs
  // attached and puts the old configuration back into the maps.
  const AgentConfig previous = agent_->config();
  std::unique_ptr<DataPlane> fresh;
  try {
    auto opts = dataplane_options(next);
    if (!(opts.program == dp_->options().program)) {
      fresh = DataPlane::load(opts);
      failpoint("reload:after_load");
    }
    agent_->reconfigure(applied, fresh ? *fresh : *dp_);
    failpoint("reload:after_fill");
    if (fresh) fresh->attach(dp_.get());
  } catch (const std::exception& e) {
    spdlog::error("{}: reload failed, the old configuration stays in force: {}", why, e.what());
    try {
      agent_->reconfigure(previous, *dp_);
    } catch (const std::exception& e2) {
      spdlog::error("{}: putting the old configuration back into the maps failed: {}", why,
                    e2.what());
    }
    return;
  }
  if (fresh) dp_ = std::move(fresh);
  cfg_ = std::move(next);
  spdlog::info("{}: configuration reloaded: {} services, {} backends", why, cfg_.services.size(),
               agent_->backends().size());
}

void Supervisor::shut_down(int rc) {
  admin_.reset();  // no request may reach the agent past this point
  flow_sync_.reset();
  if (cluster_) {
    cluster_->leave();  // the others take this agent's replicas over at once
    cluster_.reset();
  }
  if (!serving_) {
    // The configuration never made it into the maps: do not leave a half-set-up
    // data plane attached.
    dp_->detach_and_unpin();
  } else if (opts_.keep_dataplane || rc != 0) {
    // After a failure the pinned programs keep balancing (stale scores fall back
    // to least-inflight) until a new agent adopts them.
    spdlog::info("leaving the data plane in place under {}", cfg_.pin_dir.string());
  } else {
    dp_->detach_and_unpin();
  }
}

}  // namespace kvlb::agent
