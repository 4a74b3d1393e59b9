// logging.h - spdlog setup shared by every kvlb binary.
#pragma once

#include <string>

namespace kvlb {

// level: trace|debug|info|warn|error; format: text or json (one JSON object per
// line: ts, level, msg; the message is escaped). Throws std::invalid_argument.
void setup_logging(const std::string& level, const std::string& format);

// JSON string escaping (RFC 8259), for log lines.
std::string json_escape(const std::string& s);

}  // namespace kvlb
