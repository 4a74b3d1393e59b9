// The agent's logic over an in-memory MapStore: reconcile, id adoption and
// reuse, down after N failed scrapes, staleness, drain, the slot cap, a failed
// write put right, and suspects. No root, no kernel.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "dataplane/in_memory_map_store.h"

using namespace kvlb;
using namespace kvlb::agent;

namespace {

AgentConfig config(const std::string& yaml) {
  return parse_config("cgroup: test\nscrape_interval: 50ms\nstale_after: 1s\n" + yaml);
}

const char* kTwoServices = R"(
services:
  - name: a
    vip: 10.96.0.1:80
    backends: [{address: "10.1.0.1:8000"}, {address: "10.1.0.2:8000"}]
  - name: b
    vip: 10.96.0.2:80
    backends: [{address: "10.1.0.2:8000"}, {address: "10.1.0.3:8000"}]
)";

kvlb_service_key key_of(const std::string& vip) {
  return service_key(*Endpoint::parse(vip));
}

kvlb_backend backend_of(const std::string& addr) {
  auto ep = *Endpoint::parse(addr);
  kvlb_backend b{};
  b.addr = ep.addr;
  b.port = htons(ep.port);
  b.family = static_cast<uint8_t>(ep.family);
  return b;
}

uint32_t id_of(const Agent& a, const std::string& addr) {
  for (const auto& b : a.backends())
    if (b.address.to_string() == addr) return b.id;
  ADD_FAILURE() << "no backend " << addr;
  return 0;
}

// One scrape round in which backend i answered pages[i] ("" = connect failure),
// taken at `taken_ns` on the kernel's clock.
void round(Agent& a, const std::vector<std::string>& pages, uint64_t taken_ns) {
  auto r = a.begin_round();
  r.taken = taken_ns;
  std::vector<ScrapeResult> results(pages.size());
  r.stats.resize(pages.size());
  for (size_t i = 0; i < pages.size(); ++i) {
    if (pages[i].empty()) {
      results[i].error = ScrapeError::Connect;
      results[i].detail = "connection refused";
      continue;
    }
    results[i].http_status = 200;
    results[i].body = pages[i];
    r.stats[i] = engines::extract_stats(pages[i], r.engines[i]);
  }
  r.results = &results;
  a.finish_round(r);
}

std::string vllm(int waiting, int running, double kv) {
  return fmt::format(
      "vllm:num_requests_waiting {}\nvllm:num_requests_running {}\nvllm:kv_cache_usage_perc {}\n",
      waiting, running, kv);
}

constexpr uint64_t kSecond = 1'000'000'000ull;

}  // namespace

TEST(Agent, ReconcileWritesServicesBackendsAndScores) {
  InMemoryMapStore maps;
  Agent a(config(kTwoServices), maps);
  a.apply_config();
  ASSERT_EQ(a.backends().size(), 3u);  // 10.1.0.2 is shared: one backend
  const uint32_t b1 = id_of(a, "10.1.0.1:8000"), b2 = id_of(a, "10.1.0.2:8000"),
                 b3 = id_of(a, "10.1.0.3:8000");
  EXPECT_NE(b1, b2);
  EXPECT_NE(b2, b3);
  auto sa = maps.service(key_of("10.96.0.1:80"));
  auto sb = maps.service(key_of("10.96.0.2:80"));
  ASSERT_TRUE(sa && sb);
  EXPECT_EQ(sa->backend_count, 2);
  EXPECT_EQ(sa->slots[0], b1);
  EXPECT_EQ(sa->slots[1], b2);
  EXPECT_EQ(sb->slots[0], b2);
  EXPECT_EQ(sb->policy, KVLB_POLICY_P2C_QUEUE_KV);
  EXPECT_EQ(sb->choices, KVLB_DEFAULT_CHOICES);
  EXPECT_NE(sa->id, sb->id);
  auto be = maps.backend(b3);
  EXPECT_EQ(std::memcmp(&be, &(const kvlb_backend&)backend_of("10.1.0.3:8000"), sizeof(be)), 0);
  EXPECT_EQ(maps.score(b1).state, KVLB_STATE_ACTIVE);
  EXPECT_EQ(maps.score(b1).weight, 100);
}

TEST(Agent, AdoptsTheIdsAndCountersOfBackendsAlreadyInTheMaps) {
  // A previous agent left 10.1.0.2 at id 7 with 3 connections in flight.
  InMemoryMapStore maps;
  maps.put_backend(7, backend_of("10.1.0.2:8000"));
  kvlb_counters c{};
  c.picks = 40;
  c.inflight = 3;
  maps.set_counters(7, c);
  Agent a(config(kTwoServices), maps);
  a.apply_config();
  EXPECT_EQ(id_of(a, "10.1.0.2:8000"), 7u);
  EXPECT_EQ(maps.counters(7).inflight, 3);  // not reset: those connections are still open
  EXPECT_EQ(maps.service(key_of("10.96.0.1:80"))->slots[1], 7u);
}

