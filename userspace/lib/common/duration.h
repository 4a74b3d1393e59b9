// duration.h - "50ms", "2s", "1m" style durations used in configs and flags.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace kvlb {

// Parses a positive duration with a unit suffix: ns, us, ms, s, m, h.
// Returns std::nullopt for anything else (no unit, negative, overflow).
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

std::string format_duration(std::chrono::nanoseconds d);

}  // namespace kvlb
