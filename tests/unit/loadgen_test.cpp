#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "arrivals.h"
#include "client.h"
#include "dataset.h"
#include "report.h"
#include "stats.h"

using namespace kvlb::loadgen;

TEST(Dataset, SyntheticIsTheTalksShapeTruncatedNotClamped) {
  auto v = synthetic_openorca(200000, 7);
  double in = 0, out = 0;
  size_t in_at_hi = 0, out_at_hi = 0, in_top_decile_bin = 0, in_at_lo = 0;
  for (const auto& r : v) {
    in += r.input_tokens;
    out += r.output_tokens;
    ASSERT_GE(r.input_tokens, 16u);
    ASSERT_LE(r.input_tokens, 1600u);
    ASSERT_GE(r.output_tokens, 16u);
    ASSERT_LE(r.output_tokens, 1600u);
    in_at_hi += r.input_tokens == 1600;
    out_at_hi += r.output_tokens == 1600;
    in_at_lo += r.input_tokens == 16;
    in_top_decile_bin += r.input_tokens >= 1590 && r.input_tokens < 1600;
  }
  // The published means (BRIEF.md), within 1%.
  EXPECT_NEAR(in / v.size(), 540, 5.4);
  EXPECT_NEAR(out / v.size(), 415, 4.2);
  // No spike at the bounds: the top length is about as frequent as its
  // neighbours (clamping put 6.2% of prompts and 2.9% of outputs at 1600).
  EXPECT_LT(in_at_hi, 60u);   // 0.03%
  EXPECT_LT(out_at_hi, 40u);  // 0.02%
  EXPECT_LT(in_at_hi, in_top_decile_bin / 10 * 3);
  EXPECT_LT(in_at_lo, 200u);
  // Seeded: the same seed gives the same set.
  auto a = synthetic_openorca(10, 3), b = synthetic_openorca(10, 3);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(a[i].input_tokens, b[i].input_tokens);
}

TEST(Dataset, TruncatedMeanSolverInvertsTheMean) {
  TruncatedLogNormal d{0.9, 16, 1600, 415};
  EXPECT_NEAR(TruncatedLogNormal::truncated_mean(d.mu(), 0.9, 16, 1600), 415, 1e-6);
  // Without truncation the formula is the log-normal mean.
  EXPECT_NEAR(TruncatedLogNormal::truncated_mean(5.0, 0.9, 1e-9, 1e12), std::exp(5.0 + 0.405),
              1e-6);
  EXPECT_THROW((TruncatedLogNormal{0.9, 16, 1600, 1600}.mu()), std::invalid_argument);
}

TEST(Dataset, LoadsLlmLoadTestJsonlAndNamesBadLines) {
  auto dir = std::filesystem::temp_directory_path();
  auto good = dir / "kvlb_ds_good.jsonl", bad = dir / "kvlb_ds_bad.jsonl";
  std::ofstream(good)
      << R"({"index":0,"question":"hi there","tok_input_length":3,"tok_output_length":40})"
      << "\n\n"
      << R"({"tok_input_length":500,"tok_output_length":7})"
      << "\n";
  std::ofstream(bad) << R"({"tok_input_length":5,"tok_output_length":7})"
                     << "\n"
                     << R"({"tok_input_length":"x","tok_output_length":7})"
                     << "\n";
  auto v = load_jsonl(good);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].output_tokens, 40u);
  EXPECT_EQ(*v[0].prompt_text, "hi there");
  EXPECT_FALSE(v[1].prompt_text);
  try {
    load_jsonl(bad);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(":2: field tok_input_length"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
}

TEST(Arrivals, ConstantPoissonAndGamma) {
  ArrivalConfig c;
  c.rps = 4;
  auto t = schedule(c, 5);
  EXPECT_DOUBLE_EQ(t[4], 1.0);
  for (auto kind : {ArrivalKind::Poisson, ArrivalKind::Gamma}) {
    c.kind = kind;
    c.burstiness = kind == ArrivalKind::Gamma ? 0.25 : 1;
    auto s = schedule(c, 100001);
    EXPECT_NEAR(s.back() / 100000, 0.25, 0.01);  // mean gap 1/rps
    std::vector<double> gaps(100000);
    for (size_t i = 0; i < gaps.size(); ++i) gaps[i] = s[i + 1] - s[i];
    double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size(), var = 0;
    for (double g : gaps) var += (g - mean) * (g - mean);
    double cv2 = var / gaps.size() / (mean * mean);  // gamma: 1 / shape
    EXPECT_NEAR(cv2, 1 / c.burstiness, 0.1 / c.burstiness);
  }
}

TEST(Stats, PercentilesInterpolateLikeNumpy) {
  std::vector<double> v{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_DOUBLE_EQ(percentile(v, 50), 5.5);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 9.1);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 9.91);
  auto s = summarize({3, 1, 2});
  EXPECT_EQ(s.count, 3u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.median, 2);
  EXPECT_DOUBLE_EQ(s.mean, 2);
}

TEST(Report, MetricsFromTimestampsAndWarmupAndErrors) {
  std::vector<RequestResult> rs(3);
  rs[0].scheduled = 0.5;  // in the warm-up
  rs[1].scheduled = 2.0;
  rs[1].sent = 2.1;
  rs[1].first = 2.6;
  rs[1].end = 6.6;
  rs[1].output_tokens = 11;
  rs[1].replica = "r3";
  rs[2].scheduled = 3.0;
  rs[2].error = "http_503";
  auto s = summarize_run(rs, 1.0);
  EXPECT_EQ(s["requests"], 2);
  EXPECT_EQ(s["ok"], 1);
  EXPECT_EQ(s["errors"]["http_503"], 1);
  EXPECT_NEAR(s["ttft_s"]["mean"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(s["itl_s"]["mean"].get<double>(), 0.4, 1e-9);        // (6.6 - 2.6) / 10
  EXPECT_NEAR(s["tpot_s"]["mean"].get<double>(), 4.5 / 11, 1e-9);  // e2e / output
  EXPECT_NEAR(s["client_wait_s"]["mean"].get<double>(), 0.1, 1e-9);
  EXPECT_EQ(s["per_replica"]["r3"], 1);
}

TEST(Client, ClientsTakeRequestsInTurn) {
  auto parts = split_round_robin(7, 3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0], (std::vector<size_t>{0, 3, 6}));
  EXPECT_EQ(parts[1], (std::vector<size_t>{1, 4}));
  EXPECT_EQ(parts[2], (std::vector<size_t>{2, 5}));
  EXPECT_EQ(split_round_robin(2, 4)[3].size(), 0u);
  EXPECT_THROW(split_round_robin(3, 0), std::invalid_argument);
}

TEST(Client, RequestBodyFixesTheOutputLength) {
  ClientConfig c;
  RequestSpec s{7, 42, std::nullopt};
  auto j = nlohmann::json::parse(request_body(c, s));
  EXPECT_EQ(j["max_tokens"], 42);
  EXPECT_EQ(j["min_tokens"], 42);
  EXPECT_TRUE(j["ignore_eos"].get<bool>());
  EXPECT_EQ(j["prompt"].size(), 7u);  // token ids: exact prompt length
  EXPECT_TRUE(j["stream_options"]["include_usage"].get<bool>());
  c.chat = true;
  s.prompt_text = "hello";
  j = nlohmann::json::parse(request_body(c, s));
  EXPECT_EQ(j["messages"][0]["content"], "hello");
}
