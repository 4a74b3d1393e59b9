// flow_message.h - what gateways tell each other about the flows they place
// (flow sync, docs/gateway.md): a batch of flow events (struct kvlb_flow_event:
// opened, closed, still open), published by the gateway that placed the flows
// on <prefix>.v1.flows.<group>. A small versioned binary encoding, decoded
// strictly: a message is untrusted input, so a decode returns a batch whose
// every field is in range, or an error that names the field and why.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvlb_maps.h"

namespace kvlb::cluster {

inline constexpr uint8_t kFlowWireVersion = 1;
inline constexpr size_t kMaxFlowEventsPerBatch = 1024;
// kind, family, four addresses (client, VIP, SNAT, backend), four ports.
inline constexpr size_t kFlowEventBytes = 2 + 4 * 16 + 4 * 2;

struct FlowBatch {
  std::string publisher;          // agent id
  uint64_t sent_realtime_ns = 0;  // the publisher's clock, for the delay metric only
  std::vector<kvlb_flow_event> events;
};

// Throws std::invalid_argument for an event out of range or too many events.
std::string encode_flows(const FlowBatch& b);

struct DecodedFlows {
  bool ok = false;
  FlowBatch batch;
  std::string error;  // when !ok: which field and why
};
DecodedFlows decode_flows(std::string_view bytes);

// Why `e` is not a well-formed event ("" when it is): a known kind, IPv4 or
// IPv6 with one encoding (IPv4 in the first word, the rest zero), TCP, no port 0.
std::string flow_event_problem(const kvlb_flow_event& e);

}  // namespace kvlb::cluster
