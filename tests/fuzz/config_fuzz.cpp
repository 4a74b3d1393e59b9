// Any bytes as the agent's YAML configuration: parsed and validated, or a
// ConfigError naming a field; no other exception, no abort.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string doc(reinterpret_cast<const char*>(data), size);
  try {
    auto cfg = kvlb::agent::parse_config(doc);
    (void)cfg;
  } catch (const kvlb::agent::ConfigError& e) {
    if (e.field().empty()) __builtin_trap();
  }
  return 0;
}
