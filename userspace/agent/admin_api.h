// admin_api.h - what the agent shows, and the admin API's routes: the agent's
// services and backends as JSON (GET /v1/services, /v1/backends), its own metrics
// in the Prometheus text format (GET /metrics), drain and undrain (POST, on the
// unix socket only: admin_server.h), and the periodic score log. Rendering lives
// here, next to the API; the Agent only keeps the state.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "agent/admin_server.h"
#include "agent/agent.h"

namespace kvlb::agent {

nlohmann::json services_json(const Agent& agent);
nlohmann::json backends_json(const Agent& agent);
std::string metrics_text(const Agent& agent);
// One log line per backend (scores and kernel counters), and the stale count.
void log_scores(const Agent& agent);

// Serves one request (GET routes render; POST drain/undrain change the agent).
AdminResponse admin_route(Agent& agent, const AdminRequest& r);

}  // namespace kvlb::agent