TEST(Agent, ARemovedBackendsIdIsNotReusedWhileItsConnectionsAreOpen) {
  InMemoryMapStore maps;
  Agent a(config(kTwoServices), maps);
  a.apply_config();
  const uint32_t gone = id_of(a, "10.1.0.1:8000");
  kvlb_counters c{};
  c.inflight = 2;
  maps.set_counters(gone, c);
  a.reconfigure(config(R"(
services:
  - name: a
    vip: 10.96.0.1:80
    backends: [{address: "10.1.0.2:8000"}, {address: "10.1.0.9:8000"}]
)"),
                maps);
  EXPECT_NE(id_of(a, "10.1.0.9:8000"), gone);
  EXPECT_EQ(maps.backend(gone).family, 0);  // entry cleared
  EXPECT_EQ(maps.score(gone).state, KVLB_STATE_DOWN);
  EXPECT_FALSE(maps.service(key_of("10.96.0.2:80")));  // service b removed
}

TEST(Agent, DownAfterNFailedScrapesAndBackOnTheFirstGoodOne) {
  InMemoryMapStore maps;
  Agent a(config("down_after_failures: 3\n" + std::string(kTwoServices)), maps);
  a.apply_config();
  const uint32_t b1 = id_of(a, "10.1.0.1:8000");
  const std::string ok = vllm(0, 1, 0.2);
  uint64_t t = 10 * kSecond;
  round(a, {ok, ok, ok}, t);
  EXPECT_EQ(maps.score(b1).state, KVLB_STATE_ACTIVE);
  EXPECT_EQ(maps.score(b1).running, 1u);
  EXPECT_EQ(maps.score(b1).kv_permille, 200);
  for (int i = 1; i <= 2; ++i) round(a, {"", ok, ok}, t + i * kSecond / 20);
  EXPECT_EQ(maps.score(b1).state, KVLB_STATE_ACTIVE);  // two failures: not yet
  round(a, {"", ok, ok}, t + 3 * kSecond / 20);
  EXPECT_EQ(maps.score(b1).state, KVLB_STATE_DOWN);
  round(a, {ok, ok, ok}, t + 4 * kSecond / 20);
  EXPECT_EQ(maps.score(b1).state, KVLB_STATE_ACTIVE);
}

TEST(Agent, AScoreOlderThanStaleAfterIsReportedStale) {
  InMemoryMapStore maps;
  Agent a(config("down_after_failures: 1000\n" + std::string(kTwoServices)), maps);
  a.apply_config();
  const std::string ok = vllm(0, 0, 0);
  uint64_t t = 10 * kSecond;
  round(a, {ok, ok, ok}, t);
  round(a, {"", ok, ok}, t + kSecond / 2);
  EXPECT_EQ(a.stale_now(), 0u);
  round(a, {"", ok, ok}, t + 2 * kSecond);  // stale_after is 1 s
  EXPECT_EQ(a.stale_now(), 1u);
  EXPECT_EQ(a.stale_events(), 1u);
  EXPECT_EQ(maps.score(id_of(a, "10.1.0.1:8000")).updated_ns, t);  // the last good score stays
}

TEST(Agent, DrainTakesEffectAtOnceAndSurvivesAReload) {
  InMemoryMapStore maps;
  auto cfg = config(kTwoServices);
  Agent a(cfg, maps);
  a.apply_config();
  const uint32_t b2 = id_of(a, "10.1.0.2:8000");
  ASSERT_TRUE(a.set_drained("10.1.0.2:8000", true));
  EXPECT_EQ(maps.score(b2).state, KVLB_STATE_DRAINING);
  a.reconfigure(cfg, maps);
  round(a, {vllm(0, 0, 0), vllm(0, 0, 0), vllm(0, 0, 0)}, 10 * kSecond);
  EXPECT_EQ(maps.score(b2).state, KVLB_STATE_DRAINING);
  ASSERT_TRUE(a.set_drained("10.1.0.2:8000", false));
  EXPECT_EQ(maps.score(b2).state, KVLB_STATE_ACTIVE);
  EXPECT_FALSE(a.set_drained("10.9.9.9:1", true));
}

