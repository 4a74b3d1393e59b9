#include "autoscale_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>

#include "common/duration.h"
#include "common/strings.h"

namespace kvlb::sim {

namespace {

double number(const std::string& what, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    throw std::invalid_argument(fmt::format("{}: '{}' is not a number", what, text));
  return v;
}

autoscale::Millis millis(const std::string& what, const std::string& text) {
  auto d = parse_duration(text);
  if (!d || d->count() < 0)
    throw std::invalid_argument(fmt::format("{}: '{}' is not a duration (5s, 500ms)", what, text));
  return std::chrono::duration_cast<autoscale::Millis>(*d);
}

// Nearest-rank percentile of an unsorted sample (moved from).
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  k = std::clamp<size_t>(k, 1, v.size()) - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// A request's TTFT for the SLO: a failed or cut one never attains it.
double slo_ttft(const loadgen::RequestResult& q) {
  return q.ok() && q.first >= 0 ? q.ttft() : std::numeric_limits<double>::infinity();
}

const CountSample& count_at(const std::vector<CountSample>& c, double t) {
  auto it = std::upper_bound(c.begin(), c.end(), t,
                             [](double x, const CountSample& s) { return x < s.t; });
  return it == c.begin() ? c.front() : *std::prev(it);
}

// The rolling p99 at each multiple of `step` in [0, end]: requests sent in
// (t - window, t].
std::vector<std::optional<double>> rolling_p99(const SimResult& r, double end,
                                               const FigureRules& rules) {
  std::vector<std::pair<double, double>> by_sent;  // sent, ttft
  for (const auto& q : r.requests) by_sent.push_back({q.sent, slo_ttft(q)});
  std::sort(by_sent.begin(), by_sent.end());
  std::vector<std::optional<double>> out;
  size_t lo = 0, hi = 0;
  for (double t = 0; t <= end + 1e-9; t += rules.series_step_s) {
    while (hi < by_sent.size() && by_sent[hi].first <= t) ++hi;
    while (lo < hi && by_sent[lo].first <= t - rules.rolling_s) ++lo;
    if (lo == hi) {
      out.push_back(std::nullopt);
      continue;
    }
    std::vector<double> w;
    for (size_t k = lo; k < hi; ++k) w.push_back(by_sent[k].second);
    out.push_back(percentile(std::move(w), 0.99));
  }
  return out;
}

}  // namespace

std::vector<LoadStep> parse_load_profile(const std::string& text) {
  std::vector<LoadStep> out;
  for (const auto& part : split_list(text)) {
    auto at = part.find('@');
    if (at == std::string::npos)
      throw std::invalid_argument(fmt::format("load profile: '{}' is not rate@seconds", part));
    LoadStep s{number("load profile rate", part.substr(0, at)),
               number("load profile seconds", part.substr(at + 1))};
    if (s.rps < 0 || s.seconds <= 0)
      throw std::invalid_argument(
          fmt::format("load profile: '{}' needs a rate >= 0 and seconds > 0", part));
    out.push_back(s);
  }
  if (out.empty()) throw std::invalid_argument("load profile: empty");
  return out;
}

double profile_length(const std::vector<LoadStep>& p) {
  double t = 0;
  for (const auto& s : p) t += s.seconds;
  return t;
}

double rate_at(const std::vector<LoadStep>& p, double t) {
  double from = 0;
  for (const auto& s : p) {
    if (t >= from && t < from + s.seconds) return s.rps;
    from += s.seconds;
  }
  return 0;
}

double step_time(const std::vector<LoadStep>& p) {
  double from = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (i > 0 && p[i].rps > p[i - 1].rps) return from;
    from += p[i].seconds;
  }
  return -1;
}

std::vector<double> profile_arrivals(const std::vector<LoadStep>& p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> out;
  double from = 0;
  for (const auto& s : p) {
    double to = from + s.seconds;
    if (s.rps > 0) {
      std::exponential_distribution<double> gap(s.rps);
      for (double t = from + gap(rng); t < to; t += gap(rng)) out.push_back(t);
    }
    from = to;
  }
  return out;
}

