// Score sharing (docs/cluster.md): the wire format (strict decoding), scrape
// ownership (node-local, rendezvous, what moves when an agent leaves),
// membership, and two agents sharing scores over the in-memory bus: each
// scrapes only what it owns and holds every replica's score; fallback when off
// the bus (capped), takeover when an agent leaves, what is refused.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/agent.h"
#include "agent/cluster_sync.h"
#include "agent/config.h"
#include "cluster/in_memory_score_bus.h"
#include "cluster/membership.h"
#include "cluster/ownership.h"
#include "cluster/score_message.h"
#include "common/clock.h"
#include "dataplane/in_memory_map_store.h"

using namespace kvlb;
using namespace kvlb::cluster;
using kvlb::agent::Agent;
using kvlb::agent::AgentConfig;
using kvlb::agent::ClusterSync;

namespace {

Message scores_message() {
  Message m;
  m.kind = MessageKind::Scores;
  m.publisher = "node-1";
  m.node = "node-1";
  m.sent_realtime_ns = 1'700'000'000'123'456'789ull;
  m.service = "llama";
  ReplicaReport a;
  a.replica = *Endpoint::parse("10.1.0.1:8000");
  a.waiting = 3;
  a.running = 12;
  a.kv_permille = 731;
  a.age_ms = 17;
  ReplicaReport b;
  b.replica = *Endpoint::parse("[fd00::2]:8000");
  b.kv_permille = kNoKv;
  b.down = true;
  b.suspect = true;
  b.age_ms = 600'000;
  m.reports = {a, b};
  return m;
}

}  // namespace

TEST(ScoreMessage, RoundTripsEveryKind) {
  const Message s = scores_message();
  auto d = decode(encode(s));
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_EQ(d.message, s);
  EXPECT_EQ(encode(s).size(), 4 + 1 + 6 + 8 + 1 + 6 + 1 + 5 + 2 + 2 * kReportBytes);

  Message hb;
  hb.kind = MessageKind::Heartbeat;
  hb.publisher = "agent-7";
  hb.node = "gpu-node-7.example";
  hb.interval_ms = 50;
  d = decode(encode(hb));
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_EQ(d.message, hb);

  Message bye;
  bye.kind = MessageKind::Leaving;
  bye.publisher = "agent-7";
  d = decode(encode(bye));
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_EQ(d.message, bye);
}

TEST(ScoreMessage, EveryTruncationAndAnyTrailingByteIsRefused) {
  const std::string full = encode(scores_message());
  for (size_t n = 0; n < full.size(); ++n) EXPECT_FALSE(decode(full.substr(0, n)).ok) << n;
  EXPECT_NE(decode(full + "x").error.find("count"), std::string::npos);  // 34-byte reports
  Message hb;
  hb.kind = MessageKind::Heartbeat;
  hb.publisher = "p";
  hb.node = "n";
  hb.interval_ms = 50;
  EXPECT_NE(decode(encode(hb) + "x").error.find("trailing"), std::string::npos);
}

TEST(ScoreMessage, OutOfRangeFieldsAreRefusedWithTheirName) {
  const std::string good = encode(scores_message());
  const size_t reports = good.size() - 2 * kReportBytes;  // first report's offset
  auto with = [&](size_t at, std::string bytes) {
    std::string b = good;
    b.replace(at, bytes.size(), bytes);
    return decode(b);
  };
  EXPECT_NE(with(0, "XX").error.find("magic"), std::string::npos);
  EXPECT_NE(with(2, "\x02").error.find("version"), std::string::npos);
  EXPECT_NE(with(3, "\x09").error.find("kind"), std::string::npos);
  EXPECT_NE(with(5, "!").error.find("publisher"), std::string::npos);
  EXPECT_NE(with(reports - 2, std::string("\x03\x00", 2)).error.find("count"), std::string::npos);
  EXPECT_NE(with(reports, "\x05").error.find("family"), std::string::npos);
  EXPECT_NE(with(reports + 5, "\x01").error.find("stray"), std::string::npos);  // IPv4 byte 4
  EXPECT_NE(with(reports + 17, std::string("\0\0", 2)).error.find("port"), std::string::npos);
  EXPECT_NE(with(reports + 19, "\xff\xff\xff\x7f").error.find("waiting"), std::string::npos);
  EXPECT_NE(with(reports + 23, "\xff\xff\xff\x7f").error.find("running"), std::string::npos);
  EXPECT_NE(with(reports + 27, "\xe9\x03").error.find("kv_permille"), std::string::npos);  // 1001
  EXPECT_NE(with(reports + 29, "\x04").error.find("flags"), std::string::npos);
  EXPECT_NE(with(reports + 30, "\xff\xff\xff\xff").error.find("age_ms"), std::string::npos);
  // A huge count is refused before anything is allocated for it.
  EXPECT_NE(with(reports - 2, "\xff\xff").error.find("count"), std::string::npos);
}

