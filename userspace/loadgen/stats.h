// stats.h - latency summaries: min, max, mean, median, p80/p90/p95/p99.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

namespace kvlb::loadgen {

struct Summary {
  size_t count = 0;
  double min = 0, max = 0, mean = 0, median = 0, p80 = 0, p90 = 0, p95 = 0, p99 = 0;
  nlohmann::json to_json() const;
};

// Percentile by linear interpolation between closest ranks (numpy's default).
double percentile(std::vector<double> sorted_values, double p);
Summary summarize(std::vector<double> values);

}  // namespace kvlb::loadgen
