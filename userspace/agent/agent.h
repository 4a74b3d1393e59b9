// agent.h - the kvlb agent's logic: keeps the maps (a MapStore: the kernel's, or
// an in-memory one in tests) in line with the configuration and with what the
// replicas report. It reconciles and scrapes; the runtime around it (loop,
// signals, reload, listeners) is the Supervisor's, and what it shows is
// rendered by the admin API (admin_api.h).
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "metrics/exposition.h"
#include "dataplane/map_store.h"
#include "scoring/suspects.h"
#include "scrape/scraper.h"

namespace kvlb::agent {

// The services map's key for a VIP (TCP).
kvlb_service_key service_key(const Endpoint& vip);

// One replica as the agent tracks it (shared by every service that lists it).
struct BackendState {
  uint32_t id = 0;
  Endpoint address;
  std::string metrics_url;
  engines::Engine engine = engines::Engine::Auto;
  uint16_t weight = 100;
  kvlb_backend_state configured = KVLB_STATE_ACTIVE;
  unsigned consecutive_failures = 0;
  bool down = false;
  std::string last_error;
  kvlb_score last = {};  // what was last written to the kernel
  std::string last_error_kind;
  bool stale = false;  // the kernel is comparing it on in-flight only
  uint64_t stale_events = 0;
  bool suspect = false;  // reports contradicted by the kernel's counts: bounded to the median
  std::string suspect_reason;
  // Score sharing (docs/cluster.md).
  std::string node;             // the node it runs on ("" unknown)
  bool scraped = true;          // this agent scrapes it (owns it, or falls back); else shared
  bool remote_suspect = false;  // its owner bounds it
  std::string source;           // where its last score came from: "scrape" or the agent id
  kvlb_score reported = {};     // the last fresh report before suspect bounding (what is shared)
  // The kernel's pick counter at the last rounds' starts, (ns, picks): a shared
  // score taken at time t is compared with the picks made here since t.
  std::array<std::pair<uint64_t, uint64_t>, 4> picks_seen{};
  size_t picks_next = 0;
};

// A replica's numbers as another agent scraped them (the cluster's score bus).
struct SharedReport {
  uint32_t waiting = 0, running = 0;
  uint16_t kv_permille = 0;
  bool down = false, suspect = false;
  uint64_t age_ns = 0;  // how old the scrape was when it was sent
  std::string from;     // the agent that scraped it
};

// What the agent measures about itself (rendered by the admin API).
struct AgentStats {
  metrics::Histogram scrape_latency{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
  metrics::Histogram map_update_latency{
      {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3}};
  // From the start of a scrape round to each score's write into the kernel.
  metrics::Histogram scrape_to_map{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
  std::map<std::pair<std::string, std::string>, uint64_t> scrape_errors;  // (backend, kind)
  uint64_t suspect_events = 0;
};

class Agent {
 public:
  Agent(AgentConfig cfg, MapStore& maps);

  // Takes a new configuration (already validated) and the maps (the same ones,
  // or those of a reloaded data plane), and reconciles the maps with it.
  // Connections in flight are untouched.
  void reconfigure(AgentConfig cfg, MapStore& maps);

  // Writes services, slots, backends and initial scores into the maps, reusing
  // the ids of backends and services already there (an adopted data plane keeps
  // its in-flight counts attached to the right replicas).
  void apply_config();

  // One scrape round: snapshot the kernel's pick counters, scrape every backend
  // concurrently, and write a fresh score for each (or mark it down).
  void scrape_round();

  // The same round in three steps, so a caller that shares the agent with
  // another thread (the admin API) holds its lock only for the first and the
  // last: begin_round() and finish_round() read and write the agent's state;
  // collect() scrapes and parses (up to scrape_timeout, plus the parsing) and
  // touches nothing but the scraper and the round. Only the thread that
  // reconfigures the agent may run a round.
  struct ScrapeRound {
    std::vector<uint64_t> picks;           // kernel picks per backend at the start
    std::vector<int64_t> inflight;         // kernel in-flight per backend at the start
    std::vector<engines::Engine> engines;  // each backend's engine at the start
    std::vector<size_t> targets;           // backends scraped this round (results' order)
    // Reports shared by other agents for the backends not scraped here, filled
    // in between collect() and finish_round() (score sharing).
    std::vector<std::optional<SharedReport>> shared;
    uint64_t taken = 0;  // monotonic_ns() at the start
    std::chrono::steady_clock::time_point start;
    const std::vector<ScrapeResult>* results = nullptr;  // the scraper's, after collect()
    std::vector<engines::ExtractResult> stats;           // parsed, for results that are ok()
  };
  ScrapeRound begin_round() const;
  void collect(ScrapeRound& round);
  void finish_round(const ScrapeRound& round);

  // Which backends this agent scrapes from the next round on (score sharing:
  // the ones it owns or falls back on); the others take shared reports. All by
  // default. `mask` is in backends() order.
  void set_scraped(const std::vector<bool>& mask);

  // Runtime drain/undrain of the replica at `address` (ip:port): takes effect in
  // the kernel at once and survives reloads. False when no backend has it.
  bool set_drained(const std::string& address, bool drained);

  const std::vector<BackendState>& backends() const { return backends_; }
  // Changes whenever backends() is rebuilt (every apply_config()).
  uint64_t generation() const { return generation_; }
  const AgentStats& stats() const { return stats_; }
  const MapStore& maps() const { return *dp_; }
  // Backends whose last good score is older than stale_after right now, and how
  // many times a backend has turned stale since the agent started.
  size_t stale_now() const;
  uint64_t stale_events() const;
  const AgentConfig& config() const { return cfg_; }

 private:
  void write_score(BackendState& b, const kvlb_score& s);

  kvlb_backend_state effective_state(const BackendState& b) const;
  void set_scrape_targets();
  // Marks `b` stale (once, logged with `why`) when its score is older than stale_after.
  void note_stale(BackendState& b, uint64_t taken, const char* why);
  // A shared report into the kernel; true when it was fresh (newer than ours).
  bool apply_shared(BackendState& b, const SharedReport& r, uint64_t picks_now);
  static uint64_t picks_at(const BackendState& b, uint64_t t_ns, uint64_t now_picks);
  // Suspect backends (scoring/suspects.h): their fresh scores rewritten, bounded
  // by the median of the backends they share a service with.
  void bound_suspects(const ScrapeRound& round, const std::vector<bool>& fresh);

  AgentConfig cfg_;
  MapStore* dp_;
  std::map<std::string, bool> drained_;  // runtime overrides by address
  AgentStats stats_;
  std::unique_ptr<Scraper> scraper_;
  scoring::SuspectTracker suspects_;
  std::vector<BackendState> backends_;
  uint64_t generation_ = 0;
  // Backend map entries by address. Read from the kernel once (adopting a previous
  // agent's ids); afterwards this agent is the map's only writer and keeps it here,
  // so a reconfigure (every discovery change) does not re-read every id.
  std::optional<std::map<std::string, uint32_t>> in_maps_;
};

}  // namespace kvlb::agent
