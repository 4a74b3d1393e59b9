#include "metrics_view.h"

#include <fmt/format.h>

namespace kvlb::replica {
using metrics::ExpositionType;
using metrics::LabelPairs;
using metrics::TextWriter;

std::optional<MetricFlavor> parse_flavor(std::string_view s) {
  if (s == "vllm") return MetricFlavor::Vllm;
  if (s == "vllm-legacy") return MetricFlavor::VllmLegacy;
  if (s == "tgi") return MetricFlavor::Tgi;
  if (s == "sglang") return MetricFlavor::Sglang;
  return std::nullopt;
}

namespace {

// The layout of Python's prometheus_client (which vLLM uses) in the text
// format: a counter "x" is the family x_total; its creation time is a gauge
// family x_created after it (when created series are on: vLLM V1 keeps them,
// vLLM V0 turned them off).
void created(TextWriter& w, const std::string& name, const std::string& help,
             const std::vector<LabelPairs>& label_sets, std::optional<double> t0) {
  if (!t0) return;
  w.family(name + "_created", help, ExpositionType::Gauge);
  for (const auto& l : label_sets) w.sample(name + "_created", l, *t0);
}

void counter(TextWriter& w, const std::string& name, const std::string& help,
             const std::vector<std::pair<LabelPairs, double>>& samples, std::optional<double> t0) {
  w.family(name + "_total", help, ExpositionType::Counter);
  std::vector<LabelPairs> label_sets;
  for (const auto& [l, v] : samples) {
    w.sample(name + "_total", l, v);
    label_sets.push_back(l);
  }
  created(w, name, help, label_sets, t0);
}

void counter(TextWriter& w, const std::string& name, const std::string& help, const LabelPairs& l,
             double value, double created) {
  counter(w, name, help, {{l, value}}, created);
}

// Buckets, _count, _sum (prometheus_client's order), then _created.
void histogram(TextWriter& w, const std::string& name, const std::string& help,
               const metrics::Histogram& h, const LabelPairs& l, std::optional<double> t0) {
  w.family(name, help, ExpositionType::Histogram);
  h.write(w, name, l);
  created(w, name, help, {l}, t0);
}

void gauge(TextWriter& w, const std::string& name, const std::string& help, const LabelPairs& l,
           double value) {
  w.family(name, help, ExpositionType::Gauge);
  w.sample(name, l, value);
}

std::string render_vllm(bool legacy, const std::string& model, const EngineSnapshot& s,
                        const LatencyHistograms& h, double t0) {
  TextWriter w;
  LabelPairs l = legacy ? LabelPairs{{"model_name", model}}
                        : LabelPairs{{"engine", "0"}, {"model_name", model}};
  LabelPairs info = {{"block_size", std::to_string(s.block_size)},
                     {"cache_dtype", "auto"},
                     {"enable_prefix_caching", "False"},
                     {"gpu_memory_utilization", "0.9"},
                     {"num_gpu_blocks", std::to_string(s.kv_blocks_total)}};
  if (!legacy) info.insert(info.begin(), {"engine", "0"});
  gauge(w, "vllm:cache_config_info", "Information of the LLMEngine CacheConfig", info, 1);
  gauge(w, "vllm:num_requests_running", "Number of requests in model execution batches.", l,
        s.running);
  gauge(w, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", l,
        s.waiting);
  if (legacy)
    gauge(w, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", l,
          s.kv_usage());
  else
    gauge(w, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", l,
          s.kv_usage());
  // vLLM V0 (legacy) called prometheus_client's disable_created_metrics().
  std::optional<double> created_at;
  if (!legacy) created_at = t0;
  counter(w, "vllm:num_preemptions", "Cumulative number of preemption from the engine.",
          {{l, static_cast<double>(s.preemptions_total)}}, created_at);
  counter(w, "vllm:prompt_tokens", "Number of prefill tokens processed.",
          {{l, static_cast<double>(s.prompt_tokens_total)}}, created_at);
  counter(w, "vllm:generation_tokens", "Number of generation tokens processed.",
          {{l, static_cast<double>(s.generation_tokens_total)}}, created_at);
  // One series per finish reason, all present from the start (vLLM binds every
  // reason at start-up). The emulator's requests end by length (ignore_eos and a
  // fixed max_tokens) or are aborted when the client goes away.
  auto reason = [&l](const char* r) {
    LabelPairs fl = l;
    fl.emplace_back("finished_reason", r);
    return fl;
  };
  counter(w, "vllm:request_success", "Count of successfully processed requests.",
          {{reason("stop"), 0},
           {reason("length"), static_cast<double>(s.requests_finished_total)},
           {reason("abort"), static_cast<double>(s.requests_aborted_total)}},
          created_at);
  histogram(w, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            h.ttft, l, created_at);
  histogram(w, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            h.e2e, l, created_at);
  return w.take();
}

std::string render_tgi(const EngineSnapshot& s, const LatencyHistograms& h) {
  TextWriter w;
  gauge(w, "tgi_queue_size", "Current queue size", {}, s.waiting);
  gauge(w, "tgi_batch_current_size", "Current batch size", {}, s.running);
  gauge(w, "tgi_batch_current_max_tokens", "Maximum tokens for the current batch", {},
        static_cast<double>(s.kv_blocks_used) * s.block_size);
  w.family("tgi_request_success", "Number of successful requests", ExpositionType::Counter);
  w.sample("tgi_request_success", {}, static_cast<double>(s.requests_finished_total));
  w.family("tgi_request_queue_duration", "Time spent in the queue per request",
           ExpositionType::Histogram);
  h.ttft.write(w, "tgi_request_queue_duration", {});
  return w.take();
}

std::string render_sglang(const std::string& model, const EngineSnapshot& s) {
  TextWriter w;
  LabelPairs l = {{"model_name", model}};
  gauge(w, "sglang:num_running_reqs", "The number of running requests.", l, s.running);
  gauge(w, "sglang:num_queue_reqs", "The number of requests in the waiting queue.", l, s.waiting);
  gauge(w, "sglang:token_usage", "The token usage.", l, s.kv_usage());
  counter(w, "sglang:generation_tokens", "Number of generation tokens processed.", l,
          static_cast<double>(s.generation_tokens_total), 0);
  return w.take();
}

}  // namespace

std::string render_metrics(MetricFlavor flavor, const std::string& model, const EngineSnapshot& s,
                           const LatencyHistograms& h, double t0) {
  switch (flavor) {
    case MetricFlavor::Vllm:
      return render_vllm(false, model, s, h, t0);
    case MetricFlavor::VllmLegacy:
      return render_vllm(true, model, s, h, t0);
    case MetricFlavor::Tgi:
      return render_tgi(s, h);
    case MetricFlavor::Sglang:
      return render_sglang(model, s);
  }
  return {};
}

}  // namespace kvlb::replica
