// kvlb-autoscaler's configuration (every bad field named) and its observation
// of a service (the agent's answers and the pods joined by address).
#include <gtest/gtest.h>

#include "autoscaler/config.h"
#include "autoscaler/observe.h"

using namespace kvlb::autoscaler;
using nlohmann::json;

namespace {

const char* kGood = R"(
agent_socket: /run/kvlb/agent.sock
interval: 1s
leader_election: {namespace: kvlb-system, name: kvlb-autoscaler, identity: a1}
services:
  - service: llm
    namespace: default
    workload: {kind: Deployment, name: llm}
    port: 8000
    policy: hpa-kv
    max_replicas: 8
    behavior:
      scaleDown:
        stabilizationWindowSeconds: 120
        selectPolicy: Min
        policies: [{type: Pods, value: 1, periodSeconds: 60}]
)";

std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

}  // namespace

TEST(AutoscalerConfig, ParsesAnHpaBehaviorBlockOverANamedPolicy) {
  auto c = parse_config(kGood);
  ASSERT_EQ(c.services.size(), 1u);
  const auto& p = c.services[0].policy;
  EXPECT_EQ(p.signal, kvlb::autoscale::Signal::KvUsage);
  EXPECT_DOUBLE_EQ(p.target, 0.8);
  EXPECT_EQ(p.max_replicas, 8);
  EXPECT_EQ(p.scale_down.stabilization, std::chrono::seconds(120));
  EXPECT_EQ(p.scale_down.select, kvlb::autoscale::SelectPolicy::Min);
  ASSERT_EQ(p.scale_down.policies.size(), 1u);
  EXPECT_EQ(p.scale_down.policies[0].type, kvlb::autoscale::PolicyType::Pods);
  // Untouched: HPA's scale-up default.
  EXPECT_EQ(p.scale_up.policies.size(), 2u);
  EXPECT_EQ(c.identity, "a1");
}

TEST(AutoscalerConfig, EveryBadFieldIsNamed) {
  EXPECT_EQ(error_of(with("type: Pods", "type: Replicas"))
                .rfind("services[0].behavior.scaleDown.policies[0].type:", 0),
            0u);
  EXPECT_EQ(
      error_of(with("max_replicas: 8", "max_replicas: 0")).rfind("services[0].max_replicas:", 0),
      0u);
  EXPECT_EQ(error_of(with("policy: hpa-kv", "policy: keda")).rfind("services[0].policy:", 0), 0u);
  EXPECT_EQ(error_of(with("port: 8000", "port: 70000")).rfind("services[0].port:", 0), 0u);
  EXPECT_EQ(error_of(with("interval: 1s", "interval: fast")).rfind("interval:", 0), 0u);
  EXPECT_EQ(
      error_of(with("kind: Deployment", "kind: DaemonSet")).rfind("services[0].workload.kind:", 0),
      0u);
  EXPECT_EQ(error_of(with("name: llm}", "name: LLM_1}")).rfind("services[0].workload.name:", 0),
            0u);
  EXPECT_EQ(error_of(with("max_replicas: 8", "max_replicas: 8\n    colour: blue"))
                .rfind("services[0].colour: unknown field", 0),
            0u);
  // A policy-level inconsistency comes back with its field too.
  EXPECT_EQ(error_of(with("max_replicas: 8", "max_replicas: 8\n    target: 80"))
                .rfind("services[0].target:", 0),
            0u);
  EXPECT_EQ(error_of("services: []").rfind("services:", 0), 0u);
  EXPECT_EQ(error_of("{").rfind("(file):", 0), 0u);
}

TEST(AutoscalerObserve, JoinsPodsAndBackendsByAddress) {
  auto agent = agent_view_of(
      json::parse(R"([{"name":"llm","backends":["10.0.0.1:8000","10.0.0.2:8000"]}])"),
      json::parse(R"([{"address":"10.0.0.1:8000","state":"active","waiting":3,"running":2,
                       "kv_usage":0.5,"inflight":4,"score_age_s":0.2,"stale":false},
                      {"address":"10.0.0.2:8000","state":"active","waiting":0,"running":0,
                       "kv_usage":0,"inflight":0,"score_age_s":9,"stale":true}])"));
  ServiceConfig svc;
  svc.service = "llm";
  svc.port = 8000;
  kvlb::k8s::Scale scale;
  scale.spec_replicas = 3;
  auto now = std::chrono::system_clock::now();
  std::vector<kvlb::k8s::PodInfo> pods(3);
  pods[0].name = "a";
  pods[0].pod_ip = "10.0.0.1";
  pods[0].ready = true;
  pods[0].phase = "Running";
  pods[0].created = now - std::chrono::seconds(100);
  pods[1].name = "b";
  pods[1].pod_ip = "10.0.0.2";
  pods[1].ready = true;
  pods[1].phase = "Running";
  pods[2].name = "c";  // loading its model: no IP yet
  pods[2].phase = "Pending";
  auto o = observation_of(svc, scale, pods, agent, kvlb::autoscale::Millis{5000}, now);
  ASSERT_EQ(o.replicas.size(), 3u);
  EXPECT_EQ(o.spec_replicas, 3);
  EXPECT_TRUE(o.replicas[0].ready);
  EXPECT_TRUE(o.replicas[0].has_score);
  EXPECT_DOUBLE_EQ(o.replicas[0].waiting, 3);
  EXPECT_DOUBLE_EQ(o.replicas[0].inflight, 4);
  EXPECT_DOUBLE_EQ(o.replicas[0].kv, 0.5);
  EXPECT_EQ(o.replicas[0].age, std::chrono::seconds(100));
  EXPECT_TRUE(o.replicas[1].ready);
  EXPECT_FALSE(o.replicas[1].has_score) << "a stale score is no score";
  EXPECT_FALSE(o.replicas[2].ready);
  EXPECT_EQ(o.replicas[2].address, "");
  // A Ready pod the agent does not balance (yet) is not serving.
  pods[1].pod_ip = "10.0.0.9";
  o = observation_of(svc, scale, pods, agent, kvlb::autoscale::Millis{5000}, now);
  EXPECT_FALSE(o.replicas[1].ready);
  EXPECT_EQ(backend_address("fd00::1", 8000), "[fd00::1]:8000");
  EXPECT_THROW(agent_view_of(json::object(), json::array()), std::invalid_argument);
  EXPECT_THROW(agent_view_of(json::array(), json::parse(R"([{"address":"x","waiting":"many"}])")),
               std::invalid_argument);
}
