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
  return {{"addresses", json::array({ip})},
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
  auto eps = endpoints_of_slice(
      slice("s", "1", json::array({ep("10.0.0.1", json::object())}), ports), "http");
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].address.port, 8000);
  EXPECT_TRUE(endpoints_of_slice(
                  slice("s", "1", json::array({ep("10.0.0.1", json::object())}), ports), "grpc")
                  .empty());
  EXPECT_THROW(
      endpoints_of_slice(slice("s", "1", json::array({ep("not-an-ip", json::object())})), "http"),
      std::invalid_argument);
}

TEST(EndpointSlices, ListThenWatchWithBookmarksAndGone) {
  ServiceEndpoints svc("http");
  svc.apply_list({{"kind", "EndpointSliceList"},
                  {"metadata", {{"resourceVersion", "100"}}},
                  {"items",
                   {slice("a", "90", json::array({ep("10.0.0.1", json::object())})),
                    slice("b", "95", json::array({ep("10.0.0.2", json::object())}))}}});
  EXPECT_EQ(svc.endpoints().size(), 2u);
  EXPECT_EQ(svc.resource_version(), "100");

  // A pod of slice b starts terminating: draining.
  auto a = svc.apply_event(
      {{"type", "MODIFIED"},
       {"object",
        slice("b", "101",
              json::array({ep("10.0.0.2",
                              {{"ready", false}, {"serving", true}, {"terminating", true}})}))}});
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
  svc.apply_event({{"type", "ADDED"},
                   {"object", slice("c", "151", json::array({ep("10.0.0.1", json::object())}))}});
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

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "k8s/kube_client.h"
#include "k8s/slice_watcher.h"

TEST(KubeConfig, InClusterFromEnvironmentAndServiceAccount) {
  auto dir = std::filesystem::temp_directory_path() / "kvlb-sa-test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "token") << "t\n";
  std::ofstream(dir / "ca.crt") << "pem\n";
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = in_cluster_config(dir);
  EXPECT_EQ(c.server, "https://10.96.0.1:443");
  EXPECT_EQ(c.token_file, (dir / "token").string());
  EXPECT_EQ(c.ca_file, (dir / "ca.crt").string());
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_THROW(in_cluster_config(dir), std::runtime_error);
  std::filesystem::remove_all(dir);
}

TEST(KubeConfig, KubeconfigCurrentContextAndErrors) {
  auto dir = std::filesystem::temp_directory_path() / "kvlb-kc-test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config") << R"(
current-context: b
clusters:
  - {name: c1, cluster: {server: "https://a:6443", certificate-authority: /x/ca1}}
  - {name: c2, cluster: {server: "https://b:6443", certificate-authority: ca2.crt}}
users:
  - {name: u2, user: {tokenFile: tok}}
contexts:
  - {name: a, context: {cluster: c1, user: u2}}
  - {name: b, context: {cluster: c2, user: u2}}
)";
  auto c = kubeconfig_file(dir / "config");
  EXPECT_EQ(c.server, "https://b:6443");
  EXPECT_EQ(c.ca_file, (dir / "ca2.crt").string());  // relative to the kubeconfig
  EXPECT_EQ(c.token_file, (dir / "tok").string());
  std::ofstream(dir / "noca") << R"(
current-context: a
clusters: [{name: c1, cluster: {server: "https://a:6443"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: a, context: {cluster: c1, user: u}}]
)";
  try {
    kubeconfig_file(dir / "noca");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be verified"), std::string::npos) << e.what();
  }
  // A plain-http server would get the bearer token in clear: refused unless
  // the operator says so explicitly.
  std::ofstream(dir / "http") << R"(
current-context: a
clusters: [{name: c1, cluster: {server: "http://a:8080"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: a, context: {cluster: c1, user: u}}]
)";
  try {
    kubeconfig_file(dir / "http");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("sent in clear"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kubeconfig_file(dir / "http", true).server, "http://a:8080");
  std::filesystem::remove_all(dir);
}

TEST(KubeConfig, Dns1123Labels) {
  EXPECT_TRUE(is_dns1123_label("default"));
  EXPECT_TRUE(is_dns1123_label("a-1"));
  EXPECT_FALSE(is_dns1123_label(""));
  EXPECT_FALSE(is_dns1123_label("-a"));
  EXPECT_FALSE(is_dns1123_label("a/b"));
  EXPECT_FALSE(is_dns1123_label("A"));
  EXPECT_FALSE(is_dns1123_label(std::string(64, 'a')));
}

TEST(ListWatcher, BackoffDoublesAndIsCapped) {
  EXPECT_EQ(ListWatcher::backoff(0).count(), 200);
  EXPECT_EQ(ListWatcher::backoff(1).count(), 400);
  EXPECT_EQ(ListWatcher::backoff(7).count(), 25600);
  EXPECT_EQ(ListWatcher::backoff(8).count(), 30000);
  EXPECT_EQ(ListWatcher::backoff(50).count(), 30000);
}

TEST(EndpointSlices, FieldsOfUnexpectedTypesAreInvalidArgumentNeverAnotherException) {
  // Found by tests/fuzz/endpoint_slice_fuzz.cpp: a port "name" that is a number
  // made nlohmann::json throw its type_error out of the decoder.
  json ports = json::array({{{"name", 8000}, {"port", 8000}}});
  EXPECT_THROW(endpoints_of_slice(
                   slice("s", "1", json::array({ep("10.0.0.1", json::object())}), ports), "http"),
               std::invalid_argument);
  auto bad_conditions = slice("s", "1", json::array({ep("10.0.0.1", {{"ready", "yes"}})}));
  EXPECT_THROW(endpoints_of_slice(bad_conditions, "http"), std::invalid_argument);
  auto bad_endpoints = slice("s", "1", json::array({42}));
  EXPECT_THROW(endpoints_of_slice(bad_endpoints, "http"), std::invalid_argument);
  ServiceEndpoints svc("http");
  EXPECT_THROW(svc.apply_event({{"type", 7}, {"object", json::object()}}), std::invalid_argument);
  EXPECT_THROW(svc.apply_list({{"items", json::array({json::array()})}}), std::invalid_argument);
}
