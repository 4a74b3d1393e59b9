#include "report.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "stats.h"

namespace kvlb::loadgen {

nlohmann::json summarize_run(const std::vector<RequestResult>& results, double warmup_s) {
  std::vector<double> ttft, itl, tpot, e2e, wait;
  std::map<std::string, size_t> errors, replicas;
  size_t counted = 0, ok = 0;
  uint64_t out_tokens = 0;
  double first_sent = 1e300, last_end = 0;
  size_t cut = 0;
  for (const auto& r : results) {
    if (r.scheduled < warmup_s) continue;
    ++counted;
    if (r.cut) {
      // Cut by the drain limit: its TTFT is known if its first token came.
      ++cut;
      if (r.first >= 0) ttft.push_back(r.ttft());
      continue;
    }
    if (!r.ok()) {
      ++errors[r.error];
      continue;
    }
    ++ok;
    ++replicas[r.replica.empty() ? r.target : r.replica];
    ttft.push_back(r.ttft());
    e2e.push_back(r.e2e());
    wait.push_back(r.client_wait());
    tpot.push_back(r.tpot());
    if (r.output_tokens > 1) itl.push_back(r.itl());
    out_tokens += r.output_tokens;
    first_sent = std::min(first_sent, r.sent);
    last_end = std::max(last_end, r.end);
  }
  double span = last_end > first_sent ? last_end - first_sent : 0;
  return {{"requests", counted},
          {"ok", ok},
          {"errors", errors},
          {"error_count", counted - ok - cut},
          {"cut", cut},
          {"span_s", span},
          {"output_tokens", out_tokens},
          {"throughput_tok_s", span > 0 ? out_tokens / span : 0},
          {"requests_per_s", span > 0 ? ok / span : 0},
          {"ttft_s", summarize(ttft).to_json()},
          {"itl_s", summarize(itl).to_json()},
          {"tpot_s", summarize(tpot).to_json()},
          {"e2e_s", summarize(e2e).to_json()},
          {"client_wait_s", summarize(wait).to_json()},
          {"per_replica", replicas}};
}

nlohmann::json window_rates(const std::vector<RequestResult>& results, double from_s, double to_s) {
  double span = to_s - from_s;
  size_t offered = 0, done = 0;
  uint64_t tokens = 0;
  for (const auto& r : results) {
    if (r.scheduled >= from_s && r.scheduled < to_s) ++offered;
    if (r.ok() && !r.cut && r.end >= from_s && r.end < to_s) {
      ++done;
      tokens += r.output_tokens;
    }
  }
  return {{"from_s", from_s},
          {"to_s", to_s},
          {"offered_req_s", span > 0 ? offered / span : 0},
          {"goodput_req_s", span > 0 ? done / span : 0},
          {"goodput_tok_s", span > 0 ? tokens / span : 0}};
}

nlohmann::json results_json(const std::vector<RequestResult>& results) {
  auto arr = nlohmann::json::array();
  for (const auto& r : results) {
    nlohmann::json j = {{"i", r.index},
                        {"input_tokens", r.input_tokens},
                        {"output_tokens", r.output_tokens},
                        {"expected_output", r.expected_output},
                        {"scheduled", r.scheduled},
                        {"sent", r.sent},
                        {"first", r.first},
                        {"end", r.end},
                        {"replica", r.replica}};
    if (!r.ok()) {
      j["error"] = r.error;
      j["error_detail"] = r.error_detail;
    }
    arr.push_back(std::move(j));
  }
  return arr;
}

std::string summary_table(const nlohmann::json& s) {
  std::string out = fmt::format(
      "requests {} ok {} errors {} cut {}  throughput {:.0f} tok/s  {:.2f} req/s over {:.1f} s\n",
      s["requests"].get<size_t>(), s["ok"].get<size_t>(), s["error_count"].get<size_t>(),
      s["cut"].get<size_t>(), s["throughput_tok_s"].get<double>(),
      s["requests_per_s"].get<double>(), s["span_s"].get<double>());
  out += fmt::format("{:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}\n", "metric (s)", "min",
                     "mean", "median", "p80", "p90", "p95", "p99", "max");
  for (auto key : {"ttft_s", "itl_s", "tpot_s", "e2e_s", "client_wait_s"}) {
    const auto& m = s[key];
    out += fmt::format("{:<14}{:>9.4f}{:>9.4f}{:>9.4f}{:>9.4f}{:>9.4f}{:>9.4f}{:>9.4f}{:>9.4f}\n",
                       key, m["min"].get<double>(), m["mean"].get<double>(),
                       m["median"].get<double>(), m["p80"].get<double>(), m["p90"].get<double>(),
                       m["p95"].get<double>(), m["p99"].get<double>(), m["max"].get<double>());
  }
  if (!s["errors"].empty()) out += "errors: " + s["errors"].dump() + "\n";
  out += "per replica: " + s["per_replica"].dump() + "\n";
  return out;
}

}  // namespace kvlb::loadgen
