// kvlb-agent: scrapes inference replicas and steers the kernel socket LB.
// main() reads the command line and the configuration and hands over to the
// Supervisor (supervisor.h), which runs everything else.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "agent/config.h"
#include "agent/settings.h"
#include "agent/supervisor.h"
#include "common/duration.h"
#include "common/logging.h"

using namespace kvlb;

int main(int argc, char** argv) {
  CLI::App app{"kvlb-agent: LLM-aware kernel load balancer agent"};
  std::string config_path, log_level = "info", log_format = "text", score_log = "0s", watch = "1s";
  bool keep = false, check_only = false, reference = false;
  auto* config_opt = app.add_option("-c,--config", config_path, "YAML configuration file");
  app.add_flag("--print-config-reference", reference,
               "print the configuration reference (Markdown) and exit");
  app.add_flag("--keep-dataplane", keep,
               "on exit, leave programs attached and maps pinned (restart or upgrade)");
  app.add_flag("--check-config", check_only, "validate the configuration and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--log-format", log_format, "text or json (one object per line)");
  app.add_option("--log-scores", score_log, "log every backend's score at this period (0s: off)");
  app.add_option("--watch-config", watch, "check the config file for changes this often (0s: off)");
  CLI11_PARSE(app, argc, argv);
  if (reference) {
    fmt::print("{}", agent::config_reference_markdown());
    return 0;
  }
  if (config_opt->count() == 0) {
    fmt::print(stderr, "kvlb-agent: --config is required\n");
    return 2;
  }

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

  // Signals are taken synchronously by the supervisor's loop: blocked here,
  // before any thread starts, so every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  agent::SupervisorOptions opts;
  opts.config_path = config_path;
  opts.keep_dataplane = keep;
  opts.log_scores_every = *score_period;
  opts.watch_config_every = *watch_period;
  return agent::Supervisor(opts, std::move(cfg)).run();
}
