// Any bytes as a completion request to the emulated replica: an ApiRequest, or
// an ApiError with a 4xx status whose JSON body serialises; no exception.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  for (bool chat : {false, true}) {
    auto r = kvlb::replica::parse_request(body, chat, "m", 4096);
    if (auto* e = std::get_if<kvlb::replica::ApiError>(&r)) {
      if (e->status < 400 || e->status > 499) std::abort();
      if (kvlb::replica::error_body(*e).empty()) std::abort();
    }
  }
  return 0;
}
