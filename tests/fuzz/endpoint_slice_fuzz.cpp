// Any bytes as an EndpointSlice from the API server: its endpoints, or
// std::invalid_argument with the reason; no other exception, no abort; every
// endpoint it returns has an address of a known family.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "k8s/endpoint_slices.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  for (const char* port : {"http", ""}) {
    try {
      for (const auto& e : kvlb::k8s::endpoints_of_slice(j, port))
        if (e.address.family != KVLB_AF_INET && e.address.family != KVLB_AF_INET6) std::abort();
    } catch (const std::invalid_argument&) {
    }
  }
  return 0;
}
