// dataset.h - what to send: input and output token lengths per request.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kvlb::loadgen {

struct RequestSpec {
  uint32_t input_tokens = 0;
  uint32_t output_tokens = 0;
  std::optional<std::string> prompt_text;  // sent as text when set, else token ids
};

// A log-normal length truncated to [lo, hi]: a draw outside the range is drawn
// again (the distribution conditioned on the range), as llm-load-test filters
// its dataset to a length range. Clamping instead would pile the tail onto the
// bounds (6% of prompts at exactly 1600). mu is chosen so that the mean of the
// truncated distribution is `target_mean` (BRIEF.md: the talk's OpenOrca subset).
struct TruncatedLogNormal {
  double sigma = 0.9;
  double lo = 16, hi = 1600;
  double target_mean = 540;
  double mu() const;  // solved by bisection on the analytic truncated mean
  static double truncated_mean(double mu, double sigma, double lo, double hi);
};

// The built-in synthetic set shaped like the talk's OpenOrca subset: input mean
// about 540, output mean about 415, both truncated to [16, 1600]. Seeded.
std::vector<RequestSpec> synthetic_openorca(size_t n, uint64_t seed);

// llm-load-test JSONL: one object per line with tok_input_length,
// tok_output_length and optionally question. Throws std::runtime_error naming the
// line and the field on malformed input.
std::vector<RequestSpec> load_jsonl(const std::filesystem::path& file);

}  // namespace kvlb::loadgen
