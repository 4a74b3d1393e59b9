// metrics_view.h - renders the engine's state as a real engine's /metrics does,
// with that engine's exact metric names and labels.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "metrics/exposition.h"
#include "replica_model/engine_model.h"

namespace kvlb::replica {

// vllm: vLLM V1 names; vllm-legacy: vLLM < 0.9 (gpu_cache_usage_perc, no engine
// label); tgi: text-generation-inference; sglang: SGLang.
enum class MetricFlavor { Vllm, VllmLegacy, Tgi, Sglang };
std::optional<MetricFlavor> parse_flavor(std::string_view s);

// Latency histograms kept by the server (engine-agnostic), with vLLM 0.10's
// buckets (vllm/v1/metrics/loggers.py): an overloaded replica's minutes-long
// TTFTs land in a bucket of their own, not in +Inf.
struct LatencyHistograms {
  metrics::Histogram ttft{{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                           1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}};
  metrics::Histogram e2e{{0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}};
};

std::string render_metrics(MetricFlavor flavor, const std::string& model, const EngineSnapshot& s,
                           const LatencyHistograms& h, double start_time_unix);

}  // namespace kvlb::replica
