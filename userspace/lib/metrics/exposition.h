// exposition.h - writes the Prometheus text exposition format (0.0.4).
//
// A small writer instead of prometheus-cpp (not packaged here): families are
// written with their # HELP / # TYPE header, label values are escaped, values are
// formatted so Prometheus parses them back exactly (NaN, +Inf, -Inf, shortest
// round-trip decimal). Histogram keeps cumulative buckets and writes the
// _bucket/_sum/_count series.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvlb::metrics {

using LabelPairs = std::vector<std::pair<std::string, std::string>>;

enum class ExpositionType { Counter, Gauge, Histogram, Untyped };

class TextWriter {
 public:
  // Starts a family: writes its # HELP and # TYPE lines.
  void family(std::string_view name, std::string_view help, ExpositionType type);
  // One sample line: name{labels} value.
  void sample(std::string_view name, const LabelPairs& labels, double value);
  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

  static std::string format_value(double v);
  static std::string escape_label_value(std::string_view v);
  static std::string escape_help(std::string_view v);

 private:
  std::string out_;
};

// A histogram with fixed upper bounds (ascending; +Inf is implicit).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Writes name_bucket{le=...}, name_count and name_sum (prometheus_client's order)
  // with `labels` first, le last.
  void write(TextWriter& w, std::string_view name, const LabelPairs& labels) const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace kvlb::metrics
