#include "cluster_sim.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "autoscale/scaler.h"
#include "common/names.h"
#include "oracle.h"
#include "scoring/score.h"
#include "scoring/suspects.h"
#include "selection/array_pick.h"

namespace kvlb::sim {
namespace {

enum class EventKind {
  StepEnd,
  Arrival,
  Scrape,
  Monitor,
  Autoscale,  // the autoscaler's loop
  Create,     // the ReplicaSet creates a pod
  Ready,      // a replica's model is loaded
  Gone,       // a deleted replica is gone
};

struct Event {
  double t;
  uint64_t seq;  // FIFO among equal times: deterministic
  EventKind kind;
  size_t index;  // replica for StepEnd, request for Arrival
  bool operator>(const Event& o) const { return std::tie(t, seq) > std::tie(o.t, o.seq); }
};

// What a replica's /metrics would say: the agent's and the oracle's input.
engines::EngineStats engine_stats(const replica::EngineSnapshot& s) {
  engines::EngineStats st;
  st.waiting = s.waiting;
  st.running = s.running;
  st.kv_usage = s.kv_usage();
  return st;
}

}  // namespace

BalancerSpec parse_balancer(const std::string& text) {
  BalancerSpec b;
  b.name = text;
  std::string base = text, k;
  if (auto c = text.find(':'); c != std::string::npos) {
    base = text.substr(0, c);
    k = text.substr(c + 1);
  }
  if (base == "oracle") {
    b.oracle = true;
    return b;
  }
  // The live harness's peers, as the policies that model them.
  if (base == "kube-proxy") return {text, false, KVLB_POLICY_RANDOM, 1};
  if (base == "haproxy-leastconn") return {text, false, KVLB_POLICY_LEAST_INFLIGHT, 0};
  if (base == "haproxy-random2" || base == "nginx-random2-leastconn")
    return {text, false, KVLB_POLICY_LEAST_INFLIGHT, 2};
  if (base.rfind("kvlb-", 0) == 0) base = base.substr(5);
  auto policy = policy_from_name(base);
  if (!policy) throw std::invalid_argument("unknown balancer '" + text + "'");
  b.policy = static_cast<uint8_t>(*policy);
  if (k == "all")
    b.choices = 0;
  else if (!k.empty())
    b.choices = static_cast<uint8_t>(std::stoi(k));
  return b;
}

std::string balancer_help() {
  std::string out =
      "The live harness's balancers, as the policies that model them:\n"
      "  kube-proxy               random (iptables/IPVS random)\n"
      "  haproxy-leastconn        least in-flight over all backends\n"
      "  haproxy-random2          least in-flight of 2 random backends\n"
      "  nginx-random2-leastconn  least in-flight of 2 random backends\n"
      "  oracle                   reads every replica before each request: fewest waiting,\n"
      "                           then lowest KV (the load generator's oracle)\n"
      "kvlb's policies (select.h), with an optional number of choices :2 ... :16 or :all\n"
      "(default " +
      std::to_string(KVLB_DEFAULT_CHOICES) + ", the agent's):\n";
  for (auto p : kPolicyNames) out += fmt::format("  kvlb-{0} (or {0})\n", p);
  return out;
}

namespace {

enum class Life { Starting, Active, Draining, Terminating, Removed };

struct Replica {
  std::unique_ptr<replica::VllmV0Model> model;
  Life life = Life::Active;
  bool stepping = false;
  kvlb_score score{};
  kvlb_counters counters{};
  engines::EngineStats scraped;  // the agent's last scrape (what /v1/backends shows)
  double scraped_at = -1;        // -1: never scraped while in the balancer
};

bool in_balancer(Life l) {
  return l == Life::Active || l == Life::Draining;
}

}  // namespace

SimResult simulate(const SimConfig& cfg, const BalancerSpec& bal,
                   const std::vector<loadgen::RequestSpec>& specs,
                   const std::vector<double>& arrivals) {
  const bool autoscaled = cfg.autoscale.has_value();
  const AutoscaleSpec as = cfg.autoscale.value_or(AutoscaleSpec{});
  std::vector<Replica> reps;
  std::vector<int> owner(specs.size(), -1);  // replica of each request
  SimResult out;
  out.requests.resize(specs.size());
  auto& life = out.autoscale.lives;

  std::priority_queue<Event, std::vector<Event>, std::greater<>> q;
  uint64_t seq = 0;
  auto push = [&](double t, EventKind k, size_t idx) { q.push(Event{t, seq++, k, idx}); };
  // Virtual time starts at 1 s on the kernel clock, so no score is ever "time 0".
  auto ns = [](double t) { return static_cast<uint64_t>((t + 1.0) * 1e9); };
  std::mt19937_64 rng(cfg.seed);
  size_t oracle_rr = 0;
  scoring::SuspectTracker suspects(cfg.suspects);

  auto create = [&](double now, Life l) {
    size_t i = reps.size();
    auto p = cfg.profile;
    p.seed = cfg.profile.seed + i;
    Replica r;
    r.model = std::make_unique<replica::VllmV0Model>(p);
    r.life = l;
    reps.push_back(std::move(r));
    out.replicas.push_back({});
    out.replicas.back().url = fmt::format("r{}", i);
    life.push_back({fmt::format("r{}", i), now, l == Life::Active ? now : -1, -1, -1, {}, 0, 0});
    if (l == Life::Starting) push(now + as.startup_s, EventKind::Ready, i);
  };
  // The balancer's backends (the service's slots), in creation order.
  std::vector<size_t> members;
  auto refresh_members = [&] {
    members.clear();
    for (size_t i = 0; i < reps.size(); ++i)
      if (in_balancer(reps[i].life)) members.push_back(i);
  };
  const size_t initial = autoscaled ? as.initial : cfg.replicas;
  for (size_t i = 0; i < initial; ++i) create(0, Life::Active);
  refresh_members();

  int32_t spec = static_cast<int32_t>(initial);
  int32_t pending = 0, pending_cancelled = 0;  // pods asked for and not created yet
  auto record_counts = [&](double now) {
    CountSample c{now, spec, 0, 0, 0, 0};
    for (const auto& r : reps) {
      c.existing += r.life != Life::Removed;
      c.starting += r.life == Life::Starting;
      c.ready += in_balancer(r.life);
      c.serving += r.life == Life::Active;
    }
    auto& v = out.autoscale.counts;
    if (!v.empty() && v.back().t == now)
      v.back() = c;
    else
      v.push_back(c);
  };
  record_counts(0);

  size_t finished = 0;
  // The ReplicaSet: delete one pod now (out of the balancer at once; whatever
  // it still runs is cut).
  auto remove = [&](size_t i, double now) {
    auto& r = reps[i];
    r.life = Life::Terminating;
    life[i].deleted = now;
    if (!life[i].drained.empty() && life[i].drained.back().second < 0)
      life[i].drained.back().second = now;
    for (size_t k = 0; k < specs.size(); ++k) {
      if (owner[k] != static_cast<int>(i) || out.requests[k].end >= 0) continue;
      auto& req = out.requests[k];
      req.error = "cut_by_scale_down";
      req.end = now;
      ++life[i].cut;
      ++out.autoscale.cut;
      ++finished;
    }
    push(now + as.termination_s, EventKind::Gone, i);
  };
  auto reconcile = [&](double now) {
    int32_t alive = 0;
    for (const auto& r : reps) alive += r.life == Life::Starting || in_balancer(r.life);
    int32_t coming = pending - pending_cancelled;
    if (spec > alive + coming) {
      // Creations cancelled but not yet due are simply wanted again.
      int32_t more = spec - alive - coming;
      int32_t revived = std::min(more, pending_cancelled);
      pending_cancelled -= revived;
      for (int32_t k = revived; k < more; ++k) {
        ++pending;
        push(now + as.creation_delay_s, EventKind::Create, 0);
      }
    } else if (spec < alive + coming) {
      int32_t excess = alive + coming - spec;
      int32_t cancel = std::min(excess, coming);
      pending_cancelled += cancel;
      excess -= cancel;
      // Not ready first, then the lowest deletion cost, then the newest.
      std::vector<size_t> cand;
      for (size_t i = 0; i < reps.size(); ++i)
        if (reps[i].life == Life::Starting || in_balancer(reps[i].life)) cand.push_back(i);
      std::sort(cand.begin(), cand.end(), [&](size_t a, size_t b) {
        bool ra = in_balancer(reps[a].life), rb = in_balancer(reps[b].life);
        if (ra != rb) return !ra;
        if (life[a].deletion_cost != life[b].deletion_cost)
          return life[a].deletion_cost < life[b].deletion_cost;
        return a > b;
      });
      for (int32_t k = 0; k < excess && k < static_cast<int32_t>(cand.size()); ++k)
        remove(cand[static_cast<size_t>(k)], now);
      refresh_members();
    }
    record_counts(now);
  };

  std::optional<autoscale::Scaler> scaler;
  if (autoscaled && as.policy) scaler.emplace(*as.policy);
  auto millis = [](double t) { return autoscale::Millis{std::llround(t * 1000)}; };
  auto by_address = [&](const std::string& a) -> std::optional<size_t> {
    for (size_t i = 0; i < reps.size(); ++i)
      if (life[i].name == a && reps[i].life != Life::Removed) return i;
    return std::nullopt;
  };
  auto set_drained = [&](size_t i, bool drained, double now) {
    auto& r = reps[i];
    if (!in_balancer(r.life)) return;
    if (drained && r.life == Life::Active) life[i].drained.push_back({now, -1});
    if (!drained && r.life == Life::Draining) life[i].drained.back().second = now;
    r.life = drained ? Life::Draining : Life::Active;
    r.score.state = drained ? KVLB_STATE_DRAINING : KVLB_STATE_ACTIVE;
  };
  // One round of the live autoscaler: observe (as autoscaler/observe.cpp maps
  // the agent's backends and the workload's pods), decide, act.
  auto autoscale_tick = [&](double now) {
    autoscale::Observation o;
    o.now = millis(now);
    o.spec_replicas = spec;
    for (size_t i = 0; i < reps.size(); ++i) {
      const auto& r = reps[i];
      if (r.life == Life::Removed) continue;
      autoscale::ReplicaView v;
      v.pod = v.address = life[i].name;
      v.terminating = r.life == Life::Terminating;
      v.ready = in_balancer(r.life);  // Ready and balanced (draining is still "up")
      v.age = millis(now - life[i].created);
      if (v.ready && r.scraped_at >= 0) {
        v.has_score = true;
        v.score_age = millis(now - r.scraped_at);
        v.waiting = r.scraped.waiting;
        v.running = r.scraped.running;
        v.kv = r.scraped.kv_usage.value_or(0);
      }
      v.inflight = r.counters.inflight;
      o.replicas.push_back(std::move(v));
    }
    ++out.autoscale.ticks;
    for (const auto& a : scaler->tick(o)) {
      switch (a.kind) {
        case autoscale::Action::Kind::Scale:
          if (a.replicas != spec) out.autoscale.scales.push_back({now, spec, a.replicas, a.reason});
          spec = a.replicas;
          reconcile(now);
          break;
        case autoscale::Action::Kind::Drain:
        case autoscale::Action::Kind::Undrain:
          if (auto i = by_address(a.address)) {
            set_drained(*i, a.kind == autoscale::Action::Kind::Drain, now);
            refresh_members();
            record_counts(now);
          }
          break;
        case autoscale::Action::Kind::DeletionCost:
          if (auto i = by_address(a.pod)) life[*i].deletion_cost = a.replicas;
          break;
        case autoscale::Action::Kind::Event:
          ++out.autoscale.events[a.reason];
          break;
      }
    }
  };

  auto kick = [&](size_t i, double now) {
    auto& r = reps[i];
    if (r.stepping) return;
    if (auto d = r.model->begin_step(now)) {
      r.stepping = true;
      push(now + *d, EventKind::StepEnd, i);
    }
  };
  std::vector<kvlb_score> view_scores;
  std::vector<kvlb_counters> view_counters;
  auto pick = [&](double now) -> int {
    const size_t n = members.size();
    if (bal.oracle) {
      std::vector<std::optional<engines::EngineStats>> stats(n);
      for (size_t k = 0; k < n; ++k)
        if (reps[members[k]].life == Life::Active)
          stats[k] = engine_stats(reps[members[k]].model->snapshot());
      int k = loadgen::oracle_choice(stats, oracle_rr++);
      return k < 0 ? -1 : static_cast<int>(members[static_cast<size_t>(k)]);
    }
    view_scores.resize(n);
    view_counters.resize(n);
    for (size_t k = 0; k < n; ++k) {
      view_scores[k] = reps[members[k]].score;
      view_counters[k] = reps[members[k]].counters;
      if (!cfg.pick_correction) view_scores[k].picks_at_score = view_counters[k].picks;
    }
    const uint8_t choices =
        bal.choices ? bal.choices : static_cast<uint8_t>(std::min<size_t>(n, KVLB_MAX_CHOICES));
    int k = pick_from_arrays(bal.policy, choices, view_scores.data(), view_counters.data(),
                             static_cast<uint32_t>(n), cfg.select, ns(now), rng());
    return k < 0 ? -1 : static_cast<int>(members[static_cast<size_t>(k)]);
  };

  for (size_t k = 0; k < specs.size(); ++k) push(arrivals[k], EventKind::Arrival, k);
  double end_of_arrivals = arrivals.empty() ? 0 : arrivals.back();
  // Without autoscaling the periodic events stop with the arrivals (the runs
  // the committed tables were made with); with it, scores and the autoscaler
  // go on while requests finish, so drains complete.
  auto again = [&](double now) { return autoscaled || now <= end_of_arrivals; };
  push(0, EventKind::Scrape, 0);
  push(0, EventKind::Monitor, 0);
  if (scaler) push(0, EventKind::Autoscale, 0);

  while (!q.empty() && finished < specs.size()) {
    Event ev = q.top();
    q.pop();
    ++out.events;
    const double now = ev.t;
    switch (ev.kind) {
      case EventKind::Arrival: {
        auto& r = out.requests[ev.index];
        r.index = ev.index;
        r.input_tokens = specs[ev.index].input_tokens;
        r.expected_output = specs[ev.index].output_tokens;
        r.scheduled = r.sent = now;
        int i = pick(now);
        if (i < 0) {
          r.error = "no_backend";
          r.end = now;
          ++finished;
          break;
        }
        auto& rep = reps[static_cast<size_t>(i)];
        r.replica = life[static_cast<size_t>(i)].name;
        if (static_cast<size_t>(i) < cfg.lying) {
          // The lying replica: an error at once, its connection closed at once.
          r.error = "http_500";
          r.end = now;
          ++rep.counters.picks;
          ++finished;
          break;
        }
        replica::GenRequest g{ev.index, specs[ev.index].input_tokens, specs[ev.index].output_tokens,
                              now};
        if (auto rej = rep.model->submit(g)) {
          r.error = "http_400";
          r.error_detail = *rej;
          r.end = now;
          ++finished;
          break;
        }
        owner[ev.index] = i;
        ++rep.counters.picks;
        ++rep.counters.inflight;
        kick(static_cast<size_t>(i), now);
        break;
      }
      case EventKind::StepEnd: {
        size_t i = ev.index;
        auto& rep = reps[i];
        rep.stepping = false;
        if (!in_balancer(rep.life)) break;  // deleted: its requests were cut
        for (const auto& te : rep.model->end_step(now)) {
          auto& r = out.requests[te.id];
          if (r.first < 0) r.first = now;
          r.output_tokens = te.generated;
          if (te.kind == replica::TokenEventKind::Finished) {
            r.end = now;
            --rep.counters.inflight;  // the connection closes with the response
            ++finished;
          }
        }
        kick(i, now);
        break;
      }
      case EventKind::Scrape: {
        // The agent's view: each backend's metrics now, with the kernel's pick
        // count at this moment (what it has already seen), scored and checked
        // for suspects by the agent's own code.
        for (size_t i : members) {
          auto& rep = reps[i];
          auto s = rep.model->snapshot();
          rep.scraped = engine_stats(s);
          rep.scraped_at = now;
          rep.score = scoring::make_score(
              rep.scraped, 100,
              rep.life == Life::Draining ? KVLB_STATE_DRAINING : KVLB_STATE_ACTIVE, ns(now),
              rep.counters.picks);
          suspects.observe(
              static_cast<uint32_t>(i),
              {now, rep.counters.picks, rep.counters.inflight, true, s.waiting, s.running});
        }
        // One service: a backend's peers are all the others.
        for (size_t i : members) {
          double peers_last = -1e300;
          for (size_t j : members)
            if (j != i)
              peers_last = std::max(peers_last, suspects.last_work(static_cast<uint32_t>(j)));
          suspects.update(static_cast<uint32_t>(i), peers_last);
        }
        for (size_t i : members) {
          if (!suspects.suspect(static_cast<uint32_t>(i))) continue;
          std::vector<scoring::PeerLoad> peers;
          for (size_t j : members)
            if (j != i && !suspects.suspect(static_cast<uint32_t>(j)))
              peers.push_back({reps[j].score, reps[j].counters.inflight});
          reps[i].score = scoring::bound_suspect(reps[i].score, reps[i].counters.inflight, peers);
        }
        out.suspect_events = suspects.events();
        if (again(now)) push(now + cfg.scrape_interval_s, EventKind::Scrape, 0);
        break;
      }
      case EventKind::Monitor: {
        for (size_t i = 0; i < reps.size(); ++i) {
          if (reps[i].life == Life::Removed) continue;
          auto s = reps[i].model->snapshot();
          auto& ser = out.replicas[i];
          ser.t.push_back(now);
          ser.waiting.push_back(s.waiting);
          ser.running.push_back(s.running);
          ser.kv.push_back(s.kv_usage());
        }
        if (again(now)) push(now + cfg.monitor_interval_s, EventKind::Monitor, 0);
        break;
      }
      case EventKind::Autoscale:
        autoscale_tick(now);
        push(now + as.interval_s, EventKind::Autoscale, 0);
        break;
      case EventKind::Create:
        --pending;
        if (pending_cancelled > 0) {
          --pending_cancelled;
          break;
        }
        create(now, Life::Starting);
        record_counts(now);
        break;
      case EventKind::Ready:
        if (reps[ev.index].life != Life::Starting) break;  // deleted while loading
        reps[ev.index].life = Life::Active;
        life[ev.index].active = now;
        refresh_members();
        record_counts(now);
        break;
      case EventKind::Gone:
        reps[ev.index].life = Life::Removed;
        life[ev.index].gone = now;
        suspects.forget(static_cast<uint32_t>(ev.index));
        record_counts(now);
        break;
    }
  }
  return out;
}

}  // namespace kvlb::sim
