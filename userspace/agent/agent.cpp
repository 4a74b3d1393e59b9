#include "agent.h"

#include <netinet/in.h>

#include <map>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/names.h"
#include "common/printable.h"
#include "scoring/score.h"
#include "common/printable.h"

namespace kvlb::agent {

kvlb_service_key service_key(const Endpoint& vip) {
  kvlb_service_key k{};
  k.vip = vip.addr;
  k.port = htons(vip.port);
  k.proto = IPPROTO_TCP;
  k.family = static_cast<uint8_t>(vip.family);
  return k;
}

namespace {

kvlb_backend backend_entry(const Endpoint& ep) {
  kvlb_backend b{};
  b.addr = ep.addr;
  b.port = htons(ep.port);
  b.family = static_cast<uint8_t>(ep.family);
  return b;
}

Endpoint vip_of(const kvlb_service_key& k) {
  Endpoint e;
  e.family = k.family;
  e.addr = k.vip;
  e.port = ntohs(k.port);
  return e;
}

Endpoint endpoint_of(const kvlb_backend& b) {
  Endpoint e;
  e.family = b.family;
  e.addr = b.addr;
  e.port = ntohs(b.port);
  return e;
}

}  // namespace

namespace {
ScrapeOptions scrape_options(const AgentConfig& c) {
  ScrapeOptions o{c.scrape_timeout, c.max_scrape_bytes, c.bypass_mark};
  o.client = c.scrape_client;
  return o;
}
}  // namespace

Agent::Agent(AgentConfig cfg, MapStore& dp)
    : cfg_(std::move(cfg)),
      dp_(&dp),
      scraper_(std::make_unique<Scraper>(scrape_options(cfg_))),
      suspects_(cfg_.suspects) {}

void Agent::reconfigure(AgentConfig cfg, MapStore& dp) {
  const bool scrape_changed =
      cfg.scrape_timeout != cfg_.scrape_timeout || cfg.max_scrape_bytes != cfg_.max_scrape_bytes ||
      cfg.bypass_mark != cfg_.bypass_mark || cfg.scrape_client != cfg_.scrape_client;
  const bool suspect_rules_changed = !(cfg.suspects == cfg_.suspects);
  cfg_ = std::move(cfg);
  dp_ = &dp;
  if (scrape_changed) scraper_ = std::make_unique<Scraper>(scrape_options(cfg_));
  if (suspect_rules_changed) suspects_ = scoring::SuspectTracker(cfg_.suspects);
  apply_config();
}

void Agent::apply_config() {
  // 0. Every source caps a service at KVLB_MAX_SLOTS (static config validation,
  //    discovery's subsetting); checked again before anything is written, so
  //    writing past a service's slot array stays impossible.
  for (const auto& svc : cfg_.services)
    if (svc.backends.size() > KVLB_MAX_SLOTS)
      throw std::runtime_error(fmt::format("service {}: {} backends, at most {}", svc.name,
                                           svc.backends.size(), KVLB_MAX_SLOTS));
  // 1. Backends already in the maps, by address.
  if (!in_maps_) {
    in_maps_.emplace();
    for (uint32_t id = 1; id < KVLB_MAX_BACKENDS; ++id) {
      auto b = dp_->backend(id);
      if (b.family != 0) in_maps_->emplace(endpoint_of(b).to_string(), id);
    }
  }
  const std::map<std::string, uint32_t> existing = *in_maps_;
  std::set<uint32_t> used;

  // 2. The replicas this config names, once each, with stable ids.
  std::map<std::string, const BackendState*> previous;
  for (const auto& b : backends_) previous.emplace(b.address.to_string(), &b);
  std::map<std::string, size_t> index;  // address -> position in backends_
  std::vector<BackendState> next;
  for (const auto& svc : cfg_.services) {
    for (const auto& bc : svc.backends) {
      auto key = bc.address.to_string();
      if (index.count(key)) continue;
      BackendState st;
      st.address = bc.address;
      st.metrics_url = bc.metrics_url;
      st.engine = bc.engine;
      st.weight = bc.weight;
      st.configured = bc.state;
      st.node = bc.node;
      if (auto it = previous.find(key); it != previous.end()) {
        // What score sharing knows about it carries over a reconfigure.
        const BackendState& p = *it->second;
        st.scraped = p.scraped;
        st.remote_suspect = p.remote_suspect;
        st.source = p.source;
        st.reported = p.reported;
        st.picks_seen = p.picks_seen;
        st.picks_next = p.picks_next;
      }
      if (auto it = existing.find(key); it != existing.end()) st.id = it->second;
      if (st.id) used.insert(st.id);
      index.emplace(key, next.size());
      next.push_back(std::move(st));
    }
  }
  uint32_t cursor = 1;
  for (auto& st : next) {
    if (st.id) continue;
    // A fresh id must not carry connections of a removed backend still in flight.
    while (cursor < KVLB_MAX_BACKENDS && (used.count(cursor) || dp_->backend(cursor).family != 0 ||
                                          dp_->counters(cursor).inflight > 0))
      ++cursor;
    if (cursor >= KVLB_MAX_BACKENDS)
      throw std::runtime_error(fmt::format("more than {} backends", KVLB_MAX_BACKENDS - 1));
    st.id = cursor;
    used.insert(cursor);
    dp_->reset_counters(st.id);
    dp_->put_score(st.id, kvlb_score{});
  }

  // 3. Backend entries, and scores: an adopted score keeps its values and age;
  //    state and weight follow the new config.
  for (auto& st : next) {
    dp_->put_backend(st.id, backend_entry(st.address));
    // Recorded at once: if a later write fails, the next apply (the old
    // configuration put back) knows this entry and clears it.
    in_maps_->insert_or_assign(st.address.to_string(), st.id);
    kvlb_score s = dp_->score(st.id);
    s.weight = st.weight;
    s.state = static_cast<uint8_t>(effective_state(st));
    dp_->put_score(st.id, s);
    st.last = s;
  }

  // 4. Services: reuse ids of VIPs already present; each service (policy and
  //    backend ids) is one map update, so the kernel never sees a mix.
  std::map<std::string, uint32_t> svc_ids;
  std::set<uint32_t> svc_used;
  std::set<std::string> wanted;
  auto present = dp_->services();
  for (const auto& svc : cfg_.services) wanted.insert(svc.vip.to_string());
  for (const auto& [k, v] : present) {
    const Endpoint vip = vip_of(k);
    svc_ids.emplace(vip.to_string(), v.id);
    svc_used.insert(v.id);
  }
  uint32_t svc_cursor = 0;
  for (const auto& svc : cfg_.services) {
    auto key = service_key(svc.vip);
    uint32_t id;
    if (auto it = svc_ids.find(svc.vip.to_string()); it != svc_ids.end()) {
      id = it->second;
    } else {
      while (svc_used.count(svc_cursor)) ++svc_cursor;
      id = svc_cursor;
      svc_used.insert(id);
    }
    uint32_t n = static_cast<uint32_t>(svc.backends.size());
    kvlb_service v{};
    v.id = id;
    v.backend_count = static_cast<uint16_t>(n);
    v.policy = static_cast<uint8_t>(svc.policy);
    v.choices = svc.choices;
    for (uint32_t i = 0; i < n; ++i)
      v.slots[i] = next[index.at(svc.backends[i].address.to_string())].id;
    dp_->put_service(key, v);
    spdlog::info("service {} vip {} policy {} choices {} backends {} (id {})", svc.name,
                 svc.vip.to_string(), policy_name(svc.policy), svc.choices, n, id);
  }

  // 5. Services and backends no longer configured.
  for (const auto& [k, v] : present) {
    const Endpoint vip = vip_of(k);
    if (wanted.count(vip.to_string())) continue;
    dp_->delete_service(k);
    spdlog::info("removed service vip {}", vip.to_string());
  }
  for (const auto& [addr, id] : existing) {
    if (used.count(id)) continue;
    dp_->put_backend(id, kvlb_backend{});
    kvlb_score s{};
    s.state = KVLB_STATE_DOWN;
    dp_->put_score(id, s);
  }

  // A drain set through the admin API belongs to that backend: once it is gone
  // (its pod deleted), a new backend at the same address (a new pod given the
  // freed IP) starts undrained.
  std::erase_if(drained_, [&](const auto& kv) { return !index.count(kv.first); });

  in_maps_->clear();
  for (const auto& b : next) in_maps_->emplace(b.address.to_string(), b.id);
  backends_ = std::move(next);
  ++generation_;
  set_scrape_targets();
}

void Agent::set_scrape_targets() {
  std::vector<std::string> urls;
  for (const auto& b : backends_)
    if (b.scraped) urls.push_back(b.metrics_url);
  scraper_->set_targets(urls);
}

void Agent::set_scraped(const std::vector<bool>& mask) {
  if (mask.size() != backends_.size()) return;
  bool changed = false;
  for (size_t i = 0; i < mask.size(); ++i)
    if (backends_[i].scraped != mask[i]) {
      backends_[i].scraped = mask[i];
      changed = true;
    }
  if (changed) set_scrape_targets();
}

uint64_t Agent::picks_at(const BackendState& b, uint64_t t_ns, uint64_t now_picks) {
  // The newest round start at or before t; if t predates them all, the oldest
  // (more picks counted since the score: the backend looks no emptier than it is).
  const std::pair<uint64_t, uint64_t>* best = nullptr;
  const std::pair<uint64_t, uint64_t>* oldest = nullptr;
  for (const auto& e : b.picks_seen) {
    if (e.first == 0) continue;
    if (e.first <= t_ns && (!best || e.first > best->first)) best = &e;
    if (!oldest || e.first < oldest->first) oldest = &e;
  }
  if (best) return best->second;
  if (oldest) return oldest->second;
  return now_picks;
}

void Agent::write_score(BackendState& b, const kvlb_score& s) {
  auto t0 = std::chrono::steady_clock::now();
  dp_->put_score(b.id, s);
  stats_.map_update_latency.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  b.last = s;
}

kvlb_backend_state Agent::effective_state(const BackendState& b) const {
  if (b.down) return KVLB_STATE_DOWN;
  auto it = drained_.find(b.address.to_string());
  if (it != drained_.end()) return it->second ? KVLB_STATE_DRAINING : KVLB_STATE_ACTIVE;
  return b.configured;
}

bool Agent::set_drained(const std::string& address, bool drained) {
  for (auto& b : backends_) {
    if (b.address.to_string() != address) continue;
    drained_[address] = drained;
    kvlb_score s = b.last;
    s.state = static_cast<uint8_t>(effective_state(b));
    write_score(b, s);
    spdlog::info("backend {} {}", address, drained ? "drained (no new connections)" : "undrained");
    return true;
  }
  return false;
}

Agent::ScrapeRound Agent::begin_round() const {
  // The picks the kernel had made when the scrape started: the kernel counts the
  // picks since then as assigned-but-not-yet-visible in the replica's metrics.
  ScrapeRound round;
  round.picks.resize(backends_.size());
  round.inflight.resize(backends_.size());
  round.engines.resize(backends_.size());
  for (size_t i = 0; i < backends_.size(); ++i) {
    const auto c = dp_->counters(backends_[i].id);
    round.picks[i] = c.picks;
    round.inflight[i] = c.inflight;
    round.engines[i] = backends_[i].engine;
    if (backends_[i].scraped) round.targets.push_back(i);
  }
  round.shared.resize(backends_.size());
  round.taken = monotonic_ns();
  round.start = std::chrono::steady_clock::now();
  return round;
}

void Agent::collect(ScrapeRound& round) {
  const auto& results = scraper_->scrape_all();
  round.stats.resize(results.size());
  for (size_t k = 0; k < results.size() && k < round.targets.size(); ++k)
    if (results[k].ok())
      round.stats[k] = engines::extract_stats(results[k].body, round.engines[round.targets[k]]);
  round.results = &results;
}

void Agent::scrape_round() {
  auto round = begin_round();
  collect(round);
  finish_round(round);
}

void Agent::finish_round(const ScrapeRound& round) {
  const auto& results = *round.results;
  const auto round_start = round.start;
  const uint64_t taken = round.taken;
  std::vector<bool> fresh(backends_.size(), false);
  // Where each backend's scrape result is (SIZE_MAX: not scraped this round).
  std::vector<size_t> result_of(backends_.size(), SIZE_MAX);
  for (size_t k = 0; k < round.targets.size() && k < results.size(); ++k)
    if (round.targets[k] < backends_.size()) result_of[round.targets[k]] = k;
  for (size_t i = 0; i < backends_.size(); ++i) {
    auto& b = backends_[i];
    b.picks_seen[b.picks_next++ % b.picks_seen.size()] = {taken, round.picks[i]};
    if (result_of[i] == SIZE_MAX) {
      if (i < round.shared.size() && round.shared[i]) {
        fresh[i] = apply_shared(b, *round.shared[i], round.picks[i]);
        // What the owner saw counts as this replica's reports here too: the
        // suspect rules compare them with this node's own kernel counts.
        if (fresh[i])
          suspects_.observe(
              b.id, {static_cast<double>(taken) / 1e9, round.picks[i], round.inflight[i], true,
                     round.shared[i]->waiting, round.shared[i]->running});
      }
      if (!fresh[i]) note_stale(b, taken, "no shared score for");
      continue;
    }
    auto& r = results[result_of[i]];
    std::string error;
    const auto& ex = round.stats[result_of[i]];
    scoring::Observation seen{static_cast<double>(taken) / 1e9,
                              round.picks[i],
                              round.inflight[i],
                              r.ok() && ex.stats.has_value(),
                              0,
                              0};
    if (seen.scraped) {
      seen.waiting = static_cast<uint32_t>(std::max(0.0, ex.stats->waiting));
      seen.running = static_cast<uint32_t>(std::max(0.0, ex.stats->running));
    }
    suspects_.observe(b.id, seen);
    if (r.ok()) {
      if (ex.stats && b.engine == engines::Engine::Auto) {
        // Detected once, from the first good scrape; later scrapes match only this
        // engine's names (cheaper, and no flip-flop on a half-rendered page).
        b.engine = ex.stats->engine;
        spdlog::info("backend {}: engine detected as {}", b.address.to_string(),
                     engines::engine_name(b.engine));
      }
      if (ex.stats) {
        if (b.down || b.consecutive_failures)
          spdlog::info("backend {} scraped again after {} failures", b.address.to_string(),
                       b.consecutive_failures);
        b.consecutive_failures = 0;
        b.down = false;
        b.stale = false;
        b.last_error.clear();
        write_score(
            b, scoring::make_score(*ex.stats, b.weight, effective_state(b), taken, round.picks[i]));
        b.reported = b.last;
        b.source = "scrape";
        b.remote_suspect = false;
        fresh[i] = true;
        stats_.scrape_latency.observe(std::chrono::duration<double>(r.latency).count());
        stats_.scrape_to_map.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - round_start).count());
        continue;
      }
      error = printable(ex.error);
      ++stats_.scrape_errors[{b.address.to_string(), "malformed"}];
    } else {
      error = fmt::format("{}: {}", scrape_error_name(r.error), printable(r.detail));
      ++stats_.scrape_errors[{b.address.to_string(), std::string(scrape_error_name(r.error))}];
    }
    // A failed scrape keeps the last good score (it ages and turns stale in the
    // kernel); after down_after_failures in a row the backend is marked down.
    ++b.consecutive_failures;
    note_stale(b, taken, "score older than");
    if (b.last_error != error) spdlog::warn("scrape of {} failed: {}", b.metrics_url, error);
    b.last_error = error;
    if (!b.down && b.consecutive_failures >= cfg_.down_after_failures) {
      b.down = true;
      kvlb_score s = b.last;
      s.state = KVLB_STATE_DOWN;
      write_score(b, s);
      spdlog::warn("backend {} marked down after {} failed scrapes", b.address.to_string(),
                   b.consecutive_failures);
    }
  }
  bound_suspects(round, fresh);
}

