// Keep-alive rebalancing without the kernel: the idle rule (bpf/lib/idle.h),
// the shed rule (bpf/lib/shed.h), the agent's shed decisions over the maps, the
// close budget and a round against an in-memory SocketCloser.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/keepalive.h"
#include "dataplane/in_memory_map_store.h"

extern "C" {
#include "idle.h"
#include "shed.h"
}

using namespace kvlb;
using namespace kvlb::agent;

namespace {

constexpr uint64_t kMs = 1'000'000ull;

// A pooled connection between requests: a 100-byte request and a 2,000-byte
// response exchanged, the response ended at t = 1 s, everything read.
struct Idle {
  kvlb_response_end end{2000, 100, 1000 * kMs};
  kvlb_sock_snapshot s{100, 100, 100, 2000, 2000, 1500 * kMs, &end};
};

}  // namespace

TEST(IdleRule, BetweenRequestsAfterTheIdleTime) {
  Idle c;
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 500 * kMs), KVLB_RB_CLOSED);
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 501 * kMs), KVLB_RB_TOO_RECENT);
}

TEST(IdleRule, RequestBytesQueuedUnacknowledgedOrResponseUnread) {
  Idle c;
  c.s.write_seq = 150;  // the next request written, not yet sent
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_IN_FLIGHT);
  c = Idle{};
  c.s.write_seq = c.s.snd_nxt = 150;  // sent, not acknowledged
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_IN_FLIGHT);
  c = Idle{};
  c.s.copied_seq = 1990;  // the application has not read the response's end
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_IN_FLIGHT);
}

TEST(IdleRule, ARequestSentAndAcknowledgedAfterTheResponseIsInFlight) {
  // The next request went out and the replica acknowledged it; it is thinking
  // (prefill, a queue): silent, but not idle.
  Idle c;
  c.s.write_seq = c.s.snd_nxt = c.s.snd_una = 180;
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_NO_RESPONSE_END);
}

TEST(IdleRule, BytesAfterTheResponseEndOrNoEndSeen) {
  Idle c;
  c.s.rcv_nxt = c.s.copied_seq = 2100;  // more arrived after that response (a new one begun)
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_NO_RESPONSE_END);
  c = Idle{};
  c.s.end = nullptr;  // TLS, Content-Length, HTTP/2: never closed
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_NO_RESPONSE_END);
}

TEST(IdleRule, SequenceNumbersWrap) {
  // The request crossed 2^32 on the sending side, the response on the receiving.
  Idle c;
  c.end = {0x10, 0x5, 1000 * kMs};
  c.s = {0x5, 0x5, 0x5, 0x10, 0x10, 1500 * kMs, &c.end};
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_CLOSED);
  c.s.write_seq = c.s.snd_nxt = c.s.snd_una = 0x30;  // the next request, acknowledged
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_NO_RESPONSE_END);
}

TEST(IdleRule, OnlyASegmentWithNewBytesRecordsAResponseEnd) {
  // A retransmitted last segment arrives after the next request went out: it
  // must not stamp the old end with the new snd_nxt (the hook runs before TCP
  // discards the duplicate).
  EXPECT_TRUE(kvlb_brings_new_data(2000, 1990));
  EXPECT_FALSE(kvlb_brings_new_data(2000, 2000));        // a duplicate of the last bytes
  EXPECT_FALSE(kvlb_brings_new_data(1500, 2000));        // an old segment
  EXPECT_TRUE(kvlb_brings_new_data(0x10, 0xfffffff0u));  // across the wrap
  EXPECT_FALSE(kvlb_brings_new_data(0xfffffff0u, 0x10));
}

TEST(IdleRule, AResponseEndFromTheFutureIsRecent) {
  Idle c;
  c.end.at_ns = 2000 * kMs;  // the clock read before the segment's update
  EXPECT_EQ(kvlb_idle_verdict(&c.s, 0), KVLB_RB_TOO_RECENT);
}

