#include "agent/admin_api.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/names.h"
#include "metrics/exposition.h"

namespace kvlb::agent {

nlohmann::json services_json(const Agent& agent) {
  const auto& cfg_ = agent.config();
  auto arr = nlohmann::json::array();
  for (const auto& svc : cfg_.services) {
    std::vector<std::string> backends;
    for (const auto& b : svc.backends) backends.push_back(b.address.to_string());
    arr.push_back({{"name", svc.name},
                   {"vip", svc.vip.to_string()},
                   {"policy", policy_name(svc.policy)},
                   {"choices", svc.choices},
                   {"backends", backends}});
  }
  return arr;
}

nlohmann::json backends_json(const Agent& agent) {
  const auto& backends_ = agent.backends();
  const auto& dp_ = agent.maps();
  const uint64_t now = monotonic_ns();
  auto arr = nlohmann::json::array();
  for (const auto& b : backends_) {
    auto c = dp_.counters(b.id);
    arr.push_back({{"address", b.address.to_string()},
                   {"id", b.id},
                   {"engine", engines::engine_name(b.engine)},
                   {"state", state_name(b.last.state)},
                   {"waiting", b.last.waiting},
                   {"running", b.last.running},
                   {"kv_usage", b.last.kv_permille / 1000.0},
                   {"weight", b.last.weight},
                   {"inflight", c.inflight < 0 ? 0 : c.inflight},
                   {"picks", c.picks},
                   {"connect_failures", c.connect_failures},
                   {"score_age_s", b.last.updated_ns ? (now - b.last.updated_ns) / 1e9 : -1.0},
                   {"stale", b.stale},
                   {"scrape_failures", b.consecutive_failures},
                   {"suspect", b.suspect},
                   {"suspect_reason", b.suspect_reason},
                   {"last_error", b.last_error}});
  }
  return arr;
}

std::string metrics_text(const Agent& agent, const AdminViews& views) {
  const GatewayView* gw = views.gateway;
  const KeepaliveStats* ka = views.keepalive;
  const ClusterStats* cl = views.cluster;
  const auto& cfg_ = agent.config();
  const auto& backends_ = agent.backends();
  const auto& dp_ = agent.maps();
  const auto& st = agent.stats();
  using metrics::ExpositionType;
  metrics::TextWriter w;
  const uint64_t now = monotonic_ns();
  w.family("kvlb_agent_scrape_duration_seconds", "Time to scrape a replica's /metrics.",
           ExpositionType::Histogram);
  st.scrape_latency.write(w, "kvlb_agent_scrape_duration_seconds", {});
  w.family("kvlb_agent_scrape_to_map_write_seconds",
           "From the start of a scrape round to a score's write into the kernel.",
           ExpositionType::Histogram);
  st.scrape_to_map.write(w, "kvlb_agent_scrape_to_map_write_seconds", {});
  w.family("kvlb_agent_map_update_duration_seconds", "Time to write one score into the kernel.",
           ExpositionType::Histogram);
  st.map_update_latency.write(w, "kvlb_agent_map_update_duration_seconds", {});
  w.family("kvlb_agent_scrape_errors_total", "Failed scrapes by backend and kind.",
           ExpositionType::Counter);
  for (const auto& [key, n] : st.scrape_errors)
    w.sample("kvlb_agent_scrape_errors_total", {{"backend", key.first}, {"kind", key.second}},
             static_cast<double>(n));
  w.family("kvlb_agent_stale_backends", "Backends whose last good score is older than stale_after.",
           ExpositionType::Gauge);
  w.sample("kvlb_agent_stale_backends", {}, static_cast<double>(agent.stale_now()));
  w.family("kvlb_agent_stale_events_total", "Times a backend's score turned stale.",
           ExpositionType::Counter);
  w.sample("kvlb_agent_stale_events_total", {}, static_cast<double>(agent.stale_events()));
  w.family("kvlb_agent_service_backends_dropped",
           "Discovered endpoints a service does not balance from this node (a service "
           "balances at most 256; each node keeps its own subset).",
           ExpositionType::Gauge);
  for (const auto& svc : cfg_.services)
    w.sample("kvlb_agent_service_backends_dropped", {{"service", svc.name}},
             static_cast<double>(svc.dropped_backends));
  const auto events = dp_.events();
  w.family("kvlb_dataplane_events_total",
           "Kernel data-plane events: socket_table_full (a balanced socket could not be "
           "tracked), no_backend (connect() refused: no eligible backend).",
           ExpositionType::Counter);
  for (size_t e = 0; e < kEventNames.size(); ++e)
    if (!kEventNames[e].empty())
      w.sample("kvlb_dataplane_events_total", {{"event", std::string(kEventNames[e])}},
               static_cast<double>(events[e]));
  struct Row {
    const BackendState* b;
    kvlb_counters c;
  };
  std::vector<Row> rows;
  for (const auto& b : backends_) rows.push_back({&b, dp_.counters(b.id)});
  auto per_backend = [&](const char* name, const char* help, ExpositionType t, auto value) {
    w.family(name, help, t);
    for (const auto& r : rows) w.sample(name, {{"backend", r.b->address.to_string()}}, value(r));
  };
  per_backend("kvlb_backend_score_age_seconds", "Age of the score the kernel is using.",
              ExpositionType::Gauge, [&](const Row& r) {
                return r.b->last.updated_ns ? (now - r.b->last.updated_ns) / 1e9 : -1.0;
              });
  per_backend("kvlb_backend_picks_total", "Connections the kernel assigned to the backend.",
              ExpositionType::Counter, [](const Row& r) { return static_cast<double>(r.c.picks); });
  per_backend(
      "kvlb_backend_inflight", "Connections assigned and still open.", ExpositionType::Gauge,
      [](const Row& r) { return static_cast<double>(r.c.inflight < 0 ? 0 : r.c.inflight); });
  per_backend("kvlb_backend_connect_failures_total", "Connects to the backend that failed.",
              ExpositionType::Counter,
              [](const Row& r) { return static_cast<double>(r.c.connect_failures); });
  per_backend("kvlb_backend_waiting", "Requests waiting, as last scraped.", ExpositionType::Gauge,
              [](const Row& r) { return static_cast<double>(r.b->last.waiting); });
  per_backend("kvlb_backend_kv_usage", "KV-cache usage 0..1, as last scraped.",
              ExpositionType::Gauge, [](const Row& r) { return r.b->last.kv_permille / 1000.0; });
  per_backend("kvlb_backend_state", "0 active, 1 draining, 2 down.", ExpositionType::Gauge,
              [](const Row& r) { return static_cast<double>(r.b->last.state); });
  per_backend("kvlb_backend_suspect",
              "1 while the backend's reports are contradicted by the kernel's counts (bounded "
              "to the median of its peers).",
              ExpositionType::Gauge, [](const Row& r) { return r.b->suspect ? 1.0 : 0.0; });
  w.family("kvlb_agent_suspect_events_total", "Times a backend turned suspect.",
           ExpositionType::Counter);
  w.sample("kvlb_agent_suspect_events_total", {}, static_cast<double>(st.suspect_events));
  if (gw) {
    w.family("kvlb_gateway_packets_total",
             "Packets the XDP gateway saw (reason=packets: all), by the reason for their "
             "verdict (docs/gateway.md); closed and expired count flows, not packets.",
             ExpositionType::Counter);
    for (size_t i = 0; i < kGatewayStatNames.size(); ++i)
      if (!kGatewayStatNames[i].empty())
        w.sample("kvlb_gateway_packets_total", {{"reason", std::string(kGatewayStatNames[i])}},
                 static_cast<double>(gw->stats[i]));
    w.family("kvlb_gateway_flows", "Open flows through the gateway, by backend (last sweep).",
             ExpositionType::Gauge);
    for (const auto& b : backends_) {
      uint64_t n = 0;
      for (const auto& [id, f] : gw->flows)
        if (id == b.id) n = f;
      w.sample("kvlb_gateway_flows", {{"backend", b.address.to_string()}}, static_cast<double>(n));
    }
    w.family("kvlb_gateway_attached", "Interfaces the gateway runs on, with its XDP mode.",
             ExpositionType::Gauge);
    for (const auto& [ifname, mode] : gw->attachments)
      w.sample("kvlb_gateway_attached", {{"interface", ifname}, {"mode", mode}}, 1.0);
  }
  if (const FlowSyncStats* fs = views.flow_sync) {
    auto labelled = [&](const char* name, const char* help, const char* label,
                        const std::map<std::string, uint64_t>& m) {
      w.family(name, help, ExpositionType::Counter);
      for (const auto& [k, n] : m) w.sample(name, {{label, k}}, static_cast<double>(n));
    };
    w.family("kvlb_gateway_sync_connected", "1 while flow sync is connected to NATS.",
             ExpositionType::Gauge);
    w.sample("kvlb_gateway_sync_connected", {}, fs->connected ? 1.0 : 0.0);
    labelled("kvlb_gateway_sync_events_out_total",
             "Flow events this gateway published to its group, by kind.", "kind", fs->events_out);
    labelled("kvlb_gateway_sync_applied_total",
             "Peers' flow events written into this gateway's flow table, by the sync "
             "program's verdict.",
             "result", fs->applied);
    labelled("kvlb_gateway_sync_rejected_total",
             "Peers' messages or events refused (and own events not sent), by reason.", "reason",
             fs->rejected);
    w.family("kvlb_gateway_sync_batches_total", "Flow-event batches, by direction.",
             ExpositionType::Counter);
    w.sample("kvlb_gateway_sync_batches_total", {{"direction", "out"}},
             static_cast<double>(fs->batches_out));
    w.sample("kvlb_gateway_sync_batches_total", {{"direction", "in"}},
             static_cast<double>(fs->batches_in));
    w.family("kvlb_gateway_sync_delay_seconds",
             "A peer's flow-event batch, from its publish to its processing here.",
             ExpositionType::Histogram);
    fs->delay.write(w, "kvlb_gateway_sync_delay_seconds", {});
  }
  if (ka) {
    w.family("kvlb_keepalive_available",
             "1 when keep-alive rebalancing runs (0: this kernel cannot close sockets from "
             "an iterator, see the log).",
             ExpositionType::Gauge);
    w.sample("kvlb_keepalive_available", {}, ka->available ? 1.0 : 0.0);
    w.family("kvlb_keepalive_closed_total",
             "Idle pooled connections closed, by why their backend was shed.",
             ExpositionType::Counter);
    for (size_t i = 1; i < kShedReasonNames.size(); ++i)
      w.sample("kvlb_keepalive_closed_total", {{"reason", std::string(kShedReasonNames[i])}},
               static_cast<double>(ka->closed[i]));
    w.family("kvlb_keepalive_socket_visits_total",
             "Balanced connections the rebalancing rounds looked at, one count per round "
             "and connection, by verdict (closed, backend_ok, in_flight, no_response_end, "
             "too_recent, budget, destroy_failed).",
             ExpositionType::Counter);
    for (size_t i = 0; i < kRebalanceVerdictNames.size(); ++i)
      if (!kRebalanceVerdictNames[i].empty())
        w.sample("kvlb_keepalive_socket_visits_total",
                 {{"verdict", std::string(kRebalanceVerdictNames[i])}},
                 static_cast<double>(ka->verdicts[i]));
    w.family("kvlb_keepalive_shed_backends",
             "Backends whose idle pooled connections are being closed (last round).",
             ExpositionType::Gauge);
    w.sample("kvlb_keepalive_shed_backends", {}, static_cast<double>(ka->shed_backends));
    w.family("kvlb_keepalive_namespaces",
             "Network namespaces with balanced clients the last walking round visited.",
             ExpositionType::Gauge);
    w.sample("kvlb_keepalive_namespaces", {}, static_cast<double>(ka->namespaces));
    w.family("kvlb_keepalive_rounds_total", "Rebalancing rounds run.", ExpositionType::Counter);
    w.sample("kvlb_keepalive_rounds_total", {}, static_cast<double>(ka->rounds));
    w.family("kvlb_keepalive_errors_total",
             "Network namespaces a round could not walk, and failed rounds.",
             ExpositionType::Counter);
    w.sample("kvlb_keepalive_errors_total", {}, static_cast<double>(ka->errors));
  }
  if (cl) {
    auto gauge = [&](const char* name, const char* help, double v) {
      w.family(name, help, ExpositionType::Gauge);
      w.sample(name, {}, v);
    };
    auto counter = [&](const char* name, const char* help, uint64_t v) {
      w.family(name, help, ExpositionType::Counter);
      w.sample(name, {}, static_cast<double>(v));
    };
    gauge("kvlb_cluster_connected", "1 while the agent is connected to NATS.",
          cl->connected ? 1.0 : 0.0);
    gauge("kvlb_cluster_agents", "Live agents on the score bus, this one included.",
          static_cast<double>(cl->peers));
    gauge("kvlb_cluster_owned_replicas", "Replicas this agent scrapes for everyone.",
          static_cast<double>(cl->owned));
    gauge("kvlb_cluster_fallback_replicas",
          "Replicas scraped here because their shared score is late (owner silent, or this "
          "agent off the bus).",
          static_cast<double>(cl->falling_back));
    counter("kvlb_cluster_fallback_scrapes_total", "Scrapes made here while falling back.",
            cl->fallback_scrapes);
    w.family("kvlb_cluster_published_total", "Messages this agent published, by kind.",
             ExpositionType::Counter);
    w.sample("kvlb_cluster_published_total", {{"kind", "scores"}},
             static_cast<double>(cl->published_batches));
    w.sample("kvlb_cluster_published_total", {{"kind", "heartbeat"}},
             static_cast<double>(cl->heartbeats));
    counter("kvlb_cluster_published_reports_total", "Replica reports this agent published.",
            cl->published_reports);
    counter("kvlb_cluster_applied_reports_total",
            "Reports from other agents written into this node's maps.", cl->applied_reports);
    w.family("kvlb_cluster_rejected_total",
             "Messages (or reports within them) refused, by reason: malformed, "
             "subject_mismatch, unknown_service, unknown_replica, too_old, "
             "too_many_peers.",
             ExpositionType::Counter);
    for (const auto& [reason, n] : cl->rejected)
      w.sample("kvlb_cluster_rejected_total", {{"reason", reason}}, static_cast<double>(n));
    counter("kvlb_cluster_received_total", "Messages received from the bus.", cl->bus.received);
    counter("kvlb_cluster_received_bytes_total", "Their payload bytes.", cl->bus.received_bytes);
    counter("kvlb_cluster_published_bytes_total", "Payload bytes published.",
            cl->bus.publish_bytes);
    counter("kvlb_cluster_publish_errors_total", "Publishes the bus refused.",
            cl->bus.publish_errors);
    counter("kvlb_cluster_dropped_total",
            "Messages dropped because the agent fell behind (inbox full, slow consumer).",
            cl->bus.dropped);
    counter("kvlb_cluster_disconnects_total", "Connections to NATS lost.", cl->bus.disconnects);
    w.family("kvlb_cluster_propagation_seconds",
             "From the owner's scrape to this agent's map write, for shared scores.",
             ExpositionType::Histogram);
    cl->propagation.write(w, "kvlb_cluster_propagation_seconds", {});
  }
  return w.take();
}

nlohmann::json cluster_json(const Agent& agent, const ClusterStats& cs) {
  nlohmann::json replicas = nlohmann::json::array();
  const uint64_t now = monotonic_ns();
  for (const auto& b : agent.backends()) {
    const int64_t age_ms = b.last.updated_ns == 0 ? -1
                           : now > b.last.updated_ns
                               ? static_cast<int64_t>((now - b.last.updated_ns) / 1'000'000)
                               : 0;
    replicas.push_back({{"backend", b.address.to_string()},
                        {"node", b.node},
                        {"scraped_here", b.scraped},
                        {"source", b.source},
                        {"age_ms", age_ms}});
  }
  return {{"agent", cs.agent_id}, {"connected", cs.connected},       {"agents", cs.peers},
          {"owned", cs.owned},    {"falling_back", cs.falling_back}, {"replicas", replicas}};
}

void log_scores(const Agent& agent) {
  const auto& backends_ = agent.backends();
  const auto& dp_ = agent.maps();
  const uint64_t now = monotonic_ns();
  for (const auto& b : backends_) {
    auto c = dp_.counters(b.id);
    double age_ms = b.last.updated_ns ? (now - b.last.updated_ns) / 1e6 : -1;
    spdlog::info(
        "score {} state={} waiting={} running={} kv={:.1f}% inflight={} picks={} "
        "connect_failures={} age={:.0f}ms{}",
        b.address.to_string(), state_name(b.last.state), b.last.waiting, b.last.running,
        b.last.kv_permille / 10.0, c.inflight < 0 ? 0 : c.inflight, c.picks, c.connect_failures,
        age_ms, b.stale ? " STALE" : "");
  }
  spdlog::info("stale backends now {}, turned stale {} times", agent.stale_now(),
               agent.stale_events());
}

// A JSON body that cannot fail: strings that are not UTF-8 are replaced.
namespace {
std::string json_body(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

nlohmann::json gateway_json(const Agent& agent, const GatewayView& gw, const FlowSyncStats* sync) {
  nlohmann::json att = nlohmann::json::array(), stats = nlohmann::json::object(),
                 flows = nlohmann::json::array();
  for (const auto& [ifname, mode] : gw.attachments)
    att.push_back({{"interface", ifname}, {"mode", mode}});
  for (size_t i = 0; i < kGatewayStatNames.size(); ++i)
    if (!kGatewayStatNames[i].empty()) stats[std::string(kGatewayStatNames[i])] = gw.stats[i];
  for (const auto& b : agent.backends()) {
    uint64_t n = 0;
    for (const auto& [id, f] : gw.flows)
      if (id == b.id) n = f;
    flows.push_back({{"backend", b.address.to_string()},
                     {"flows", n},
                     {"inflight", agent.maps().counters(b.id).inflight}});
  }
  nlohmann::json out = {
      {"attachments", att}, {"stats", stats}, {"flows", flows}, {"swept", gw.swept}};
  if (sync)
    out["sync"] = {{"group", sync->group},
                   {"connected", sync->connected},
                   {"batches_out", sync->batches_out},
                   {"batches_in", sync->batches_in},
                   {"events_out", sync->events_out},
                   {"applied", sync->applied},
                   {"rejected", sync->rejected}};
  return out;
}

// The admin API's routes.
AdminResponse admin_route(Agent& agent, const AdminRequest& r, const AdminViews& views) {
  const GatewayView* gw = views.gateway;
  const std::string prefix = "/v1/backends/";
  if (r.method == "GET" && r.target == "/v1/services")
    return {200, "application/json", json_body(services_json(agent))};
  if (r.method == "GET" && r.target == "/v1/backends")
    return {200, "application/json", json_body(backends_json(agent))};
  if (r.method == "GET" && r.target == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(agent, views)};
  if (r.method == "GET" && r.target == "/v1/gateway") {
    if (!gw)
      return {404, "application/json", json_body({{"error", "the agent is not in gateway mode"}})};
    return {200, "application/json", json_body(gateway_json(agent, *gw, views.flow_sync))};
  }
  if (r.method == "GET" && r.target == "/v1/cluster") {
    if (!views.cluster)
      return {404, "application/json", json_body({{"error", "score sharing is off"}})};
    return {200, "application/json", json_body(cluster_json(agent, *views.cluster))};
  }
  if (r.method == "GET" && r.target == "/healthz") return {200, "text/plain", "ok\n"};
  if (r.target.rfind(prefix, 0) == 0) {
    auto rest = r.target.substr(prefix.size());
    auto slash = rest.rfind('/');
    if (slash != std::string::npos && r.method == "POST") {
      auto address = rest.substr(0, slash), verb = rest.substr(slash + 1);
      if (verb == "drain" || verb == "undrain") {
        if (!agent.set_drained(address, verb == "drain"))
          return {404, "application/json", json_body({{"error", "no backend " + address}})};
        return {200, "application/json", json_body({{"backend", address}, {"action", verb}})};
      }
    }
  }
  return {404, "application/json",
          json_body({{"error", r.method + " " + r.target + ": no such route"}})};
}

}  // namespace kvlb::agent
