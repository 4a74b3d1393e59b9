// The autoscaler's algorithm against hand-worked cases: HPA's formula and
// tolerance, starting and missing replicas, stabilization windows, rate
// policies and selectPolicy, min/max, KPA's panic mode, and the scaler's
// drain-before-remove.
#include <gtest/gtest.h>

#include <algorithm>

#include "autoscale/hpa.h"
#include "autoscale/panic.h"
#include "autoscale/policy.h"
#include "autoscale/scaler.h"

using namespace kvlb::autoscale;
using std::chrono::milliseconds;

namespace {

Millis s(int64_t seconds) {
  return Millis{seconds * 1000};
}

std::vector<PodReading> ready(std::initializer_list<double> values) {
  std::vector<PodReading> v;
  for (double x : values) v.push_back({true, true, x});
  return v;
}

PodReading starting() {
  return {false, false, 0};
}
PodReading missing() {
  return {true, false, 0};
}

}  // namespace

// ---- HPA's replica calculation -------------------------------------------

TEST(HpaCalculation, DesiredIsCeilOfReadyTimesRatio) {
  // 3 x 0.9 against 0.5: ratio 1.8, ceil(5.4) = 6.
  auto c = calculate(3, ready({0.9, 0.9, 0.9}), 0.5, 0.1);
  EXPECT_EQ(c.replicas, 6);
  EXPECT_DOUBLE_EQ(c.ratio, 1.8);
  // Below: 4 x 0.1 against 0.5: ratio 0.2, ceil(0.8) = 1.
  EXPECT_EQ(calculate(4, ready({0.1, 0.1, 0.1, 0.1}), 0.5, 0.1).replicas, 1);
}

TEST(HpaCalculation, ToleranceKeepsTheCount) {
  // ratio 1.08 and 0.92: within 0.1.
  EXPECT_EQ(calculate(3, ready({0.54, 0.54, 0.54}), 0.5, 0.1).replicas, 3);
  EXPECT_EQ(calculate(3, ready({0.46, 0.46, 0.46}), 0.5, 0.1).replicas, 3);
  // ratio 1.12: ceil(3.36) = 4.
  EXPECT_EQ(calculate(3, ready({0.56, 0.56, 0.56}), 0.5, 0.1).replicas, 4);
  // The same ratio with tolerance 0.15 stays.
  EXPECT_EQ(calculate(3, ready({0.56, 0.56, 0.56}), 0.5, 0.15).replicas, 3);
}

TEST(HpaCalculation, StartingReplicasAreCapacityOnItsWay) {
  // 2 ready at twice the target, 2 starting: the second reading counts the
  // starting ones at 0: 2.0 / (4 x 0.5) = 1.0: no more replicas.
  auto v = ready({1.0, 1.0});
  v.push_back(starting());
  v.push_back(starting());
  auto c = calculate(4, v, 0.5, 0.1);
  EXPECT_EQ(c.replicas, 4);
  EXPECT_EQ(c.starting, 2);
  // Three times the target: 3.0 / 2.0 = 1.5, ceil(1.5 x 4) = 6 (not 2 x 3 + 2 = 8).
  v = ready({1.5, 1.5});
  v.push_back(starting());
  v.push_back(starting());
  EXPECT_EQ(calculate(4, v, 0.5, 0.1).replicas, 6);
}

TEST(HpaCalculation, MissingScoresNeverScaleDown) {
  // 2 ready at 0.2 and one without a score, target 0.5. HPA would put the
  // missing one at the target (0.9 / 1.5 = 0.6, ceil(1.8) = 2) and scale down;
  // kvlb keeps 3.
  auto v = ready({0.2, 0.2});
  v.push_back(missing());
  auto c = calculate(3, v, 0.5, 0.1);
  EXPECT_EQ(c.replicas, 3);
  EXPECT_EQ(c.missing, 1);
  EXPECT_EQ(c.why, "missing scores: no scale-down");
  // Scaling up, the missing one counts 0: 2.0 / 1.5 = 1.33, ceil(4) = 4.
  v = ready({1.0, 1.0});
  v.push_back(missing());
  EXPECT_EQ(calculate(3, v, 0.5, 0.1).replicas, 4);
}

