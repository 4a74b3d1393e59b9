// Any bytes as a /metrics page: the parser and the engine adapters either
// extract stats or say why, never crash, hang or read out of bounds; and any
// error they return is printable (it reaches logs and the admin API).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engines/engine_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view page(reinterpret_cast<const char*>(data), size);
  for (auto engine : {kvlb::engines::Engine::Auto, kvlb::engines::Engine::Vllm,
                      kvlb::engines::Engine::TensorRtLlm}) {
    auto r = kvlb::engines::extract_stats(page, engine);
    if (r.stats) {
      if (!(r.stats->waiting >= 0) || !(r.stats->running >= 0)) std::abort();
      if (r.stats->kv_usage && !(*r.stats->kv_usage >= 0 && *r.stats->kv_usage <= 1)) std::abort();
    } else {
      for (unsigned char c : r.error)
        if (c < 0x20 || c == 0x7f) std::abort();  // escaped: one log line stays one line
    }
  }
  return 0;
}
