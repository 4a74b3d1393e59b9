// The Lease election's decisions (k8s/leader_election.h) over a fake clock: no
// server, every case of client-go's semantics.
#include "k8s/leader_election.h"

#include <gtest/gtest.h>

using namespace kvlb::k8s;
using namespace std::chrono_literals;

namespace {

struct FakeClock {
  MonoTime mono{std::chrono::hours(1)};
  WallTime wall{std::chrono::seconds(1'700'000'000)};
  void advance(std::chrono::milliseconds d) {
    mono += d;
    wall += d;
  }
  ElectionClock clock() {
    return {[this] { return mono; }, [this] { return wall; }};
  }
};

ElectionConfig cfg(const std::string& id) {
  return {"kvlb", "kvlb-autoscaler", id, 15s, 10s, 2s};
}

// What the server would store after a successful write of `plan`.
ObservedLease stored(const LeasePlan& plan, int rv) {
  return {plan.record, std::to_string(rv)};
}

}  // namespace

TEST(LeaderElection, ConfigNeedsRenewDeadlineBelowLeaseDuration) {
  EXPECT_FALSE(validate(cfg("a")));
  auto c = cfg("a");
  c.renew_deadline = 15s;
  EXPECT_TRUE(validate(c));
  c = cfg("a");
  c.retry_period = 10s;
  EXPECT_TRUE(validate(c));
  c = cfg("");
  EXPECT_TRUE(validate(c));
  c = cfg("a");
  c.name = "Not_A_Name";
  EXPECT_TRUE(validate(c));
}

TEST(LeaderElection, CreatesAMissingLeaseAndLeadsAfterTheWrite) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  auto plan = le.observe(std::nullopt);
  ASSERT_EQ(plan.action, LeaseAction::Create);
  EXPECT_EQ(plan.record.holder, "a");
  EXPECT_EQ(plan.record.lease_duration_seconds, 15);
  EXPECT_EQ(plan.record.transitions, 0);
  EXPECT_EQ(plan.record.acquire_time, "2023-11-14T22:13:20.000000Z");
  EXPECT_EQ(plan.record.renew_time, plan.record.acquire_time);
  EXPECT_FALSE(le.is_leader()) << "not before the server accepted the write";
  le.write_succeeded(stored(plan, 1));
  EXPECT_TRUE(le.is_leader());
}

TEST(LeaderElection, CreateLostToAnotherIsNotLeadership) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  le.observe(std::nullopt);
  le.write_failed(ApiErrc::Conflict);  // 409 AlreadyExists
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, DoesNotTakeAFreshLeaseHeldByAnother) {
  FakeClock clk;
  LeaderElection le(cfg("b"), clk.clock());
  ObservedLease held{{"a", 15, "t0", "t0", 3}, "7"};
  EXPECT_EQ(le.observe(held).action, LeaseAction::None);
  clk.advance(14s);
  EXPECT_EQ(le.observe(held).action, LeaseAction::None) << "14 s unchanged < 15 s duration";
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, ARenewedLeaseRestartsTheExpiryOnOurClock) {
  FakeClock clk;
  LeaderElection le(cfg("b"), clk.clock());
  le.observe(ObservedLease{{"a", 15, "t0", "t0", 0}, "7"});
  clk.advance(10s);
  // The holder renewed (renewTime changed): counted from now, whatever its clock says.
  EXPECT_EQ(le.observe(ObservedLease{{"a", 15, "t0", "t1", 0}, "8"}).action, LeaseAction::None);
  clk.advance(10s);
  EXPECT_EQ(le.observe(ObservedLease{{"a", 15, "t0", "t1", 0}, "8"}).action, LeaseAction::None);
}

TEST(LeaderElection, TakesOverAnExpiredLeaseWithTransitionsPlusOne) {
  FakeClock clk;
  LeaderElection le(cfg("b"), clk.clock());
  ObservedLease held{{"a", 15, "t0", "t0", 3}, "7"};
  le.observe(held);
  clk.advance(15s);
  auto plan = le.observe(held);
  ASSERT_EQ(plan.action, LeaseAction::Update);
  EXPECT_EQ(plan.resource_version, "7") << "the takeover is conditional on what was read";
  EXPECT_EQ(plan.record.holder, "b");
  EXPECT_EQ(plan.record.transitions, 4);
  EXPECT_EQ(plan.record.acquire_time, plan.record.renew_time);
  EXPECT_NE(plan.record.acquire_time, "t0");
  le.write_succeeded(stored(plan, 8));
  EXPECT_TRUE(le.is_leader());
}