TEST(HpaCalculation, SecondReadingThatReversesChangesNothing) {
  // One ready at 1.2x, two missing: counted 0 they give 0.6 / 1.5 = 0.4:
  // the direction flips, so no change.
  auto v = ready({0.6});
  v.push_back(missing());
  v.push_back(missing());
  auto c = calculate(3, v, 0.5, 0.1);
  EXPECT_EQ(c.replicas, 3);
  EXPECT_EQ(c.why, "missing scores: within tolerance");
}

TEST(HpaCalculation, NoFreshScoreNoChange) {
  std::vector<PodReading> v{missing(), missing()};
  EXPECT_EQ(calculate(2, v, 0.5, 0.1).replicas, 2);
  v = {starting()};
  EXPECT_EQ(calculate(1, v, 0.5, 0.1).replicas, 1);
}

// ---- HPA's behaviour -------------------------------------------------------

TEST(HpaBehavior, ScaleDownStabilizationTakesTheWindowsHighest) {
  Policy p = default_policy();
  p.min_replicas = 1;
  p.max_replicas = 20;
  Behavior b;
  EXPECT_EQ(b.normalize(s(0), 5, 5, p).replicas, 5);
  // 60 s later the recommendation drops to 3: the window (300 s) still holds 5.
  auto r = b.normalize(s(60), 5, 3, p);
  EXPECT_EQ(r.replicas, 5);
  EXPECT_EQ(r.limit, "stabilization");
  // At 301 s the 5 has left the window; the 3 of 60 s is the highest.
  EXPECT_EQ(b.normalize(s(301), 5, 2, p).replicas, 3);
}

TEST(HpaBehavior, ScaleUpStabilizationTakesTheWindowsLowest) {
  Policy p = default_policy();
  p.max_replicas = 20;
  p.scale_up.stabilization = s(60);
  Behavior b;
  EXPECT_EQ(b.normalize(s(0), 2, 2, p).replicas, 2);
  EXPECT_EQ(b.normalize(s(10), 2, 6, p).replicas, 2);  // the 2 of 0 s is in the window
  EXPECT_EQ(b.normalize(s(61), 2, 7, p).replicas, 6);  // now the 6 of 10 s is the lowest
}

TEST(HpaBehavior, DefaultScaleUpIsTheLargerOfDoublingAndFourPods) {
  Policy p = default_policy();
  p.max_replicas = 100;
  Behavior b;
  // From 2: 100% gives 4, 4 pods gives 6: Max takes 6.
  auto r = b.normalize(s(0), 2, 20, p);
  EXPECT_EQ(r.replicas, 6);
  EXPECT_EQ(r.limit, "scale-up policy");
  b.record_scale(s(0), 2, 6);
  // 10 s later the period still holds the +4: it started at 2: 4 or 6: stays 6.
  EXPECT_EQ(b.normalize(s(10), 6, 20, p).replicas, 6);
  // After the 15 s period: 12 or 10: 12.
  EXPECT_EQ(b.normalize(s(16), 6, 20, p).replicas, 12);
  // selectPolicy Min picks the smaller limit: from 12, 24 or 16: 16.
  p.scale_up.select = SelectPolicy::Min;
  Behavior b2;
  EXPECT_EQ(b2.normalize(s(0), 12, 40, p).replicas, 16);
}

TEST(HpaBehavior, ScaleDownPercentTruncatesAndCountsThePeriod) {
  Policy p = default_policy();
  p.scale_down = {Millis{0}, {{PolicyType::Percent, 50, s(60)}}, SelectPolicy::Max};
  Behavior b;
  // From 5, 50%: int(2.5) = 2.
  EXPECT_EQ(b.normalize(s(0), 5, 1, p).replicas, 2);
  b.record_scale(s(0), 5, 2);
  // Within the period the change counts from 5: the limit is still 2.
  auto r = b.normalize(s(30), 2, 1, p);
  EXPECT_EQ(r.replicas, 2);
  EXPECT_EQ(r.limit, "scale-down policy");
  // After it: int(2 x 0.5) = 1.
  EXPECT_EQ(b.normalize(s(61), 2, 1, p).replicas, 1);
}

