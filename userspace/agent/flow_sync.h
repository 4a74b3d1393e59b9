// flow_sync.h - flow sync between the gateways of a group (docs/gateway.md):
// each round, the flow events this gateway wrote (flows it placed, flows that
// ended, open flows again now and then) out on <prefix>.v1.flows.<group>, and
// the peers' events in, each checked against this gateway's own services,
// backends and the group's SNAT addresses before the gateway's sync program
// writes it into the flow table. So a flow that arrives at another gateway of
// the group keeps the backend and the source port its first gateway chose.
//
// The bus and the flow table are seams (cluster/score_bus.h,
// dataplane/gateway_flows.h): NATS and the kernel in the agent, in memory in
// the unit tests. Runs on the agent's loop thread, under its lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/config.h"
#include "cluster/score_bus.h"
#include "dataplane/gateway_flows.h"
#include "metrics/exposition.h"

namespace kvlb::agent {

struct FlowSyncStats {
  std::string group;
  bool connected = false;
  uint64_t batches_out = 0, batches_in = 0;
  std::map<std::string, uint64_t> events_out;  // by kind: open, close, refresh
  std::map<std::string, uint64_t> applied;     // peers' events, by the sync program's verdict
  std::map<std::string, uint64_t> rejected;    // peers' messages or events refused, by reason
  cluster::BusStats bus;
  // A peer's flow event, from its publish to its write here (the two hosts'
  // real-time clocks: exact on one host, NTP-accurate across hosts).
  metrics::Histogram delay{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}};
};

// <prefix>.v1.flows.<group>
std::string flows_subject(const std::string& prefix, const std::string& group);
// The sync program's verdict (enum kvlb_flow_sync_result) as a metric label.
const char* flow_sync_result_name(int r);

class FlowSync {
 public:
  FlowSync(const AgentConfig& cfg, std::unique_ptr<cluster::ScoreBus> bus, std::string agent_id);

  // One round: this gateway's events out, the peers' in. `agent` tells which
  // services and backends this gateway balances (and their ids).
  void round(const Agent& agent, GatewayFlows& flows);

  const FlowSyncStats& stats() const { return stats_; }

 private:
  void publish(GatewayFlows& flows);
  void receive(const Agent& agent, GatewayFlows& flows);
  // The backend's id here for a peer's event, or 0 with the reason in `why`.
  uint32_t resolve(const Agent& agent, const kvlb_flow_event& e, std::string& why) const;
  void reject(const std::string& reason, uint64_t n = 1) { stats_.rejected[reason] += n; }

  std::string subject_;
  std::string id_;
  std::unique_ptr<cluster::ScoreBus> bus_;
  std::vector<kvlb_addr>
      snat_;  // SNAT addresses a peer's flow may name (this one's and the peers')
  bool subscribed_ = false;
  FlowSyncStats stats_;
};

}  // namespace kvlb::agent
