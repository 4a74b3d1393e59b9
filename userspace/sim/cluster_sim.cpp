#include "cluster_sim.h"

#include <memory>
#include <queue>
#include <random>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "common/names.h"
#include "oracle.h"
#include "scoring/score.h"
#include "scoring/suspects.h"
#include "selection/array_pick.h"

namespace kvlb::sim {
namespace {

enum class EventKind { StepEnd, Arrival, Scrape, Monitor };

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

SimResult simulate(const SimConfig& cfg, const BalancerSpec& bal,
                   const std::vector<loadgen::RequestSpec>& specs,
                   const std::vector<double>& arrivals) {
  const size_t n = cfg.replicas;
  std::vector<std::unique_ptr<replica::VllmV0Model>> models;
  for (size_t i = 0; i < n; ++i) {
    auto p = cfg.profile;
    p.seed = cfg.profile.seed + i;
    models.push_back(std::make_unique<replica::VllmV0Model>(p));
  }
  std::vector<bool> stepping(n, false);
  std::vector<kvlb_score> scores(n);
  std::vector<kvlb_counters> counters(n);
  std::vector<int> owner(specs.size(), -1);  // replica of each request
  SimResult out;
  out.requests.resize(specs.size());
  out.replicas.resize(n);
  for (size_t i = 0; i < n; ++i) out.replicas[i].url = fmt::format("r{}", i);

  std::priority_queue<Event, std::vector<Event>, std::greater<>> q;
  uint64_t seq = 0;
  auto push = [&](double t, EventKind k, size_t idx) { q.push(Event{t, seq++, k, idx}); };
  // Virtual time starts at 1 s on the kernel clock, so no score is ever "time 0".
  auto ns = [](double t) { return static_cast<uint64_t>((t + 1.0) * 1e9); };
  std::mt19937_64 rng(cfg.seed);
  const uint8_t choices =
      bal.choices ? bal.choices : static_cast<uint8_t>(std::min<size_t>(n, KVLB_MAX_CHOICES));
  size_t oracle_rr = 0;
  scoring::SuspectTracker suspects(cfg.suspects);

  auto kick = [&](size_t i, double now) {
    if (stepping[i]) return;
    if (auto d = models[i]->begin_step(now)) {
      stepping[i] = true;
      push(now + *d, EventKind::StepEnd, i);
    }
  };
  auto pick = [&](double now) -> int {
    if (bal.oracle) {
      std::vector<std::optional<engines::EngineStats>> stats(n);
      for (size_t i = 0; i < n; ++i) stats[i] = engine_stats(models[i]->snapshot());
      return loadgen::oracle_choice(stats, oracle_rr++);
    }
    if (!cfg.pick_correction)
      for (size_t i = 0; i < n; ++i) scores[i].picks_at_score = counters[i].picks;
    return pick_from_arrays(bal.policy, choices, scores.data(), counters.data(),
                            static_cast<uint32_t>(n), cfg.select, ns(now), rng());
  };

  for (size_t k = 0; k < specs.size(); ++k) push(arrivals[k], EventKind::Arrival, k);
  double end_of_arrivals = arrivals.empty() ? 0 : arrivals.back();
  push(0, EventKind::Scrape, 0);
  push(0, EventKind::Monitor, 0);
  size_t finished = 0;

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
        r.replica = fmt::format("r{}", i);
        if (static_cast<size_t>(i) < cfg.lying) {
          // The lying replica: an error at once, its connection closed at once.
          r.error = "http_500";
          r.end = now;
          ++counters[i].picks;
          ++finished;
          break;
        }
        replica::GenRequest g{ev.index, specs[ev.index].input_tokens, specs[ev.index].output_tokens,
                              now};
        if (auto rej = models[i]->submit(g)) {
          r.error = "http_400";
          r.error_detail = *rej;
          r.end = now;
          ++finished;
          break;
        }
        owner[ev.index] = i;
        ++counters[i].picks;
        ++counters[i].inflight;
        kick(i, now);
        break;
      }
      case EventKind::StepEnd: {
        size_t i = ev.index;
        stepping[i] = false;
        for (const auto& te : models[i]->end_step(now)) {
          auto& r = out.requests[te.id];
          if (r.first < 0) r.first = now;
          r.output_tokens = te.generated;
          if (te.kind == replica::TokenEventKind::Finished) {
            r.end = now;
            --counters[i].inflight;  // the connection closes with the response
            ++finished;
          }
        }
        kick(i, now);
        break;
      }
      case EventKind::Scrape: {
        // The agent's view: each replica's metrics now, with the kernel's pick
        // count at this moment (what it has already seen), scored and checked
        // for suspects by the agent's own code.
        for (size_t i = 0; i < n; ++i) {
          auto s = models[i]->snapshot();
          scores[i] = scoring::make_score(engine_stats(s), 100, KVLB_STATE_ACTIVE, ns(now),
                                          counters[i].picks);
          suspects.observe(static_cast<uint32_t>(i), {now, counters[i].picks, counters[i].inflight,
                                                      true, s.waiting, s.running});
        }
        // One service: a replica's peers are all the others.
        for (size_t i = 0; i < n; ++i) {
          double peers_last = -1e300;
          for (size_t j = 0; j < n; ++j)
            if (j != i)
              peers_last = std::max(peers_last, suspects.last_work(static_cast<uint32_t>(j)));
          suspects.update(static_cast<uint32_t>(i), peers_last);
        }
        for (size_t i = 0; i < n; ++i) {
          if (!suspects.suspect(static_cast<uint32_t>(i))) continue;
          std::vector<scoring::PeerLoad> peers;
          for (size_t j = 0; j < n; ++j)
            if (j != i && !suspects.suspect(static_cast<uint32_t>(j)))
              peers.push_back({scores[j], counters[j].inflight});
          scores[i] = scoring::bound_suspect(scores[i], counters[i].inflight, peers);
        }
        out.suspect_events = suspects.events();
        if (now <= end_of_arrivals) push(now + cfg.scrape_interval_s, EventKind::Scrape, 0);
        break;
      }
      case EventKind::Monitor: {
        for (size_t i = 0; i < n; ++i) {
          auto s = models[i]->snapshot();
          auto& ser = out.replicas[i];
          ser.t.push_back(now);
          ser.waiting.push_back(s.waiting);
          ser.running.push_back(s.running);
          ser.kv.push_back(s.kv_usage());
        }
        if (now <= end_of_arrivals) push(now + cfg.monitor_interval_s, EventKind::Monitor, 0);
        break;
      }
    }
  }
  return out;
}

}  // namespace kvlb::sim
