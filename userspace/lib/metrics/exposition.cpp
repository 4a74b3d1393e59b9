#include "exposition.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::metrics {

std::string TextWriter::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);  // shortest representation that round-trips
}

std::string TextWriter::escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string TextWriter::escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

void TextWriter::family(std::string_view name, std::string_view help, ExpositionType type) {
  static constexpr const char* kTypes[] = {"counter", "gauge", "histogram", "untyped"};
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name,
                      kTypes[static_cast<int>(type)]);
}

void TextWriter::sample(std::string_view name, const LabelPairs& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_.push_back('{');
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) out_.push_back(',');
      out_ += labels[i].first;
      out_ += "=\"";
      out_ += escape_label_value(labels[i].second);
      out_.push_back('"');
    }
    out_.push_back('}');
  }
  out_.push_back(' ');
  out_ += format_value(value);
  out_.push_back('\n');
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()))
    throw std::invalid_argument("histogram bounds must be ascending");
}

void Histogram::observe(double v) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  ++counts_[static_cast<size_t>(it - bounds_.begin())];
  ++count_;
  sum_ += v;
}

void Histogram::write(TextWriter& w, std::string_view name, const LabelPairs& labels) const {
  std::string bucket = std::string(name) + "_bucket";
  LabelPairs l = labels;
  l.emplace_back("le", "");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    l.back().second = i < bounds_.size() ? TextWriter::format_value(bounds_[i]) : "+Inf";
    w.sample(bucket, l, static_cast<double>(cumulative));
  }
  w.sample(std::string(name) + "_count", labels, static_cast<double>(count_));
  w.sample(std::string(name) + "_sum", labels, sum_);
}

}  // namespace kvlb::metrics
