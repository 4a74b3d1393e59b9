// score.h - engine stats -> the kernel's per-backend score: the one function the
// agent and the simulator both use.
#pragma once

#include <cstdint>

#include "engines/engine_stats.h"
#include "kvlb_maps.h"

namespace kvlb::scoring {

// Builds the score written to the kernel for one successful scrape taken at
// `taken_ns` (CLOCK_MONOTONIC), when the kernel had made `picks` picks of this
// backend. Values are clamped into the map's field ranges.
kvlb_score make_score(const engines::EngineStats& stats, uint16_t weight, kvlb_backend_state state,
                      uint64_t taken_ns, uint64_t picks);

}  // namespace kvlb::scoring
