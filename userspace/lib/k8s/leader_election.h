// leader_election.h - Lease-based leader election (coordination.k8s.io/v1),
// with client-go's semantics so kvlb and client-go processes can share a lease:
//   - a missing lease is created (POST; 409 AlreadyExists: another won, retry);
//   - a lease held by another is taken over only when its record has not changed
//     for leaseDurationSeconds *as observed on our own monotonic clock* (no
//     trust in the other host's wall clock), with a PUT carrying the
//     resourceVersion read (409: another won the race); leaseTransitions +1;
//   - the holder renews every retry period; a holder whose last successful
//     renewal started more than renew_deadline ago is not the leader any more,
//     at once and whether or not the server is reachable: renew_deadline <
//     lease_duration, so it stops acting before anyone can take over.
//
// LeaderElection is the decision logic only (a lease read in, the write to do
// out), over an injected clock; LeaderElector is the I/O around it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "k8s/api_error.h"
#include "k8s/api_time.h"
#include "k8s/kube_client.h"

namespace kvlb::k8s {

using MonoTime = std::chrono::steady_clock::time_point;

struct ElectionConfig {
  std::string ns;        // the Lease's namespace
  std::string name;      // the Lease's name
  std::string identity;  // this candidate (pod name, usually)
  // client-go's defaults (and kube-controller-manager's).
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

// The reason the configuration cannot work, or nullopt.
std::optional<std::string> validate(const ElectionConfig& cfg);

struct ElectionClock {
  std::function<MonoTime()> mono;  // deadlines and expiry
  std::function<WallTime()> wall;  // the times written into the lease
  static ElectionClock system();
};

// A Lease's spec, as stored (times kept as the server's strings: only equality
// matters to the election).
struct LeaseRecord {
  std::string holder;
  int32_t lease_duration_seconds = 0;
  std::string acquire_time;  // MicroTime
  std::string renew_time;    // MicroTime
  int32_t transitions = 0;
  bool operator==(const LeaseRecord&) const = default;
};

struct ObservedLease {
  LeaseRecord record;
  std::string resource_version;
};

// A Lease object's record and version; throws std::invalid_argument naming the
// malformed field.
ObservedLease lease_of(const nlohmann::json& lease);
nlohmann::json lease_object(const std::string& ns, const std::string& name, const LeaseRecord& r,
                            const std::string& resource_version);

enum class LeaseAction { None, Create, Update };

struct LeasePlan {
  LeaseAction action = LeaseAction::None;
  LeaseRecord record;            // what to write
  std::string resource_version;  // the precondition of an Update
};

class LeaderElection {
 public:
  LeaderElection(ElectionConfig cfg, ElectionClock clock);

  // The lease as just read (nullopt: there is none) -> the write to attempt.
  // Seeing another holder ends our leadership here, before any write.
  LeasePlan observe(const std::optional<ObservedLease>& lease);
  // The write planned by the last observe() succeeded: the server's answer.
  // Leadership lasts renew_deadline from the moment of that observe(), before
  // the request left, so a slow answer never extends it.
  void write_succeeded(const ObservedLease& written);
  // It failed. A conflict means another process wrote the lease since we read
  // it: stop acting until the next read shows who holds it. Other failures
  // change nothing; the renew deadline decides.
  void write_failed(ApiErrc code);
  // When leader: leadership ends now, and the update that hands the lease back
  // (holderIdentity cleared, as client-go's ReleaseOnCancel).
  LeasePlan release();

  bool is_leader() const;
  const ElectionConfig& config() const { return cfg_; }
  const std::optional<ObservedLease>& observed() const { return observed_; }

 private:
  ElectionConfig cfg_;
  ElectionClock clock_;
  std::optional<ObservedLease> observed_;
  MonoTime observed_at_{};  // when observed_->record last changed, on our clock
  MonoTime attempt_at_{};   // when the last observe() ran
  MonoTime renewed_at_{};   // start of the last successful write
  bool leader_ = false;
};

// The I/O: one round per step(), from the caller's loop or run().
class LeaderElector {
 public:
  // Throws std::invalid_argument when validate(cfg) fails or a name is invalid.
  LeaderElector(const KubeClient& client, ElectionConfig cfg,
                ElectionClock clock = ElectionClock::system());

  // Reads the lease and creates, renews or takes it over when due. Returns the
  // round's error, if any (losing a race is not one).
  std::optional<ApiError> step();
  // Safe from any thread; false from the moment the renew deadline passes.
  bool is_leader() const;
  // Steps every retry period until `stop`; errors go to on_error.
  void run(const std::atomic<bool>& stop,
           const std::function<void(const ApiError&)>& on_error = {});
  // Hands the lease back if we hold it (leadership ends before the write).
  std::optional<ApiError> release();

  // step() is these two: read the lease and decide, then write. Apart for tests
  // that interleave two candidates (a takeover race).
  ApiResult<LeasePlan> plan();
  std::optional<ApiError> write(const LeasePlan& plan);

  std::string lease_path() const;

 private:
  const KubeClient& client_;
  mutable std::mutex mu_;  // guards logic_; never held across a request
  LeaderElection logic_;
};

}  // namespace kvlb::k8s