TEST(IdleRule, ChunkedTerminator) {
  auto u = [](const char* p) { return reinterpret_cast<const unsigned char*>(p); };
  EXPECT_TRUE(kvlb_is_chunked_end(u("\r\n0\r\n\r\n")));
  EXPECT_FALSE(kvlb_is_chunked_end(u("\n\n0\r\n\r\n")));
  EXPECT_FALSE(kvlb_is_chunked_end(u("\r\n10\r\n\r")));
  // uvicorn's last chunk, written on its own.
  EXPECT_TRUE(kvlb_is_last_chunk(u("0\r\n\r\n")));
  EXPECT_FALSE(kvlb_is_last_chunk(u("a\r\n\r\n")));
}

namespace {

kvlb_view view(uint32_t id, uint32_t waiting, uint32_t kv, int64_t inflight = 0) {
  kvlb_view v{};
  v.backend_id = id;
  v.eligible = 1;
  v.waiting = waiting;
  v.kv = kv;
  v.inflight = inflight;
  v.weight = 100;
  v.score = 1000ull * waiting + kv + 100ull * static_cast<uint64_t>(inflight);
  return v;
}

}  // namespace

TEST(ShedRule, ByTheMarginOnThePolicysLoad) {
  auto best = view(1, 0, 300), b = view(2, 1, 300);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &b, &best, 0, 1000), KVLB_SHED_POOR_CHOICE);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &b, &best, 0, 1001), KVLB_SHED_NONE);
  // p2c-kv: a KV gap of 50% is the margin of 1000.
  auto kv_hi = view(2, 0, 800);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_KV, &kv_hi, &best, 0, 1000), KVLB_SHED_POOR_CHOICE);
  auto kv_mid = view(2, 0, 700);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_KV, &kv_mid, &best, 0, 1000), KVLB_SHED_NONE);
  // least-inflight, or a stale score: connections in flight, and a move
  // changes both counts, so b must lead by the margin plus two.
  auto busy = view(2, 0, 0, 4), calm = view(1, 5, 900, 1);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_LEAST_INFLIGHT, &busy, &calm, 0, 1000),
            KVLB_SHED_POOR_CHOICE);
  busy.inflight = 3;  // 3 against 1: moving one makes it 2 against 2 - no gain worth a close
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_LEAST_INFLIGHT, &busy, &calm, 0, 1000), KVLB_SHED_NONE);
  auto two = view(2, 0, 0, 2), one = view(1, 0, 0, 1);  // the best split of 3: never churned
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_LEAST_INFLIGHT, &two, &one, 0, 100), KVLB_SHED_NONE);
  busy.inflight = 4;
  busy.stale = 1;
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &busy, &calm, 0, 1000),
            KVLB_SHED_POOR_CHOICE);
}

TEST(ShedRule, DrainingWhenThereIsBetterNeverTheBestRandomOrIneligible) {
  auto best = view(1, 0, 0), b = view(2, 9, 900);
  auto drained = view(2, 0, 0);
  drained.eligible = 0;  // draining: no new connections
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &drained, &best, 1, 1000),
            KVLB_SHED_DRAINING);
  // The last one standing: closing would only get the client refused.
  auto none = view(1, 0, 0);
  none.eligible = 0;
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &drained, &none, 1, 1000), KVLB_SHED_NONE);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &drained, &drained, 1, 1000),
            KVLB_SHED_NONE);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &best, &best, 0, 0), KVLB_SHED_NONE);
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_RANDOM, &b, &best, 0, 1000), KVLB_SHED_NONE);
  b.eligible = 0;  // down: its connections fail on their own
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &b, &best, 0, 1000), KVLB_SHED_NONE);
  b = view(2, 9, 900);
  b.cooling = 1;
  EXPECT_EQ(kvlb_shed_reason(KVLB_POLICY_P2C_QUEUE_KV, &b, &best, 0, 1000), KVLB_SHED_NONE);
}

