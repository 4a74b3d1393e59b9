#include "agent/flow_sync.h"

#include <arpa/inet.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "cluster/flow_message.h"
#include "common/clock.h"

namespace kvlb::agent {
namespace {

// Peers' events taken per round, at most: what a round's checking and the sync
// program's runs may cost whatever the peers send (64 x the 1,024 a batch holds).
constexpr size_t kMaxEventsPerRound = 65'536;

const char* kind_name(uint8_t k) {
  switch (k) {
    case KVLB_FLOW_EV_OPEN:
      return "open";
    case KVLB_FLOW_EV_CLOSE:
      return "close";
    case KVLB_FLOW_EV_REFRESH:
      return "refresh";
    default:
      return "unknown";
  }
}

bool same_addr(const kvlb_addr& a, const kvlb_addr& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

}  // namespace

std::string flows_subject(const std::string& prefix, const std::string& group) {
  return prefix + ".v1.flows." + group;
}

const char* flow_sync_result_name(int r) {
  switch (r) {
    case KVLB_SYNC_INSTALLED:
      return "installed";
    case KVLB_SYNC_REFRESHED:
      return "refreshed";
    case KVLB_SYNC_CONFLICT:
      return "conflict";
    case KVLB_SYNC_CLOSED:
      return "closed";
    case KVLB_SYNC_UNKNOWN:
      return "unknown_flow";
    case KVLB_SYNC_FULL:
      return "table_full";
    case KVLB_SYNC_INVALID:
      return "invalid";
    default:
      return "other";
  }
}

FlowSync::FlowSync(const AgentConfig& cfg, std::unique_ptr<cluster::ScoreBus> bus,
                   std::string agent_id)
    : subject_(flows_subject(cfg.cluster.subject_prefix, cfg.gateway.sync_group)),
      id_(std::move(agent_id)),
      bus_(std::move(bus)) {
  stats_.group = cfg.gateway.sync_group;
  std::vector<std::string> addrs = cfg.gateway.sync_peer_list();
  for (const auto* own : {&cfg.gateway.snat_ipv4, &cfg.gateway.snat_ipv6})
    if (!own->empty()) addrs.push_back(*own);
  for (const auto& a : addrs)
    if (auto e = Endpoint::parse_address(a, 0)) snat_.push_back(e->addr);
}

void FlowSync::round(const Agent& agent, GatewayFlows& flows) {
  stats_.connected = bus_->connected();
  if (!subscribed_) {
    bus_->subscribe({subject_});
    subscribed_ = true;
  }
  publish(flows);
  receive(agent, flows);
  stats_.bus = bus_->stats();
}

void FlowSync::publish(GatewayFlows& flows) {
  const auto events = flows.take_flow_events();
  if (events.empty()) return;
  // Off the bus, events are dropped, not queued: a flow announced late could
  // overwrite what a peer learned since (its close).
  if (!bus_->connected()) {
    reject("not_connected", events.size());
    return;
  }
  for (size_t i = 0; i < events.size(); i += cluster::kMaxFlowEventsPerBatch) {
    cluster::FlowBatch b;
    b.publisher = id_;
    b.sent_realtime_ns = realtime_ns();
    const size_t end = std::min(events.size(), i + cluster::kMaxFlowEventsPerBatch);
    for (size_t j = i; j < end; ++j) {
      if (!cluster::flow_event_problem(events[j]).empty()) {
        reject("own_event_malformed");  // the kernel wrote something this agent cannot send
        continue;
      }
      b.events.push_back(events[j]);
      stats_.events_out[kind_name(events[j].kind)] += 1;
    }
    if (b.events.empty()) continue;
    if (bus_->publish(subject_, cluster::encode_flows(b)))
      stats_.batches_out += 1;
    else
      reject("publish_failed");
  }
}

uint32_t FlowSync::resolve(const Agent& agent, const kvlb_flow_event& e, std::string& why) const {
  const int family = e.key.family;
  const uint16_t vport = ntohs(e.key.dport), bport = ntohs(e.backend_port);
  const ServiceConfig* svc = nullptr;
  for (const auto& s : agent.config().services)
    if (s.vip.family == family && same_addr(s.vip.addr, e.key.dst) && s.vip.port == vport) {
      svc = &s;
      break;
    }
  if (!svc) return why = "not_a_service", 0;
  bool listed = false;
  for (const auto& b : svc->backends)
    if (b.address.family == family && same_addr(b.address.addr, e.backend) &&
        b.address.port == bport)
      listed = true;
  if (!listed) return why = "not_a_backend", 0;
  bool snat_known = false;
  for (const auto& a : snat_) snat_known = snat_known || same_addr(a, e.snat);
  if (!snat_known) return why = "unknown_snat_address", 0;
  for (const auto& b : agent.backends())
    if (b.address.family == family && same_addr(b.address.addr, e.backend) &&
        b.address.port == bport)
      return b.id;
  return why = "not_a_backend", 0;
}

void FlowSync::receive(const Agent& agent, GatewayFlows& flows) {
  size_t budget = kMaxEventsPerRound;
  const uint64_t real_now = realtime_ns();
  for (const auto& msg : bus_->drain()) {
    if (msg.subject != subject_) {
      reject("wrong_subject");
      continue;
    }
    auto d = cluster::decode_flows(msg.data);
    if (!d.ok) {
      reject("malformed");
      spdlog::debug("flow sync: a malformed message: {}", d.error);
      continue;
    }
    if (d.batch.publisher == id_) continue;  // this gateway's own, back from the bus
    stats_.batches_in += 1;
    for (const auto& e : d.batch.events) {
      if (budget == 0) {
        reject("round_budget");
        continue;
      }
      --budget;
      std::string why;
      const uint32_t id = resolve(agent, e, why);
      if (!id) {
        reject(why);
        continue;
      }
      kvlb_flow_sync s{};
      s.ev = e;
      s.backend_id = id;
      stats_.applied[flow_sync_result_name(flows.apply_flow_sync(s))] += 1;
    }
    if (d.batch.sent_realtime_ns && real_now >= d.batch.sent_realtime_ns)
      stats_.delay.observe(static_cast<double>(real_now - d.batch.sent_realtime_ns) / 1e9);
  }
}

}  // namespace kvlb::agent
