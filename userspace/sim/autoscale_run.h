// autoscale_run.h - what `kvlb-sim autoscale` needs around cluster_sim's
// autoscaling loop: a load profile (req/s for so long, then the next), its
// Poisson arrivals, policies by name with field overrides (for sweeps), and the
// issue's figures of one run (SLO attainment, p99 TTFT, replica-seconds, time
// to recovery after the step, direction reversals, cut requests, peak).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoscale/policy.h"
#include "cluster_sim.h"

namespace kvlb::sim {

struct LoadStep {
  double rps = 0;
  double seconds = 0;
};

// "2@120,12@240,20@60,4@180": 2 req/s for 120 s, then 12 for 240 s, ...
// Throws std::invalid_argument naming the bad part.
std::vector<LoadStep> parse_load_profile(const std::string& text);
double profile_length(const std::vector<LoadStep>& p);
double rate_at(const std::vector<LoadStep>& p, double t);  // 0 past the end
// The first increase of the rate (the "step"): its time, or -1.
double step_time(const std::vector<LoadStep>& p);

// Poisson arrivals at each step's rate: exponential gaps, a fresh one drawn at
// each boundary (memoryless, so this is exact).
std::vector<double> profile_arrivals(const std::vector<LoadStep>& p, uint64_t seed);

// "static", "kvlb", "hpa-kv", "hpa-waiting", optionally with overrides:
// "kvlb:sync_period=2s:metric_window=20s:target=0.9". Keys: signal (kv_usage,
// waiting, inflight, saturation), target, queue_target, kv_target, tolerance,
// sync_period, metric_window, panic (on/off), panic_threshold, panic_window,
// stable_window, up_stabilization, down_stabilization, expected_startup, min,
// max. `min`/`max` given here win over the defaults passed. Static: nullopt.
// Throws std::invalid_argument naming the key and the reason.
std::optional<autoscale::Policy> parse_policy_choice(const std::string& text, int32_t min_replicas,
                                                     int32_t max_replicas);

struct FigureRules {
  double slo_s = 2.0;        // TTFT under this attains the SLO
  double rolling_s = 30;     // the rolling p99's window (recovery, time series)
  double series_step_s = 1;  // the time series' resolution
};

// One run's figures. Replica-seconds integrate the existing replicas (starting,
// ready and terminating) over [0, profile end]. Recovery: the first time after
// the step from which the rolling p99 TTFT (requests sent in the last
// rolling_s, a failed one counting as missing the SLO) stays under the SLO
// until the next change of rate, minus the step's time; 0 if it never went
// over, null if it is still over at the next change. Reversals: consecutive
// scale patches in opposite directions.
nlohmann::json run_figures(const SimResult& r, const std::vector<LoadStep>& p,
                           const FigureRules& rules = {});

// The time series for plots: t, offered rate, spec/existing/starting/ready/
// serving replicas, rolling p99 TTFT (null with no request in the window).
struct SeriesRow {
  double t, rate;
  int32_t spec, existing, starting, ready, serving;
  std::optional<double> p99;
};
std::vector<SeriesRow> time_series(const SimResult& r, const std::vector<LoadStep>& p,
                                   const FigureRules& rules = {});
std::string series_csv(const std::vector<SeriesRow>& rows);

}  // namespace kvlb::sim
