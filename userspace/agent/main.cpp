// kvlb-agent: scrapes inference replicas and steers the kernel socket LB.
#include <signal.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "common/duration.h"
#include "common/fs_mounts.h"
#include "common/logging.h"

using namespace kvlb;

int main(int argc, char** argv) {
  CLI::App app{"kvlb-agent: LLM-aware kernel load balancer agent"};
  std::string config_path, log_level = "info", score_log = "0s";
  bool keep = false, check_only = false;
  app.add_option("-c,--config", config_path, "YAML configuration file")->required();
  app.add_flag("--keep-dataplane", keep,
               "on exit, leave programs attached and maps pinned (restart or upgrade)");
  app.add_flag("--check-config", check_only, "validate the configuration and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--log-scores", score_log, "log every backend's score at this period (0s: off)");
  CLI11_PARSE(app, argc, argv);

  try {
    setup_logging(log_level, "text");
  } catch (const std::exception& e) {
    fmt::print(stderr, "kvlb-agent: {}\n", e.what());
    return 2;
  }
  auto score_period = parse_duration(score_log);
  if (!score_period) {
    spdlog::error("--log-scores: '{}' is not a duration", score_log);
    return 2;
  }

  agent::AgentConfig cfg;
  try {
    cfg = agent::load_config(config_path);
  } catch (const agent::ConfigError& e) {
    spdlog::error("invalid configuration {}: {}", config_path, e.what());
    return 2;
  }
  if (check_only) {
    fmt::print("{}: valid ({} services)\n", config_path, cfg.services.size());
    return 0;
  }

  // Signals are taken synchronously by the main loop (sigtimedwait is its sleep).
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::unique_ptr<DataPlane> dp;
  try {
    DataPlaneOptions o;
    o.bpffs_root = cfg.bpffs;
    o.pin_dir = cfg.pin_dir;
    o.cgroup = resolve_cgroup(cfg.cgroup);
    o.select.stale_ns = static_cast<uint64_t>(cfg.stale_after.count()) * 1'000'000ull;
    o.select.kv_permille_per_pick = cfg.kv_permille_per_pick;
    o.select.fail_threshold = cfg.failure_threshold;
    o.select.fail_cooldown_ns = static_cast<uint64_t>(cfg.failure_cooldown.count()) * 1'000'000ull;
    o.bypass_mark = cfg.bypass_mark;
    if (cfg.host_network_only) {
      o.host_netns_cookie = current_netns_cookie();
      spdlog::info("host_network_only: balancing only network namespace cookie {}",
                   o.host_netns_cookie);
    }
    dp = DataPlane::open(o);
  } catch (const std::exception& e) {
    spdlog::error("cannot set up the data plane: {}", e.what());
    return 1;
  }

  int rc = 0;
  bool serving = dp->adopted();  // an adopted data plane was serving before us
  try {
    agent::Agent agent(cfg, *dp);
    agent.apply_config();
    serving = true;
    spdlog::info("kvlb-agent running: {} backends, scrape every {} ms{}", agent.backends().size(),
                 cfg.scrape_interval.count(), dp->adopted() ? " (adopted pinned data plane)" : "");
    auto next_log = std::chrono::steady_clock::now() + *score_period;
    for (;;) {
      auto round_start = std::chrono::steady_clock::now();
      agent.scrape_round();
      if (score_period->count() > 0 && std::chrono::steady_clock::now() >= next_log) {
        agent.log_scores();
        next_log += *score_period;
      }
      auto wait = round_start + cfg.scrape_interval - std::chrono::steady_clock::now();
      if (wait < std::chrono::nanoseconds(0)) wait = std::chrono::nanoseconds(0);
      timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000),
                  static_cast<long>(wait.count() % 1'000'000'000)};
      int sig = sigtimedwait(&sigs, nullptr, &ts);
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("signal {}: stopping", sig);
        break;
      }
      if (sig == SIGHUP) spdlog::info("SIGHUP: configuration reload is not implemented yet");
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
