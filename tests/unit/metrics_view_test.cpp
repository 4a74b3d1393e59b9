// The emulator's /metrics must look like each real engine's, to the letter, and
// the agent's adapters must read back exactly what the engine model holds.
#include "metrics_view.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "engines/engine_stats.h"
#include "metrics/text_parser.h"

using namespace kvlb;
using namespace kvlb::replica;

namespace {

EngineSnapshot snapshot() {
  EngineSnapshot s;
  s.waiting = 7;
  s.running = 19;
  s.kv_blocks_total = 2200;
  s.kv_blocks_used = 1650;
  s.generation_tokens_total = 12345;
  s.prompt_tokens_total = 67890;
  s.requests_finished_total = 42;
  return s;
}

// name -> label names of its first sample
std::map<std::string, std::set<std::string>> series(const std::string& text) {
  std::map<std::string, std::set<std::string>> out;
  auto err = metrics::parse_text(text, [&](const metrics::Sample& s) {
    auto& l = out[std::string(s.name)];
    for (const auto& label : s.labels) l.insert(std::string(label.name));
  });
  EXPECT_FALSE(err) << err->to_string();
  return out;
}

}  // namespace

TEST(MetricsView, VllmV1NamesAndLabels) {
  LatencyHistograms h;
  auto text = render_metrics(MetricFlavor::Vllm, "m", snapshot(), h, 1.0);
  auto s = series(text);
  const std::set<std::string> labels{"engine", "model_name"};
  EXPECT_EQ(s.at("vllm:num_requests_waiting"), labels);
  EXPECT_EQ(s.at("vllm:num_requests_running"), labels);
  EXPECT_EQ(s.at("vllm:kv_cache_usage_perc"), labels);
  EXPECT_TRUE(s.count("vllm:generation_tokens_total"));
  EXPECT_TRUE(s.count("vllm:generation_tokens_created"));
  EXPECT_TRUE(s.at("vllm:time_to_first_token_seconds_bucket").count("le"));
  EXPECT_TRUE(s.at("vllm:cache_config_info").count("num_gpu_blocks"));
  EXPECT_FALSE(s.count("vllm:gpu_cache_usage_perc"));
  // prometheus_client's layout, as vLLM 0.10 serves it: the counter family is
  // x_total, creation times are gauge families of their own (histograms too),
  // every finish reason has a series, and the buckets reach 2560 s / 7680 s.
  for (auto line :
       {"# TYPE vllm:generation_tokens_total counter\n",
        "# TYPE vllm:generation_tokens_created gauge\n",
        "# TYPE vllm:time_to_first_token_seconds histogram\n",
        "# TYPE vllm:time_to_first_token_seconds_created gauge\n",
        "# TYPE vllm:e2e_request_latency_seconds_created gauge\n", "finished_reason=\"stop\"",
        "finished_reason=\"abort\"", "le=\"2560", "le=\"7680"})
    EXPECT_NE(text.find(line), std::string::npos) << line;
  EXPECT_LT(text.find("vllm:e2e_request_latency_seconds_count"),
            text.find("vllm:e2e_request_latency_seconds_sum"));
  auto r = engines::extract_stats(text, engines::Engine::Vllm);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->waiting, 7);
  EXPECT_EQ(r.stats->running, 19);
  EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.75);
}

TEST(MetricsView, VllmLegacyUsesTheOldKvNameAndNoEngineLabel) {
  LatencyHistograms h;
  auto text = render_metrics(MetricFlavor::VllmLegacy, "m", snapshot(), h, 1.0);
  auto s = series(text);
  EXPECT_EQ(s.at("vllm:gpu_cache_usage_perc"), std::set<std::string>{"model_name"});
  EXPECT_FALSE(s.count("vllm:kv_cache_usage_perc"));
  EXPECT_FALSE(s.count("vllm:generation_tokens_created"));  // V0 disabled created series
  EXPECT_TRUE(s.count("vllm:generation_tokens_total"));
  auto r = engines::extract_stats(text, engines::Engine::Auto);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.75);
}

TEST(MetricsView, TgiAndSglangRoundTrip) {
  LatencyHistograms h;
  auto tgi = render_metrics(MetricFlavor::Tgi, "m", snapshot(), h, 1.0);
  EXPECT_TRUE(series(tgi).at("tgi_queue_size").empty());  // TGI has no labels
  auto r = engines::extract_stats(tgi, engines::Engine::Auto);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->engine, engines::Engine::Tgi);
  EXPECT_EQ(r.stats->waiting, 7);
  auto sg = render_metrics(MetricFlavor::Sglang, "m", snapshot(), h, 1.0);
  r = engines::extract_stats(sg, engines::Engine::Auto);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->engine, engines::Engine::Sglang);
  EXPECT_EQ(r.stats->running, 19);
  EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.75);
}