TEST(Agent, MoreBackendsThanSlotsAreRefusedBeforeAnythingIsWritten) {
  // Static configs are checked at parse time; discovery caps at 256; this is the
  // last line: nothing is written past a service's slot array, nor at all.
  InMemoryMapStore maps;
  Agent a(config(kTwoServices), maps);
  a.apply_config();
  auto big = config(kTwoServices);
  for (int i = 0; i < 300; ++i) {
    BackendConfig b;
    b.address = *Endpoint::parse(fmt::format("10.2.{}.{}:8000", i / 250, i % 250 + 1));
    b.metrics_url = "http://" + b.address.to_string() + "/metrics";
    big.services[0].backends.push_back(b);
  }
  const size_t before = maps.writes();
  EXPECT_THROW(a.reconfigure(big, maps), std::runtime_error);
  EXPECT_EQ(maps.writes(), before);
}

TEST(Agent, AFailedWriteThenTheOldConfigurationPutBackLeavesNoTrace) {
  // What a reload does when applying fails part-way (supervisor.cpp): the old
  // configuration is applied again. The maps end as they were: the same
  // services, and no entry left for a backend the failed attempt added.
  auto old_cfg = config(kTwoServices);
  auto next = config(R"(
services:
  - name: a
    vip: 10.96.0.1:80
    backends: [{address: "10.1.0.1:8000"}, {address: "10.1.0.7:8000"}, {address: "10.1.0.8:8000"}]
)");
  // Fail at every point of the new configuration's writes in turn.
  int failures = 0;
  for (int ok_writes = 0; ok_writes < 12; ++ok_writes) {
    InMemoryMapStore maps;
    Agent a(old_cfg, maps);
    a.apply_config();
    const auto before = maps.services();
    // Let `ok_writes` writes through, then fail every write.
    bool failed = false;
    maps.fail_after_writes(ok_writes);
    try {
      a.reconfigure(next, maps);
    } catch (const std::system_error&) {
      failed = true;
    }
    maps.fail_after_writes(-1);
    if (!failed) continue;  // the whole apply fit in the budget
    ++failures;
    a.reconfigure(old_cfg, maps);
    const auto after = maps.services();
    ASSERT_EQ(after.size(), before.size()) << ok_writes;
    for (size_t i = 0; i < after.size(); ++i)
      EXPECT_EQ(std::memcmp(&after[i].second, &before[i].second, sizeof(kvlb_service)), 0)
          << ok_writes;
    for (uint32_t id = 1; id < 16; ++id) {
      if (maps.backend(id).family == 0) continue;
      bool known = false;
      for (const auto& st : a.backends()) known = known || st.id == id;
      EXPECT_TRUE(known) << "backend entry " << id << " left behind after " << ok_writes;
    }
  }
  EXPECT_GE(failures, 8);  // the apply takes more writes than that: each point was tried
}

TEST(Agent, ASuspectBackendIsBoundedToTheMedianOfItsPeers) {
  InMemoryMapStore maps;
  Agent a(config(R"(
services:
  - name: a
    vip: 10.96.0.1:80
    backends: [{address: "10.1.0.1:8000"}, {address: "10.1.0.2:8000"}, {address: "10.1.0.3:8000"}]
)"),
          maps);
  a.apply_config();
  const uint32_t liar = id_of(a, "10.1.0.1:8000");
  const uint32_t p1 = id_of(a, "10.1.0.2:8000"), p2 = id_of(a, "10.1.0.3:8000");
  // 3 s of scrapes every 50 ms: the liar gets 10 connections a second that
  // close at once and reports idle; its peers hold streaming connections and
  // report work.
  uint64_t t = 10 * kSecond;
  for (int i = 0; i < 60; ++i, t += kSecond / 20) {
    kvlb_counters lc{};
    lc.picks = static_cast<uint64_t>(i) / 2;
    maps.set_counters(liar, lc);
    kvlb_counters pc{};
    pc.inflight = 4;
    pc.picks = 10;
    maps.set_counters(p1, pc);
    maps.set_counters(p2, pc);
    round(a, {vllm(0, 0, 0), vllm(1, 4, 0.4), vllm(2, 4, 0.6)}, t);
  }
  const auto& b = a.backends()[0];
  ASSERT_TRUE(b.suspect) << "not found";
  EXPECT_NE(b.suspect_reason.find("mean lifetime"), std::string::npos);
  auto s = maps.score(liar);
  EXPECT_GE(s.waiting, 2u);        // above the median peer's 1 (or 2)
  EXPECT_GE(s.kv_permille, 400);   // at least the median KV
  EXPECT_GE(s.inflight_bias, 5u);  // above the median in-flight of 4
  EXPECT_GE(a.stats().suspect_events, 1u);
}
