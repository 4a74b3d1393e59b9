// printable.h - text from untrusted peers (a replica's headers or /metrics page,
// an API object, a request), made safe to log, to serve as JSON and to print on a
// terminal.
//
// Printable ASCII and well-formed UTF-8 pass unchanged. Control bytes (LF, CR,
// ESC, DEL, ...), C1 controls (U+0080..U+009F, which terminals also obey) and
// bytes that are not well-formed UTF-8 become \xNN; a backslash becomes \\, so
// the escaping cannot be forged. Longer input is cut at `max` bytes and marked
// with "...". The result is always valid UTF-8 with no control character: one
// log line stays one line, and nlohmann::json can dump it.
#pragma once

#include <string>
#include <string_view>

namespace kvlb {

std::string printable(std::string_view s, size_t max = 256);
// printable(s) in double quotes; a '"' inside becomes \x22.
std::string quoted(std::string_view s, size_t max = 256);

}  // namespace kvlb
