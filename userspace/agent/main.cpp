// kvlb-agent: scrapes inference replicas and steers the kernel socket LB.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <mutex>
#include <random>

#include "agent/admin_server.h"
#include "agent/agent.h"
#include "agent/discovery.h"
#include "agent/config.h"
#include "common/duration.h"
#include "common/failpoint.h"
#include "common/fs_mounts.h"
#include "common/logging.h"

using namespace kvlb;

namespace {

// The data plane's options for a configuration.
DataPlaneOptions dataplane_options(const agent::AgentConfig& cfg) {
  DataPlaneOptions o;
  o.bpffs_root = cfg.bpffs;
  o.pin_dir = cfg.pin_dir;
  o.cgroup = resolve_cgroup(cfg.cgroup);
  auto& p = o.program;
  p.select.stale_ns = static_cast<uint64_t>(cfg.stale_after.count()) * 1'000'000ull;
  p.select.kv_permille_per_pick = cfg.kv_permille_per_pick;
  p.select.fail_threshold = cfg.failure_threshold;
  p.select.fail_cooldown_ns = static_cast<uint64_t>(cfg.failure_cooldown.count()) * 1'000'000ull;
  p.bypass_mark = cfg.bypass_mark;
  p.max_sockets = cfg.max_sockets;
  if (cfg.host_network_only) p.host_netns_cookie = current_netns_cookie();
  return o;
}

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

// A JSON body that cannot fail: strings that are not UTF-8 are replaced.
std::string json_body(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The admin API's routes.
agent::AdminResponse admin_route(agent::Agent& agent, const agent::AdminRequest& r) {
  const std::string prefix = "/v1/backends/";
  if (r.method == "GET" && r.target == "/v1/services")
    return {200, "application/json", json_body(agent.services_json())};
  if (r.method == "GET" && r.target == "/v1/backends")
    return {200, "application/json", json_body(agent.backends_json())};
  if (r.method == "GET" && r.target == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", agent.metrics_text()};
  if (r.method == "GET" && r.target == "/healthz") return {200, "text/plain", "ok\n"};
  if (r.target.rfind(prefix, 0) == 0) {
    auto rest = r.target.substr(prefix.size());
    auto slash = rest.rfind('/');
    if (slash != std::string::npos && r.method == "POST") {
      auto address = rest.substr(0, slash), verb = rest.substr(slash + 1);
      if (verb == "drain" || verb == "undrain") {
        if (!agent.set_drained(address, verb == "drain"))
          return {404, "application/json", json_body({{"error", "no backend " + address}})};
        return {200, "application/json", json_body({{"backend", address}, {"action", verb}})};
      }
    }
  }
  return {404, "application/json",
          json_body({{"error", r.method + " " + r.target + ": no such route"}})};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlb-agent: LLM-aware kernel load balancer agent"};
  std::string config_path, log_level = "info", log_format = "text", score_log = "0s", watch = "1s";
  bool keep = false, check_only = false;
  app.add_option("-c,--config", config_path, "YAML configuration file")->required();
  app.add_flag("--keep-dataplane", keep,
               "on exit, leave programs attached and maps pinned (restart or upgrade)");
  app.add_flag("--check-config", check_only, "validate the configuration and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--log-format", log_format, "text or json (one object per line)");
  app.add_option("--log-scores", score_log, "log every backend's score at this period (0s: off)");
  app.add_option("--watch-config", watch, "check the config file for changes this often (0s: off)");
  CLI11_PARSE(app, argc, argv);

  try {
    setup_logging(log_level, log_format);
  } catch (const std::exception& e) {
    fmt::print(stderr, "kvlb-agent: {}\n", e.what());
    return 2;
  }
  auto score_period = parse_duration(score_log);
  auto watch_period = parse_duration(watch);
  if (!score_period || !watch_period) {
    spdlog::error("--log-scores and --watch-config take durations (like 1s)");
    return 2;
  }

  agent::AgentConfig cfg;
  try {
    cfg = agent::load_config(config_path);
  } catch (const std::exception& e) {  // ConfigError; anything else is a bug, reported alike
    spdlog::error("invalid configuration {}: {}", config_path, e.what());
    return 2;
  }
  if (check_only) {
    fmt::print("{}: valid ({} services)\n", config_path, cfg.services.size());
    return 0;
  }

  // Kubernetes: API access and VIPs from ClusterIPs come first: nothing is
  // attached until the configuration is complete (and signals still work here).
  std::unique_ptr<agent::Discovery> discovery;
  if (cfg.uses_kubernetes()) {
    try {
      discovery = std::make_unique<agent::Discovery>(cfg);
      discovery->resolve_cluster_ips(cfg, std::chrono::seconds(30));
    } catch (const std::exception& e) {
      spdlog::error("kubernetes: {}", e.what());
      return 1;
    }
  }

  // Signals are taken synchronously by the main loop (sigtimedwait is its sleep).
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::unique_ptr<DataPlane> dp;
  try {
    // Loaded, not yet attached: the maps are filled from the configuration first
    // (an upgrade to a new map layout starts with empty maps of that layout).
    auto opts = dataplane_options(cfg);
    if (opts.program.host_netns_cookie)
      spdlog::info("host_network_only: balancing only network namespace cookie {}",
                   opts.program.host_netns_cookie);
    dp = DataPlane::load(opts);
  } catch (const std::exception& e) {
    spdlog::error("cannot set up the data plane: {}", e.what());
    return 1;
  }

  int rc = 0;
  bool serving = dp->adopted();  // an adopted data plane was serving before us
  std::mutex mu;                 // the agent's state: the loop and the admin thread take turns
  try {
    agent::Agent agent(cfg, *dp);
    agent.apply_config();
    dp->attach();
    serving = true;
    std::unique_ptr<agent::AdminServer> admin;
    if (!cfg.admin_socket.empty() || !cfg.admin_listen.empty()) {
      admin = std::make_unique<agent::AdminServer>(cfg.admin_socket, cfg.admin_listen,
                                                   [&](const agent::AdminRequest& r) {
                                                     std::lock_guard lock(mu);
                                                     return admin_route(agent, r);
                                                   });
      spdlog::info("admin API on {}{}", cfg.admin_socket.string(),
                   cfg.admin_listen.empty() ? "" : " and " + cfg.admin_listen);
    }
    spdlog::info("kvlb-agent running: {} backends, scrape every {} ms{}", agent.backends().size(),
                 cfg.scrape_interval.count(), dp->adopted() ? " (adopted pinned data plane)" : "");
    FileStamp seen = stamp(config_path);
    std::mt19937_64 rng(std::random_device{}());
    std::uniform_int_distribution<int> jitter(900, 1100);
    auto next_log = std::chrono::steady_clock::now() + *score_period;
    auto next_watch = std::chrono::steady_clock::now() + *watch_period;

    // Reload: validate fully first; the old configuration stays in force on any error.
    auto reload = [&](const char* why) {
      seen = stamp(config_path);
      agent::AgentConfig next;
      try {
        next = agent::load_config(config_path);
        if (discovery) discovery->resolve_cluster_ips(next, std::chrono::seconds(5));
      } catch (const std::exception& e) {
        spdlog::error("{}: new configuration rejected, keeping the old one: {}", why, e.what());
        return;
      }
      auto k8s_refs = [](const agent::AgentConfig& c) {
        std::vector<std::string> v;
        for (const auto& svc : c.services)
          if (svc.kubernetes)
            v.push_back(svc.name + "=" + svc.kubernetes->ns + "/" + svc.kubernetes->service + ":" +
                        svc.kubernetes->port_name);
        v.push_back(c.kubeconfig.string() + (c.kubernetes_in_cluster ? "+in-cluster" : ""));
        return v;
      };
      if (k8s_refs(next) != k8s_refs(cfg)) {
        spdlog::error(
            "{}: new configuration rejected, keeping the old one: the Kubernetes "
            "services or API access cannot change while running (restart the agent)",
            why);
        return;
      }
      if (next.cgroup != cfg.cgroup || next.bpffs != cfg.bpffs || next.pin_dir != cfg.pin_dir) {
        spdlog::error(
            "{}: new configuration rejected, keeping the old one: cgroup, bpffs and "
            "pin_dir cannot change while running (restart the agent)",
            why);
        return;
      }
      // Discovered backends carry over: a reload never empties a Kubernetes service.
      agent::AgentConfig applied = next;
      if (discovery)
        if (auto eff = discovery->effective(next, true)) applied = std::move(*eff);
      // Transactional: new programs (when their load-time settings changed) are
      // loaded first, then the maps are filled, then the programs are swapped
      // into the pinned links (all or nothing). Any failure leaves the old
      // programs attached and puts the old configuration back into the maps.
      const agent::AgentConfig previous = agent.config();
      std::unique_ptr<DataPlane> fresh;
      try {
        auto opts = dataplane_options(next);
        if (!(opts.program == dp->options().program)) {
          fresh = DataPlane::load(opts);
          failpoint("reload:after_load");
        }
        agent.reconfigure(applied, fresh ? *fresh : *dp);
        failpoint("reload:after_fill");
        if (fresh) fresh->attach(dp.get());
      } catch (const std::exception& e) {
        spdlog::error("{}: reload failed, the old configuration stays in force: {}", why, e.what());
        try {
          agent.reconfigure(previous, *dp);
        } catch (const std::exception& e2) {
          spdlog::error("{}: putting the old configuration back into the maps failed: {}", why,
                        e2.what());
        }
        return;
      }
      if (fresh) dp = std::move(fresh);
      cfg = std::move(next);
      spdlog::info("{}: configuration reloaded: {} services, {} backends", why, cfg.services.size(),
                   agent.backends().size());
    };

    for (;;) {
      auto round_start = std::chrono::steady_clock::now();
      std::unique_lock lock(mu);
      if (discovery)
        if (auto eff = discovery->effective(cfg)) {
          // An API object is untrusted input: if what it asks for cannot be
          // applied, the previous state is put back and the agent goes on.
          const agent::AgentConfig previous = agent.config();
          try {
            agent.reconfigure(*eff, *dp);
            spdlog::info("discovery: {} backends", agent.backends().size());
          } catch (const std::exception& e) {
            spdlog::error(
                "discovery: cannot apply the discovered endpoints, keeping the "
                "previous ones: {}",
                e.what());
            agent.reconfigure(previous, *dp);
          }
        }
      // The scrape itself (network waits, parsing) runs without the lock: one
      // slow replica never blocks the admin API or the liveness probe.
      auto round = agent.begin_round();
      lock.unlock();
      agent.collect(round);
      lock.lock();
      agent.finish_round(round);
      auto now = std::chrono::steady_clock::now();
      if (score_period->count() > 0 && now >= next_log) {
        agent.log_scores();
        next_log += *score_period;
      }
      if (watch_period->count() > 0 && now >= next_watch) {
        next_watch = now + *watch_period;
        if (stamp(config_path) != seen) reload("config file changed");
      }
      lock.unlock();
      // +-10% jitter: agents on many nodes drift apart instead of scraping every
      // replica in lockstep.
      auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg.scrape_interval) *
                    jitter(rng) / 1000;
      auto wait = round_start + period - std::chrono::steady_clock::now();
      if (wait < std::chrono::nanoseconds(0)) wait = std::chrono::nanoseconds(0);
      timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000),
                  static_cast<long>(wait.count() % 1'000'000'000)};
      int sig = sigtimedwait(&sigs, nullptr, &ts);
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("signal {}: stopping", sig);
        break;
      }
      if (sig == SIGHUP) {
        std::lock_guard relock(mu);
        reload("SIGHUP");
      }
    }
  } catch (const std::exception& e) {
    spdlog::error("agent failed: {}", e.what());
    rc = 1;
  }
  if (!serving) {
    // The configuration never made it into the maps: do not leave a half-set-up
    // data plane attached.
    dp->detach_and_unpin();
  } else if (keep || rc != 0) {
    // After a failure the pinned programs keep balancing (stale scores fall back
    // to least-inflight) until a new agent adopts them.
    spdlog::info("leaving the data plane in place under {}", cfg.pin_dir.string());
  } else {
    dp->detach_and_unpin();
  }
  return rc;
}