TEST(HpaBehavior, ScaleDownSelectMinIsTheSmallestChange) {
  Policy p = default_policy();
  p.scale_down = {Millis{0},
                  {{PolicyType::Pods, 1, s(60)}, {PolicyType::Percent, 50, s(60)}},
                  SelectPolicy::Min};
  Behavior b;
  // From 10: 1 pod gives 9, 50% gives 5. Min (the smallest change): 9; Max: 5.
  EXPECT_EQ(b.normalize(s(0), 10, 1, p).replicas, 9);
  p.scale_down.select = SelectPolicy::Max;
  Behavior b2;
  EXPECT_EQ(b2.normalize(s(0), 10, 1, p).replicas, 5);
}

TEST(HpaBehavior, DisabledDirectionNeverMoves) {
  Policy p = default_policy();
  p.scale_down = {Millis{0}, {}, SelectPolicy::Disabled};
  Behavior b;
  EXPECT_EQ(b.normalize(s(0), 5, 1, p).replicas, 5);
  p.scale_up = {Millis{0}, {}, SelectPolicy::Disabled};
  EXPECT_EQ(b.normalize(s(1), 5, 9, p).replicas, 5);
}

TEST(HpaBehavior, MinAndMaxClamp) {
  Policy p = default_policy();
  p.min_replicas = 2;
  p.max_replicas = 5;
  p.scale_up.policies = {{PolicyType::Pods, 100, s(15)}};
  p.scale_down = {Millis{0}, {{PolicyType::Pods, 100, s(15)}}, SelectPolicy::Max};
  Behavior b;
  auto r = b.normalize(s(0), 3, 100, p);
  EXPECT_EQ(r.replicas, 5);
  EXPECT_EQ(r.limit, "max_replicas");
  r = b.normalize(s(1), 3, 0, p);
  EXPECT_EQ(r.replicas, 2);
  EXPECT_EQ(r.limit, "min_replicas");
}

// ---- KPA's panic mode --------------------------------------------------------

TEST(KpaPanic, EntersAtTheThresholdHoldsTheHighestAndLeavesAfterAStableWindow) {
  Policy p = named_policy("kvlb");  // panic on, threshold 2, stable window 60 s
  Panic k;
  auto r = k.step(s(0), 4, 7, p);  // 7/4 = 1.75 < 2
  EXPECT_FALSE(r.panicking);
  r = k.step(s(1), 4, 8, p);  // 8/4 = 2: panic
  EXPECT_TRUE(r.panicking);
  EXPECT_TRUE(r.entered);
  EXPECT_EQ(r.floor, 8);
  r = k.step(s(2), 4, 5, p);  // lower reading: the floor holds the highest
  EXPECT_EQ(r.floor, 8);
  r = k.step(s(30), 8, 12, p);  // 12/8 = 1.5: not over, still panicking (within 60 s of 1 s)
  EXPECT_TRUE(r.panicking);
  EXPECT_EQ(r.floor, 12);
  r = k.step(s(61), 8, 4, p);  // exactly 60 s after the last panic reading: still
  EXPECT_TRUE(r.panicking);
  r = k.step(s(62), 8, 4, p);
  EXPECT_FALSE(r.panicking);
  EXPECT_TRUE(r.left);
  EXPECT_EQ(r.floor, 0);
}

TEST(KpaPanic, OffUnlessThePolicyHasIt) {
  Policy p = default_policy();
  Panic k;
  EXPECT_FALSE(k.step(s(0), 1, 100, p).panicking);
}

// ---- the scaler ---------------------------------------------------------------

