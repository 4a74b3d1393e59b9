#include "k8s/leader_election.h"

#include <limits>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

namespace kvlb::k8s {

using nlohmann::json;
using std::chrono::milliseconds;

std::optional<std::string> validate(const ElectionConfig& c) {
  if (!is_dns1123_label(c.ns)) return fmt::format("lease namespace \"{}\" is not valid", c.ns);
  if (!is_dns1123_subdomain(c.name)) return fmt::format("lease name \"{}\" is not valid", c.name);
  if (c.identity.empty()) return "the candidate identity is empty";
  if (c.lease_duration < std::chrono::seconds(1))
    return "lease_duration must be at least 1s (the Lease counts whole seconds)";
  // Stopping at the renew deadline is only safe if it comes before another
  // candidate may take over (lease_duration after our last change).
  if (c.renew_deadline >= c.lease_duration) return "renew_deadline must be below lease_duration";
  if (c.retry_period <= milliseconds(0) || c.retry_period >= c.renew_deadline)
    return "retry_period must be positive and below renew_deadline";
  return std::nullopt;
}

ElectionClock ElectionClock::system() {
  return {[] { return std::chrono::steady_clock::now(); },
          [] { return std::chrono::system_clock::now(); }};
}

ObservedLease lease_of(const json& lease) {
  auto fail = [](const std::string& why) { return std::invalid_argument("lease: " + why); };
  if (!lease.is_object() || lease.value("kind", "") != "Lease") throw fail("not a Lease");
  ObservedLease o;
  const auto& md = lease.contains("metadata") ? lease["metadata"] : json::object();
  if (!md.is_object() || !md.contains("resourceVersion") || !md["resourceVersion"].is_string())
    throw fail("no metadata.resourceVersion");
  o.resource_version = md["resourceVersion"];
  if (!lease.contains("spec")) return o;
  const auto& spec = lease["spec"];
  if (!spec.is_object()) throw fail("spec is not an object");
  auto str = [&](const char* k) -> std::string {
    if (!spec.contains(k) || spec[k].is_null()) return "";
    if (!spec[k].is_string()) throw fail(fmt::format("spec.{} is not a string", k));
    return spec[k];
  };
  auto i32 = [&](const char* k) -> int32_t {
    if (!spec.contains(k) || spec[k].is_null()) return 0;
    if (!spec[k].is_number_integer()) throw fail(fmt::format("spec.{} is not an integer", k));
    auto v = spec[k].get<int64_t>();
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      throw fail(fmt::format("spec.{} out of range", k));
    return static_cast<int32_t>(v);
  };
  o.record.holder = str("holderIdentity");
  o.record.acquire_time = str("acquireTime");
  o.record.renew_time = str("renewTime");
  o.record.lease_duration_seconds = i32("leaseDurationSeconds");
  o.record.transitions = i32("leaseTransitions");
  return o;
}

json lease_object(const std::string& ns, const std::string& name, const LeaseRecord& r,
                  const std::string& resource_version) {
  json md = {{"name", name}, {"namespace", ns}};
  if (!resource_version.empty()) md["resourceVersion"] = resource_version;
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", md},
          {"spec",
           {{"holderIdentity", r.holder},
            {"leaseDurationSeconds", r.lease_duration_seconds},
            {"acquireTime", r.acquire_time},
            {"renewTime", r.renew_time},
            {"leaseTransitions", r.transitions}}}};
}

LeaderElection::LeaderElection(ElectionConfig cfg, ElectionClock clock)
    : cfg_(std::move(cfg)), clock_(std::move(clock)) {}

LeasePlan LeaderElection::observe(const std::optional<ObservedLease>& lease) {
  const MonoTime now = clock_.mono();
  const std::string wall = format_micro_time(clock_.wall());
  attempt_at_ = now;
  const auto duration_s = static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(cfg_.lease_duration).count());
  if (!lease) {
    leader_ = false;  // our lease is gone (deleted): nothing backs our leadership
    observed_.reset();
    return {LeaseAction::Create, {cfg_.identity, duration_s, wall, wall, 0}, ""};
  }
  // Expiry runs from when *we* saw the record change, not from its renewTime:
  // the holder's wall clock may be off; our monotonic clock is ours.
  if (!observed_ || observed_->record != lease->record) observed_at_ = now;
  observed_ = lease;
  const LeaseRecord& cur = lease->record;
  if (cur.holder == cfg_.identity) {
    // Renew: same acquireTime and transitions. (Also after a restart under the
    // same identity: nobody else took the lease meanwhile.)
    return {LeaseAction::Update,
            {cfg_.identity, duration_s, cur.acquire_time, wall, cur.transitions},
            lease->resource_version};
  }
  leader_ = false;  // someone else's name is on the lease: stop acting now
  if (!cur.holder.empty() &&
      now < observed_at_ + std::chrono::seconds(std::max(cur.lease_duration_seconds, 0)))
    return {};  // held and fresh
  // Expired, or released (holder cleared): take it over.
  return {LeaseAction::Update,
          {cfg_.identity, duration_s, wall, wall, cur.transitions + 1},
          lease->resource_version};
}

