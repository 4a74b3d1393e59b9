#include "autoscaler/runtime.h"

#include <cctype>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/admin_client.h"
#include "autoscaler/observe.h"
#include "k8s/events.h"
#include "k8s/pods.h"
#include "k8s/workload_scale.h"
#include "metrics/exposition.h"

namespace kvlb::autoscaler {

using autoscale::Action;
using nlohmann::json;

namespace {

// An API error's kind as kvlb_autoscaler_errors_total spells it, in the
// Kubernetes StatusReason style: "not found" -> "NotFound", "forbidden" -> "Forbidden".
std::string error_kind(k8s::ApiErrc c) {
  std::string out;
  bool up = true;
  for (char ch : k8s::errc_name(c)) {
    if (ch == ' ') {
      up = true;
      continue;
    }
    out.push_back(up ? static_cast<char>(std::toupper(static_cast<unsigned char>(ch))) : ch);
    up = false;
  }
  return out;
}

}  // namespace

Runtime::Runtime(AutoscalerConfig cfg, k8s::KubeClient client, bool dry_run,
                 std::function<bool()> is_leader)
    : cfg_(std::move(cfg)),
      client_(std::move(client)),
      dry_run_(dry_run),
      is_leader_(std::move(is_leader)) {
  for (const auto& s : cfg_.services) {
    Service svc;
    svc.cfg = s;
    svc.scaler = std::make_unique<autoscale::Scaler>(s.policy);
    services_.push_back(std::move(svc));
  }
}

bool Runtime::agent_drain(const std::string& address, bool on, std::string& err) {
  auto r = admin::call(cfg_.agent_socket, "POST",
                       fmt::format("/v1/backends/{}/{}", address, on ? "drain" : "undrain"));
  if (r.ok()) return true;
  err = r.error.empty() ? fmt::format("agent answered {}: {}", r.status, r.body) : r.error;
  return false;
}

void Runtime::lost_leadership() {
  std::lock_guard lk(mu_);
  for (auto& s : services_) {
    for (const auto& [pod, since] : s.scaler->draining()) {
      (void)since;
      spdlog::warn("{}: leadership lost while draining {}: undrained", s.cfg.workload, pod);
    }
    // The addresses: the scaler keeps them; undrain through a fresh tick is
    // not possible without the lease, so ask the agent directly.
    for (const auto& a : s.scaler->drained_addresses()) {
      std::string err;
      if (!dry_run_ && !agent_drain(a, false, err))
        spdlog::error("{}: undrain {}: {}", s.cfg.workload, a, err);
    }
    s.scaler = std::make_unique<autoscale::Scaler>(s.cfg.policy);
  }
}

bool Runtime::act(Service& s, const std::vector<Action>& actions) {
  const auto& c = s.cfg;
  k8s::ObjectRef ref{"apps/v1", std::string(k8s::kind_name(c.kind)), c.ns, c.workload, ""};
  for (const auto& a : actions) {
    if (!is_leader_()) {
      spdlog::warn(
          "{}: the lease was lost mid-decision: the rest of this round's actions "
          "are dropped",
          c.workload);
      return false;
    }
    std::string err;
    switch (a.kind) {
      case Action::Kind::Event: {
        spdlog::log(a.warning ? spdlog::level::warn : spdlog::level::info, "{}/{}: {}: {}", c.ns,
                    c.workload, a.reason, a.message);
        s.last_event = a.reason + ": " + a.message;
        if (dry_run_) break;
        auto r = k8s::create_event(
            client_, {ref, a.warning ? k8s::EventType::Warning : k8s::EventType::Normal, a.reason,
                      a.message, "kvlb-autoscaler"});
        if (!r) {
          ++s.errors["event"];
          spdlog::warn("{}: event not recorded: {}", c.workload, r.error().text());
        }
        break;
      }
      case Action::Kind::Drain:
      case Action::Kind::Undrain: {
        bool on = a.kind == Action::Kind::Drain;
        spdlog::info("{}: {} {} ({})", c.workload, on ? "drain" : "undrain", a.pod, a.address);
        if (!dry_run_ && !agent_drain(a.address, on, err)) {
          ++s.errors["agent"];
          spdlog::error("{}: {} {}: {}", c.workload, on ? "drain" : "undrain", a.address, err);
        }
        break;
      }
      case Action::Kind::DeletionCost: {
        spdlog::info("{}: pod {} deletion cost {}", c.workload, a.pod, a.replicas);
        if (dry_run_) break;
        auto r = k8s::set_deletion_cost(client_, c.ns, a.pod, a.replicas);
        if (!r) {
          ++s.errors[error_kind(r.error().code)];
          spdlog::error("{}: {}", c.workload, r.error().text());
          return false;  // never scale down without the right victim marked
        }
        break;
      }
      case Action::Kind::Scale: {
        spdlog::info("{}/{}: scale {} -> {} ({}){}", c.ns, c.workload, s.spec, a.replicas, a.reason,
                     dry_run_ ? " [dry run]" : "");
        if (dry_run_) break;
        int32_t want = a.replicas, from = s.spec;
        auto r = k8s::scale_to(client_, c.ns, c.kind, c.workload,
                               [&](const k8s::Scale& now) -> std::optional<int32_t> {
                                 // Someone else changed the scale since we read it: our
                                 // decision was made from the old count; redo it next round.
                                 if (now.spec_replicas != from) return std::nullopt;
                                 return want;
                               });
        if (!r) {
          ++s.errors[error_kind(r.error().code)];
          spdlog::error("{}: {}", c.workload, r.error().text());
          return false;
        }
        s.spec = r.value().spec_replicas;
        break;
      }
    }
  }
  return true;
}

void Runtime::round(autoscale::Millis now) {
  std::lock_guard lk(mu_);
  ++rounds_;
  auto services = admin::call(cfg_.agent_socket, "GET", "/v1/services");
  auto backends = admin::call(cfg_.agent_socket, "GET", "/v1/backends");
  AgentView agent;
  std::string agent_err;
  try {
    if (!services.ok() || !backends.ok())
      throw std::invalid_argument(!services.error.empty()   ? services.error
                                  : !backends.error.empty() ? backends.error
                                                            : "the agent answered an error");
    agent = agent_view_of(json::parse(services.body), json::parse(backends.body));
  } catch (const std::exception& e) {
    agent_err = e.what();
  }
  for (auto& s : services_) {
    const auto& c = s.cfg;
    if (!agent_err.empty()) {
      // No scores: no decision (never scale on missing data).
      ++agent_errors_;
      s.last_error = "agent: " + agent_err;
      continue;
    }
    auto scale = k8s::get_scale(client_, c.ns, c.kind, c.workload);
    if (!scale) {
      ++s.errors[error_kind(scale.error().code)];
      s.last_error = scale.error().text();
      continue;
    }
    auto pods = k8s::list_pods(client_, c.ns, scale.value().selector);
    if (!pods) {
      ++s.errors[error_kind(pods.error().code)];
      s.last_error = pods.error().text();
      continue;
    }
    s.spec = scale.value().spec_replicas;
    s.seen_pods = static_cast<int32_t>(pods.value().size());
    s.last_error.clear();
    if (s.spec == 0) continue;  // scaled to zero by hand: autoscaling is off (as HPA)
    auto o = observation_of(c, scale.value(), pods.value(), agent, now,
                            std::chrono::system_clock::now());
    if (!is_leader_()) continue;
    act(s, s.scaler->tick(o));
    sync_drain_labels(s, pods.value());
  }
}

// The drain reaches the agent this process talks to at once (act); every other
// node's agent learns it from the pod's draining label, made to match the
// scaler's drains here each round (level-triggered: a failed write is retried
// next round, a label a previous leader left behind is removed).
void Runtime::sync_drain_labels(Service& s, const std::vector<k8s::PodInfo>& pods) {
  const auto& c = s.cfg;
  if (dry_run_) return;  // the drains themselves are only logged (act)
  for (const auto& [pod, on] : drain_label_writes(pods, s.scaler->draining())) {
    if (!is_leader_()) return;
    spdlog::info("{}: pod {} label {} {}", c.workload, pod, k8s::kDrainingLabel,
                 on ? "set" : "removed");
    auto r = k8s::set_draining(client_, c.ns, pod, on);
    if (!r) {
      ++s.errors[error_kind(r.error().code)];
      spdlog::error("{}: {} (retried next round)", c.workload, r.error().text());
    }
  }
}

json Runtime::status() const {
  std::lock_guard lk(mu_);
  json arr = json::array();
  for (const auto& s : services_) {
    const auto& st = s.scaler->status();
    json drains = json::array();
    for (const auto& [pod, since] : s.scaler->draining()) drains.push_back(pod);
    arr.push_back({{"service", s.cfg.service},
                   {"workload",
                    fmt::format("{}/{}/{}", s.cfg.ns, k8s::kind_name(s.cfg.kind), s.cfg.workload)},
                   {"policy", s.cfg.policy_name},
                   {"signal", autoscale::signal_name(s.cfg.policy.signal)},
                   {"value", st.signal},
                   {"target", st.target},
                   {"spec", s.spec},
                   {"current", st.current},
                   {"desired", st.desired},
                   {"ready", st.ready},
                   {"starting", st.starting},
                   {"draining", drains},
                   {"panic", st.panic},
                   {"why", st.why},
                   {"limited_by", st.limited_by},
                   {"last_event", s.last_event},
                   {"last_error", s.last_error},
                   {"leader", is_leader_()},
                   {"dry_run", dry_run_}});
  }
  return arr;
}

std::string Runtime::metrics() const {
  std::lock_guard lk(mu_);
  metrics::TextWriter w;
  auto gauge = [&](const char* name, const char* help, auto value) {
    w.family(name, help, metrics::ExpositionType::Gauge);
    for (const auto& s : services_)
      w.sample(name, {{"service", s.cfg.service}, {"workload", s.cfg.workload}},
               static_cast<double>(value(s)));
  };
  gauge("kvlb_autoscaler_desired_replicas", "The replicas the last decision asked for.",
        [](const Service& s) { return s.scaler->status().desired; });
  gauge("kvlb_autoscaler_current_replicas",
        "The workload's replicas (spec), draining ones included.",
        [](const Service& s) { return s.spec; });
  gauge("kvlb_autoscaler_ready_replicas", "Replicas serving (Ready and balanced by the agent).",
        [](const Service& s) { return s.scaler->status().ready; });
  gauge("kvlb_autoscaler_starting_replicas",
        "Replicas not ready yet, counted as capacity on its way.",
        [](const Service& s) { return s.scaler->status().starting; });
  gauge("kvlb_autoscaler_draining_replicas", "Replicas drained before their removal.",
        [](const Service& s) { return s.scaler->draining().size(); });
  gauge("kvlb_autoscaler_signal", "The policy's signal: its average per ready replica.",
        [](const Service& s) { return s.scaler->status().signal; });
  gauge("kvlb_autoscaler_target", "The policy's target for the signal, per replica.",
        [](const Service& s) { return s.scaler->status().target; });
  gauge("kvlb_autoscaler_panic", "1 while KPA-style panic mode holds the replica count.",
        [](const Service& s) { return s.scaler->status().panic ? 1 : 0; });
  w.family("kvlb_autoscaler_decisions_total",
           "Decisions that changed the replicas, by direction and reason.",
           metrics::ExpositionType::Counter);
  for (const auto& s : services_)
    for (const auto& [k, n] : s.scaler->status().decisions) {
      auto slash = k.find('/');
      w.sample("kvlb_autoscaler_decisions_total",
               {{"service", s.cfg.service},
                {"direction", k.substr(0, slash)},
                {"reason", k.substr(slash + 1)}},
               static_cast<double>(n));
    }
  w.family("kvlb_autoscaler_errors_total",
           "Failed API calls, by kind (Forbidden, Conflict, agent, ...).",
           metrics::ExpositionType::Counter);
  for (const auto& s : services_)
    for (const auto& [k, n] : s.errors)
      w.sample("kvlb_autoscaler_errors_total", {{"service", s.cfg.service}, {"kind", k}},
               static_cast<double>(n));
  w.family("kvlb_autoscaler_leader", "1 while this process holds the lease and acts.",
           metrics::ExpositionType::Gauge);
  w.sample("kvlb_autoscaler_leader", {}, is_leader_() ? 1.0 : 0.0);
  return w.take();
}

}  // namespace kvlb::autoscaler