namespace {

ReplicaView replica(std::string pod, double waiting, double kv, double inflight = 0,
                    double running = 0) {
  ReplicaView r;
  r.pod = pod;
  r.address = "10.0.0." + pod.substr(1) + ":8000";
  r.ready = true;
  r.age = s(600);
  r.has_score = true;
  r.waiting = waiting;
  r.running = running;
  r.kv = kv;
  r.inflight = inflight;
  r.score_age = Millis{200};
  return r;
}

int count(const std::vector<Action>& a, Action::Kind k) {
  return static_cast<int>(
      std::count_if(a.begin(), a.end(), [&](const Action& x) { return x.kind == k; }));
}

const Action* find(const std::vector<Action>& a, Action::Kind k) {
  for (const auto& x : a)
    if (x.kind == k) return &x;
  return nullptr;
}

// A KV-usage policy without panic, decisions every second, scale-down
// stabilization `down_window`.
Policy kv_policy(int64_t down_window = 0) {
  Policy p = default_policy();
  p.signal = Signal::KvUsage;
  p.target = 0.5;
  p.sync_period = s(1);
  p.max_replicas = 10;
  p.scale_down.stabilization = s(down_window);
  p.drain_timeout = s(100);
  return p;
}

}  // namespace

TEST(Scaler, ScalesUpOnceAndWaitsForTheStartingReplicas) {
  Scaler sc(kv_policy());
  Observation o{s(0), 2, {replica("r1", 0, 1.0), replica("r2", 0, 1.0)}};
  auto a = sc.tick(o);
  ASSERT_NE(find(a, Action::Kind::Scale), nullptr);
  EXPECT_EQ(find(a, Action::Kind::Scale)->replicas, 4);  // ratio 2: 4
  ASSERT_NE(find(a, Action::Kind::Event), nullptr);
  EXPECT_EQ(find(a, Action::Kind::Event)->reason, "ScaledUp");
  // The two new replicas exist but load their model: the load is the same,
  // and nothing more is asked.
  for (int t = 1; t < 20; ++t) {
    ReplicaView n3 = replica("r3", 0, 0), n4 = replica("r4", 0, 0);
    n3.ready = n4.ready = false;
    n3.has_score = n4.has_score = false;
    n3.age = n4.age = s(t);
    Observation o2{s(t), 4, {replica("r1", 0, 1.0), replica("r2", 0, 1.0), n3, n4}};
    EXPECT_EQ(count(sc.tick(o2), Action::Kind::Scale), 0) << "at " << t << " s";
  }
  EXPECT_EQ(sc.status().starting, 2);
  // Pods asked for but not created yet count as on their way too.
  Scaler sc2(kv_policy());
  sc2.tick(o);
  Observation o3{s(1), 4, {replica("r1", 0, 1.0), replica("r2", 0, 1.0)}};
  EXPECT_EQ(count(sc2.tick(o3), Action::Kind::Scale), 0);
}

TEST(Scaler, ScaleDownDrainsTheLeastLoadedAndRemovesItOnlyWhenIdle) {
  Policy p = kv_policy();
  p.min_replicas = 2;
  Scaler sc(p);
  // 3 replicas at 0.2 average against 0.5: ceil(0.4 x 3 / 1) -> 2.
  Observation o{
      s(0),
      3,
      {replica("r1", 0, 0.3, 2, 1), replica("r2", 0, 0.1, 1, 1), replica("r3", 0, 0.2, 1, 1)}};
  auto a = sc.tick(o);
  ASSERT_EQ(count(a, Action::Kind::Drain), 1);
  EXPECT_EQ(find(a, Action::Kind::Drain)->pod, "r2");  // the least loaded
  EXPECT_EQ(find(a, Action::Kind::Drain)->address, "10.0.0.2:8000");
  EXPECT_EQ(count(a, Action::Kind::Scale), 0) << "not removed before its drain";
  EXPECT_EQ(find(a, Action::Kind::Event)->reason, "ScalingDown");
  // Still serving a request: kept.
  o.now = s(5);
  o.replicas[1] = replica("r2", 0, 0.05, 1, 1);
  a = sc.tick(o);
  EXPECT_EQ(count(a, Action::Kind::Scale), 0);
  EXPECT_EQ(count(a, Action::Kind::DeletionCost), 0);
  // The replica shows nothing running but the kernel still counts a
  // connection in flight: kept.
  o.now = s(6);
  o.replicas[1] = replica("r2", 0, 0, 1, 0);
  EXPECT_EQ(count(sc.tick(o), Action::Kind::Scale), 0);
  // Idle: the deletion cost, then the scale.
  o.now = s(7);
  o.replicas[1] = replica("r2", 0, 0, 0, 0);
  a = sc.tick(o);
  ASSERT_EQ(count(a, Action::Kind::DeletionCost), 1);
  EXPECT_EQ(find(a, Action::Kind::DeletionCost)->pod, "r2");
  EXPECT_EQ(find(a, Action::Kind::DeletionCost)->replicas, kVictimDeletionCost);
  ASSERT_EQ(count(a, Action::Kind::Scale), 1);
  EXPECT_EQ(find(a, Action::Kind::Scale)->replicas, 2);
}