TEST(ScoreMessage, EncodingRefusesWhatADecoderWouldRefuse) {
  Message m = scores_message();
  m.publisher = "has space";
  EXPECT_THROW(encode(m), std::invalid_argument);
  m = scores_message();
  m.reports[0].kv_permille = 1001;
  EXPECT_THROW(encode(m), std::invalid_argument);
  m = scores_message();
  m.reports.resize(kMaxReportsPerBatch + 1, m.reports[0]);
  EXPECT_THROW(encode(m), std::invalid_argument);
  EXPECT_FALSE(valid_name(std::string(254, 'a')));
  EXPECT_TRUE(valid_name(std::string(253, 'a')));
}

namespace {
std::vector<Peer> agents(int n) {
  std::vector<Peer> v;
  for (int i = 0; i < n; ++i) v.push_back({fmt::format("agent-{}", i), fmt::format("node-{}", i)});
  return v;
}
std::string replica(int i) {
  return fmt::format("10.2.{}.{}:8000", i / 200, i % 200 + 1);
}
}  // namespace

TEST(Ownership, AReplicaOnANodeWithAnAgentIsThatAgentsAlone) {
  auto live = agents(8);
  EXPECT_EQ(owners(replica(1), "node-5", live, 1), std::vector<std::string>{"agent-5"});
  EXPECT_EQ(owners(replica(1), "node-5", live, 3), std::vector<std::string>{"agent-5"});
  // Its node has no agent: rendezvous over all of them.
  EXPECT_EQ(owners(replica(1), "node-99", live, 1), owners(replica(1), "", live, 1));
}

TEST(Ownership, RendezvousGivesEachReplicaRDistinctOwnersAndSpreadsThem) {
  auto live = agents(8);
  std::map<std::string, int> load;
  for (int i = 0; i < 800; ++i) {
    auto o = owners(replica(i), "", live, 2);
    ASSERT_EQ(o.size(), 2u);
    EXPECT_NE(o[0], o[1]);
    for (auto& a : o) ++load[a];
    EXPECT_EQ(owners(replica(i), "", live, 2), o);  // deterministic
  }
  ASSERT_EQ(load.size(), 8u);
  for (auto& [a, n] : load) EXPECT_GT(n, 120) << a;  // 200 expected each
  // r larger than the cluster: everyone.
  EXPECT_EQ(owners(replica(0), "", agents(2), 5).size(), 2u);
}

TEST(Ownership, WhenAnAgentLeavesOnlyItsReplicasMove) {
  auto live = agents(8);
  auto fewer = live;
  fewer.erase(fewer.begin() + 3);
  int moved = 0;
  for (int i = 0; i < 800; ++i) {
    auto before = owners(replica(i), "", live, 1)[0];
    auto after = owners(replica(i), "", fewer, 1)[0];
    if (before == "agent-3") {
      EXPECT_NE(after, "agent-3");
      ++moved;
    } else {
      EXPECT_EQ(after, before) << replica(i);
    }
  }
  EXPECT_GT(moved, 0);
}

TEST(Membership, JoinsOnAHeartbeatLeavesOnTimeoutOrGoodbye) {
  Membership m({"me", "n0"}, 100, 1000);  // owners: 100; heard by heartbeat only: 1000
  EXPECT_EQ(m.live().size(), 1u);
  Message hb;
  hb.kind = MessageKind::Heartbeat;
  hb.publisher = "b";
  hb.node = "n1";
  hb.interval_ms = 50;
  m.heard(hb, 1000);
  hb.publisher = "a";
  m.heard(hb, 1000);
  ASSERT_EQ(m.live().size(), 3u);
  EXPECT_EQ(m.live()[0].id, "a");  // id order, self included
  EXPECT_EQ(m.live()[2].id, "me");
  EXPECT_TRUE(m.expire(2000).empty());
  m.heard(hb, 1990);  // a again
  EXPECT_EQ(m.expire(2001), std::vector<std::string>{"b"});
  Message bye;
  bye.kind = MessageKind::Leaving;
  bye.publisher = "a";
  m.heard(bye, 2002);
  EXPECT_EQ(m.live().size(), 1u);
  hb.publisher = "me";  // its own heartbeat is not a peer
  m.heard(hb, 2003);
  EXPECT_EQ(m.live().size(), 1u);
}

