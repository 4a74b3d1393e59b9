#include "stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvlb::loadgen {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank)), hi = static_cast<size_t>(std::ceil(rank));
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

Summary summarize(std::vector<double> v) {
  Summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  s.median = percentile(v, 50);
  s.p80 = percentile(v, 80);
  s.p90 = percentile(v, 90);
  s.p95 = percentile(v, 95);
  s.p99 = percentile(v, 99);
  return s;
}

nlohmann::json Summary::to_json() const {
  return {{"count", count}, {"min", min}, {"max", max}, {"mean", mean}, {"median", median},
          {"p80", p80},     {"p90", p90}, {"p95", p95}, {"p99", p99}};
}

}  // namespace kvlb::loadgen