void LeaderElection::write_succeeded(const ObservedLease& written) {
  leader_ = written.record.holder == cfg_.identity;
  renewed_at_ = attempt_at_;
  observed_ = written;
  observed_at_ = attempt_at_;
}

void LeaderElection::write_failed(ApiErrc code) {
  if (code == ApiErrc::Conflict) leader_ = false;
}

LeasePlan LeaderElection::release() {
  bool held = observed_ && observed_->record.holder == cfg_.identity;
  leader_ = false;
  if (!held) return {};
  const std::string wall = format_micro_time(clock_.wall());
  attempt_at_ = clock_.mono();
  // client-go's release: holder cleared, a 1 s duration, transitions kept.
  return {LeaseAction::Update,
          {"", 1, wall, wall, observed_->record.transitions},
          observed_->resource_version};
}

bool LeaderElection::is_leader() const {
  return leader_ && clock_.mono() < renewed_at_ + cfg_.renew_deadline;
}

LeaderElector::LeaderElector(const KubeClient& client, ElectionConfig cfg, ElectionClock clock)
    : client_(client), logic_([&] {
        if (auto why = validate(cfg)) throw std::invalid_argument("leader election: " + *why);
        return LeaderElection(std::move(cfg), std::move(clock));
      }()) {}

std::string LeaderElector::lease_path() const {
  return fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}", logic_.config().ns,
                     logic_.config().name);
}

bool LeaderElector::is_leader() const {
  std::lock_guard lock(mu_);
  return logic_.is_leader();
}

ApiResult<LeasePlan> LeaderElector::plan() {
  const auto path = lease_path();
  auto r = client_.get(path);
  std::optional<ObservedLease> lease;
  if (r.success()) {
    try {
      lease = lease_of(json::parse(r.body));
    } catch (const std::exception& e) {
      return bad_response("get lease " + path, e.what());
    }
  } else if (r.status != 404 || !r.error.empty()) {
    return api_error(r, "get lease " + path);  // unreachable: the deadline decides
  }
  std::lock_guard lock(mu_);
  return logic_.observe(lease);
}

std::optional<ApiError> LeaderElector::step() {
  auto p = plan();
  if (!p) return p.error();
  return write(*p);
}

std::optional<ApiError> LeaderElector::write(const LeasePlan& plan) {
  if (plan.action == LeaseAction::None) return std::nullopt;
  const auto& cfg = logic_.config();
  auto body = lease_object(cfg.ns, cfg.name, plan.record, plan.resource_version).dump();
  auto r = plan.action == LeaseAction::Create
               ? client_.post(
                     fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases", cfg.ns), body)
               : client_.put(lease_path(), body);
  std::lock_guard lock(mu_);
  if (!r.success()) {
    auto err = api_error(r, plan.action == LeaseAction::Create ? "create lease " + lease_path()
                                                               : "update lease " + lease_path());
    logic_.write_failed(err.code);
    if (err.code == ApiErrc::Conflict) return std::nullopt;  // lost a race: normal
    return err;
  }
  try {
    logic_.write_succeeded(lease_of(json::parse(r.body)));
  } catch (const std::exception& e) {
    logic_.write_failed(ApiErrc::BadResponse);
    return bad_response("write lease " + lease_path(), e.what());
  }
  return std::nullopt;
}

std::optional<ApiError> LeaderElector::release() {
  LeasePlan plan;
  {
    std::lock_guard lock(mu_);
    plan = logic_.release();
  }
  return write(plan);
}

void LeaderElector::run(const std::atomic<bool>& stop,
                        const std::function<void(const ApiError&)>& on_error) {
  const auto period = logic_.config().retry_period;
  while (!stop) {
    if (auto err = step(); err && on_error) on_error(*err);
    // Sleep in short slices so a stop is seen quickly.
    for (auto slept = milliseconds(0); slept < period && !stop; slept += milliseconds(50))
      std::this_thread::sleep_for(std::min(milliseconds(50), period - slept));
  }
}

}  // namespace kvlb::k8s