TEST(Membership, AnOwnerIsKnownByItsScoresAndGoneWhenTheyStop) {
  Membership m({"me", "n0"}, 100, 1000);
  Message sc = scores_message();  // publisher node-1 on node node-1
  m.heard(sc, 5000);
  ASSERT_EQ(m.live().size(), 2u);
  EXPECT_EQ(m.live()[1].node, "node-1");
  Message hb;
  hb.kind = MessageKind::Heartbeat;
  hb.publisher = "node-1";
  hb.node = "node-1";
  hb.interval_ms = 50;
  m.heard(hb, 5090);  // a heartbeat does not stretch an owner's timeout
  EXPECT_TRUE(m.expire(5100).empty());
  EXPECT_EQ(m.expire(5101), std::vector<std::string>{"node-1"});
  // Scores long ago, heartbeats since: held to the heartbeat timeout.
  m.heard(sc, 10'000);
  m.heard(hb, 11'500);
  EXPECT_TRUE(m.expire(12'400).empty());
  EXPECT_EQ(m.expire(12'501), std::vector<std::string>{"node-1"});
}

TEST(Membership, AFloodOfMadeUpAgentsIsBounded) {
  Membership m({"me", "n0"}, 1'000'000, 1'000'000);
  Message hb;
  hb.kind = MessageKind::Heartbeat;
  hb.node = "n";
  hb.interval_ms = 50;
  size_t refused = 0;
  for (size_t i = 0; i < kMaxPeers + 10; ++i) {
    hb.publisher = fmt::format("fake-{}", i);
    refused += !m.heard(hb, 1);
  }
  EXPECT_EQ(refused, 10u);
  EXPECT_EQ(m.live().size(), kMaxPeers + 1);
}

namespace {

constexpr const char* kFour = R"(
services:
  - name: llama
    vip: 10.96.0.1:80
    backends: [{address: "10.1.0.1:8000"}, {address: "10.1.0.2:8000"},
               {address: "10.1.0.3:8000"}, {address: "10.1.0.4:8000"}]
)";

AgentConfig cluster_config(const std::string& extra = "") {
  return agent::parse_config(
      "cgroup: test\nscrape_interval: 50ms\nstale_after: 1s\n"
      "cluster: {nats_servers: 'nats://127.0.0.1:4222', peer_timeout: 1s, fallback_after: 500ms" +
      extra + "}\n" + kFour);
}

std::string vllm(int waiting, int running, double kv) {
  return fmt::format(
      "vllm:num_requests_waiting {}\nvllm:num_requests_running {}\nvllm:kv_cache_usage_perc {}\n",
      waiting, running, kv);
}

// One agent of the test cluster: its maps, the agent, its bus and cluster sync.
struct Node {
  Node(const std::string& id, std::shared_ptr<InMemoryHub> hub, const AgentConfig& cfg)
      : agent(cfg, maps) {
    agent.apply_config();
    auto b = std::make_unique<InMemoryScoreBus>(hub);
    bus = b.get();
    sync = std::make_unique<ClusterSync>(cfg, std::move(b), id, "node-" + id);
  }
  // One round as the supervisor runs it; `pages` by replica address, "" for a
  // failed scrape. Returns the addresses this agent scraped.
  std::set<std::string> round(const std::map<std::string, std::string>& pages,
                              uint64_t later_ns = 0) {
    sync->before_round(agent, monotonic_ns() + later_ns);
    auto r = agent.begin_round();
    std::vector<ScrapeResult> results(r.targets.size());
    r.stats.resize(results.size());
    std::set<std::string> scraped;
    for (size_t k = 0; k < r.targets.size(); ++k) {
      const auto addr = agent.backends()[r.targets[k]].address.to_string();
      scraped.insert(addr);
      auto it = pages.find(addr);
      if (it == pages.end() || it->second.empty()) {
        results[k].error = ScrapeError::Connect;
        continue;
      }
      results[k].http_status = 200;
      results[k].body = it->second;
      r.stats[k] = engines::extract_stats(it->second, r.engines[r.targets[k]]);
    }
    r.results = &results;
    sync->fill_shared(agent, r, monotonic_ns());
    agent.finish_round(r);
    sync->publish(agent, monotonic_ns());
    return scraped;
  }
  kvlb_score score(const std::string& addr) const {
    for (const auto& b : agent.backends())
      if (b.address.to_string() == addr) return maps.score(b.id);
    ADD_FAILURE() << addr;
    return {};
  }
  InMemoryMapStore maps;
  Agent agent;
  InMemoryScoreBus* bus = nullptr;
  std::unique_ptr<ClusterSync> sync;
};

const std::vector<std::string> kAddrs = {"10.1.0.1:8000", "10.1.0.2:8000", "10.1.0.3:8000",
                                         "10.1.0.4:8000"};

std::map<std::string, std::string> pages() {
  std::map<std::string, std::string> p;
  for (size_t i = 0; i < kAddrs.size(); ++i) p[kAddrs[i]] = vllm(static_cast<int>(i) + 1, 10, 0.5);
  return p;
}

}  // namespace

TEST(ClusterSync, EachReplicaIsScrapedByOneAgentAndEveryAgentHoldsEveryScore) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config();
  Node a("a", hub, cfg), b("b", hub, cfg);
  const auto p = pages();
  a.round(p);  // heartbeats out; each owns everything until it hears the other
  b.round(p);
  std::set<std::string> sa, sb;
  for (int i = 0; i < 3; ++i) {
    sa = a.round(p);
    sb = b.round(p);
  }
  EXPECT_EQ(a.sync->stats().peers, 2u);
  EXPECT_FALSE(sa.empty());
  EXPECT_FALSE(sb.empty());
  for (const auto& addr : kAddrs) EXPECT_NE(sa.count(addr), sb.count(addr)) << addr;  // exactly one
  for (size_t i = 0; i < kAddrs.size(); ++i) {
    EXPECT_EQ(a.score(kAddrs[i]).waiting, i + 1) << kAddrs[i];
    EXPECT_EQ(b.score(kAddrs[i]).waiting, i + 1) << kAddrs[i];
    EXPECT_EQ(b.score(kAddrs[i]).kv_permille, 500);
  }
  EXPECT_GT(a.sync->stats().applied_reports, 0u);
  EXPECT_EQ(a.sync->stats().fallback_scrapes, 0u);
  // A change on a replica b owns reaches a's maps in b's next round.
  auto changed = p;
  const std::string mine_b = *sb.begin();
  changed[mine_b] = vllm(42, 10, 0.9);
  b.round(changed);
  a.round(changed);
  EXPECT_EQ(a.score(mine_b).waiting, 42u);
  EXPECT_EQ(a.score(mine_b).kv_permille, 900);
}

TEST(ClusterSync, OffTheBusAnAgentScrapesEveryReplicaButAtMostOncePerFallbackInterval) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config(", fallback_scrape_interval: 60s");
  Node a("a", hub, cfg), b("b", hub, cfg);
  const auto p = pages();
  for (int i = 0; i < 3; ++i) {
    a.round(p);
    b.round(p);
  }
  const auto owned = a.round(p);
  ASSERT_LT(owned.size(), kAddrs.size());
  a.bus->set_connected(false);
  EXPECT_EQ(a.round(p).size(), kAddrs.size());  // the fallback scrape
  EXPECT_EQ(a.sync->stats().falling_back, kAddrs.size() - owned.size());
  EXPECT_EQ(a.round(p), owned);  // capped: the others not again within the interval
  EXPECT_EQ(a.sync->stats().fallback_scrapes, kAddrs.size() - owned.size());
  a.bus->set_connected(true);
  b.round(p);
  a.round(p);
  EXPECT_EQ(a.sync->stats().falling_back, 0u);
}

TEST(ClusterSync, OffTheBusTheLastKnownMembershipStands) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config();  // peer_timeout 1s
  Node a("a", hub, cfg), b("b", hub, cfg);
  const auto p = pages();
  for (int i = 0; i < 3; ++i) {
    a.round(p);
    b.round(p);
  }
  a.bus->set_connected(false);
  const uint64_t later = 5'000'000'000ull;  // five timeouts without a heartbeat
  a.round(p, later);
  EXPECT_EQ(a.sync->stats().peers, 2u);  // not everyone's owner now
  EXPECT_LT(a.round(p, later).size(), kAddrs.size());
  // Back on the bus: b gets a second's grace and one timeout to be heard again.
  a.bus->set_connected(true);
  a.round(p, later);
  a.round(p, later + 1'900'000'000ull);
  EXPECT_EQ(a.sync->stats().peers, 2u);
  a.round(p, later + 2'100'000'000ull);  // b silent for longer than grace + timeout
  EXPECT_EQ(a.sync->stats().peers, 1u);
}

TEST(ClusterSync, WhenAnAgentLeavesTheOthersTakeItsReplicasAtTheNextRound) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config();
  Node a("a", hub, cfg);
  auto b = std::make_unique<Node>("b", hub, cfg);
  const auto p = pages();
  for (int i = 0; i < 3; ++i) {
    a.round(p);
    b->round(p);
  }
  ASSERT_LT(a.round(p).size(), kAddrs.size());
  b->sync->leave();
  b.reset();
  EXPECT_EQ(a.round(p).size(), kAddrs.size());
  EXPECT_EQ(a.sync->stats().peers, 1u);
  EXPECT_EQ(a.sync->stats().fallback_scrapes, 0u);  // a takeover, not a fallback
}

TEST(ClusterSync, DownAndSuspectVerdictsOfTheOwnerApplyOnEveryNode) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config();
  Node a("a", hub, cfg), b("b", hub, cfg);
  auto p = pages();
  std::set<std::string> sb;
  for (int i = 0; i < 3; ++i) {
    a.round(p);
    sb = b.round(p);
  }
  ASSERT_FALSE(sb.empty());
  const std::string victim = *sb.begin();
  p[victim] = "";  // b's scrapes of it fail: down after 3 (the default)
  for (int i = 0; i < 3; ++i) {
    b.round(p);
    a.round(p);
  }
  EXPECT_EQ(b.score(victim).state, KVLB_STATE_DOWN);
  EXPECT_EQ(a.score(victim).state, KVLB_STATE_DOWN);
  p = pages();
  b.round(p);
  a.round(p);
  EXPECT_EQ(a.score(victim).state, KVLB_STATE_ACTIVE);
}

TEST(ClusterSync, WhatIsNotForThisAgentIsRefusedAndCounted) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config();
  Node a("a", hub, cfg);
  InMemoryScoreBus rogue(hub);
  a.round(pages());  // subscribed now
  Message m = scores_message();
  m.reports[0].replica = *Endpoint::parse("10.9.9.9:8000");  // not one of llama's
  m.publisher = "stranger";                                  // never sent a heartbeat
  m.service = "llama";
  rogue.publish(agent::scores_subject("kvlb", "llama"), encode(m));
  rogue.publish(agent::scores_subject("kvlb", "llama"), "garbage");
  m.service = "other";
  rogue.publish(agent::scores_subject("kvlb", "llama"), encode(m));  // subject says llama
  Message hb;
  hb.kind = MessageKind::Heartbeat;
  hb.publisher = "stranger";
  hb.node = "x";
  hb.interval_ms = 50;
  rogue.publish(agent::agents_subject("kvlb"), encode(hb));
  m.service = "llama";  // again: its replicas are not this service's
  rogue.publish(agent::scores_subject("kvlb", "llama"), encode(m));
  a.round(pages());
  const auto& rej = a.sync->stats().rejected;
  EXPECT_EQ(rej.at("malformed"), 1u);
  EXPECT_EQ(rej.at("subject_mismatch"), 1u);
  EXPECT_EQ(rej.at("unknown_replica"), 4u);  // two reports, twice
  EXPECT_EQ(a.sync->stats().applied_reports, 0u);
}

TEST(ClusterSync, ASharedScoreCountsOnlyThePicksMadeHereSinceItWasTaken) {
  auto hub = std::make_shared<InMemoryHub>();
  const auto cfg = cluster_config();
  Node a("a", hub, cfg), b("b", hub, cfg);
  const auto p = pages();
  std::set<std::string> sb;
  for (int i = 0; i < 3; ++i) {
    a.round(p);
    sb = b.round(p);
  }
  const std::string theirs = *sb.begin();
  uint32_t id = 0;
  for (const auto& bk : a.agent.backends())
    if (bk.address.to_string() == theirs) id = bk.id;
  // This node's kernel picks it 7 times; b's next report was taken after them.
  kvlb_counters c{};
  c.picks = 7;
  a.maps.set_counters(id, c);
  a.round(p);  // the round's start sees 7 picks
  b.round(p);
  a.round(p);
  EXPECT_EQ(a.score(theirs).picks_at_score, 7u);
}
