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
nlohmann::json results_json(const std::vector<RequestResult>& results);
std::string summary_table(const nlohmann::json& summary);

}  // namespace kvlb::loadgen
