// kvlb-netns-rx-cost: a measuring aid for scripts/bench/xdp-connect. Loads
// netns_rx_cost.bpf.c (the netif_receive_skb and netif_rx tracepoints) for one
// network namespace and answers each line read from stdin with the totals so
// far, as one JSON line: {"packets": N, "ns": T, "unfinished": U} (packets the
// namespace received and sent on to another namespace, the kernel's time for
// that, and packets that did not leave). Exits at end of input.
//
//   kvlb-netns-rx-cost --netns /run/netns/NAME
#include <bpf/libbpf.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "netns_rx_cost.skel.h"

namespace {

struct RxCost {  // struct rx_cost of netns_rx_cost.bpf.c
  uint64_t packets;
  uint64_t ns;
  uint64_t unfinished;
};

struct SkelDeleter {
  void operator()(kvlb_netns_rx_cost* s) const { kvlb_netns_rx_cost__destroy(s); }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Per-packet receive cost of one network namespace (a benchmark aid)"};
  std::string netns;
  app.add_option("--netns", netns, "the namespace's file (/run/netns/NAME)")->required();
  CLI11_PARSE(app, argc, argv);

  struct stat st {};
  if (stat(netns.c_str(), &st) != 0) {
    std::perror(netns.c_str());
    return 1;
  }
  std::unique_ptr<kvlb_netns_rx_cost, SkelDeleter> skel(kvlb_netns_rx_cost__open());
  if (!skel) {
    std::perror("open the BPF object");
    return 1;
  }
  skel->rodata->cfg_netns_inum = static_cast<uint32_t>(st.st_ino);
  if (int err = kvlb_netns_rx_cost__load(skel.get())) {
    std::fprintf(stderr, "load: %s\n", std::strerror(-err));
    return 1;
  }
  if (int err = kvlb_netns_rx_cost__attach(skel.get())) {
    std::fprintf(stderr, "attach (tracepoints netif_receive_skb, netif_rx): %s\n",
                 std::strerror(-err));
    return 1;
  }
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return 1;
  std::vector<RxCost> per_cpu(static_cast<size_t>(cpus));
  std::string line;
  while (std::getline(std::cin, line)) {
    uint32_t zero = 0;
    if (bpf_map__lookup_elem(skel->maps.totals, &zero, sizeof(zero), per_cpu.data(),
                             per_cpu.size() * sizeof(RxCost), 0) != 0) {
      std::perror("read the totals");
      return 1;
    }
    RxCost sum{};
    for (const auto& c : per_cpu) {
      sum.packets += c.packets;
      sum.ns += c.ns;
      sum.unfinished += c.unfinished;
    }
    std::printf("{\"packets\": %lu, \"ns\": %lu, \"unfinished\": %lu}\n",
                static_cast<unsigned long>(sum.packets), static_cast<unsigned long>(sum.ns),
                static_cast<unsigned long>(sum.unfinished));
    std::fflush(stdout);
  }
  return 0;
}
