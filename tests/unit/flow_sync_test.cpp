// Flow sync between gateways (docs/gateway.md): the flow messages' wire format
// (strict decoding), and two gateways' agents over the in-memory bus with an
// in-memory flow table: what one places reaches the other with the backend's
// id there; what names a service, backend or SNAT address the receiver does
// not have is refused; a gateway's own messages are not applied to itself.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/flow_sync.h"
#include "cluster/flow_message.h"
#include "cluster/in_memory_score_bus.h"
#include "dataplane/gateway_flows.h"
#include "dataplane/in_memory_map_store.h"

using namespace kvlb;
using namespace kvlb::cluster;
using kvlb::agent::Agent;
using kvlb::agent::AgentConfig;
using kvlb::agent::FlowSync;

namespace {

kvlb_addr addr(const char* text) {
  return Endpoint::parse_address(text, 0)->addr;
}

kvlb_flow_event event(uint8_t kind, const char* client, uint16_t cport, const char* vip,
                      uint16_t vport, const char* snat, uint16_t sport, const char* backend,
                      uint16_t bport) {
  kvlb_flow_event e{};
  e.kind = kind;
  e.key.family = Endpoint::parse_address(client, 0)->family;
  e.key.proto = IPPROTO_TCP;
  e.key.src = addr(client);
  e.key.dst = addr(vip);
  e.key.sport = htons(cport);
  e.key.dport = htons(vport);
  e.snat = addr(snat);
  e.snat_port = htons(sport);
  e.backend = addr(backend);
  e.backend_port = htons(bport);
  return e;
}

kvlb_flow_event v4_event(uint8_t kind = KVLB_FLOW_EV_OPEN, uint16_t cport = 40000,
                         const char* snat = "192.0.2.2", const char* backend = "10.1.0.2") {
  return event(kind, "198.51.100.7", cport, "203.0.113.10", 80, snat, 12000, backend, 8000);
}

bool same(const kvlb_flow_event& a, const kvlb_flow_event& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

}  // namespace

TEST(FlowMessage, RoundTripsBothFamiliesAndEveryKind) {
  FlowBatch b;
  b.publisher = "gw-1";
  b.sent_realtime_ns = 1'700'000'000'000'000'123ull;
  b.events = {v4_event(KVLB_FLOW_EV_OPEN), v4_event(KVLB_FLOW_EV_CLOSE, 40001),
              event(KVLB_FLOW_EV_REFRESH, "2001:db8:1::7", 40002, "2001:db8:ff::10", 80,
                    "2001:db8:2::2", 12001, "fd00::2", 8000)};
  const auto wire = encode_flows(b);
  EXPECT_EQ(wire.size(), 3 + 1 + 4 + 8 + 2 + 3 * kFlowEventBytes);
  auto d = decode_flows(wire);
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_EQ(d.batch.publisher, "gw-1");
  EXPECT_EQ(d.batch.sent_realtime_ns, b.sent_realtime_ns);
  ASSERT_EQ(d.batch.events.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(same(d.batch.events[i], b.events[i])) << i;
}

TEST(FlowMessage, DecodingIsStrict) {
  FlowBatch b;
  b.publisher = "gw-1";
  b.events = {v4_event()};
  const std::string good = encode_flows(b);
  auto expect_error = [](const std::string& bytes, const std::string& what) {
    auto d = decode_flows(bytes);
    EXPECT_FALSE(d.ok) << what;
    EXPECT_NE(d.error.find(what), std::string::npos) << d.error;
    EXPECT_TRUE(d.batch.events.empty());
  };
  expect_error(good.substr(0, good.size() - 1), "count");
  expect_error(good + "x", "count");
  std::string bad = good;
  bad[0] = 'X';
  expect_error(bad, "magic");
  bad = good;
  bad[2] = 2;
  expect_error(bad, "version");
  const size_t ev = good.size() - kFlowEventBytes;  // the event's first byte: its kind
  bad = good;
  bad[ev] = 9;
  expect_error(bad, "events[0].kind");
  bad = good;
  bad[ev + 1] = 5;
  expect_error(bad, "events[0].family");
  bad = good;
  bad[ev + 2 + 5] = 1;  // the client address's second word, for IPv4
  expect_error(bad, "stray bytes");
  bad = good;
  bad[ev + 2 + 64] = bad[ev + 2 + 65] = 0;  // client port 0
  expect_error(bad, "port: 0");
  // A count beyond the bound is refused before anything is allocated.
  bad = good.substr(0, good.size() - kFlowEventBytes - 2) + std::string("\xff\xff", 2);
  expect_error(bad, "count");
  // An encoder refuses what a decoder would.
  FlowBatch wrong = b;
  wrong.events[0].kind = 0;
  EXPECT_THROW(encode_flows(wrong), std::invalid_argument);
  wrong = b;
  wrong.events.assign(kMaxFlowEventsPerBatch + 1, v4_event());
  EXPECT_THROW(encode_flows(wrong), std::invalid_argument);
}

namespace {

// The gateway's flow table, in memory: the events the kernel would have
// written, and what the sync program was handed.
class FakeFlows : public GatewayFlows {
 public:
  std::vector<kvlb_flow_event> take_flow_events() override {
    auto out = std::move(pending);
    pending.clear();
    return out;
  }
  int apply_flow_sync(const kvlb_flow_sync& s) override {
    applied.push_back(s);
    return KVLB_SYNC_INSTALLED;
  }
  std::vector<kvlb_flow_event> pending;
  std::vector<kvlb_flow_sync> applied;
};

AgentConfig gateway_config(const std::string& snat, const std::string& peers,
                           const std::string& backends) {
  return agent::parse_config("mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: " + snat +
                             ", sync_group: edge, sync_peers: '" + peers +
                             "'}\ncluster: {nats_servers: 'nats://127.0.0.1:4222'}\n"
                             "services:\n  - name: llm\n    vip: 203.0.113.10:80\n    backends: [" +
                             backends + "]\n");
}

struct Gw {
  Gw(const std::string& id, std::shared_ptr<InMemoryHub> hub, const AgentConfig& cfg)
      : agent(cfg, maps) {
    agent.apply_config();
    auto b = std::make_unique<InMemoryScoreBus>(hub);
    bus = b.get();
    sync = std::make_unique<FlowSync>(cfg, std::move(b), id);
  }
  uint32_t id_of(const std::string& address) const {
    for (const auto& b : agent.backends())
      if (b.address.to_string() == address) return b.id;
    return 0;
  }
  InMemoryMapStore maps;
  Agent agent;
  InMemoryScoreBus* bus = nullptr;
  std::unique_ptr<FlowSync> sync;
  FakeFlows flows;
};

}  // namespace

// What one gateway places reaches the other, with the backend's id there (the
// two agents number their backends differently), and not itself.
TEST(FlowSync, APeersFlowsArriveWithTheBackendsIdHere) {
  auto hub = std::make_shared<InMemoryHub>();
  Gw a("gw-a", hub,
       gateway_config("192.0.2.1", "192.0.2.2",
                      "{address: '10.1.0.1:8000'}, {address: '10.1.0.2:8000'}"));
  Gw b("gw-b", hub,
       gateway_config("192.0.2.2", "192.0.2.1",
                      "{address: '10.1.0.2:8000'}, {address: '10.1.0.1:8000'}"));
  a.sync->round(a.agent, a.flows);  // subscribed
  b.sync->round(b.agent, b.flows);
  b.flows.pending = {v4_event(KVLB_FLOW_EV_OPEN, 40000, "192.0.2.2", "10.1.0.2"),
                     v4_event(KVLB_FLOW_EV_CLOSE, 40000, "192.0.2.2", "10.1.0.2")};
  b.sync->round(b.agent, b.flows);
  a.sync->round(a.agent, a.flows);
  ASSERT_EQ(a.flows.applied.size(), 2u);
  EXPECT_TRUE(
      same(a.flows.applied[0].ev, v4_event(KVLB_FLOW_EV_OPEN, 40000, "192.0.2.2", "10.1.0.2")));
  EXPECT_EQ(a.flows.applied[0].backend_id, a.id_of("10.1.0.2:8000"));
  EXPECT_NE(a.id_of("10.1.0.2:8000"), b.id_of("10.1.0.2:8000")) << "the test needs different ids";
  EXPECT_EQ(a.flows.applied[1].ev.kind, KVLB_FLOW_EV_CLOSE);
  b.sync->round(b.agent, b.flows);
  EXPECT_TRUE(b.flows.applied.empty()) << "a gateway applied its own events";
  EXPECT_EQ(b.sync->stats().events_out.at("open"), 1u);
  EXPECT_EQ(b.sync->stats().events_out.at("close"), 1u);
  EXPECT_EQ(a.sync->stats().applied.at("installed"), 2u);
}

// Only what this gateway balances, through a SNAT address of the group.
TEST(FlowSync, EventsThisGatewayCannotCarryAreRefused) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = gateway_config("192.0.2.1", "192.0.2.2", "{address: '10.1.0.1:8000'}");
  Gw a("gw-a", hub, cfg);
  Gw b("gw-b", hub, cfg);
  a.sync->round(a.agent, a.flows);
  b.flows.pending = {
      v4_event(KVLB_FLOW_EV_OPEN, 40000, "192.0.2.2", "10.1.0.9"),  // not a backend of the service
      v4_event(KVLB_FLOW_EV_OPEN, 40001, "192.0.2.77",
               "10.1.0.1"),  // not a SNAT address of the group
      event(KVLB_FLOW_EV_OPEN, "198.51.100.7", 40002, "203.0.113.11", 80, "192.0.2.2", 12000,
            "10.1.0.1", 8000),                                       // not a VIP
      v4_event(KVLB_FLOW_EV_OPEN, 40003, "192.0.2.2", "10.1.0.1")};  // fine
  b.sync->round(b.agent, b.flows);
  a.sync->round(a.agent, a.flows);
  ASSERT_EQ(a.flows.applied.size(), 1u);
  EXPECT_EQ(ntohs(a.flows.applied[0].ev.key.sport), 40003);
  const auto& r = a.sync->stats().rejected;
  EXPECT_EQ(r.at("not_a_backend"), 1u);
  EXPECT_EQ(r.at("unknown_snat_address"), 1u);
  EXPECT_EQ(r.at("not_a_service"), 1u);
}

// A malformed message is refused whole; off the bus, events are dropped (a
// late announcement could undo a close the peers learned since), counted.
TEST(FlowSync, MalformedMessagesAndEventsOffTheBusAreCounted) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = gateway_config("192.0.2.1", "192.0.2.2", "{address: '10.1.0.1:8000'}");
  Gw a("gw-a", hub, cfg);
  Gw b("gw-b", hub, cfg);
  a.sync->round(a.agent, a.flows);
  b.bus->publish(agent::flows_subject("kvlb", "edge"), "KF\x01garbage");
  a.sync->round(a.agent, a.flows);
  EXPECT_EQ(a.sync->stats().rejected.at("malformed"), 1u);
  EXPECT_TRUE(a.flows.applied.empty());
  b.bus->set_connected(false);
  b.flows.pending = {v4_event(KVLB_FLOW_EV_OPEN, 40000, "192.0.2.1", "10.1.0.1")};
  b.sync->round(b.agent, b.flows);
  EXPECT_EQ(b.sync->stats().rejected.at("not_connected"), 1u);
  b.bus->set_connected(true);
  b.sync->round(b.agent, b.flows);
  a.sync->round(a.agent, a.flows);
  EXPECT_TRUE(a.flows.applied.empty()) << "an event held while off the bus was sent later";
}

