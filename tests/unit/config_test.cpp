#include "agent/config.h"

#include <gtest/gtest.h>

using namespace kvlb::agent;

namespace {

const char* kValid = R"(
cgroup: kvlb-test
bpffs: /sys/fs/bpf
pin_dir: /sys/fs/bpf/kvlb
scrape_interval: 50ms
stale_after: 1s
services:
  - name: llama
    vip: 10.96.0.10:8000
    policy: p2c-queue-kv
    choices: 3
    backends:
      - address: 10.1.0.2:8000
      - address: 10.1.0.3:8000
        metrics_url: http://10.1.0.3:9090/metrics
        engine: vllm
        weight: 200
        state: draining
)";

// Expects a ConfigError whose field is `field` and whose reason contains `reason`.
void expect_error(const std::string& yaml, const std::string& field, const std::string& reason) {
  try {
    parse_config(yaml);
    ADD_FAILURE() << "accepted invalid config; expected an error on " << field;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
  }
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

}  // namespace

TEST(Config, ParsesAValidConfig) {
  auto c = parse_config(kValid);
  EXPECT_EQ(c.cgroup, "kvlb-test");
  EXPECT_EQ(c.scrape_interval.count(), 50);
  EXPECT_EQ(c.scrape_timeout.count(), 50);  // defaults to the interval
  EXPECT_EQ(c.stale_after.count(), 1000);
  ASSERT_EQ(c.services.size(), 1u);
  const auto& s = c.services[0];
  EXPECT_EQ(s.vip.to_string(), "10.96.0.10:8000");
  EXPECT_EQ(s.policy, KVLB_POLICY_P2C_QUEUE_KV);
  EXPECT_EQ(s.choices, 3);
  ASSERT_EQ(s.backends.size(), 2u);
  EXPECT_EQ(s.backends[0].metrics_url, "http://10.1.0.2:8000/metrics");
  EXPECT_EQ(s.backends[0].engine, kvlb::engines::Engine::Auto);
  EXPECT_EQ(s.backends[1].metrics_url, "http://10.1.0.3:9090/metrics");
  EXPECT_EQ(s.backends[1].weight, 200);
  EXPECT_EQ(s.backends[1].state, KVLB_STATE_DRAINING);
}

TEST(Config, ErrorsNameTheFieldAndTheReason) {
  expect_error(replace(kValid, "cgroup: kvlb-test\n", ""), "cgroup", "is required");
  expect_error(replace(kValid, "scrape_interval: 50ms", "scrape_interval: fast"), "scrape_interval",
               "not a duration");
  expect_error(replace(kValid, "scrape_interval: 50ms", "scrape_interval: 1ms"), "scrape_interval",
               "at least 10 ms");
  expect_error(replace(kValid, "stale_after: 1s", "stale_after: 20ms"), "stale_after",
               "longer than scrape_interval");
  expect_error(replace(kValid, "policy: p2c-queue-kv", "policy: round-robin"), "services[0].policy",
               "unknown policy 'round-robin'");
  expect_error(replace(kValid, "choices: 3", "choices: 1"), "services[0].choices", "out of range");
  expect_error(replace(kValid, "choices: 3", "choices: 17"), "services[0].choices", "out of range");
  expect_error(replace(kValid, "vip: 10.96.0.10:8000", "vip: 10.96.0.10"), "services[0].vip",
               "is not ip:port");
  expect_error(replace(kValid, "- address: 10.1.0.2:8000", "- address: 10.1.0.2:99999"),
               "services[0].backends[0].address", "is not ip:port");
  expect_error(replace(kValid, "- address: 10.1.0.2:8000", "- address: 10.1.0.3:8000"),
               "services[0].backends[1].address", "listed twice");
  expect_error(replace(kValid, "engine: vllm", "engine: triton"), "services[0].backends[1].engine",
               "unknown engine 'triton'");
  expect_error(replace(kValid, "weight: 200", "weight: 0"), "services[0].backends[1].weight",
               "out of range");
  expect_error(replace(kValid, "state: draining", "state: sleeping"),
               "services[0].backends[1].state", "not active or draining");
  expect_error(replace(kValid, "metrics_url: http://", "metrics_url: ftp://"),
               "services[0].backends[1].metrics_url", "http://");
  expect_error(replace(kValid, "pin_dir: /sys/fs/bpf/kvlb", "pin_dir: /tmp/kvlb"), "pin_dir",
               "below bpffs");
  expect_error(replace(kValid, "    policy:", "    polcy:"), "services[0].polcy", "unknown field");
  expect_error(replace(kValid, "scrape_interval:", "scrape_intervall:"), "scrape_intervall",
               "unknown field");
  expect_error("cgroup: x\nservices: []\n", "services", "non-empty");
  expect_error("", "(top level)", "empty");
  expect_error("cgroup: [unclosed\n", "(yaml)", "line");
}