TEST(Scaler, DrainTimeoutRemovesABusyReplicaWithAWarning) {
  Scaler sc(kv_policy());
  Observation o{s(0), 2, {replica("r1", 0, 0.1, 1, 1), replica("r2", 0, 0.1, 3, 1)}};
  auto a = sc.tick(o);
  ASSERT_EQ(count(a, Action::Kind::Drain), 1);
  o.now = s(99);
  EXPECT_EQ(count(sc.tick(o), Action::Kind::Scale), 0);
  o.now = s(100);
  a = sc.tick(o);
  ASSERT_EQ(count(a, Action::Kind::Scale), 1);
  const Action* e = nullptr;
  for (const auto& x : a)
    if (x.kind == Action::Kind::Event && x.reason == "DrainTimeout") e = &x;
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->warning);
}

TEST(Scaler, LoadReturningDuringADrainTakesTheReplicaBack) {
  Policy p = kv_policy();
  p.min_replicas = 2;
  Scaler sc(p);
  Observation o{
      s(0),
      3,
      {replica("r1", 0, 0.1, 1, 1), replica("r2", 0, 0.1, 1, 1), replica("r3", 0, 0.1, 1, 1)}};
  auto a = sc.tick(o);
  ASSERT_GE(count(a, Action::Kind::Drain), 1);
  std::string drained = find(a, Action::Kind::Drain)->pod;
  // Load comes back before the drain ends: 2 in service at 0.5 x 1.5.
  o.now = s(1);
  for (auto& r : o.replicas) r = replica(r.pod, 0, 0.75, 1, 1);
  a = sc.tick(o);
  ASSERT_GE(count(a, Action::Kind::Undrain), 1);
  EXPECT_EQ(find(a, Action::Kind::Undrain)->pod, drained);
  EXPECT_TRUE(sc.draining().empty());
}

// A victim chosen while it was still starting, ready at the next tick (with a
// request already on it): drained then, removed only once idle.
TEST(Scaler, AStartingVictimThatBecomesReadyIsDrained) {
  Policy p = kv_policy();
  p.min_replicas = 2;
  Scaler sc(p);
  ReplicaView loading = replica("r3", 0, 0);
  loading.ready = false;
  loading.has_score = false;
  loading.age = s(5);
  // 2 ready at 0.2 against 0.5: 1 needed (min 2): one victim, the starting one.
  Observation o{s(0), 3, {replica("r1", 0, 0.2), replica("r2", 0, 0.2), loading}};
  auto a = sc.tick(o);
  EXPECT_EQ(count(a, Action::Kind::Drain), 0) << "a starting replica is not in the data plane";
  ASSERT_EQ(sc.draining().count("r3"), 1u);
  o.now = s(1);
  o.replicas[2] = replica("r3", 0, 0.1, 1, 1);  // ready now, serving a request
  a = sc.tick(o);
  ASSERT_EQ(count(a, Action::Kind::Drain), 1);
  EXPECT_EQ(find(a, Action::Kind::Drain)->pod, "r3");
  EXPECT_EQ(count(a, Action::Kind::Scale), 0) << "removed with a request in flight";
  o.now = s(2);
  o.replicas[2] = replica("r3", 0, 0, 0, 0);
  a = sc.tick(o);
  EXPECT_EQ(count(a, Action::Kind::Drain), 0);
  ASSERT_EQ(count(a, Action::Kind::Scale), 1);
  EXPECT_EQ(find(a, Action::Kind::Scale)->replicas, 2);
}

