#include "logging.h"

#include <stdexcept>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace kvlb {

void setup_logging(const std::string& level, const std::string& format) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw std::invalid_argument("unknown log level '" + level + "'");
  auto logger = spdlog::stderr_color_mt("kvlb");
  if (format == "text") {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  } else {
    throw std::invalid_argument("unknown log format '" + format + "' (supported: text)");
  }
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

}  // namespace kvlb