TEST(Config, PassiveHealthHostOnlyAndMark) {
  auto c = parse_config(std::string(kValid) +
                        "passive_health: {failure_threshold: 2, cooldown: 3s}\n"
                        "host_network_only: true\nbypass_mark: 7\n");
  EXPECT_EQ(c.failure_threshold, 2u);
  EXPECT_EQ(c.failure_cooldown.count(), 3000);
  EXPECT_TRUE(c.host_network_only);
  EXPECT_EQ(c.bypass_mark, 7u);
  expect_error(std::string(kValid) + "host_network_only: yes please\n", "host_network_only",
               "not true or false");
  expect_error(std::string(kValid) + "passive_health: {threshold: 2}\n", "passive_health.threshold",
               "unknown field");
  expect_error(replace(kValid, "- address: 10.1.0.2:8000", "- address: \"[fd00::2]:8000\""),
               "services[0].backends[0].address", "not of the VIP's address family");
}

TEST(Config, MaxSockets) {
  EXPECT_EQ(parse_config(kValid).max_sockets, static_cast<uint32_t>(KVLB_MAX_SOCKETS));
  EXPECT_EQ(parse_config(std::string(kValid) + "max_sockets: 4096\n").max_sockets, 4096u);
  expect_error(std::string(kValid) + "max_sockets: 8\n", "max_sockets", "out of range");
  expect_error(std::string(kValid) + "max_sockets: lots\n", "max_sockets", "not an integer");
}

TEST(Config, ScrapeClient) {
  EXPECT_EQ(parse_config(kValid).scrape_client, kvlb::ScrapeClient::Auto);
  EXPECT_EQ(parse_config(std::string(kValid) + "scrape_client: curl\n").scrape_client,
            kvlb::ScrapeClient::Curl);
  expect_error(std::string(kValid) + "scrape_client: wget\n", "scrape_client",
               "'wget' is not one of auto, curl");
}

TEST(Config, KubernetesServices) {
  auto c = parse_config(R"(
cgroup: x
kubernetes: {kubeconfig: /etc/kvlb/kubeconfig}
services:
  - name: llm
    vip: 10.96.0.10:8000
    kubernetes: {namespace: models, service: llama, port: http}
)");
  ASSERT_TRUE(c.services[0].kubernetes);
  EXPECT_EQ(c.services[0].kubernetes->ns, "models");
  EXPECT_EQ(c.services[0].kubernetes->service, "llama");
  EXPECT_EQ(c.services[0].kubernetes->port_name, "http");
  EXPECT_TRUE(c.services[0].backends.empty());
  expect_error("cgroup: x\nservices: [{name: a, vip: \"10.0.0.1:80\", kubernetes: {service: s}}]\n",
               "kubernetes", "set in_cluster or kubeconfig");
  expect_error(
      "cgroup: x\nkubernetes: {in_cluster: true, kubeconfig: /k}\nservices: [{name: a, vip: "
      "\"10.0.0.1:80\", kubernetes: {service: s}}]\n",
      "kubernetes", "exactly one");
  expect_error(
      "cgroup: x\nkubernetes: {in_cluster: true}\nservices: [{name: a, vip: \"10.0.0.1:80\", "
      "kubernetes: {service: s}, backends: [{address: \"10.0.0.2:80\"}]}]\n",
      "services[0].backends", "not allowed with kubernetes");
  expect_error(
      "cgroup: x\nkubernetes: {in_cluster: true}\nservices: [{name: a, vip: \"10.0.0.1:80\", "
      "kubernetes: {namespace: n}}]\n",
      "services[0].kubernetes.service", "is required");
}