void Agent::note_stale(BackendState& b, uint64_t taken, const char* why) {
  const uint64_t stale_ns = static_cast<uint64_t>(cfg_.stale_after.count()) * 1'000'000ull;
  if (b.stale || taken <= b.last.updated_ns + stale_ns) return;
  b.stale = true;
  ++b.stale_events;
  spdlog::warn("backend {}: {} {} ms, the kernel compares it on in-flight only",
               b.address.to_string(), why, cfg_.stale_after.count());
}

bool Agent::apply_shared(BackendState& b, const SharedReport& r, uint64_t picks_now) {
  const uint64_t now = monotonic_ns();
  if (r.down) {
    // The owner gave up on it: no new connections here either, until a report
    // says otherwise.
    if (!b.down) {
      b.down = true;
      kvlb_score s = b.last;
      s.state = KVLB_STATE_DOWN;
      write_score(b, s);
      spdlog::warn("backend {} marked down by {} (its owner)", b.address.to_string(),
                   printable(r.from, 64));
    }
    b.source = r.from;
    return false;
  }
  // The score's time on this node's clock: the age the owner measured on its
  // clock, carried over (the transit, a millisecond or so, is not counted).
  const uint64_t updated = now > r.age_ns ? now - r.age_ns : 0;
  if (!b.down && updated <= b.last.updated_ns) return false;  // not newer than ours
  if (b.down)
    spdlog::info("backend {} up again (reported by {})", b.address.to_string(),
                 printable(r.from, 64));
  b.down = false;
  b.stale = false;
  b.consecutive_failures = 0;
  b.last_error.clear();
  b.remote_suspect = r.suspect;
  b.source = r.from;
  kvlb_score s{};
  s.waiting = r.waiting;
  s.running = r.running;
  s.kv_permille = r.kv_permille;
  s.weight = b.weight;
  s.state = static_cast<uint8_t>(effective_state(b));
  s.updated_ns = updated;
  s.picks_at_score = picks_at(b, updated, picks_now);
  write_score(b, s);
  b.reported = s;
  return true;
}

