#include "engine_stats.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <unordered_set>

#include <fmt/format.h>

namespace kvlb::engines {
namespace {

// Models one replica may serve: an engine serves one or a few (LoRA adapters
// included); a page naming more is refused rather than tracked.
constexpr size_t kMaxModels = 256;

// The metric names of one engine. Several names for one quantity cover renames
// across engine versions (vLLM < 0.9 called its KV gauge gpu_cache_usage_perc).
struct NameSet {
  Engine engine;
  std::string_view name;
  std::vector<std::string_view> waiting;
  std::vector<std::string_view> running;
  std::vector<std::string_view> kv;  // 0..1 gauges
};

const std::array<NameSet, 4>& name_sets() {
  static const std::array<NameSet, 4> sets = {{
      {Engine::Vllm,
       "vllm",
       {"vllm:num_requests_waiting"},
       {"vllm:num_requests_running"},
       {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}},
      {Engine::Tgi, "tgi", {"tgi_queue_size"}, {"tgi_batch_current_size"}, {}},
      {Engine::Sglang,
       "sglang",
       {"sglang:num_queue_reqs"},
       {"sglang:num_running_reqs"},
       {"sglang:token_usage"}},
      {Engine::LlamaCpp,
       "llamacpp",
       {"llamacpp:requests_deferred"},
       {"llamacpp:requests_processing"},
       {}},
  }};
  return sets;
}

bool contains(const std::vector<std::string_view>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

std::optional<Engine> parse_engine(std::string_view name) {
  if (name == "auto") return Engine::Auto;
  if (name == "tensorrt-llm") return Engine::TensorRtLlm;
  for (const auto& s : name_sets())
    if (s.name == name) return s.engine;
  return std::nullopt;
}

std::string_view engine_name(Engine e) {
  if (e == Engine::TensorRtLlm) return "tensorrt-llm";
  for (const auto& s : name_sets())
    if (s.engine == e) return s.name;
  return "auto";
}

namespace {

// TensorRT-LLM (Triton backend): one gauge family per quantity, told apart by a
// label. Waiting: request_type="waiting" where the backend exports it, else
// active - scheduled; running: scheduled; KV: used / max blocks.
struct TrtAcc {
  std::optional<double> waiting, active, scheduled, kv_used, kv_max;
  std::string bad;
  bool seen() const { return waiting || active || scheduled; }
  void add(const metrics::Sample& s) {
    const std::string_view* kind = nullptr;
    std::optional<double>* slot = nullptr;
    if (s.name == "nv_trt_llm_request_metrics" && (kind = s.label("request_type"))) {
      if (*kind == "waiting")
        slot = &waiting;
      else if (*kind == "active")
        slot = &active;
      else if (*kind == "scheduled")
        slot = &scheduled;
    } else if (s.name == "nv_trt_llm_kv_cache_block_metrics" &&
               (kind = s.label("kv_cache_block_type"))) {
      if (*kind == "used")
        slot = &kv_used;
      else if (*kind == "max")
        slot = &kv_max;
    }
    if (!slot) return;
    if (!std::isfinite(s.value) || s.value < 0) {
      if (bad.empty()) bad = fmt::format("{}{{{}}} is {}", s.name, *kind, s.value);
      return;
    }
    *slot = slot->value_or(0) + s.value;  // summed over models
  }
  EngineStats stats() const {
    EngineStats st;
    st.engine = Engine::TensorRtLlm;
    st.running = scheduled.value_or(0);
    st.waiting = waiting ? *waiting : std::max(0.0, active.value_or(0) - scheduled.value_or(0));
    if (kv_used && kv_max && *kv_max > 0) st.kv_usage = std::min(1.0, *kv_used / *kv_max);
    return st;
  }
};

}  // namespace

ExtractResult extract_stats(std::string_view exposition, Engine engine,
                            const metrics::ParseLimits& limits) {
  TrtAcc trt;
  const bool want_trt = engine == Engine::Auto || engine == Engine::TensorRtLlm;
  // Accumulate per engine, so Auto can decide after one pass.
  struct Acc {
    bool seen_waiting = false;
    double waiting = 0, running = 0;
    std::optional<double> kv;
    std::deque<std::string> models;                  // stable addresses for the set's views
    std::unordered_set<std::string_view> model_set;  // constant-time "seen already?"
    std::string bad;                                 // first non-finite value seen
  };
  std::string too_many;
  std::array<Acc, 4> acc;
  const auto& sets = name_sets();

  auto err = metrics::parse_text(
      exposition,
      [&](const metrics::Sample& s) {
        if (want_trt) trt.add(s);
        for (size_t i = 0; i < sets.size(); ++i) {
          const auto& set = sets[i];
          if (engine != Engine::Auto && engine != set.engine) continue;
          bool w = contains(set.waiting, s.name), r = contains(set.running, s.name),
               k = contains(set.kv, s.name);
          if (!w && !r && !k) continue;
          auto& a = acc[i];
          if (w) a.seen_waiting = true;
          if (!std::isfinite(s.value) || s.value < 0) {
            if (a.bad.empty()) a.bad = fmt::format("{} is {}", s.name, s.value);
            continue;
          }
          if (const auto* m = s.label("model_name"); m && !a.model_set.count(*m)) {
            if (a.models.size() >= kMaxModels) {
              if (too_many.empty())
                too_many = fmt::format("more than {} distinct model_name values", kMaxModels);
              continue;
            }
            a.model_set.emplace(a.models.emplace_back(*m));
          }
          if (w) {
            a.waiting += s.value;
          } else if (r) {
            a.running += s.value;
          } else {
            a.kv = std::max(a.kv.value_or(0.0), std::min(s.value, 1.0));
          }
        }
      },
      limits);
  if (err) return {std::nullopt, "malformed exposition: " + err->to_string()};
  if (!too_many.empty()) return {std::nullopt, too_many};

  for (size_t i = 0; i < sets.size(); ++i) {
    const auto& a = acc[i];
    if (!a.seen_waiting) continue;
    if (!a.bad.empty()) return {std::nullopt, "invalid value: " + a.bad};
    EngineStats st;
    st.engine = sets[i].engine;
    st.waiting = a.waiting;
    st.running = a.running;
    st.kv_usage = a.kv;
    st.models.assign(a.models.begin(), a.models.end());
    return {st, {}};
  }
  if (want_trt && trt.seen()) {
    if (!trt.bad.empty()) return {std::nullopt, "invalid value: " + trt.bad};
    return {trt.stats(), {}};
  }
  if (engine == Engine::Auto) return {std::nullopt, "no known engine's queue metric found"};
  if (engine == Engine::TensorRtLlm)
    return {std::nullopt, "metric nv_trt_llm_request_metrics not found"};
  return {std::nullopt, fmt::format("metric {} not found",
                                    sets[static_cast<size_t>(engine) - 1].waiting.front())};
}

}  // namespace kvlb::engines
