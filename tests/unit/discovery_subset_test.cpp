// A Kubernetes Service with more ready endpoints than a service has slots (256):
// 300 and 5,000 endpoints. Each node balances a deterministic subset of 256,
// active endpoints first; across nodes every endpoint is balanced somewhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <set>
#include <string>

#include "agent/discovery.h"

using namespace kvlb;
using namespace kvlb::agent;

namespace {

std::vector<k8s::DiscoveredEndpoint> endpoints(int n, int draining_every = 0) {
  std::vector<k8s::DiscoveredEndpoint> out;
  for (int i = 0; i < n; ++i) {
    k8s::DiscoveredEndpoint e;
    e.address =
        *Endpoint::parse(fmt::format("10.{}.{}.{}:8000", i / 65536, (i / 256) % 256, i % 256));
    e.state = draining_every && i % draining_every == 0 ? KVLB_STATE_DRAINING : KVLB_STATE_ACTIVE;
    out.push_back(e);
  }
  return out;
}

ServiceConfig service() {
  ServiceConfig s;
  s.name = "llm";
  s.vip = *Endpoint::parse("10.96.0.1:80");
  return s;
}

std::set<std::string> addresses(const std::vector<BackendConfig>& b) {
  std::set<std::string> out;
  for (const auto& x : b) out.insert(x.address.to_string());
  return out;
}

}  // namespace

TEST(DiscoverySubset, AtMostTheSlotCountAndTheRestCounted) {
  for (int n : {100, 256, 300, 5000}) {
    size_t dropped = 0;
    auto b = backends_from_endpoints(service(), endpoints(n), "node-a", &dropped);
    EXPECT_EQ(b.size(), std::min<size_t>(n, KVLB_MAX_SLOTS)) << n;
    EXPECT_EQ(dropped, n > KVLB_MAX_SLOTS ? n - KVLB_MAX_SLOTS : 0u) << n;
    EXPECT_EQ(addresses(b).size(), b.size()) << "duplicates at " << n;
  }
}

TEST(DiscoverySubset, DeterministicPerNodeAndOrderIndependent) {
  auto eps = endpoints(300);
  size_t d = 0;
  auto a1 = addresses(backends_from_endpoints(service(), eps, "node-a", &d));
  std::reverse(eps.begin(), eps.end());
  auto a2 = addresses(backends_from_endpoints(service(), eps, "node-a", &d));
  auto b = addresses(backends_from_endpoints(service(), eps, "node-b", &d));
  EXPECT_EQ(a1, a2);  // the same node keeps the same subset, whatever the slice order
  EXPECT_NE(a1, b);   // another node keeps another one
}

TEST(DiscoverySubset, NodesTogetherBalanceEveryEndpoint) {
  // Each node's subset is an independent draw: an endpoint is left out by all of
  // N nodes with probability (1 - 256/n)^N. 300 endpoints on 10 nodes: 5e-9 each,
  // so all are balanced. 5,000 on 100 nodes: 0.5% each, so about 99.5% are, each
  // by 5 nodes on average (deterministic here: the hash and the names are fixed).
  auto coverage = [](int n, int nodes) {
    auto eps = endpoints(n);
    std::map<std::string, int> covered;
    for (int node = 0; node < nodes; ++node) {
      size_t d = 0;
      for (const auto& a :
           addresses(backends_from_endpoints(service(), eps, "node-" + std::to_string(node), &d)))
        ++covered[a];
    }
    return covered;
  };
  EXPECT_EQ(coverage(300, 10).size(), 300u);
  auto big = coverage(5000, 100);
  EXPECT_GE(big.size(), 4950u);
  int most = 0;
  for (const auto& [a, k] : big) most = std::max(most, k);
  EXPECT_LE(most, 16);  // no endpoint in many more subsets than the mean (5.1)
}

TEST(DiscoverySubset, ActiveEndpointsComeBeforeDrainingOnes) {
  // 300 endpoints, every third terminating (draining): the 200 active ones are
  // all kept, and 56 draining ones fill the rest.
  size_t dropped = 0;
  auto b = backends_from_endpoints(service(), endpoints(300, 3), "node-a", &dropped);
  size_t active = 0;
  for (const auto& x : b) active += x.state == KVLB_STATE_ACTIVE;
  EXPECT_EQ(active, 200u);
  EXPECT_EQ(b.size(), KVLB_MAX_SLOTS);
  EXPECT_EQ(dropped, 44u);
}

TEST(DiscoverySubset, OtherFamiliesAndDuplicatesAreLeftOut) {
  auto eps = endpoints(3);
  eps.push_back(eps[0]);  // listed by two slices
  k8s::DiscoveredEndpoint v6;
  v6.address = *Endpoint::parse("[fd00::1]:8000");
  eps.push_back(v6);
  size_t dropped = 0;
  auto b = backends_from_endpoints(service(), eps, "n", &dropped);
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(dropped, 0u);
}

TEST(DiscoverySubset, ThisNodesOwnEndpointsAreAlwaysKept) {
  // With score sharing a node's agent scrapes the replicas on its node for
  // everyone: they must be in its subset whatever their rank.
  auto eps = endpoints(1000);
  std::set<std::string> mine;
  for (size_t i = 0; i < eps.size(); i += 97) {
    eps[i].node_name = "gpu-7";
    mine.insert(eps[i].address.to_string());
  }
  size_t dropped = 0;
  auto kept = addresses(backends_from_endpoints(service(), eps, "gpu-7", &dropped));
  EXPECT_EQ(kept.size(), size_t{KVLB_MAX_SLOTS});
  for (const auto& a : mine) EXPECT_TRUE(kept.count(a)) << a;
  // Another node's subset is its own rendezvous pick, these not favoured.
  auto other = addresses(backends_from_endpoints(service(), eps, "gpu-8", &dropped));
  size_t in_other = 0;
  for (const auto& a : mine) in_other += other.count(a);
  EXPECT_LT(in_other, mine.size());
}
