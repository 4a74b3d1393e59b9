// gateway_flows.h - the seam between flow sync (agent/flow_sync.h) and the XDP
// gateway's flow table: the events the gateway writes for its peers, and a
// peer's event applied to the table. DataPlane implements it over the kernel
// (the flow-event ring and the sync program); the unit tests, in memory.
#pragma once

#include <vector>

#include "kvlb_maps.h"

namespace kvlb {

class GatewayFlows {
 public:
  virtual ~GatewayFlows() = default;
  // The flow events the gateway wrote since the last call, oldest first.
  virtual std::vector<kvlb_flow_event> take_flow_events() = 0;
  // A peer's event, validated, with the backend's id here: enum kvlb_flow_sync_result.
  virtual int apply_flow_sync(const kvlb_flow_sync& s) = 0;
};

}  // namespace kvlb
