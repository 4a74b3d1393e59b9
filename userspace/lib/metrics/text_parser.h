// text_parser.h - parser for the Prometheus text exposition format (0.0.4).
//
// Streaming: each sample is handed to a callback as it is parsed, with the name
// and label values as views, valid during the callback only: into the input, or
// (for a value with escapes) into the parser's scratch space. No allocation per
// line once warmed up: the agent parses tens of thousands of pages a second. A scrape is all or
// nothing, as in Prometheus: the first malformed line stops parsing and is
// reported with its line number, so the caller can keep its last good data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvlb::metrics {

enum class MetricType { Untyped, Counter, Gauge, Histogram, Summary };

struct Label {
  std::string_view name;
  std::string_view value;  // unescaped
};

struct Sample {
  std::string_view name;
  std::vector<Label> labels;
  double value = 0;
  std::optional<int64_t> timestamp_ms;
  MetricType type = MetricType::Untyped;  // from the family's # TYPE line, if any

  // The value of label `name`, or nullptr.
  const std::string_view* label(std::string_view name) const;
};

// Bounds on one page's work: a page over any of them fails (all or nothing).
// Every look-up inside the loop is constant-time, so a page within these limits
// costs time linear in its size.
struct ParseLimits {
  size_t max_line_bytes = 64 * 1024;
  size_t max_labels = 64;
  size_t max_samples = 1000000;
  size_t max_families = 10000;  // # TYPE lines (engines export a few hundred at most)
};

struct ParseError {
  size_t line = 0;
  std::string message;
  std::string to_string() const;
};

using SampleCallback = std::function<void(const Sample&)>;

// Parses `text`, calling `on_sample` for each sample. Returns the error, if any.
std::optional<ParseError> parse_text(std::string_view text, const SampleCallback& on_sample,
                                     const ParseLimits& limits = {});

// Parses a sample value as Prometheus does: decimal, exponent, NaN, +Inf, -Inf.
std::optional<double> parse_value(std::string_view text);

}  // namespace kvlb::metrics
