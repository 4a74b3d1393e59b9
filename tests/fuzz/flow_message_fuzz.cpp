// Any bytes as a flow-sync message (a peer gateway, or anyone who can publish
// on the subject): the decoder returns a batch whose every event is well-formed,
// or an error; what it accepts encodes back to exactly the same bytes (one
// encoding per batch), and an error is printable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cluster/flow_message.h"
#include "cluster/wire.h"

using namespace kvlb::cluster;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto d = decode_flows(bytes);
  if (!d.ok) {
    if (d.error.empty() || !d.batch.events.empty()) std::abort();
    for (unsigned char c : d.error)
      if (c < 0x20 || c == 0x7f) std::abort();
    return 0;
  }
  if (!valid_name(d.batch.publisher)) std::abort();
  if (d.batch.events.size() > kMaxFlowEventsPerBatch) std::abort();
  for (const auto& e : d.batch.events)
    if (!flow_event_problem(e).empty()) std::abort();
  if (encode_flows(d.batch) != bytes) std::abort();
  return 0;
}