namespace {

const char* kServices = R"(
services:
  - name: a
    vip: 10.96.0.1:80
    keepalive_rebalance: true
    backends: [{address: "10.1.0.1:8000"}, {address: "10.1.0.2:8000"}, {address: "10.1.0.3:8000"}]
  - name: b
    vip: 10.96.0.2:80
    keepalive_rebalance: false
    backends: [{address: "10.1.0.3:8000"}, {address: "10.1.0.4:8000"}]
)";

AgentConfig config(const std::string& yaml) {
  return parse_config("cgroup: test\nscrape_interval: 50ms\nstale_after: 1s\n" + yaml);
}

uint32_t id_of(const Agent& a, const std::string& addr) {
  for (const auto& b : a.backends())
    if (b.address.to_string() == addr) return b.id;
  ADD_FAILURE() << "no backend " << addr;
  return 0;
}

void score(InMemoryMapStore& m, uint32_t id, uint32_t waiting, uint16_t kv, uint64_t now,
           uint8_t state = KVLB_STATE_ACTIVE) {
  kvlb_score s = m.score(id);
  s.waiting = waiting;
  s.kv_permille = kv;
  s.state = state;
  s.updated_ns = now;
  s.picks_at_score = m.counters(id).picks;
  m.put_score(id, s);
}

struct FakeCloser : SocketCloser {
  std::vector<std::pair<uint32_t, uint32_t>> shed;
  std::vector<uint32_t> budgets;
  uint64_t close_each = 1;  // per round, up to the budget
  void set_shed(const std::vector<std::pair<uint32_t, uint32_t>>& s) override { shed = s; }
  CloseRound close_idle(uint64_t, uint32_t budget) override {
    budgets.push_back(budget);
    CloseRound r;
    r.closed[KVLB_SHED_POOR_CHOICE] = std::min<uint64_t>(close_each, budget);
    r.verdicts[KVLB_RB_CLOSED] = r.closed[KVLB_SHED_POOR_CHOICE];
    r.namespaces = 1;
    return r;
  }
};

constexpr uint64_t kNow = 100'000'000'000ull;

}  // namespace

TEST(KeepaliveAgent, ConfigTurnsItOnPerServiceWithDefaults) {
  auto c = config(kServices);
  EXPECT_TRUE(c.services[0].keepalive_rebalance);
  EXPECT_FALSE(c.services[1].keepalive_rebalance);
  EXPECT_TRUE(c.uses_keepalive_rebalance());
  // The measured set (docs/benchmarks.md section 10).
  EXPECT_EQ(c.keepalive.margin_milli, 500u);
  EXPECT_EQ(c.keepalive.max_closes_per_second, 200u);
  EXPECT_EQ(c.keepalive.idle, std::chrono::milliseconds(0));
  EXPECT_EQ(c.keepalive.interval, std::chrono::milliseconds(100));
  EXPECT_TRUE(program_settings(c, 0).response_ends);
  // On by default in socket mode (measured: docs/benchmarks.md section 10).
  const auto d =
      config("services: [{name: a, vip: 10.96.0.1:80, backends: [{address: 10.1.0.1:8000}]}]\n");
  EXPECT_TRUE(d.services[0].keepalive_rebalance);
  EXPECT_TRUE(program_settings(d, 0).response_ends);
  EXPECT_FALSE(
      program_settings(config("services: [{name: a, vip: 10.96.0.1:80, keepalive_rebalance: "
                              "false, backends: [{address: 10.1.0.1:8000}]}]\n"),
                       0)
          .response_ends);
  try {
    config(
        "services: [{name: a, vip: 10.96.0.1:80, keepalive_rebalance: sometimes, backends: "
        "[{address: 10.1.0.1:8000}]}]\n");
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), "services[0].keepalive_rebalance");
  }
}

