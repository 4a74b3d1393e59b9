#include "agent/cluster_sync.h"

#include <time.h>

#include <set>

#include <spdlog/spdlog.h>

#include "cluster/ownership.h"
#include "common/clock.h"
#include "common/printable.h"

namespace kvlb::agent {
namespace {

constexpr uint64_t kMs = 1'000'000ull;
constexpr std::chrono::milliseconds kReconnectGrace{1000};
// Reports taken from the bus per round, at most: what a round's decoding and
// bookkeeping may cost, whatever the peers send (64 x the 1,024 a batch holds).
constexpr size_t kMaxReportsPerRound = 65'536;

uint64_t ns(std::chrono::milliseconds d) {
  return static_cast<uint64_t>(d.count()) * kMs;
}

}  // namespace

std::string scores_subject(const std::string& prefix, const std::string& service) {
  return prefix + ".v1.scores." + service;
}
std::string agents_subject(const std::string& prefix) {
  return prefix + ".v1.agents";
}

ClusterSync::ClusterSync(const AgentConfig& cfg, std::unique_ptr<cluster::ScoreBus> bus,
                         std::string agent_id, std::string node)
    : cs_(cfg.cluster),
      interval_(cfg.scrape_interval),
      stale_after_(cfg.stale_after),
      bus_(std::move(bus)),
      id_(agent_id),
      members_({agent_id, std::move(node)}, ns(cfg.cluster.peer_timeout),
               3 * ns(cfg.cluster.heartbeat_interval)) {
  stats_.agent_id = id_;
}

bool ClusterSync::heard_from(const cluster::Message& m, uint64_t now_ns) {
  const bool was = members_.knows(m.publisher);
  if (!members_.heard(m, now_ns)) {
    reject("too_many_peers");
    return false;
  }
  const bool is = members_.knows(m.publisher);
  if (!was && is) spdlog::info("cluster: agent {} joined (node {})", m.publisher, m.node);
  if (was && !is) spdlog::info("cluster: agent {} left", m.publisher);
  return true;
}

void ClusterSync::take_messages(const Agent& agent, uint64_t now_ns) {
  auto messages = bus_->drain();
  if (messages.empty()) return;
  // The replicas each service balances here: only those may be reported.
  std::map<std::string, std::set<std::string>> members;
  for (const auto& svc : agent.config().services) {
    auto& set = members[svc.name];
    for (const auto& bc : svc.backends) set.insert(bc.address.to_string());
  }
  const std::string agents = agents_subject(cs_.subject_prefix);
  for (const auto& raw : messages) {
    auto d = cluster::decode(raw.data);
    if (!d.ok) {
      reject("malformed");
      spdlog::debug("cluster: message on {} refused: {}", printable(raw.subject, 128), d.error);
      continue;
    }
    const auto& m = d.message;
    if (m.kind != cluster::MessageKind::Scores) {
      if (raw.subject != agents) {
        reject("subject_mismatch");
        continue;
      }
      heard_from(m, now_ns);
      continue;
    }
    if (m.publisher == id_) continue;
    if (raw.subject != scores_subject(cs_.subject_prefix, m.service)) {
      reject("subject_mismatch");
      continue;
    }
    // Scores are an owner's sign of life (membership.h), and introduce it.
    if (!heard_from(m, now_ns)) continue;
    auto svc = members.find(m.service);
    if (svc == members.end()) {
      reject("unknown_service");
      continue;
    }
    for (const auto& r : m.reports) {
      const std::string addr = r.replica.to_string();
      if (!svc->second.count(addr)) {
        reject("unknown_replica");
        continue;
      }
      if (ns(std::chrono::milliseconds(r.age_ms)) > ns(stale_after_)) {
        reject("too_old");
        continue;
      }
      SharedReport rep;
      rep.waiting = r.waiting;
      rep.running = r.running;
      rep.kv_permille = r.kv_permille == cluster::kNoKv ? 0 : r.kv_permille;
      rep.down = r.down;
      rep.suspect = r.suspect;
      rep.age_ns = static_cast<uint64_t>(r.age_ms) * kMs;
      rep.from = m.publisher;
      auto& h = heard_[addr];
      const uint64_t taken = now_ns - std::min(now_ns, rep.age_ns);
      if (rep.down) {
        // A down verdict counts unless another owner has a good scrape of it
        // that recent (with r > 1 owners that disagree, up wins: no flapping).
        if (h.last_good_ns && h.last_good_from != m.publisher &&
            h.last_good_ns + ns(cs_.fallback_after) > now_ns)
          continue;
        if (h.received_ns && h.report.down) {  // already down: just heard again
          h.received_ns = now_ns;
          continue;
        }
      } else {
        // Keep the newest scrape (on this clock: received minus age), whoever sent it.
        const uint64_t held =
            h.report.down ? 0 : h.received_ns - std::min(h.received_ns, h.report.age_ns);
        if (h.received_ns != 0 && taken < held) continue;
        h.last_good_ns = now_ns;
        h.last_good_from = m.publisher;
      }
      h.report = std::move(rep);
      h.received_ns = now_ns;
      h.sent_realtime_ns = m.sent_realtime_ns;
      h.pending = true;
      // Bounded work per round whatever the peers send (the rest of this
      // drain is dropped; the next round has fresher ones).
      if (++reports_this_round_ >= kMaxReportsPerRound) break;
    }
    if (reports_this_round_ >= kMaxReportsPerRound) {
      reject("over_round_budget");
      break;
    }
  }
}

void ClusterSync::before_round(Agent& agent, uint64_t now_ns) {
  reports_this_round_ = 0;
  take_messages(agent, now_ns);
  const bool was_connected = stats_.connected;
  stats_.connected = bus_->connected();
  // Off the bus this agent hears nobody: the membership it last knew stands
  // (else it would own every replica and scrape each every round, as would
  // every other agent cut off with it), and once it is back the peers get a
  // grace to be heard again.
  // The others reconnect too, each after its own reconnect wait (250 ms,
  // jittered): a second's grace before anyone is taken for gone.
  if (stats_.connected && !was_connected) members_.refresh_all(now_ns + ns(kReconnectGrace));
  if (stats_.connected)
    for (const auto& gone : members_.expire(now_ns))
      spdlog::info("cluster: agent {} not heard from for {} ms: its replicas are taken over", gone,
                   cs_.peer_timeout.count());
  stats_.peers = members_.live().size();
  stats_.peer_joins = members_.joins();
  stats_.peer_leaves = members_.leaves();

  // The heartbeat, once per heartbeat_interval (an owner's scores say more,
  // every round, to the agents that balance its services), and the subjects of
  // the services balanced here.
  if (last_heartbeat_ns_ == 0 || now_ns >= last_heartbeat_ns_ + ns(cs_.heartbeat_interval)) {
    cluster::Message hb;
    hb.kind = cluster::MessageKind::Heartbeat;
    hb.publisher = id_;
    hb.sent_realtime_ns = realtime_ns();
    hb.node = members_.self().node;
    hb.interval_ms =
        static_cast<uint32_t>(std::clamp<int64_t>(interval_.count(), 1, cluster::kMaxIntervalMs));
    if (bus_->publish(agents_subject(cs_.subject_prefix), cluster::encode(hb))) {
      ++stats_.heartbeats;
      last_heartbeat_ns_ = now_ns;
    }
  }
  std::vector<std::string> subjects{agents_subject(cs_.subject_prefix)};
  for (const auto& svc : agent.config().services)
    subjects.push_back(scores_subject(cs_.subject_prefix, svc.name));
  if (subjects != subscribed_) {
    try {
      bus_->subscribe(subjects);
      subscribed_ = subjects;
    } catch (const std::exception& e) {
      spdlog::error("cluster: cannot subscribe: {}", e.what());
    }
  }

  // Which backends this agent scrapes this round. Ownership (a rendezvous over
  // the live agents per replica: O(agents) each) is recomputed only when the
  // membership or the backends changed.
  const auto& backends = agent.backends();
  const auto& live = members_.live();
  const bool recompute = members_.version() != owned_version_ ||
                         agent.generation() != owned_generation_ ||
                         owned_.size() != backends.size();
  if (recompute) {
    owned_.assign(backends.size(), false);
    for (size_t i = 0; i < backends.size(); ++i)
      owned_[i] = cluster::owns(id_, backends[i].address.to_string(), backends[i].node, live,
                                cs_.redundancy);
    owned_version_ = members_.version();
    owned_generation_ = agent.generation();
  }
  std::vector<bool> mask(backends.size(), false);
  std::set<std::string> present;
  size_t owned = 0, late_now = 0;
  for (size_t i = 0; i < backends.size(); ++i) {
    const auto& b = backends[i];
    const std::string addr = b.address.to_string();
    present.insert(addr);
    if (owned_[i]) {
      ++owned;
      mask[i] = true;
      continue;
    }
    // Not ours: shared, unless its score stopped arriving (its owner gone or
    // silent, or this agent off the bus). A replica just seen gets one
    // fallback_after for its owner's first report.
    auto first = first_seen_ns_.emplace(addr, now_ns).first->second;
    auto h = heard_.find(addr);
    const uint64_t last = h != heard_.end() ? std::max(h->second.received_ns, first) : first;
    const bool late = !stats_.connected || now_ns > last + ns(cs_.fallback_after);
    if (!late) continue;
    ++late_now;
    auto& lf = last_fallback_ns_[addr];
    if (lf == 0 || now_ns >= lf + ns(cs_.fallback_scrape_interval)) {
      lf = now_ns;
      mask[i] = true;
      ++stats_.fallback_scrapes;
    }
  }
  if (late_now > 0 && stats_.falling_back == 0)
    spdlog::warn(
        "cluster: {} replicas without a fresh shared score ({}): scraping them here, at "
        "most every {} ms",
        late_now, stats_.connected ? "their owners are silent" : "not connected to NATS",
        cs_.fallback_scrape_interval.count());
  if (late_now == 0 && stats_.falling_back > 0)
    spdlog::info("cluster: every replica's shared score arrives again");
  stats_.falling_back = late_now;
  stats_.owned = owned;
  for (auto* m : {&first_seen_ns_, &last_fallback_ns_})
    std::erase_if(*m, [&](const auto& kv) { return !present.count(kv.first); });
  std::erase_if(heard_, [&](const auto& kv) { return !present.count(kv.first); });
  agent.set_scraped(mask);
  stats_.bus = bus_->stats();
}

void ClusterSync::fill_shared(const Agent& agent, Agent::ScrapeRound& round, uint64_t now_ns) {
  take_messages(agent, now_ns);
  const auto& backends = agent.backends();
  const uint64_t real_now = realtime_ns();
  round.shared.resize(backends.size());
  for (size_t i = 0; i < backends.size(); ++i) {
    auto h = heard_.find(backends[i].address.to_string());
    if (h == heard_.end() || !h->second.pending) continue;
    h->second.pending = false;
    if (backends[i].scraped) continue;  // scraped here this round: ours is fresher
    SharedReport r = h->second.report;
    r.age_ns += now_ns - h->second.received_ns;  // and the time it waited here
    // Held too long (a report kept while this agent scraped the replica, then
    // it stopped): not news any more.
    if (!r.down && r.age_ns > ns(stale_after_)) continue;
    round.shared[i] = std::move(r);
    ++stats_.applied_reports;
    const uint64_t transit =
        real_now > h->second.sent_realtime_ns ? real_now - h->second.sent_realtime_ns : 0;
    stats_.propagation.observe(static_cast<double>(h->second.report.age_ns + transit) / 1e9);
  }
}

void ClusterSync::publish(const Agent& agent, uint64_t now_ns) {
  const auto& backends = agent.backends();
  if (owned_.size() != backends.size()) return;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < backends.size(); ++i) index.emplace(backends[i].address.to_string(), i);
  for (const auto& svc : agent.config().services) {
    cluster::Message m;
    m.kind = cluster::MessageKind::Scores;
    m.publisher = id_;
    m.node = members_.self().node;
    m.service = svc.name;
    auto send = [&] {
      if (m.reports.empty()) return;
      m.sent_realtime_ns = realtime_ns();
      const std::string subject = scores_subject(cs_.subject_prefix, svc.name);
      if (bus_->publish(subject, cluster::encode(m))) {
        ++stats_.published_batches;
        stats_.published_reports += m.reports.size();
      }
      m.reports.clear();
    };
    for (const auto& bc : svc.backends) {
      auto it = index.find(bc.address.to_string());
      if (it == index.end() || !owned_[it->second]) continue;
      const auto& b = backends[it->second];
      if (b.reported.updated_ns == 0 && !b.down) continue;  // nothing scraped yet
      cluster::ReplicaReport r;
      r.replica = b.address;
      r.waiting = std::min(b.reported.waiting, cluster::kMaxRequests);
      r.running = std::min(b.reported.running, cluster::kMaxRequests);
      r.kv_permille = std::min<uint16_t>(b.reported.kv_permille, 1000);
      r.down = b.down;
      r.suspect = b.suspect;
      // A down verdict is current (this round's); numbers carry their scrape's age.
      const uint64_t age =
          b.down || now_ns <= b.reported.updated_ns ? 0 : now_ns - b.reported.updated_ns;
      r.age_ms = static_cast<uint32_t>(std::min<uint64_t>(age / kMs, cluster::kMaxAgeMs));
      m.reports.push_back(r);
      if (m.reports.size() == cluster::kMaxReportsPerBatch) send();
    }
    send();
  }
  stats_.bus = bus_->stats();
}

void ClusterSync::leave() {
  cluster::Message m;
  m.kind = cluster::MessageKind::Leaving;
  m.publisher = id_;
  m.sent_realtime_ns = realtime_ns();
  bus_->publish(agents_subject(cs_.subject_prefix), cluster::encode(m));
  bus_->flush(500);
}

}  // namespace kvlb::agent
