// agent.h - the kvlb agent: keeps the kernel maps in line with the configuration
// and with what the replicas report.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/config.h"
#include "dataplane/dataplane.h"
#include "scrape/scraper.h"

namespace kvlb::agent {

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
  bool stale = false;    // the kernel is comparing it on in-flight only
  uint64_t stale_events = 0;
};

class Agent {
 public:
  Agent(AgentConfig cfg, DataPlane& dp);

  // Takes a new configuration (already validated) and a data plane (the same one,
  // or a reloaded one whose programs were swapped into the pinned links), and
  // reconciles the maps with it. Connections in flight are untouched.
  void reconfigure(AgentConfig cfg, DataPlane& dp);

  // Writes services, slots, backends and initial scores into the maps, reusing
  // the ids of backends and services already there (an adopted data plane keeps
  // its in-flight counts attached to the right replicas).
  void apply_config();

  // One scrape round: snapshot the kernel's pick counters, scrape every backend
  // concurrently, and write a fresh score for each (or mark it down).
  void scrape_round();

  // Logs one line per backend: scores and kernel counters.
  void log_scores() const;

  const std::vector<BackendState>& backends() const { return backends_; }
  // Backends whose last good score is older than stale_after right now, and how
  // many times a backend has turned stale since the agent started.
  size_t stale_now() const;
  uint64_t stale_events() const;
  const AgentConfig& config() const { return cfg_; }

 private:
  void write_score(BackendState& b, const kvlb_score& s);

  AgentConfig cfg_;
  DataPlane* dp_;
  std::unique_ptr<Scraper> scraper_;
  std::vector<BackendState> backends_;
};

}  // namespace kvlb::agent