TEST(KeepaliveAgent, ShedsTheBackendsTheBestBeatsByTheMarginInRebalancedServicesOnly) {
  InMemoryMapStore maps;
  Agent a(config(kServices), maps);
  a.apply_config();
  const uint32_t b1 = id_of(a, "10.1.0.1:8000"), b2 = id_of(a, "10.1.0.2:8000"),
                 b3 = id_of(a, "10.1.0.3:8000"), b4 = id_of(a, "10.1.0.4:8000");
  score(maps, b1, 0, 200, kNow);
  score(maps, b2, 1, 200, kNow);  // one waiting more than the best: the margin
  score(maps, b3, 0, 500, kNow);  // only its KV is higher: kept
  score(maps, b4, 9, 900, kNow);  // in service b only (off): kept
  const auto cfg = a.config();
  auto shed = shed_decisions(maps, rebalanced_services(cfg), program_settings(cfg, 0).select,
                             cfg.keepalive.margin_milli, kNow);
  ASSERT_EQ(shed.size(), 1u);
  EXPECT_EQ(shed[0], (std::pair<uint32_t, uint32_t>{b2, KVLB_SHED_POOR_CHOICE}));
  // Draining the best: shed whatever its load; and it no longer counts as the
  // best, so b2 is compared with b3 (1,200 against 500: within a margin of 1,000,
  // not of the default 500).
  ASSERT_TRUE(a.set_drained("10.1.0.1:8000", true));
  shed =
      shed_decisions(maps, rebalanced_services(cfg), program_settings(cfg, 0).select, 1000, kNow);
  EXPECT_EQ(shed, (std::vector<std::pair<uint32_t, uint32_t>>{{b1, KVLB_SHED_DRAINING}}));
  shed = shed_decisions(maps, rebalanced_services(cfg), program_settings(cfg, 0).select,
                        cfg.keepalive.margin_milli, kNow);
  EXPECT_EQ(shed, (std::vector<std::pair<uint32_t, uint32_t>>{{b1, KVLB_SHED_DRAINING},
                                                              {b2, KVLB_SHED_POOR_CHOICE}}));
}

TEST(KeepaliveAgent, ABackendSharedWithAServiceThatKeepsItIsNotShed) {
  // 10.1.0.3 is worse than its peer in service a, but the best of service b:
  // with both rebalanced, b keeps it (the iterator sees backends, not services).
  InMemoryMapStore maps;
  std::string both = kServices;
  both.replace(both.find("keepalive_rebalance: false"), 26, "keepalive_rebalance: true");
  Agent a(config(both), maps);
  a.apply_config();
  const uint32_t b1 = id_of(a, "10.1.0.1:8000"), b2 = id_of(a, "10.1.0.2:8000"),
                 b3 = id_of(a, "10.1.0.3:8000"), b4 = id_of(a, "10.1.0.4:8000");
  score(maps, b1, 0, 0, kNow);
  score(maps, b2, 0, 0, kNow);
  score(maps, b3, 2, 0, kNow);
  score(maps, b4, 5, 0, kNow);
  const auto cfg = a.config();
  auto shed = shed_decisions(maps, rebalanced_services(cfg), program_settings(cfg, 0).select,
                             cfg.keepalive.margin_milli, kNow);
  EXPECT_EQ(shed, (std::vector<std::pair<uint32_t, uint32_t>>{{b4, KVLB_SHED_POOR_CHOICE}}));
}

TEST(KeepaliveAgent, AServiceWithoutRebalancingKeepsTheBackendsItShares) {
  // 10.1.0.3 is the worst of service a (rebalanced) and also in service b (not):
  // its connections through b's VIP are not ours to close, and the iterator
  // sees the backend only, so it is not shed at all.
  InMemoryMapStore maps;
  Agent a(config(kServices), maps);
  a.apply_config();
  const uint32_t b1 = id_of(a, "10.1.0.1:8000"), b2 = id_of(a, "10.1.0.2:8000"),
                 b3 = id_of(a, "10.1.0.3:8000");
  score(maps, b1, 0, 0, kNow);
  score(maps, b2, 0, 0, kNow);
  score(maps, b3, 5, 0, kNow);
  const auto cfg = a.config();
  EXPECT_TRUE(shed_decisions(maps, rebalanced_services(cfg), program_settings(cfg, 0).select,
                             cfg.keepalive.margin_milli, kNow)
                  .empty());
}

