// cluster_sync.h - score sharing between agents (docs/cluster.md): each round,
// which replicas this agent scrapes (those it owns, plus those whose shared
// score stopped arriving, capped), the reports other agents sent for the rest,
// and this agent's own reports and heartbeat out on the bus.
//
// The bus is a seam (cluster/score_bus.h): NATS in the agent, in memory in the
// unit tests. Everything here runs on the agent's loop thread, under its lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/config.h"
#include "cluster/membership.h"
#include "cluster/score_bus.h"
#include "cluster/score_message.h"
#include "metrics/exposition.h"

namespace kvlb::agent {

struct ClusterStats {
  std::string agent_id;
  bool connected = false;
  size_t peers = 0;         // live agents, this one included
  size_t owned = 0;         // replicas this agent owns
  size_t falling_back = 0;  // replicas scraped here because their shared score is late
  uint64_t fallback_scrapes = 0;
  uint64_t published_batches = 0, published_reports = 0, heartbeats = 0;
  uint64_t applied_reports = 0;              // reports handed to the agent
  std::map<std::string, uint64_t> rejected;  // reason -> messages or reports refused
  uint64_t peer_joins = 0, peer_leaves = 0;
  cluster::BusStats bus;
  // Scrape on the owner -> this agent's map write: the owner's age at send plus
  // the transit measured by the two hosts' real-time clocks (exact on one host,
  // NTP-accurate across hosts; never used to age a score).
  metrics::Histogram propagation{
      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1}};
};

// Subjects: <prefix>.v1.scores.<service>, <prefix>.v1.agents.
std::string scores_subject(const std::string& prefix, const std::string& service);
std::string agents_subject(const std::string& prefix);

class ClusterSync {
 public:
  ClusterSync(const AgentConfig& cfg, std::unique_ptr<cluster::ScoreBus> bus, std::string agent_id,
              std::string node);

  // Before a round: what arrived, membership, the heartbeat, the subscriptions,
  // and which backends the agent scrapes this round (Agent::set_scraped).
  void before_round(Agent& agent, uint64_t now_ns);
  // Between collect() and finish_round(): the reports for the backends not
  // scraped here.
  void fill_shared(const Agent& agent, Agent::ScrapeRound& round, uint64_t now_ns);
  // After finish_round(): this agent's fresh reports, one batch per service.
  void publish(const Agent& agent, uint64_t now_ns);
  // A clean stop: tell the others at once, so they take over without waiting.
  void leave();

  const ClusterStats& stats() const { return stats_; }
  const cluster::Membership& membership() const { return members_; }

 private:
  void take_messages(const Agent& agent, uint64_t now_ns);
  // Membership heard `m` (logs joins and goodbyes); false when it was refused.
  bool heard_from(const cluster::Message& m, uint64_t now_ns);
  void reject(const std::string& reason, uint64_t n = 1) { stats_.rejected[reason] += n; }

  ClusterSettings cs_;  // fixed for the agent's life (a reload cannot change them)
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds stale_after_;
  std::unique_ptr<cluster::ScoreBus> bus_;
  std::string id_;
  cluster::Membership members_;
  std::vector<std::string> subscribed_;
  struct Heard {
    SharedReport report;
    uint64_t received_ns = 0;  // this agent's clock
    uint64_t sent_realtime_ns = 0;
    uint64_t last_good_ns = 0;  // when a report with numbers (not down) last arrived
    std::string last_good_from;
    bool pending = false;  // not yet handed to the agent
  };
  std::map<std::string, Heard> heard_;                // by replica address
  std::map<std::string, uint64_t> first_seen_ns_;     // when a replica first appeared here
  std::map<std::string, uint64_t> last_fallback_ns_;  // this agent's last fallback scrape
  std::vector<bool> owned_;                           // by backend index, as of before_round()
  uint64_t owned_version_ = ~0ull;     // the membership version owned_ was computed at
  uint64_t owned_generation_ = ~0ull;  // and the agent's backends generation
  uint64_t last_heartbeat_ns_ = 0;
  size_t reports_this_round_ = 0;
  ClusterStats stats_;
};

}  // namespace kvlb::agent