TEST(FlowSync, ConfigurationIsChecked) {
  auto err = [](const std::string& yaml) {
    try {
      agent::parse_config(yaml);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string svc =
      "services:\n  - name: llm\n    vip: 203.0.113.10:80\n    backends: [{address: "
      "'10.1.0.1:8000'}]\n";
  EXPECT_NE(
      err("mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1, sync_group: edge}\n" +
          svc)
          .find("gateway.sync_group"),
      std::string::npos)
      << "flow sync without NATS";
  EXPECT_NE(
      err("mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1, sync_group: 'a.b'}\n"
          "cluster: {nats_servers: 'nats://x:4222'}\n" +
          svc)
          .find("gateway.sync_group"),
      std::string::npos);
  EXPECT_NE(
      err("mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1, sync_group: edge, "
          "sync_peers: 'nope'}\ncluster: {nats_servers: 'nats://x:4222'}\n" +
          svc)
          .find("gateway.sync_peers"),
      std::string::npos);
  EXPECT_NE(
      err("mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1, sync_group: edge, "
          "sync_refresh: 700s}\ncluster: {nats_servers: 'nats://x:4222'}\n" +
          svc)
          .find("gateway.sync_refresh"),
      std::string::npos);
  EXPECT_NE(err("cgroup: x\ngateway: {sync_group: edge}\n" + svc).find("gateway.sync_group"),
            std::string::npos);
  EXPECT_EQ(
      err("mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1, sync_group: edge, "
          "sync_peers: '192.0.2.2, 2001:db8::2'}\ncluster: {nats_servers: 'nats://x:4222'}\n" +
          svc),
      "");
}
