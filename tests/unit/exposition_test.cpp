#include "metrics/exposition.h"
#include "metrics/text_parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace kvlb::metrics;

TEST(Exposition, FormatsValuesPrometheusParsesBack) {
  for (double v :
       {0.0, 1.0, -2.0, 0.1, 1.75e9, 1e-7, 123456.789, std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity()}) {
    auto text = TextWriter::format_value(v);
    auto back = parse_value(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, v) << text;
  }
  EXPECT_EQ(TextWriter::format_value(std::nan("")), "NaN");
  EXPECT_EQ(TextWriter::format_value(3.0), "3");
}

TEST(Exposition, EscapedLabelsRoundTrip) {
  TextWriter w;
  w.family("m", "help with \\ and\nnewline", ExpositionType::Gauge);
  w.sample("m", {{"a", "q\"uo\\te\nx"}}, 2);
  std::string got;
  auto err = parse_text(w.str(), [&](const Sample& s) { got = *s.label("a"); });
  ASSERT_FALSE(err) << err->to_string();
  EXPECT_EQ(got, "q\"uo\\te\nx");
  EXPECT_NE(w.str().find("# HELP m help with \\\\ and\\nnewline\n"), std::string::npos);
}

TEST(Exposition, HistogramIsCumulativeWithLeLast) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(0.5);
  h.observe(5);
  TextWriter w;
  w.family("lat", "latency", ExpositionType::Histogram);
  h.write(w, "lat", {{"model_name", "m"}});
  std::vector<std::pair<std::string, double>> buckets;
  double sum = 0, count = 0;
  auto err = parse_text(w.str(), [&](const Sample& s) {
    if (s.name == "lat_bucket") {
      EXPECT_EQ(s.labels.back().name, "le");
      buckets.emplace_back(*s.label("le"), s.value);
    } else if (s.name == "lat_sum") {
      sum = s.value;
    } else if (s.name == "lat_count") {
      count = s.value;
    }
  });
  ASSERT_FALSE(err) << err->to_string();
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0], std::make_pair(std::string("0.1"), 1.0));
  EXPECT_EQ(buckets[1], std::make_pair(std::string("1"), 3.0));
  EXPECT_EQ(buckets[2], std::make_pair(std::string("+Inf"), 4.0));
  EXPECT_DOUBLE_EQ(sum, 6.05);
  EXPECT_DOUBLE_EQ(count, 4);
}

TEST(Exposition, RejectsUnsortedBounds) {
  EXPECT_THROW(Histogram({1.0, 0.5}), std::invalid_argument);
}
