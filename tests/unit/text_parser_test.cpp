#include "metrics/text_parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

using namespace kvlb::metrics;

namespace {

struct Collected {
  std::string name;
  std::map<std::string, std::string> labels;
  double value;
  std::optional<int64_t> ts;
  MetricType type;
};

std::vector<Collected> parse_ok(std::string_view text) {
  std::vector<Collected> out;
  auto err = parse_text(text, [&](const Sample& s) {
    Collected c{std::string(s.name), {}, s.value, s.timestamp_ms, s.type};
    for (const auto& l : s.labels) c.labels[std::string(l.name)] = std::string(l.value);
    out.push_back(std::move(c));
  });
  EXPECT_FALSE(err.has_value()) << err->to_string();
  return out;
}

ParseError parse_err(std::string_view text) {
  auto err = parse_text(text, [](const Sample&) {});
  EXPECT_TRUE(err.has_value()) << "expected a parse error for: " << text;
  return err.value_or(ParseError{});
}

}  // namespace

TEST(TextParser, CounterWithTotalAndCreated) {
  auto s = parse_ok(
      "# HELP vllm:prompt_tokens Number of prefill tokens processed.\n"
      "# TYPE vllm:prompt_tokens counter\n"
      "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 1234.0\n"
      "vllm:prompt_tokens_created{engine=\"0\",model_name=\"m\"} 1.7321e+09\n");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "vllm:prompt_tokens_total");
  EXPECT_EQ(s[0].type, MetricType::Counter);
  EXPECT_DOUBLE_EQ(s[0].value, 1234.0);
  EXPECT_EQ(s[0].labels.at("model_name"), "m");
  EXPECT_EQ(s[1].type, MetricType::Counter);
  EXPECT_DOUBLE_EQ(s[1].value, 1.7321e9);
}

TEST(TextParser, HistogramWithLeFirst) {
  auto s = parse_ok(
      "# TYPE ttft histogram\n"
      "ttft_bucket{le=\"0.1\",model_name=\"a\"} 3\n"
      "ttft_bucket{le=\"+Inf\",model_name=\"a\"} 5\n"
      "ttft_sum{model_name=\"a\"} 0.75\n"
      "ttft_count{model_name=\"a\"} 5\n");
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].labels.at("le"), "0.1");
  EXPECT_EQ(s[1].labels.at("le"), "+Inf");
  EXPECT_EQ(s[2].type, MetricType::Histogram);
  EXPECT_DOUBLE_EQ(s[3].value, 5);
}

TEST(TextParser, HistogramBucketWithoutLeIsAnError) {
  auto e = parse_err("# TYPE h histogram\nh_bucket{a=\"b\"} 1\n");
  EXPECT_EQ(e.line, 2u);
}

TEST(TextParser, SpecialValuesAndExponents) {
  auto s = parse_ok("a NaN\nb +Inf\nc -Inf\nd 1.75e+09\ne -3.5E-2\nf 7\ng Inf\n");
  ASSERT_EQ(s.size(), 7u);
  EXPECT_TRUE(std::isnan(s[0].value));
  EXPECT_TRUE(std::isinf(s[1].value) && s[1].value > 0);
  EXPECT_TRUE(std::isinf(s[2].value) && s[2].value < 0);
  EXPECT_DOUBLE_EQ(s[3].value, 1.75e9);
  EXPECT_DOUBLE_EQ(s[4].value, -0.035);
  EXPECT_DOUBLE_EQ(s[5].value, 7);
  EXPECT_TRUE(std::isinf(s[6].value));
}

TEST(TextParser, NoLabelsAndEmptyLabelSet) {
  auto s = parse_ok("llamacpp:requests_processing 2\nx{} 3\n");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(s[0].labels.empty());
  EXPECT_TRUE(s[1].labels.empty());
  EXPECT_DOUBLE_EQ(s[1].value, 3);
}

TEST(TextParser, EscapedLabelValues) {
  auto s = parse_ok(R"(m{path="C:\\dir",q="say \"hi\"",nl="a\nb"} 1)"
                    "\n");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].labels.at("path"), "C:\\dir");
  EXPECT_EQ(s[0].labels.at("q"), "say \"hi\"");
  EXPECT_EQ(s[0].labels.at("nl"), "a\nb");
}

