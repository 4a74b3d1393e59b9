#include "arrivals.h"

#include <random>
#include <stdexcept>

namespace kvlb::loadgen {

std::optional<ArrivalKind> parse_arrival_kind(const std::string& name) {
  if (name == "constant") return ArrivalKind::Constant;
  if (name == "poisson") return ArrivalKind::Poisson;
  if (name == "gamma") return ArrivalKind::Gamma;
  return std::nullopt;
}

std::vector<double> schedule(const ArrivalConfig& c, size_t n) {
  if (c.kind == ArrivalKind::Concurrency) throw std::logic_error("closed loop has no schedule");
  if (!(c.rps > 0)) throw std::invalid_argument("rps must be positive");
  std::vector<double> t(n);
  std::mt19937_64 rng(c.seed);
  double shape = c.kind == ArrivalKind::Poisson ? 1.0 : c.burstiness;
  if (c.kind == ArrivalKind::Gamma && !(shape > 0))
    throw std::invalid_argument("burstiness must be positive");
  // Gamma inter-arrivals with mean 1/rps: shape k, scale 1/(rps k).
  std::gamma_distribution<double> gap(shape, 1.0 / (c.rps * shape));
  double now = 0;
  for (size_t i = 0; i < n; ++i) {
    t[i] = now;
    now += c.kind == ArrivalKind::Constant ? 1.0 / c.rps : gap(rng);
  }
  return t;
}

}  // namespace kvlb::loadgen
