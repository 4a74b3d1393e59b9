// kvlb-sim: the seed experiment (or any other) in virtual time: N emulated
// replicas, any balancer, seconds instead of minutes, no sockets.
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "arrivals.h"
#include "cluster_sim.h"
#include "common/duration.h"
#include "common/strings.h"
#include "selection/select_defaults.h"
#include "report.h"
#include "replica_model/profile_flags.h"

using namespace kvlb;

int main(int argc, char** argv) {
  CLI::App app{"kvlb-sim: load-balancing experiments in virtual time"};
  sim::SimConfig cfg;
  cfg.select = default_select_cfg();
  std::string balancers =
      "kube-proxy,haproxy-leastconn,nginx-random2-leastconn,kvlb-p2c-kv,kvlb-p2c-queue-kv,oracle";
  std::string arrival = "constant", scrape = "50ms", out, dataset = "synthetic";
  double rps = 12, burstiness = 1, duration = 600, warmup = 120;
  uint64_t seed = 42;
  app.add_option("--replicas", cfg.replicas, "replicas");
  app.add_option("--balancers", balancers,
                 "comma-separated balancers (--help-balancers lists them)");
  app.add_option("--rps", rps, "requests per second")->check(CLI::PositiveNumber);
  app.add_option("--arrival", arrival, "constant, poisson, gamma")
      ->check(CLI::IsMember({"constant", "poisson", "gamma"}));
  app.add_option("--burstiness", burstiness, "gamma shape (1 = Poisson)")
      ->check(CLI::PositiveNumber);
  app.add_option("--duration", duration, "seconds of arrivals");
  app.add_option("--warmup", warmup, "seconds left out of the summary");
  app.add_option("--dataset", dataset, "synthetic or an llm-load-test JSONL file");
  app.add_option("--seed", seed, "seed of the dataset, arrivals and balancers");
  app.add_option("--scrape-interval", scrape, "how old kvlb's scores get before a refresh");
  app.add_option("--kv-permille-per-pick", cfg.select.kv_permille_per_pick,
                 "kvlb's KV estimate per unseen assignment");
  app.add_option("--lying-replicas", cfg.lying,
                 "the first N replicas fail every request at once and report themselves idle");
  bool no_correction = false;
  app.add_flag("--no-pick-correction", no_correction,
               "kvlb balancers without the in-kernel correction for picks since the last score "
               "(ablation)");
  app.add_flag_callback(
      "--help-balancers",
      [] {
        fmt::print("{}", sim::balancer_help());
        throw CLI::Success();
      },
      "list the balancers and exit");
  bool no_suspects = false;
  app.add_flag("--no-suspect-detection", no_suspects,
               "kvlb balancers without the agent's suspect detection");
  app.add_option("-o,--output", out, "JSON report (one entry per balancer)");
  replica::add_profile_flags(app, cfg.profile);
  CLI11_PARSE(app, argc, argv);

  auto interval = parse_duration(scrape);
  if (!interval || interval->count() <= 0) {
    fmt::print(stderr, "--scrape-interval: '{}' is not a positive duration\n", scrape);
    return 2;
  }
  cfg.scrape_interval_s = std::chrono::duration<double>(*interval).count();
  cfg.suspects.enabled = !no_suspects;
  cfg.pick_correction = !no_correction;
  cfg.seed = seed;
  cfg.profile.seed = seed;
  try {
    cfg.profile.validate();
  } catch (const std::exception& e) {
    fmt::print(stderr, "invalid engine profile: --{}\n", e.what());
    return 2;
  }
  size_t n = static_cast<size_t>(duration * rps);
  std::vector<loadgen::RequestSpec> specs;
  try {
    if (dataset == "synthetic")
      specs = loadgen::synthetic_openorca(n, seed);
    else {
      auto all = loadgen::load_jsonl(dataset);
      for (size_t i = 0; i < n; ++i) specs.push_back(all[i % all.size()]);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  loadgen::ArrivalConfig ac;
  ac.kind = *loadgen::parse_arrival_kind(arrival);  // CLI11 checked the name
  ac.rps = rps;
  ac.burstiness = burstiness;
  ac.seed = seed;
  auto arrivals = loadgen::schedule(ac, n);

  nlohmann::json report = nlohmann::json::array();
  fmt::print("{} replicas, {} req/s {} arrivals for {:.0f} s (summary after {:.0f} s), scrape {}\n",
             cfg.replicas, rps, arrival, duration, warmup, scrape);
  fmt::print("{:<26}{:>9}{:>9}{:>9}{:>9}{:>11}{:>9}{:>9}{:>10}  {}\n", "balancer", "TTFT p50",
             "p90", "p99", "ITL p99", "good tok/s", "q/min", "max wait", "good r/s",
             "max waiting per replica");
  for (const auto& name : split_list(balancers)) {
    sim::BalancerSpec b;
    try {
      b = sim::parse_balancer(name);
    } catch (const std::exception& e) {
      fmt::print(stderr, "{}\n", e.what());
      return 2;
    }
    auto r = sim::simulate(cfg, b, specs, arrivals);
    auto summary = loadgen::summarize_run(r.requests, warmup);
    // Over the measured window of arrivals: queues bounded or growing, and what
    // was delivered (above capacity these, not p99, describe the run).
    summary["window"] = loadgen::window_rates(r.requests, warmup, duration);
    summary["trend"] = loadgen::queue_trend(r.replicas, warmup, duration);
    nlohmann::json replicas = nlohmann::json::array();
    double max_wait = 0;
    std::string per;
    for (const auto& s : r.replicas) {
      auto j = loadgen::series_summary(s, warmup, false);
      max_wait = std::max(max_wait, j["waiting_max"].get<double>());
      per += fmt::format("{} ", j["waiting_max"].get<double>());
      replicas.push_back(j);
    }
    const auto& t = summary["ttft_s"];
    fmt::print("{:<26}{:>9.3f}{:>9.3f}{:>9.3f}{:>9.3f}{:>11.0f}{:>9.2f}{:>9.0f}{:>10.2f}  {}\n",
               name, t["median"].get<double>(), t["p90"].get<double>(), t["p99"].get<double>(),
               summary["itl_s"]["p99"].get<double>(),
               summary["window"]["goodput_tok_s"].get<double>(),
               summary["trend"]["queue_growth_per_min"].get<double>(), max_wait,
               summary["window"]["goodput_req_s"].get<double>(), per);
    if (cfg.lying > 0) {
      // Requests the lying replicas took (each one failed), of all requests.
      size_t lied = 0;
      for (const auto& q : r.requests) lied += q.error == "http_500";
      summary["to_lying_replicas"] = lied;
      summary["to_lying_replicas_share"] = static_cast<double>(lied) / r.requests.size();
      fmt::print("{:<26}lying replicas took {} of {} requests ({:.1f}%), {} suspect findings\n", "",
                 lied, r.requests.size(), 100.0 * lied / r.requests.size(), r.suspect_events);
    }
    report.push_back(
        {{"balancer", name}, {"summary", summary}, {"replicas", replicas}, {"events", r.events}});
  }
  if (!out.empty()) {
    std::ofstream f(out);
    f << nlohmann::json{{"config",
                         {{"replicas", cfg.replicas},
                          {"rps", rps},
                          {"arrival", arrival},
                          {"burstiness", burstiness},
                          {"duration", duration},
                          {"warmup", warmup},
                          {"scrape_interval", scrape},
                          {"lying_replicas", cfg.lying},
                          {"suspect_detection", cfg.suspects.enabled},
                          {"pick_correction", cfg.pick_correction},
                          {"kv_permille_per_pick", cfg.select.kv_permille_per_pick},
                          {"seed", seed}}},
                        {"runs", report}}
             .dump()
      << "\n";
  }
  return 0;
}
