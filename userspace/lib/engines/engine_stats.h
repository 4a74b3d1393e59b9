// engine_stats.h - what kvlb needs from an inference engine's /metrics, and the
// adapters that read it from each engine's own metric names.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/text_parser.h"

namespace kvlb::engines {

enum class Engine { Auto, Vllm, Tgi, Sglang, LlamaCpp, TensorRtLlm };

std::optional<Engine> parse_engine(std::string_view name);
std::string_view engine_name(Engine e);

// One replica's load, summed over the models it serves.
struct EngineStats {
  Engine engine = Engine::Auto;     // the engine whose names were found
  double waiting = 0;               // requests queued
  double running = 0;               // requests in the running batch
  std::optional<double> kv_usage;   // 0..1, the fullest cache when several models
  std::vector<std::string> models;  // model_name label values seen
};

struct ExtractResult {
  std::optional<EngineStats> stats;
  std::string error;  // set when stats is empty
};

// Parses exposition text and extracts the stats for `engine` (Auto: detected from
// which engine's queue metric is present). Matching is by exact metric name.
ExtractResult extract_stats(std::string_view exposition, Engine engine,
                            const metrics::ParseLimits& limits = {});

}  // namespace kvlb::engines