std::optional<autoscale::Policy> parse_policy_choice(const std::string& text, int32_t min_replicas,
                                                     int32_t max_replicas) {
  auto parts = split_list(text, ':');
  if (parts.empty() || parts[0].empty()) throw std::invalid_argument("policy: empty");
  if (parts[0] == "static") {
    if (parts.size() > 1) throw std::invalid_argument("policy static: takes no settings");
    return std::nullopt;
  }
  autoscale::Policy p = autoscale::named_policy(parts[0]);
  p.min_replicas = min_replicas;
  p.max_replicas = max_replicas;
  for (size_t i = 1; i < parts.size(); ++i) {
    auto eq = parts[i].find('=');
    if (eq == std::string::npos)
      throw std::invalid_argument(fmt::format("policy {}: '{}' is not key=value", text, parts[i]));
    std::string k = parts[i].substr(0, eq), v = parts[i].substr(eq + 1);
    std::string what = fmt::format("policy {}: {}", parts[0], k);
    if (k == "signal") {
      auto sig = autoscale::parse_signal(v);
      if (!sig)
        throw std::invalid_argument(fmt::format("{}: one of {}", what, autoscale::kSignalNames));
      p.signal = *sig;
    } else if (k == "target") {
      p.target = number(what, v);
    } else if (k == "queue_target") {
      p.queue_target = number(what, v);
    } else if (k == "kv_target") {
      p.kv_target = number(what, v);
    } else if (k == "tolerance") {
      p.tolerance = number(what, v);
    } else if (k == "sync_period") {
      p.sync_period = millis(what, v);
    } else if (k == "metric_window") {
      p.metric_window = millis(what, v);
    } else if (k == "panic") {
      if (v != "on" && v != "off") throw std::invalid_argument(what + ": on or off");
      p.panic = v == "on";
    } else if (k == "panic_threshold") {
      p.panic_threshold = number(what, v);
    } else if (k == "panic_window") {
      p.panic_window = millis(what, v);
    } else if (k == "stable_window") {
      p.stable_window = millis(what, v);
    } else if (k == "up_stabilization") {
      p.scale_up.stabilization = millis(what, v);
    } else if (k == "down_stabilization") {
      p.scale_down.stabilization = millis(what, v);
    } else if (k == "expected_startup") {
      p.expected_startup = millis(what, v);
    } else if (k == "min") {
      p.min_replicas = static_cast<int32_t>(number(what, v));
    } else if (k == "max") {
      p.max_replicas = static_cast<int32_t>(number(what, v));
    } else {
      throw std::invalid_argument(what + ": unknown setting");
    }
  }
  if (auto bad = autoscale::validate(p); !bad.empty())
    throw std::invalid_argument(fmt::format("policy {}: {}", text, bad));
  return p;
}

nlohmann::json run_figures(const SimResult& r, const std::vector<LoadStep>& p,
                           const FigureRules& rules) {
  const double end = profile_length(p);
  size_t ok = 0, attained = 0, failed = 0;
  std::vector<double> ttft;
  for (const auto& q : r.requests) {
    if (!q.ok()) {
      ++failed;
      continue;
    }
    ++ok;
    ttft.push_back(q.ttft());
    attained += q.ttft() < rules.slo_s;
  }
  const auto& c = r.autoscale.counts;
  double replica_s = 0;
  int32_t peak = 0;
  for (size_t i = 0; i < c.size() && c[i].t < end; ++i) {
    double to = i + 1 < c.size() ? std::min(c[i + 1].t, end) : end;
    replica_s += c[i].existing * (to - c[i].t);
    peak = std::max(peak, c[i].existing);
  }

  // Recovery after the step, within the step's own segment.
  nlohmann::json recovery = nullptr;
  double step = step_time(p);
  if (step >= 0) {
    double seg_end = step;
    for (double from = 0; const auto& s : p) {
      if (from == step) seg_end = from + s.seconds;
      from += s.seconds;
    }
    auto p99 = rolling_p99(r, seg_end, rules);
    std::optional<double> from_ok;
    for (size_t i = 0; i < p99.size(); ++i) {
      double t = static_cast<double>(i) * rules.series_step_s;
      if (t < step) continue;
      bool over = p99[i] && *p99[i] >= rules.slo_s;
      if (over)
        from_ok.reset();
      else if (!from_ok)
        from_ok = t;
    }
    if (from_ok) recovery = *from_ok - step;
  }

  int reversals = 0, last_dir = 0;
  for (const auto& s : r.autoscale.scales) {
    int dir = s.to > s.from ? 1 : -1;
    if (last_dir != 0 && dir != last_dir) ++reversals;
    last_dir = dir;
  }
  size_t n = r.requests.size();
  return {{"requests", n},
          {"ok", ok},
          {"failed", failed},
          {"cut_by_scale_down", r.autoscale.cut},
          {"slo_attainment", n ? static_cast<double>(attained) / static_cast<double>(n) : 0.0},
          {"ttft_p99_s", percentile(ttft, 0.99)},
          {"ttft_p50_s", percentile(ttft, 0.50)},
          {"replica_seconds", replica_s},
          {"mean_replicas", end > 0 ? replica_s / end : 0.0},
          {"peak_replicas", peak},
          {"recovery_s", recovery},
          {"scale_patches", r.autoscale.scales.size()},
          {"reversals", reversals},
          {"events", r.autoscale.events}};
}

std::vector<SeriesRow> time_series(const SimResult& r, const std::vector<LoadStep>& p,
                                   const FigureRules& rules) {
  const double end = profile_length(p);
  auto p99 = rolling_p99(r, end, rules);
  std::vector<SeriesRow> out;
  for (size_t i = 0; i < p99.size(); ++i) {
    double t = static_cast<double>(i) * rules.series_step_s;
    const auto& c = count_at(r.autoscale.counts, t);
    out.push_back({t, rate_at(p, t), c.spec, c.existing, c.starting, c.ready, c.serving, p99[i]});
  }
  return out;
}

std::string series_csv(const std::vector<SeriesRow>& rows) {
  std::string out = "t,rate,spec,existing,starting,ready,serving,p99_ttft\n";
  for (const auto& r : rows)
    out += fmt::format("{},{},{},{},{},{},{},{}\n", r.t, r.rate, r.spec, r.existing, r.starting,
                       r.ready, r.serving, r.p99 ? fmt::format("{:.4f}", *r.p99) : "");
  return out;
}

}  // namespace kvlb::sim
