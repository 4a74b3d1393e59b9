// logging.h - spdlog setup shared by every kvlb binary.
#pragma once

#include <string>

namespace kvlb {

// level: trace|debug|info|warn|error; format: text. Throws on unknown values.
void setup_logging(const std::string& level, const std::string& format);

}  // namespace kvlb