void Agent::bound_suspects(const ScrapeRound& round, const std::vector<bool>& fresh) {
  // The services as index lists, once per round: the work is linear in the
  // services' sizes, whatever their number of backends.
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < backends_.size(); ++i) index.emplace(backends_[i].address.to_string(), i);
  std::vector<std::vector<size_t>> members(cfg_.services.size());
  std::vector<std::vector<size_t>> services_of(backends_.size());
  for (size_t s = 0; s < cfg_.services.size(); ++s)
    for (const auto& bc : cfg_.services[s].backends)
      if (auto it = index.find(bc.address.to_string()); it != index.end()) {
        members[s].push_back(it->second);
        services_of[it->second].push_back(s);
      }
  // Per service, the two latest times a backend reported work: a backend's
  // peers' latest is the first unless that one is its own.
  struct Top2 {
    double t1 = -1e300, t2 = -1e300;
    size_t i1 = SIZE_MAX;
  };
  std::vector<Top2> top(members.size());
  for (size_t s = 0; s < members.size(); ++s)
    for (size_t i : members[s]) {
      const double t = suspects_.last_work(backends_[i].id);
      if (t > top[s].t1) {
        top[s].t2 = top[s].t1;
        top[s].t1 = t;
        top[s].i1 = i;
      } else if (t > top[s].t2) {
        top[s].t2 = t;
      }
    }
  for (size_t i = 0; i < backends_.size(); ++i) {
    auto& b = backends_[i];
    double peers_last = -1e300;
    for (size_t s : services_of[i])
      peers_last = std::max(peers_last, top[s].i1 != i ? top[s].t1 : top[s].t2);
    if (suspects_.update(b.id, peers_last)) stats_.suspect_events = suspects_.events();
    // Suspect by this agent's own observation, or by its owner's (a replica
    // scraped elsewhere is bounded here too, by this node's peers).
    const bool local = suspects_.suspect(b.id);
    const bool now_suspect = local || (!b.scraped && b.remote_suspect);
    if (now_suspect != b.suspect) {
      b.suspect = now_suspect;
      b.suspect_reason = local ? suspects_.reason(b.id)
                               : (now_suspect ? "reported by " + printable(b.source, 64) : "");
      if (b.suspect)
        spdlog::warn("backend {} is suspect, bounded to the median of its peers: {}",
                     b.address.to_string(), b.suspect_reason);
      else
        spdlog::info("backend {} is no longer suspect", b.address.to_string());
    }
  }
  for (size_t i = 0; i < backends_.size(); ++i) {
    auto& b = backends_[i];
    if (!b.suspect || !fresh[i]) continue;
    // Bounded by the other active, non-suspect backends of its services.
    std::set<size_t> seen;
    std::vector<scoring::PeerLoad> loads;
    for (size_t s : services_of[i])
      for (size_t j : members[s])
        if (j != i && !backends_[j].suspect && backends_[j].last.state == KVLB_STATE_ACTIVE &&
            seen.insert(j).second)
          loads.push_back({backends_[j].last, round.inflight[j]});
    write_score(b, scoring::bound_suspect(b.last, round.inflight[i], loads));
  }
}

size_t Agent::stale_now() const {
  size_t n = 0;
  for (const auto& b : backends_) n += b.stale;
  return n;
}

uint64_t Agent::stale_events() const {
  uint64_t n = 0;
  for (const auto& b : backends_) n += b.stale_events;
  return n;
}

}  // namespace kvlb::agent
