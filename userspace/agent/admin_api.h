// admin_api.h - what the agent shows, and the admin API's routes: the agent's
// services and backends as JSON (GET /v1/services, /v1/backends), its own metrics
// in the Prometheus text format (GET /metrics), drain and undrain (POST, on the
// unix socket only: admin_server.h), and the periodic score log. Rendering lives
// here, next to the API; the Agent only keeps the state.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/admin_server.h"
#include "agent/agent.h"
#include "agent/cluster_sync.h"
#include "agent/flow_sync.h"
#include "agent/keepalive.h"

namespace kvlb::agent {

// The XDP gateway as the admin API shows it (gateway mode): a snapshot the
// supervisor takes after each sweep, so a request never walks the flow table.
struct GatewayView {
  std::vector<std::pair<std::string, std::string>> attachments;  // interface, mode
  std::array<uint64_t, KVLB_GW_STAT_COUNT> stats{};
  std::vector<std::pair<uint32_t, uint64_t>> flows;  // backend id, open flows
  uint64_t swept = 0;                                // flows removed by sweeps, total
};
nlohmann::json gateway_json(const Agent& agent, const GatewayView& gw,
                            const FlowSyncStats* sync = nullptr);

// What the supervisor shows besides the agent, each null when not in use: the
// gateway's snapshot (gateway mode), keep-alive rebalancing's counters (some
// service rebalances), score sharing's (cluster.nats_servers set).
struct AdminViews {
  const GatewayView* gateway = nullptr;
  const FlowSyncStats* flow_sync = nullptr;
  const KeepaliveStats* keepalive = nullptr;
  const ClusterStats* cluster = nullptr;
};

nlohmann::json services_json(const Agent& agent);
nlohmann::json backends_json(const Agent& agent);
std::string metrics_text(const Agent& agent, const AdminViews& views = {});
nlohmann::json cluster_json(const Agent& agent, const ClusterStats& cs);
// One log line per backend (scores and kernel counters), and the stale count.
void log_scores(const Agent& agent);

// Serves one request (GET routes render; POST drain/undrain change the agent).
// GET /v1/gateway and /v1/cluster answer 404 when that view is null.
AdminResponse admin_route(Agent& agent, const AdminRequest& r, const AdminViews& views = {});

}  // namespace kvlb::agent
