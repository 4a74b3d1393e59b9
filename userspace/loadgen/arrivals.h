// arrivals.h - when requests start: open-loop schedules (constant interval, as
// llm-load-test; Poisson or gamma with burstiness, as vLLM's benchmark_serving),
// or a closed loop with fixed concurrency.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvlb::loadgen {

enum class ArrivalKind { Constant, Poisson, Gamma, Concurrency };

struct ArrivalConfig {
  ArrivalKind kind = ArrivalKind::Constant;
  double rps = 1.0;
  double burstiness = 1.0;  // gamma shape; 1 = Poisson, < 1 burstier
  uint32_t concurrency = 0;
  uint64_t seed = 1;
};

// "constant", "poisson", "gamma" (the open-loop kinds' names on command lines).
std::optional<ArrivalKind> parse_arrival_kind(const std::string& name);

// Start offsets (seconds from the start) of n requests, for the open-loop kinds.
std::vector<double> schedule(const ArrivalConfig& c, size_t n);

}  // namespace kvlb::loadgen