TEST(Config, ChoicesDefaultToTheMeasuredDefault) {
  auto c = parse_config(replace(kValid, "    choices: 3\n", ""));
  EXPECT_EQ(c.services[0].choices, KVLB_DEFAULT_CHOICES);
  EXPECT_EQ(KVLB_DEFAULT_CHOICES, 8);  // docs/benchmarks.md's ablation chose it
}

TEST(Config, DuplicateServicesAreRejected) {
  std::string two = std::string(kValid) + R"(
  - name: llama
    vip: 10.96.0.11:8000
    backends: [{address: 10.1.0.9:8000}]
)";
  expect_error(two, "services[1].name", "used twice");
  std::string same_vip = std::string(kValid) + R"(
  - name: other
    vip: 10.96.0.10:8000
    backends: [{address: 10.1.0.9:8000}]
)";
  expect_error(same_vip, "services[1].vip", "used by another service");
  std::string conflicting = std::string(kValid) + R"(
  - name: other
    vip: 10.96.0.11:8000
    backends: [{address: 10.1.0.2:8000, state: draining}]
)";
  expect_error(conflicting, "services[1].backends[0]", "is also services[0].backends[0]");
}

TEST(Config, HostileYamlIsAConfigErrorNeverAnAbort) {
  // A mapping used as a key aborted the agent (an exception type nobody caught).
  expect_error(std::string(kValid) + "{}: 1\n", "(top level)", "not a plain name");
  expect_error(replace(kValid, "    policy: p2c-queue-kv", "    [a, b]: 1"), "services[0]",
               "not a plain name");
  // Anything yaml-cpp throws comes out as a ConfigError.
  for (const char* doc : {"{}:", "? [x]\n: 1\n", "- a\n- b\n", "cgroup: {a: 1}\nservices: 1\n",
                          "&a [*a]", "cgroup: !!binary AAAA\nservices: []\n"}) {
    EXPECT_THROW(parse_config(doc), ConfigError) << doc;
  }
}

TEST(Config, DuplicateKeysAreRejectedWithTheirPath) {
  // yaml-cpp keeps both and answers with the first: silently ignoring the second.
  expect_error(std::string(kValid) + "scrape_interval: 100ms\n", "scrape_interval", "twice");
  expect_error(replace(kValid, "    choices: 3", "    choices: 3\n    choices: 4"),
               "services[0].choices", "twice");
  expect_error(replace(kValid, "        weight: 200", "        weight: 200\n        weight: 300"),
               "services[0].backends[1].weight", "twice");
}

TEST(Config, PathsCannotEscapeWithDotDot) {
  // Passed validation, then the root agent chmod'ed /etc.
  expect_error(
      replace(kValid, "pin_dir: /sys/fs/bpf/kvlb", "pin_dir: /sys/fs/bpf/kvlb/../../../../etc"),
      "pin_dir", "'..'");
  expect_error(replace(kValid, "bpffs: /sys/fs/bpf", "bpffs: /sys/fs/bpf/../../../tmp"), "bpffs",
               "'..'");
  auto c =
      parse_config(replace(kValid, "pin_dir: /sys/fs/bpf/kvlb", "pin_dir: /sys/fs/bpf//kvlb/./"));
  EXPECT_EQ(c.pin_dir, "/sys/fs/bpf/kvlb");
}

TEST(Config, KubernetesNamesAreDns1123Labels) {
  auto svc = [](const std::string& k) {
    return "cgroup: x\nkubernetes: {in_cluster: true}\nservices: [{name: a, vip: \"10.0.0.1:80\", "
           "kubernetes: " +
           k + "}]\n";
  };
  expect_error(svc("{namespace: \"../../secrets\", service: s}"),
               "services[0].kubernetes.namespace", "not a DNS-1123 label");
  expect_error(svc("{service: \"s?watch=true\"}"), "services[0].kubernetes.service",
               "not a DNS-1123 label");
  expect_error(svc("{service: Llama}"), "services[0].kubernetes.service", "not a DNS-1123 label");
  expect_error(svc("{service: " + std::string(64, 'a') + "}"), "services[0].kubernetes.service",
               "not a DNS-1123 label");
  EXPECT_NO_THROW(parse_config(svc("{namespace: team-1, service: llama-3}")));
}
