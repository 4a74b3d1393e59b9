#include "engines/engine_stats.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using namespace kvlb::engines;

namespace {
std::string fixture(const std::string& name) {
  std::ifstream in(std::string(KVLB_FIXTURE_DIR) + "/metrics/" + name);
  EXPECT_TRUE(in) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST(EngineStats, VllmV1) {
  auto r = extract_stats(fixture("vllm_v1.txt"), Engine::Vllm);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->waiting, 4);
  EXPECT_EQ(r.stats->running, 27);
  EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.8731);
  ASSERT_EQ(r.stats->models.size(), 1u);
  EXPECT_EQ(r.stats->models[0], "meta-llama/Llama-3.1-8B-Instruct");
}

TEST(EngineStats, VllmLegacyKvName) {
  auto r = extract_stats(fixture("vllm_legacy.txt"), Engine::Vllm);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->waiting, 36);
  EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.9912);
}

TEST(EngineStats, SeveralModelsSumQueuesAndTakeFullestCache) {
  auto r = extract_stats(fixture("vllm_two_models.txt"), Engine::Vllm);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->waiting, 5);
  EXPECT_EQ(r.stats->running, 15);
  EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.7);
  EXPECT_EQ(r.stats->models.size(), 2u);
}

TEST(EngineStats, AutoDetectsEachEngine) {
  struct Case {
    const char* file;
    Engine engine;
    double waiting, running;
    std::optional<double> kv;
  };
  for (const auto& c : {Case{"vllm_v1.txt", Engine::Vllm, 4, 27, 0.8731},
                        Case{"vllm_legacy.txt", Engine::Vllm, 36, 12, 0.9912},
                        Case{"tgi.txt", Engine::Tgi, 7, 16, std::nullopt},
                        Case{"sglang.txt", Engine::Sglang, 1, 9, 0.25},
                        Case{"llamacpp.txt", Engine::LlamaCpp, 3, 1, std::nullopt}}) {
    auto r = extract_stats(fixture(c.file), Engine::Auto);
    ASSERT_TRUE(r.stats) << c.file << ": " << r.error;
    EXPECT_EQ(r.stats->engine, c.engine) << c.file;
    EXPECT_EQ(r.stats->waiting, c.waiting) << c.file;
    EXPECT_EQ(r.stats->running, c.running) << c.file;
    EXPECT_EQ(r.stats->kv_usage, c.kv) << c.file;
  }
}

TEST(EngineStats, TensorRtLlmByLabels) {
  for (auto e : {Engine::TensorRtLlm, Engine::Auto}) {
    auto r = extract_stats(fixture("trtllm.txt"), e);
    ASSERT_TRUE(r.stats) << r.error;
    EXPECT_EQ(r.stats->engine, Engine::TensorRtLlm);
    EXPECT_EQ(r.stats->waiting, 6);
    EXPECT_EQ(r.stats->running, 14);
    EXPECT_DOUBLE_EQ(*r.stats->kv_usage, 0.25);  // 300 / 1200 blocks
  }
  // Without a waiting series: active - scheduled.
  auto r = extract_stats(
      "nv_trt_llm_request_metrics{request_type=\"active\"} 9\n"
      "nv_trt_llm_request_metrics{request_type=\"scheduled\"} 5\n",
      Engine::TensorRtLlm);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->waiting, 4);
  EXPECT_FALSE(r.stats->kv_usage);
  EXPECT_FALSE(extract_stats(fixture("vllm_v1.txt"), Engine::TensorRtLlm).stats);
}

TEST(EngineStats, WrongEngineOrMissingMetricIsAnError) {
  auto r = extract_stats(fixture("tgi.txt"), Engine::Vllm);
  EXPECT_FALSE(r.stats);
  EXPECT_NE(r.error.find("vllm:num_requests_waiting"), std::string::npos) << r.error;
  EXPECT_FALSE(extract_stats("up 1\n", Engine::Auto).stats);
}

TEST(EngineStats, MatchesByNameNotHelpText) {
  auto r = extract_stats(
      "# HELP my_gauge vllm:num_requests_waiting is what this is not\n"
      "my_gauge 99\nvllm:num_requests_waiting 2\n",
      Engine::Vllm);
  ASSERT_TRUE(r.stats);
  EXPECT_EQ(r.stats->waiting, 2);
}

TEST(EngineStats, NanOrNegativeValuesAreRejected) {
  auto r = extract_stats("vllm:num_requests_waiting NaN\n", Engine::Vllm);
  EXPECT_FALSE(r.stats);
  EXPECT_NE(r.error.find("invalid value"), std::string::npos);
  EXPECT_FALSE(extract_stats("vllm:num_requests_waiting -1\n", Engine::Vllm).stats);
}

TEST(EngineStats, MalformedExpositionIsAnErrorWithLine) {
  auto r =
      extract_stats("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc{ 0.5\n", Engine::Vllm);
  EXPECT_FALSE(r.stats);
  EXPECT_NE(r.error.find("line 2"), std::string::npos) << r.error;
}

TEST(EngineStats, DistinctModelsAreBounded) {
  // 80k distinct model_name values took 6.5 s (a linear search per sample).
  std::string page;
  for (int i = 0; i < 80000; ++i)
    page += "vllm:num_requests_waiting{model_name=\"m" + std::to_string(i) + "\"} 1\n";
  auto r = kvlb::engines::extract_stats(page, kvlb::engines::Engine::Vllm);
  EXPECT_FALSE(r.stats);
  EXPECT_NE(r.error.find("more than 256 distinct model_name values"), std::string::npos) << r.error;
  // A replica serving a few models: summed, each model listed once.
  std::string few;
  for (int i = 0; i < 3; ++i)
    for (int rep = 0; rep < 2; ++rep)
      few += "vllm:num_requests_waiting{model_name=\"m" + std::to_string(i) + "\",engine=\"" +
             std::to_string(rep) + "\"} 1\n";
  auto ok = kvlb::engines::extract_stats(few, kvlb::engines::Engine::Vllm);
  ASSERT_TRUE(ok.stats) << ok.error;
  EXPECT_EQ(ok.stats->waiting, 6);
  EXPECT_EQ(ok.stats->models.size(), 3u);
}
