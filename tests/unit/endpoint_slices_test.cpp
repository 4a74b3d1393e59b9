#include "k8s/endpoint_slices.h"

#include <gtest/gtest.h>

using namespace kvlb;
using namespace kvlb::k8s;
using nlohmann::json;

namespace {

json slice(const std::string& name, const std::string& rv, json endpoints,
           json ports = json::array({{{"name", "http"}, {"port", 8000}, {"protocol", "TCP"}}})) {
  return {{"apiVersion", "discovery.k8s.io/v1"},
          {"kind", "EndpointSlice"},
          {"metadata",
           {{"name", name},
            {"resourceVersion", rv},
            {"labels", {{"kubernetes.io/service-name", "llm"}}}}},
          {"addressType", "IPv4"},
          {"endpoints", endpoints},
          {"ports", ports}};
}

json ep(const std::string& ip, json conditions, const std::string& node = "n1") {
  return {{"addresses", {ip}},
          {"conditions", conditions},
          {"nodeName", node},
          {"targetRef", {{"kind", "Pod"}, {"name", "pod-" + ip}}}};
}

}  // namespace

TEST(EndpointSlices, ConditionsMapToStates) {
  auto eps = endpoints_of_slice(
      slice("s1", "1",
            {ep("10.0.0.1", {{"ready", true}, {"serving", true}, {"terminating", false}}),
             ep("10.0.0.2", {{"ready", false}, {"serving", true}, {"terminating", true}}),
             ep("10.0.0.3", {{"ready", false}, {"serving", false}, {"terminating", true}}),
             ep("10.0.0.4", json::object())}),  // no conditions: ready
      "http");
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_EQ(eps[0].address.to_string(), "10.0.0.1:8000");
  EXPECT_EQ(eps[0].state, KVLB_STATE_ACTIVE);
  EXPECT_EQ(eps[0].pod_name, "pod-10.0.0.1");
  EXPECT_EQ(eps[1].state, KVLB_STATE_DRAINING);  // terminating but still serving
  EXPECT_EQ(eps[2].address.to_string(), "10.0.0.4:8000");
}

TEST(EndpointSlices, PortIsChosenByName) {
  json ports = {{{"name", "metrics"}, {"port", 9090}}, {{"name", "http"}, {"port", 8000}}};
  auto eps = endpoints_of_slice(slice("s", "1", {ep("10.0.0.1", json::object())}, ports), "http");
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].address.port, 8000);
  EXPECT_TRUE(
      endpoints_of_slice(slice("s", "1", {ep("10.0.0.1", json::object())}, ports), "grpc").empty());
  EXPECT_THROW(endpoints_of_slice(slice("s", "1", {ep("not-an-ip", json::object())}), "http"),
               std::invalid_argument);
}

TEST(EndpointSlices, ListThenWatchWithBookmarksAndGone) {
  ServiceEndpoints svc("http");
  svc.apply_list({{"kind", "EndpointSliceList"},
                  {"metadata", {{"resourceVersion", "100"}}},
                  {"items",
                   {slice("a", "90", {ep("10.0.0.1", json::object())}),
                    slice("b", "95", {ep("10.0.0.2", json::object())})}}});
  EXPECT_EQ(svc.endpoints().size(), 2u);
  EXPECT_EQ(svc.resource_version(), "100");

  // A pod of slice b starts terminating: draining.
  auto a = svc.apply_event(
      {{"type", "MODIFIED"},
       {"object",
        slice("b", "101",
              {ep("10.0.0.2", {{"ready", false}, {"serving", true}, {"terminating", true}})})}});
  EXPECT_EQ(a, WatchAction::Changed);
  EXPECT_EQ(svc.endpoints()[1].state, KVLB_STATE_DRAINING);
  EXPECT_EQ(svc.resource_version(), "101");

  // A bookmark moves the version only.
  a = svc.apply_event(
      {{"type", "BOOKMARK"},
       {"object", {{"kind", "EndpointSlice"}, {"metadata", {{"resourceVersion", "150"}}}}}});
  EXPECT_EQ(a, WatchAction::None);
  EXPECT_EQ(svc.resource_version(), "150");

  // The same address moving between slices is listed once, at its best state.
  svc.apply_event(
      {{"type", "ADDED"}, {"object", slice("c", "151", {ep("10.0.0.1", json::object())})}});
  EXPECT_EQ(svc.endpoints().size(), 2u);
  a = svc.apply_event({{"type", "DELETED"}, {"object", slice("b", "152", json::array())}});
  EXPECT_EQ(a, WatchAction::Changed);
  EXPECT_EQ(svc.endpoints().size(), 1u);

  // 410 Gone: the version expired, re-list.
  a = svc.apply_event(
      {{"type", "ERROR"}, {"object", {{"kind", "Status"}, {"code", 410}, {"reason", "Expired"}}}});
  EXPECT_EQ(a, WatchAction::Relist);
  EXPECT_THROW(
      svc.apply_event({{"type", "ERROR"}, {"object", {{"code", 500}, {"message", "boom"}}}}),
      std::invalid_argument);
  EXPECT_THROW(svc.apply_event({{"type", "WHATEVER"}, {"object", slice("x", "1", json::array())}}),
               std::invalid_argument);
}
