// The autoscaler's Kubernetes objects without a server: names, times, Scale,
// Pod and Event (k8s/workload_scale.h, pods.h, events.h, api_time.h).
#include "k8s/api_time.h"
#include "k8s/events.h"
#include "k8s/pods.h"
#include "k8s/workload_scale.h"

#include <gtest/gtest.h>

using namespace kvlb::k8s;
using nlohmann::json;

TEST(K8sNames, Dns1123Subdomain) {
  EXPECT_TRUE(is_dns1123_subdomain("llm"));
  EXPECT_TRUE(is_dns1123_subdomain("llm-7d9f.abc-1"));
  EXPECT_FALSE(is_dns1123_subdomain(""));
  EXPECT_FALSE(is_dns1123_subdomain("Llm"));
  EXPECT_FALSE(is_dns1123_subdomain("a..b"));
  EXPECT_FALSE(is_dns1123_subdomain(".a"));
  EXPECT_FALSE(is_dns1123_subdomain("a/b"));
  EXPECT_FALSE(is_dns1123_subdomain("a-"));
  EXPECT_TRUE(is_dns1123_subdomain(std::string(63, 'a') + "." + std::string(63, 'b')));
  EXPECT_FALSE(is_dns1123_subdomain(std::string(64, 'a')));
  EXPECT_FALSE(is_dns1123_subdomain(std::string(127, 'a').replace(63, 1, ".") + "." +
                                    std::string(127, 'a').replace(63, 1, ".")));  // 255
  EXPECT_EQ(url_encode("app=llm,tier in (a b)"), "app%3Dllm%2Ctier%20in%20%28a%20b%29");
}

TEST(K8sTime, FormatsAndParses) {
  WallTime t{std::chrono::microseconds(1'700'000'000'123'456)};
  EXPECT_EQ(format_time(t), "2023-11-14T22:13:20Z");
  EXPECT_EQ(format_micro_time(t), "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(parse_time("2023-11-14T22:13:20.123456Z"), t);
  EXPECT_EQ(parse_time("2023-11-14T23:13:20.123456+01:00"), t);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20Z"), WallTime{std::chrono::seconds(1'700'000'000)});
  EXPECT_FALSE(parse_time("2023-11-14 22:13:20Z"));
  EXPECT_FALSE(parse_time("2023-11-14T22:13:20"));
  EXPECT_FALSE(parse_time("2023-13-14T22:13:20Z"));
  EXPECT_FALSE(parse_time("2023-11-14T22:13:20.Z"));
}

TEST(WorkloadScale, ParsesAScaleAndRefusesOtherObjects) {
  auto s = parse_scale(R"({"kind":"Scale","apiVersion":"autoscaling/v1",
      "metadata":{"name":"llm","resourceVersion":"12"},
      "spec":{"replicas":3},"status":{"replicas":2,"selector":"app=llm"}})");
  ASSERT_TRUE(s) << s.error().text();
  EXPECT_EQ(s->spec_replicas, 3);
  EXPECT_EQ(s->status_replicas, 2);
  EXPECT_EQ(s->selector, "app=llm");
  EXPECT_EQ(s->resource_version, "12");
  // Zero values are omitted by the API server.
  auto zero = parse_scale(R"({"kind":"Scale","metadata":{"resourceVersion":"1"}})");
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->spec_replicas, 0);
  EXPECT_EQ(parse_scale(R"({"kind":"Deployment"})").error().code, ApiErrc::BadResponse);
  EXPECT_FALSE(parse_scale(R"({"kind":"Scale","metadata":{"resourceVersion":"1"},
      "spec":{"replicas":"3"}})"));
  EXPECT_FALSE(parse_scale(R"({"kind":"Scale","metadata":{"resourceVersion":"1"},
      "spec":{"replicas":3000000000}})"));
}

TEST(WorkloadScale, PathsValidateNames) {
  EXPECT_EQ(scale_path("default", WorkloadKind::StatefulSet, "llm.v2"),
            "/apis/apps/v1/namespaces/default/statefulsets/llm.v2/scale");
  EXPECT_FALSE(scale_path("default", WorkloadKind::Deployment, "../pods"));
  EXPECT_FALSE(scale_path("a.b", WorkloadKind::Deployment, "llm"));  // namespaces are labels
  EXPECT_EQ(parse_workload_kind("StatefulSet"), WorkloadKind::StatefulSet);
  EXPECT_FALSE(parse_workload_kind("deployment"));
}

TEST(Pods, PodInfoFromAPod) {
  auto p = pod_info_of(json::parse(R"({"metadata":{"name":"llm-1","resourceVersion":"5",
      "creationTimestamp":"2024-01-01T00:00:00Z","deletionTimestamp":"2024-01-01T00:01:00Z",
      "annotations":{"controller.kubernetes.io/pod-deletion-cost":"-5"}},
      "status":{"phase":"Running","podIP":"10.0.0.7",
      "conditions":[{"type":"PodScheduled","status":"True"},{"type":"Ready","status":"False"}]}})"));
  EXPECT_EQ(p.name, "llm-1");
  EXPECT_EQ(p.pod_ip, "10.0.0.7");
  EXPECT_EQ(p.phase, "Running");
  EXPECT_FALSE(p.ready);
  EXPECT_TRUE(p.terminating);
  EXPECT_EQ(p.created, parse_time("2024-01-01T00:00:00Z"));
  EXPECT_EQ(p.annotations.at(std::string(kPodDeletionCost)), "-5");
  auto ready = pod_info_of(json::parse(R"({"metadata":{"name":"a"},
      "status":{"conditions":[{"type":"Ready","status":"True"}]}})"));
  EXPECT_TRUE(ready.ready);
  EXPECT_FALSE(ready.terminating);
  EXPECT_THROW(pod_info_of(json::parse(R"({"metadata":{"name":"a","annotations":{"x":1}}})")),
               std::invalid_argument);
  EXPECT_THROW(pod_info_of(json::parse(R"({"metadata":{}})")), std::invalid_argument);
}

TEST(Events, EventObjectAsClientGoNamesIt) {
  EventSpec e{{"apps/v1", "Deployment", "default", "llm", "uid-1"},
              EventType::Warning,
              "ScaleDownBlocked",
              "in flight 3",
              "kvlb-autoscaler"};
  WallTime now{std::chrono::nanoseconds(0x17a0000000000000)};
  auto j = event_object(e, now);
  EXPECT_EQ(j["metadata"]["name"], "llm.17a0000000000000");
  EXPECT_EQ(j["metadata"]["namespace"], "default");
  EXPECT_EQ(j["involvedObject"]["uid"], "uid-1");
  EXPECT_EQ(j["type"], "Warning");
  EXPECT_EQ(j["count"], 1);
  EXPECT_EQ(j["source"]["component"], "kvlb-autoscaler");
  EXPECT_EQ(j["firstTimestamp"], j["lastTimestamp"]);
  // Long messages are cut, never in the middle of a UTF-8 character.
  e.message = std::string(kMaxEventMessage - 1, 'x') + "\xc3\xa9";
  EXPECT_EQ(event_object(e, now)["message"].get<std::string>().size(), kMaxEventMessage - 1);
  e.reason = "not camel";
  EXPECT_THROW(event_object(e, now), std::invalid_argument);
  e.reason = "Ok";
  e.object.name = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') +
                  "." + std::string(61, 'd');  // 253, the longest name
  auto long_name = event_object(e, now)["metadata"]["name"].get<std::string>();
  EXPECT_LE(long_name.size(), 253u);
  EXPECT_TRUE(is_dns1123_subdomain(long_name)) << long_name;
}
