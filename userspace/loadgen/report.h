// report.h - the run's summary: JSON (config, summary, per-request results) and a
// table for people.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client.h"

namespace kvlb::loadgen {

// Summary over the requests scheduled at or after `warmup_s`.
nlohmann::json summarize_run(const std::vector<RequestResult>& results, double warmup_s);
// What the cluster delivered in [from_s, to_s): requests that completed in the
// window (successfully) and their output tokens, per second, next to the rate
// offered (requests scheduled in the window). Below capacity goodput matches the
// offered rate; above it goodput is the cluster's service rate.
nlohmann::json window_rates(const std::vector<RequestResult>& results, double from_s, double to_s);
nlohmann::json results_json(const std::vector<RequestResult>& results);
std::string summary_table(const nlohmann::json& summary);

}  // namespace kvlb::loadgen