TEST(TextParser, TimestampsTrailingCommaWhitespaceAndCrlf) {
  auto s = parse_ok("m{a=\"1\",} 2 1700000000000\r\n  \t\nn\t4\n# just a comment\n");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].ts, 1700000000000);
  EXPECT_DOUBLE_EQ(s[1].value, 4);
}

TEST(TextParser, LabelValueWithBracesAndCommas) {
  auto s = parse_ok("m{a=\"x,y}z\",b=\"=\"} 1\n");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].labels.at("a"), "x,y}z");
  EXPECT_EQ(s[0].labels.at("b"), "=");
}

TEST(TextParser, MalformedLinesReportTheirLineNumber) {
  EXPECT_EQ(parse_err("ok 1\nbad{a=\"1\" 2\n").line, 2u);
  EXPECT_EQ(parse_err("ok 1\nok 2\nm{a=1} 3\n").line, 3u);
  EXPECT_EQ(parse_err("m 1x\n").line, 1u);
  EXPECT_EQ(parse_err("m\n").line, 1u);
  EXPECT_EQ(parse_err("m{a=\"\\q\"} 1\n").line, 1u);
  EXPECT_EQ(parse_err("m{a=\"1\",a=\"2\"} 1\n").line, 1u);
  EXPECT_EQ(parse_err("m 1 notatime\n").line, 1u);
  EXPECT_EQ(parse_err("# TYPE m bogus\n").line, 1u);
  EXPECT_EQ(parse_err("9m 1\n").line, 1u);
  EXPECT_EQ(parse_err("m ++1\n").line, 1u);
}

TEST(TextParser, LimitsAreEnforced) {
  ParseLimits lim;
  lim.max_samples = 2;
  auto err = parse_text(
      "a 1\nb 2\nc 3\n", [](const Sample&) {}, lim);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->line, 3u);
  lim = {};
  lim.max_line_bytes = 10;
  EXPECT_TRUE(parse_text(
      "a_very_long_metric_name 1\n", [](const Sample&) {}, lim));
  lim = {};
  lim.max_labels = 1;
  EXPECT_TRUE(parse_text(
      "m{a=\"1\",b=\"2\"} 1\n", [](const Sample&) {}, lim));
}

TEST(ParseValue, RejectsGarbage) {
  EXPECT_FALSE(parse_value(""));
  EXPECT_FALSE(parse_value("abc"));
  EXPECT_FALSE(parse_value("1.0.0"));
  EXPECT_FALSE(parse_value("+-1"));
  EXPECT_DOUBLE_EQ(*parse_value("+1.5"), 1.5);
  EXPECT_TRUE(std::isinf(*parse_value("1e999")));
  EXPECT_DOUBLE_EQ(*parse_value("1e-999"), 0.0);
}

TEST(TextParser, PagesBuiltToBeSlowAreBoundedNotQuadratic) {
  // 200k # TYPE lines took 31 s (a linear look-up per line). Now the page stops at
  // the family limit, at the line that crosses it.
  std::string page;
  for (int i = 0; i < 200000; ++i) page += "# TYPE m" + std::to_string(i) + " gauge\n";
  size_t samples = 0;
  auto err = parse_text(page, [&](const Sample&) { ++samples; });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->line, 10001u);
  EXPECT_NE(err->message.find("more than 10000 metric families"), std::string::npos)
      << err->message;
  // Within the limit, every family is found by its samples (suffixes included).
  std::string ok;
  for (int i = 0; i < 10000; ++i) {
    auto n = "h" + std::to_string(i);
    ok += "# TYPE " + n + " histogram\n" + n + "_bucket{le=\"1\"} 1\n";
  }
  for (int i = 0; i < 10000; ++i) ok += "h" + std::to_string(i) + "_count 1\n";
  size_t histogram_samples = 0;
  EXPECT_FALSE(parse_text(
      ok, [&](const Sample& s) { histogram_samples += s.type == MetricType::Histogram; }));
  EXPECT_EQ(histogram_samples, 20000u);
}

TEST(TextParser, ReplicaBytesInErrorsAreEscaped) {
  // An escape sequence in a value must not reach a log or a terminal raw.
  auto err = parse_text("m \x1b[2J\n", [](const Sample&) {});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->message.find('\x1b'), std::string::npos) << err->message;
  EXPECT_NE(err->message.find("\\x1b[2J"), std::string::npos) << err->message;
}
