// api_time.h - the API server's timestamps: metav1.Time (RFC 3339, seconds,
// UTC "Z") and metav1.MicroTime (RFC 3339 with six fractional digits, as in a
// Lease's renewTime).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace kvlb::k8s {

using WallTime = std::chrono::system_clock::time_point;

std::string format_time(WallTime t);        // 2024-05-01T12:00:00Z
std::string format_micro_time(WallTime t);  // 2024-05-01T12:00:00.123456Z
// Either form, any fraction, "Z" or a numeric offset; nullopt when malformed.
std::optional<WallTime> parse_time(std::string_view s);

}  // namespace kvlb::k8s
