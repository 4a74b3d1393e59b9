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

double ClippedLogNormal::clipped_mean(double mu, double s, double lo, double hi) {
  double a = std::log(lo), b = std::log(hi);
  double below = phi((a - mu) / s), above = 1.0 - phi((b - mu) / s);
  double middle =
      std::exp(mu + s * s / 2) * (phi((b - mu - s * s) / s) - phi((a - mu - s * s) / s));
  return lo * below + middle + hi * above;
}

double ClippedLogNormal::mu() const {
  if (!(target_mean > lo && target_mean < hi))
    throw std::invalid_argument("target mean must lie strictly between the clip bounds");
  double a = std::log(lo) - 10, b = std::log(hi) + 10;  // the clipped mean is increasing in mu
  for (int i = 0; i < 200; ++i) {
    double m = (a + b) / 2;
    (clipped_mean(m, sigma, lo, hi) < target_mean ? a : b) = m;
  }
  return (a + b) / 2;
}

std::vector<RequestSpec> synthetic_openorca(size_t n, uint64_t seed) {
  ClippedLogNormal in{0.9, 16, 1600, 540}, out{0.9, 16, 1600, 415};
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> din(in.mu(), in.sigma), dout(out.mu(), out.sigma);
  std::vector<RequestSpec> v(n);
  for (auto& r : v) {
    r.input_tokens = static_cast<uint32_t>(std::lround(std::clamp(din(rng), in.lo, in.hi)));
    r.output_tokens = static_cast<uint32_t>(std::lround(std::clamp(dout(rng), out.lo, out.hi)));
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
