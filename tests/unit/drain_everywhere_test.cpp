// The drain every node's agent sees (docs/autoscaler.md, "Draining on every
// node"): the draining-pods watch state, the agent's folding of drained pods
// into a service's endpoints, and the autoscaler's label writes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/discovery.h"
#include "autoscaler/observe.h"
#include "k8s/draining_pods.h"
#include "k8s/list_watcher.h"
#include "k8s/pods.h"

using namespace kvlb;
using nlohmann::json;

namespace {

json pod(const std::string& name, bool drained) {
  json p = {{"metadata", {{"name", name}, {"resourceVersion", "7"}, {"labels", {{"app", "llm"}}}}}};
  if (drained) p["metadata"]["labels"][std::string(k8s::kDrainingLabel)] = "true";
  return p;
}
json event(const std::string& type, json obj) {
  return {{"type", type}, {"object", obj}};
}
json list(std::vector<json> items, const std::string& rv = "100") {
  return {{"kind", "PodList"}, {"metadata", {{"resourceVersion", rv}}}, {"items", items}};
}

}  // namespace

TEST(DrainingPods, ListKeepsOnlyLabelledPodsWhateverTheServerSent) {
  k8s::DrainingPods d;
  d.apply_list(list({pod("a", true), pod("b", false)}));
  EXPECT_EQ(d.names(), (std::set<std::string>{"a"})) << "a server that ignored the selector";
  EXPECT_EQ(d.resource_version(), "100");
  json other_value = pod("c", false);
  other_value["metadata"]["labels"][std::string(k8s::kDrainingLabel)] = "false";
  d.apply_list(list({other_value}, "101"));
  EXPECT_TRUE(d.names().empty()) << "only the value \"true\" drains; a list replaces";
}

TEST(DrainingPods, EventsFollowTheLabel) {
  k8s::DrainingPods d;
  d.apply_list(list({}));
  EXPECT_EQ(d.apply_event(event("ADDED", pod("a", true))), k8s::WatchAction::Changed);
  EXPECT_EQ(d.apply_event(event("MODIFIED", pod("a", true))), k8s::WatchAction::None);
  EXPECT_EQ(d.resource_version(), "7");
  EXPECT_EQ(d.apply_event(event("MODIFIED", pod("a", false))), k8s::WatchAction::Changed)
      << "a label removed without the server's DELETED";
  EXPECT_TRUE(d.names().empty());
  d.apply_event(event("ADDED", pod("b", true)));
  EXPECT_EQ(d.apply_event(event("DELETED", pod("b", true))), k8s::WatchAction::Changed);
  EXPECT_TRUE(d.names().empty());
  json bookmark = {{"type", "BOOKMARK"},
                   {"object", {{"kind", "Pod"}, {"metadata", {{"resourceVersion", "900"}}}}}};
  EXPECT_EQ(d.apply_event(bookmark), k8s::WatchAction::None);
  EXPECT_EQ(d.resource_version(), "900");
  json gone = {{"type", "ERROR"}, {"object", {{"kind", "Status"}, {"code", 410}}}};
  EXPECT_EQ(d.apply_event(gone), k8s::WatchAction::Relist);
}

TEST(DrainingPods, MalformedInputIsRefusedAndChangesNothing) {
  k8s::DrainingPods d;
  d.apply_list(list({pod("a", true)}));
  const std::vector<json> bad = {
      json::array(),
      {{"type", "ADDED"}},
      {{"type", 3}, {"object", pod("b", true)}},
      {{"type", "SOMETHING"}, {"object", pod("b", true)}},
      event("ADDED", {{"metadata", {{"name", "b"}, {"labels", {{"kvlb.io/draining", 1}}}}}}),
      event("ADDED",
            {{"metadata",
              {{"name", "B\nforged log line"}, {"labels", {{"kvlb.io/draining", "true"}}}}}}),
      event("ADDED", {{"metadata", "b"}}),
      event("ADDED", {{"metadata", {{"labels", {{"kvlb.io/draining", "true"}}}}}}),
      {{"type", "ERROR"}, {"object", {{"code", 500}, {"message", "boom"}}}},
  };
  for (const auto& e : bad) {
    EXPECT_THROW(d.apply_event(e), std::invalid_argument) << e.dump();
    EXPECT_EQ(d.names(), (std::set<std::string>{"a"})) << e.dump();
    EXPECT_EQ(d.resource_version(), "100") << "a refused event does not move the version";
  }
  EXPECT_THROW(d.apply_list(json::object()), std::invalid_argument);
  EXPECT_THROW(d.apply_list({{"kind", "PodList"}, {"items", {pod("a", true), 5}}}),
               std::invalid_argument);
  EXPECT_EQ(d.names(), (std::set<std::string>{"a"}));
}

