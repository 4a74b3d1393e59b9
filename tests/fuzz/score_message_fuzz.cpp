// Any bytes as a score-bus message (another agent, or anyone who can publish on
// the subject): the decoder returns a message whose every field is in range, or
// an error; what it accepts encodes back to exactly the same bytes (one
// encoding per message), and an error is printable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cluster/score_message.h"

using namespace kvlb::cluster;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto d = decode(bytes);
  if (!d.ok) {
    if (d.error.empty()) std::abort();
    for (unsigned char c : d.error)
      if (c < 0x20 || c == 0x7f) std::abort();
    return 0;
  }
  const Message& m = d.message;
  if (!valid_name(m.publisher)) std::abort();
  if (m.reports.size() > kMaxReportsPerBatch) std::abort();
  for (const auto& r : m.reports) {
    if (r.waiting > kMaxRequests || r.running > kMaxRequests || r.age_ms > kMaxAgeMs) std::abort();
    if (r.kv_permille > 1000 && r.kv_permille != kNoKv) std::abort();
    if (r.replica.port == 0) std::abort();
  }
  if (encode(m) != bytes) std::abort();
  return 0;
}