TEST(KeepaliveAgent, ConfigRejectsItInGatewayModeAndAMarginOfZero) {
  // Not asked for: off in gateway mode, no error.
  const auto gw = parse_config(
      "mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1}\nservices: [{name: a, "
      "vip: 10.96.0.1:80, backends: [{address: 10.1.0.1:8000}]}]\n");
  EXPECT_FALSE(gw.services[0].keepalive_rebalance);
  EXPECT_FALSE(gw.uses_keepalive_rebalance());
  try {
    parse_config(
        "mode: gateway\ngateway: {interfaces: eth0, snat_ipv4: 192.0.2.1}\nservices: [{name: a, "
        "vip: 10.96.0.1:80, keepalive_rebalance: true, backends: [{address: 10.1.0.1:8000}]}]\n");
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), "services[0].keepalive_rebalance");
  }
  try {
    config(kServices + std::string("keepalive: {margin: 0}\n"));
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), "keepalive.margin");
  }
}

TEST(KeepaliveAgent, BudgetIsATokenBucketOfOneSecond) {
  CloseBudget b(10);
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(b.available(t0), 10u);
  b.spend(10);
  EXPECT_EQ(b.available(t0 + std::chrono::milliseconds(300)), 3u);
  b.spend(3);
  EXPECT_EQ(b.available(t0 + std::chrono::seconds(5)), 10u);  // never above one second's
  b.set_rate(4);
  EXPECT_EQ(b.available(t0 + std::chrono::seconds(5)), 4u);
}

TEST(KeepaliveAgent, ARoundMarksClosesWithinTheBudgetAndCounts) {
  InMemoryMapStore maps;
  Agent a(config(kServices + std::string("keepalive: {max_closes_per_second: 3}\n")), maps);
  a.apply_config();
  const uint32_t b1 = id_of(a, "10.1.0.1:8000"), b2 = id_of(a, "10.1.0.2:8000"),
                 b3 = id_of(a, "10.1.0.3:8000");
  score(maps, b1, 0, 0, kNow);
  score(maps, b2, 4, 0, kNow);
  score(maps, b3, 0, 0, kNow);
  FakeCloser closer;
  closer.close_each = 5;
  KeepaliveRebalancer r(closer, a.config().keepalive.max_closes_per_second);
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  r.round(a.config(), maps, kNow, t0);
  EXPECT_EQ(closer.shed, (std::vector<std::pair<uint32_t, uint32_t>>{{b2, KVLB_SHED_POOR_CHOICE}}));
  ASSERT_EQ(closer.budgets, std::vector<uint32_t>{3});
  EXPECT_EQ(r.stats().closed[KVLB_SHED_POOR_CHOICE], 3u);
  r.round(a.config(), maps, kNow, t0 + std::chrono::milliseconds(500));  // 1.5 tokens back
  EXPECT_EQ(closer.budgets.back(), 1u);
  EXPECT_EQ(r.stats().closed[KVLB_SHED_POOR_CHOICE], 4u);
  EXPECT_EQ(r.stats().rounds, 2u);
  // Balanced again: nothing shed, and no socket walk at all.
  score(maps, b2, 0, 0, kNow);
  r.round(a.config(), maps, kNow, t0 + std::chrono::seconds(2));
  EXPECT_TRUE(closer.shed.empty());
  EXPECT_EQ(closer.budgets.size(), 2u);
  EXPECT_EQ(r.stats().shed_backends, 0u);
}