TEST(DrainingPods, MemoryIsBounded) {
  k8s::DrainingPods d;
  std::vector<json> many;
  for (size_t i = 0; i <= k8s::kMaxDrainingPods; ++i)
    many.push_back(pod(fmt::format("p{}", i), true));
  EXPECT_THROW(d.apply_list(list(many)), std::invalid_argument);
  many.pop_back();
  d.apply_list(list(many));
  EXPECT_EQ(d.names().size(), k8s::kMaxDrainingPods);
  EXPECT_THROW(d.apply_event(event("ADDED", pod("one-more", true))), std::invalid_argument);
  EXPECT_EQ(d.apply_event(event("MODIFIED", pod("p0", true))), k8s::WatchAction::None)
      << "a pod already counted is not one more";
}

TEST(DrainingPods, ThePathSelectsTheLabel) {
  EXPECT_EQ(k8s::draining_pods_path("ml"),
            "/api/v1/namespaces/ml/pods?labelSelector=kvlb.io%2Fdraining%3Dtrue");
}

TEST(DrainEverywhere, DrainedPodsEndpointsDrainOnlyIfActive) {
  auto ep = [](const char* addr, const char* pod, kvlb_backend_state st) {
    k8s::DiscoveredEndpoint e;
    e.address = *Endpoint::parse(addr);
    e.pod_name = pod;
    e.state = st;
    return e;
  };
  std::vector<k8s::DiscoveredEndpoint> eps = {
      ep("10.0.0.1:80", "a", KVLB_STATE_ACTIVE), ep("10.0.0.2:80", "b", KVLB_STATE_ACTIVE),
      ep("10.0.0.3:80", "", KVLB_STATE_ACTIVE), ep("10.0.0.4:80", "d", KVLB_STATE_DOWN)};
  auto out = agent::with_drained_pods(eps, {"a", "d", ""});
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].state, KVLB_STATE_DRAINING);
  EXPECT_EQ(out[1].state, KVLB_STATE_ACTIVE);
  EXPECT_EQ(out[2].state, KVLB_STATE_ACTIVE) << "an endpoint without a pod is never matched";
  EXPECT_EQ(out[3].state, KVLB_STATE_DOWN) << "a drain never revives an endpoint";
}

TEST(DrainEverywhere, LabelWritesMatchTheScalersDrains) {
  auto p = [](const char* name, bool labelled, bool terminating = false) {
    k8s::PodInfo i;
    i.name = name;
    if (labelled) i.labels[std::string(k8s::kDrainingLabel)] = "true";
    i.terminating = terminating;
    return i;
  };
  std::map<std::string, autoscale::Millis> draining = {
      {"a", autoscale::Millis{5}}, {"b", autoscale::Millis{6}}, {"t", autoscale::Millis{1}}};
  auto w = autoscaler::drain_label_writes(
      {p("a", false), p("b", true), p("c", true), p("d", false), p("t", false, true)}, draining);
  EXPECT_EQ(w, (std::vector<std::pair<std::string, bool>>{{"a", true}, {"c", false}}))
      << "set where missing, removed where left behind, a terminating pod is not relabelled";
  EXPECT_TRUE(autoscaler::drain_label_writes({p("a", true), p("b", true)}, draining).empty());
}