TEST(LeaderElection, TakeoverRaceLostIsNotLeadership) {
  FakeClock clk;
  LeaderElection le(cfg("b"), clk.clock());
  ObservedLease held{{"a", 15, "t0", "t0", 3}, "7"};
  le.observe(held);
  clk.advance(16s);
  ASSERT_EQ(le.observe(held).action, LeaseAction::Update);
  le.write_failed(ApiErrc::Conflict);
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, AReleasedLeaseIsFreeAtOnce) {
  FakeClock clk;
  LeaderElection le(cfg("b"), clk.clock());
  auto plan = le.observe(ObservedLease{{"", 1, "t0", "t0", 2}, "9"});
  ASSERT_EQ(plan.action, LeaseAction::Update);
  EXPECT_EQ(plan.record.transitions, 3);
}

TEST(LeaderElection, RenewsKeepingAcquireTimeAndTransitions) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  auto created = le.observe(std::nullopt);
  le.write_succeeded(stored(created, 1));
  clk.advance(2s);
  auto plan = le.observe(stored(created, 1));
  ASSERT_EQ(plan.action, LeaseAction::Update);
  EXPECT_EQ(plan.resource_version, "1");
  EXPECT_EQ(plan.record.acquire_time, created.record.acquire_time);
  EXPECT_EQ(plan.record.renew_time, "2023-11-14T22:13:22.000000Z");
  EXPECT_EQ(plan.record.transitions, 0);
  le.write_succeeded(stored(plan, 2));
  // Each successful renewal moves the deadline: 9 s + 9 s stays leader.
  clk.advance(9s);
  EXPECT_TRUE(le.is_leader());
  le.write_succeeded(stored(le.observe(stored(plan, 2)), 3));
  clk.advance(9s);
  EXPECT_TRUE(le.is_leader());
}

TEST(LeaderElection, LosesLeadershipAtTheRenewDeadlineWithNoServer) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  le.write_succeeded(stored(le.observe(std::nullopt), 1));
  // From here every read and write fails (server unreachable): nothing is
  // observed, only the clock moves.
  clk.advance(9999ms);
  EXPECT_TRUE(le.is_leader());
  clk.advance(1ms);
  EXPECT_FALSE(le.is_leader()) << "10 s renew deadline passed";
}

TEST(LeaderElection, ADeadlineCountsFromBeforeTheRequest) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  auto plan = le.observe(std::nullopt);
  clk.advance(4s);  // a slow answer
  le.write_succeeded(stored(plan, 1));
  clk.advance(6s);
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, SeeingAnotherHolderEndsLeadershipAtOnce) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  le.write_succeeded(stored(le.observe(std::nullopt), 1));
  ASSERT_TRUE(le.is_leader());
  clk.advance(1s);
  EXPECT_EQ(le.observe(ObservedLease{{"b", 15, "t", "t", 1}, "5"}).action, LeaseAction::None);
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, AConflictOnRenewStopsActing) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  auto created = le.observe(std::nullopt);
  le.write_succeeded(stored(created, 1));
  clk.advance(2s);
  ASSERT_EQ(le.observe(stored(created, 1)).action, LeaseAction::Update);
  le.write_failed(ApiErrc::Conflict);
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, ATransportErrorOnRenewKeepsLeadershipUntilTheDeadline) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  auto created = le.observe(std::nullopt);
  le.write_succeeded(stored(created, 1));
  clk.advance(2s);
  le.observe(stored(created, 1));
  le.write_failed(ApiErrc::Transport);
  EXPECT_TRUE(le.is_leader());
  clk.advance(8s);
  EXPECT_FALSE(le.is_leader());
}

TEST(LeaderElection, ReleaseClearsTheHolderAndStopsAtOnce) {
  FakeClock clk;
  LeaderElection le(cfg("a"), clk.clock());
  auto created = le.observe(std::nullopt);
  le.write_succeeded(stored(created, 1));
  auto plan = le.release();
  EXPECT_FALSE(le.is_leader());
  ASSERT_EQ(plan.action, LeaseAction::Update);
  EXPECT_EQ(plan.record.holder, "");
  EXPECT_EQ(plan.resource_version, "1");
  LeaderElection other(cfg("b"), clk.clock());
  EXPECT_EQ(other.release().action, LeaseAction::None) << "nothing to release when not holder";
}

TEST(LeaderElection, LeaseObjectRoundTrips) {
  LeaseRecord r{"a", 15, "2024-01-01T00:00:00.000001Z", "2024-01-01T00:00:02.000000Z", 2};
  auto j = lease_object("kvlb", "lock", r, "42");
  EXPECT_EQ(j["metadata"]["resourceVersion"], "42");
  auto o = lease_of(j);
  EXPECT_EQ(o.record, r);
  EXPECT_EQ(o.resource_version, "42");
  EXPECT_FALSE(lease_object("kvlb", "lock", r, "")["metadata"].contains("resourceVersion"))
      << "a create must not carry a resourceVersion";
  j["spec"]["leaseTransitions"] = "2";
  EXPECT_THROW(lease_of(j), std::invalid_argument);
}
