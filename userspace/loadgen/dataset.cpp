#include "dataset.h"

#include <cmath>
#include <fstream>
#include <random>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvlb::loadgen {
namespace {
double phi(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}
}  // namespace

// E[X | lo <= X <= hi] for X log-normal(mu, s).
double TruncatedLogNormal::truncated_mean(double mu, double s, double lo, double hi) {
  double a = std::log(lo), b = std::log(hi);
  double mass = phi((b - mu) / s) - phi((a - mu) / s);
  double partial =
      std::exp(mu + s * s / 2) * (phi((b - mu - s * s) / s) - phi((a - mu - s * s) / s));
  return mass > 0 ? partial / mass : (mu < a ? lo : hi);
}

double TruncatedLogNormal::mu() const {
  if (!(target_mean > lo && target_mean < hi))
    throw std::invalid_argument("target mean must lie strictly between the bounds");
  // The truncated mean increases with mu (the family has a monotone likelihood
  // ratio in mu), from lo to hi: bisection. The bracket stays within a few sigma
  // of the range so that the normal tails keep enough mass to divide by.
  double a = std::log(lo) - 4 * sigma, b = std::log(hi) + 4 * sigma;
  for (int i = 0; i < 200; ++i) {
    double m = (a + b) / 2;
    (truncated_mean(m, sigma, lo, hi) < target_mean ? a : b) = m;
  }
  return (a + b) / 2;
}

std::vector<RequestSpec> synthetic_openorca(size_t n, uint64_t seed) {
  TruncatedLogNormal in{0.9, 16, 1600, 540}, out{0.9, 16, 1600, 415};
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> din(in.mu(), in.sigma), dout(out.mu(), out.sigma);
  // Redraw until in range: about 1 draw in 10 is redrawn for inputs, so the loop
  // ends at once; the bound only guards against a distribution that has no mass
  // in the range (impossible for these parameters).
  auto draw = [&rng](std::lognormal_distribution<double>& d, const TruncatedLogNormal& t) {
    for (int tries = 0; tries < 10000; ++tries) {
      double x = d(rng);
      if (x >= t.lo && x <= t.hi) return static_cast<uint32_t>(std::lround(x));
    }
    throw std::logic_error("truncated log-normal: no draw in range");
  };
  std::vector<RequestSpec> v(n);
  for (auto& r : v) {
    r.input_tokens = draw(din, in);
    r.output_tokens = draw(dout, out);
  }
  return v;
}

std::vector<RequestSpec> load_jsonl(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read dataset " + file.string());
  std::vector<RequestSpec> v;
  std::string line;
  size_t line_no = 0;
  auto length = [&](const nlohmann::json& j, const char* field) {
    if (!j.contains(field) || !j[field].is_number_integer() || j[field].get<int64_t>() < 1 ||
        j[field].get<int64_t>() > 1'000'000)
      throw std::runtime_error(
          fmt::format("{}:{}: field {} must be a positive integer", file.string(), line_no, field));
    return static_cast<uint32_t>(j[field].get<int64_t>());
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw std::runtime_error(fmt::format("{}:{}: not a JSON object", file.string(), line_no));
    RequestSpec r;
    r.input_tokens = length(j, "tok_input_length");
    r.output_tokens = length(j, "tok_output_length");
    if (j.contains("question") && j["question"].is_string())
      r.prompt_text = j["question"].get<std::string>();
    v.push_back(std::move(r));
  }
  if (v.empty()) throw std::runtime_error("dataset " + file.string() + " has no records");
  return v;
}

}  // namespace kvlb::loadgen