TEST(Scaler, ConcurrencyIsRunningPlusWaiting) {
  Policy p = kv_policy();
  p.signal = Signal::Concurrency;
  Scaler sc(p);
  EXPECT_DOUBLE_EQ(sc.signal_of(replica("r1", 3, 0.9, 7, 5)), 8.0);
  EXPECT_EQ(parse_signal("concurrency"), Signal::Concurrency);
  EXPECT_FALSE(parse_signal("rps").has_value());
}

TEST(Scaler, StaleScoresBlockScaleDown) {
  Scaler sc(kv_policy());
  Observation o{s(0), 3, {replica("r1", 0, 0.1), replica("r2", 0, 0.1), replica("r3", 0, 0.1)}};
  o.replicas[2].score_age = s(10);  // older than max_score_age (3 s)
  auto a = sc.tick(o);
  EXPECT_EQ(count(a, Action::Kind::Drain), 0);
  EXPECT_EQ(sc.status().why, "missing scores: no scale-down");
}

TEST(Scaler, PanicActsBetweenSyncsAndNeverScalesDown) {
  Policy p = named_policy("kvlb");  // sync 5 s, panic on
  p.signal = Signal::Saturation;    // queue_target 4, kv_target 0.8
  p.target = 1.0;
  p.max_replicas = 20;
  Scaler sc(p);
  // Quiet: 2 replicas at saturation 0.5 -> ceil(0.5 x 2 / 1) = 1, within
  // stabilization (300 s): stays 2.
  Observation o{s(0), 2, {replica("r1", 1, 0.4), replica("r2", 1, 0.4)}};
  EXPECT_EQ(count(sc.tick(o), Action::Kind::Scale), 0);
  // A burst 1 s later (before the next sync, due at 5 s): waiting 12 each,
  // saturation 3; the panic window (6 s) holds 0.5 and 3: 1.75 a replica,
  // 3.5 in all: 4 replicas needed, 4/2 >= 2: panic, scaled at once.
  o.now = s(1);
  o.replicas = {replica("r1", 12, 0.5), replica("r2", 12, 0.5)};
  auto a = sc.tick(o);
  ASSERT_NE(find(a, Action::Kind::Scale), nullptr);
  EXPECT_EQ(find(a, Action::Kind::Scale)->replicas, 4);
  EXPECT_TRUE(sc.status().panic);
  // Quiet again at the next sync: panic holds the count (no scale-down).
  o.now = s(5);
  o.replicas = {replica("r1", 0, 0.1), replica("r2", 0, 0.1), replica("r3", 0, 0.1),
                replica("r4", 0, 0.1)};
  o.spec_replicas = 4;
  a = sc.tick(o);
  EXPECT_EQ(count(a, Action::Kind::Drain), 0);
  EXPECT_EQ(count(a, Action::Kind::Scale), 0);
  EXPECT_TRUE(sc.status().panic);
}

TEST(Scaler, AboveMaxIsBroughtToMax) {
  Policy p = kv_policy();
  p.max_replicas = 3;
  Scaler sc(p);
  Observation o{s(0),
                5,
                {replica("r1", 0, 0.5), replica("r2", 0, 0.5), replica("r3", 0, 0.5),
                 replica("r4", 0, 0.5), replica("r5", 0, 0.5)}};
  auto a = sc.tick(o);
  EXPECT_EQ(count(a, Action::Kind::Drain), 2);
  EXPECT_EQ(sc.status().why, "above max_replicas");
}

TEST(Policy, NamedPoliciesValidateAndBadFieldsAreNamed) {
  for (auto n : {"kvlb", "hpa-kv", "hpa-waiting"}) EXPECT_EQ(validate(named_policy(n)), "") << n;
  EXPECT_THROW(named_policy("nope"), std::invalid_argument);
  Policy p = default_policy();
  p.max_replicas = 0;
  EXPECT_EQ(validate(p).rfind("max_replicas:", 0), 0u);
  p = default_policy();
  p.scale_up.policies[0].period = Millis{0};
  EXPECT_EQ(validate(p).rfind("behavior.scaleUp.policies[0].periodSeconds:", 0), 0u);
  p = named_policy("hpa-kv");
  p.target = 80;  // a percentage where a fraction is meant
  EXPECT_EQ(validate(p).rfind("target:", 0), 0u);
}
