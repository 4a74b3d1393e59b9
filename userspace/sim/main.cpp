// kvlb-sim: the seed experiment (or any other) in virtual time: N emulated
// replicas, any balancer, seconds instead of minutes, no sockets.
// `kvlb-sim autoscale`: the autoscaler benchmark's load profile against
// autoscaling policies (the live autoscaler's Scaler) and a static maximum.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "arrivals.h"
#include "autoscale_run.h"
#include "cluster_sim.h"
#include "common/duration.h"
#include "common/strings.h"
#include "selection/select_defaults.h"
#include "report.h"
#include "replica_model/profile_flags.h"

using namespace kvlb;

namespace {

struct AutoscaleArgs {
  std::string policies = "static,kvlb,hpa-kv,hpa-waiting";
  std::string profile = "2@120,12@240,20@60,4@180";
  std::string balancer = "kvlb-p2c-queue-kv";
  std::string startup = "30s", interval = "1s", creation = "1s", termination = "1s";
  uint32_t seeds = 5;
  uint64_t first_seed = 1;
  int32_t min_replicas = 1, max_replicas = 14;
  size_t static_replicas = 14, initial = 2;
  double slo = 2.0;
  std::string out, series_dir;
};

double seconds_of(const std::string& what, const std::string& text) {
  auto d = parse_duration(text);
  if (!d || d->count() < 0)
    throw std::invalid_argument(what + ": '" + text + "' is not a duration");
  return std::chrono::duration<double>(*d).count();
}

// The median of a figure over seeds; a missing one (a recovery that never
// came) counts as infinitely late.
double median_of(const nlohmann::json& seeds, const char* key) {
  std::vector<double> v;
  for (const auto& s : seeds) {
    const auto& x = s["figures"][key];
    v.push_back(x.is_null() ? std::numeric_limits<double>::infinity() : x.get<double>());
  }
  std::sort(v.begin(), v.end());
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

nlohmann::json finite_or_null(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

int run_autoscale(const sim::SimConfig& base, const AutoscaleArgs& a) {
  std::vector<sim::LoadStep> profile;
  std::vector<std::pair<std::string, std::optional<autoscale::Policy>>> policies;
  sim::AutoscaleSpec spec;
  sim::BalancerSpec bal;
  try {
    profile = sim::parse_load_profile(a.profile);
    for (const auto& name : split_list(a.policies))
      policies.push_back({name, sim::parse_policy_choice(name, a.min_replicas, a.max_replicas)});
    spec.startup_s = seconds_of("--startup", a.startup);
    spec.interval_s = seconds_of("--interval", a.interval);
    spec.creation_delay_s = seconds_of("--creation-delay", a.creation);
    spec.termination_s = seconds_of("--termination", a.termination);
    bal = sim::parse_balancer(a.balancer);
    if (spec.interval_s <= 0) throw std::invalid_argument("--interval: must be above 0");
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  sim::FigureRules rules;
  rules.slo_s = a.slo;

  // One run per policy and seed; the seeds in parallel (one per core).
  auto one = [&](const std::optional<autoscale::Policy>& policy, uint64_t seed) {
    auto arrivals = sim::profile_arrivals(profile, seed);
    auto specs = loadgen::synthetic_openorca(arrivals.size(), seed);
    sim::SimConfig cfg = base;
    cfg.seed = seed;
    cfg.profile.seed = seed;
    cfg.autoscale = spec;
    cfg.autoscale->policy = policy;
    cfg.autoscale->initial = policy ? a.initial : a.static_replicas;
    return sim::simulate(cfg, bal, specs, arrivals);
  };
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());

  fmt::print(
      "load {} ({:.0f} s, step at {:.0f} s), balancer {}, {} seeds from {}, SLO TTFT < {} s\n",
      a.profile, sim::profile_length(profile), sim::step_time(profile), a.balancer, a.seeds,
      a.first_seed, a.slo);
  fmt::print(
      "replicas: static {}, autoscaled from {} within [{}, {}]; start-up {}, autoscaler "
      "every {}, pod creation {}, termination {}\n",
      a.static_replicas, a.initial, a.min_replicas, a.max_replicas, a.startup, a.interval,
      a.creation, a.termination);
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& [name, policy] : policies) {
    nlohmann::json seeds = nlohmann::json::array();
    std::vector<std::future<sim::SimResult>> running;
    for (uint32_t k = 0; k < a.seeds; ++k) {
      uint64_t seed = a.first_seed + k;
      running.push_back(std::async(std::launch::async, one, policy, seed));
      if (running.size() >= workers || k + 1 == a.seeds) {
        for (size_t j = 0; j < running.size(); ++j) {
          uint64_t s = seed + 1 - running.size() + j;
          auto r = running[j].get();
          seeds.push_back({{"seed", s}, {"figures", sim::run_figures(r, profile, rules)}});
          if (!a.series_dir.empty() && s == a.first_seed) {
            std::string file = name;
            std::replace_if(
                file.begin(), file.end(), [](char c) { return !std::isalnum(c) && c != '-'; }, '_');
            std::ofstream f(std::filesystem::path(a.series_dir) / (file + ".csv"));
            f << sim::series_csv(sim::time_series(r, profile, rules));
          }
        }
        running.clear();
      }
    }
    runs.push_back({{"policy", name}, {"seeds", seeds}});
  }

  // Medians over seeds, and each policy against the static maximum on the
  // same seed (paired: replica-seconds ratio, attainment difference).
  const nlohmann::json* stat = nullptr;
  for (const auto& r : runs)
    if (r["policy"] == "static") stat = &r;
  const char* keys[] = {"slo_attainment", "ttft_p99_s", "replica_seconds",
                        "mean_replicas",  "recovery_s", "reversals",
                        "peak_replicas",  "failed",     "cut_by_scale_down"};
  fmt::print("{:<44}{:>8}{:>9}{:>10}{:>8}{:>10}{:>9}{:>6}{:>6}{:>7}{:>8}\n", "policy", "SLO att",
             "p99 s", "replica-s", "mean", "vs static", "att pts", "recov", "rev", "peak",
             "failed");
  for (auto& r : runs) {
    nlohmann::json med;
    for (const char* k : keys) med[k] = finite_or_null(median_of(r["seeds"], k));
    if (stat) {
      std::vector<double> ratio, diff;
      for (size_t i = 0; i < r["seeds"].size() && i < (*stat)["seeds"].size(); ++i) {
        const auto& x = r["seeds"][i]["figures"];
        const auto& y = (*stat)["seeds"][i]["figures"];
        ratio.push_back(x["replica_seconds"].get<double>() / y["replica_seconds"].get<double>());
        diff.push_back(100 *
                       (x["slo_attainment"].get<double>() - y["slo_attainment"].get<double>()));
      }
      auto mid = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        size_t m = v.size() / 2;
        return v.empty() ? 0.0 : v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
      };
      med["replica_seconds_vs_static"] = mid(ratio);
      med["attainment_vs_static_points"] = mid(diff);
    }
    r["median"] = med;
    auto num = [&](const char* k) {
      return med[k].is_null() ? std::numeric_limits<double>::infinity() : med[k].get<double>();
    };
    fmt::print(
        "{:<44}{:>7.1f}%{:>9.2f}{:>10.0f}{:>8.2f}{:>10.2f}{:>+9.1f}{:>6}{:>6.0f}{:>7.0f}{:>8.0f}\n",
        r["policy"].get<std::string>(), 100 * num("slo_attainment"), num("ttft_p99_s"),
        num("replica_seconds"), num("mean_replicas"), med.value("replica_seconds_vs_static", 0.0),
        med.value("attainment_vs_static_points", 0.0),
        std::isfinite(num("recovery_s")) ? fmt::format("{:.0f}", num("recovery_s"))
                                         : std::string("never"),
        num("reversals"), num("peak_replicas"), num("failed") + num("cut_by_scale_down"));
  }
  // The goal, for each kvlb policy: within 2 points of the static
  // maximum's attainment on at most 75% of its replica-seconds, and above both
  // HPA set-ups' attainment on no more replica-seconds than each.
  for (auto& r : runs) {
    const std::string name = r["policy"];
    if (name.rfind("kvlb", 0) != 0 || !stat) continue;
    const auto& m = r["median"];
    bool ok = m["attainment_vs_static_points"].get<double>() >= -2.0 &&
              m["replica_seconds_vs_static"].get<double>() <= 0.75;
    std::string why;
    for (const auto& h : runs) {
      const std::string hn = h["policy"];
      if (hn.rfind("hpa-", 0) != 0) continue;
      bool beats =
          m["slo_attainment"].get<double>() > h["median"]["slo_attainment"].get<double>() &&
          m["replica_seconds"].get<double>() <= h["median"]["replica_seconds"].get<double>();
      ok &= beats;
      if (!beats) why += " not better than " + hn + ";";
    }
    r["goal_met"] = ok;
    fmt::print("goal {}: {}{}\n", name, ok ? "met" : "not met", why);
  }

  if (!a.out.empty()) {
    std::ofstream f(a.out);
    f << nlohmann::json{{"config",
                         {{"load_profile", a.profile},
                          {"balancer", a.balancer},
                          {"seeds", a.seeds},
                          {"first_seed", a.first_seed},
                          {"static_replicas", a.static_replicas},
                          {"initial_replicas", a.initial},
                          {"min_replicas", a.min_replicas},
                          {"max_replicas", a.max_replicas},
                          {"startup", a.startup},
                          {"interval", a.interval},
                          {"creation_delay", a.creation},
                          {"termination", a.termination},
                          {"slo_ttft_s", a.slo}}},
                        {"runs", runs}}
             .dump(1)
      << "\n";
  }
  return 0;
}

}  // namespace

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

  AutoscaleArgs as;
  auto* asc = app.add_subcommand(
      "autoscale", "the autoscaling benchmark's load profile: policies against a static maximum");
  asc->add_option("--policies", as.policies,
                  "comma-separated: static, kvlb, hpa-kv, hpa-waiting, each optionally with "
                  "settings (kvlb:sync_period=2s:target=0.9)");
  asc->add_option("--load-profile", as.profile, "req/s@seconds, ... (Poisson arrivals)");
  asc->add_option("--balancer", as.balancer, "the balancer (--help-balancers)");
  asc->add_option("--seeds", as.seeds, "seeds per policy")->check(CLI::PositiveNumber);
  asc->add_option("--first-seed", as.first_seed, "the first seed");
  asc->add_option("--min-replicas", as.min_replicas, "autoscaled policies' minimum");
  asc->add_option("--max-replicas", as.max_replicas, "autoscaled policies' maximum");
  asc->add_option("--static-replicas", as.static_replicas, "the static maximum's replicas");
  asc->add_option("--initial-replicas", as.initial, "autoscaled policies' replicas at t = 0");
  asc->add_option("--startup", as.startup, "a new replica's model load");
  asc->add_option("--interval", as.interval, "the autoscaler's loop");
  asc->add_option("--creation-delay", as.creation, "from a scale-up to the pod's creation");
  asc->add_option("--termination", as.termination, "a deleted replica's time to go");
  asc->add_option("--slo", as.slo, "TTFT SLO (s)")->check(CLI::PositiveNumber);
  asc->add_option("-o,--output", as.out, "JSON report (per policy: per seed and median)");
  asc->add_option(
      "--series-dir", as.series_dir,
      "write <policy>.csv time series (first seed) here, for scripts/bench/autoscale-plot");
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
  if (*asc) return run_autoscale(cfg, as);
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
