// program_settings.h - what the socket LB's programs are built with at load
// time (their .rodata and the socket table's size). No libbpf here: the agent's
// configuration maps onto it without the kernel (agent/settings.h).
#pragma once

#include <array>
#include <cstdint>

#include "kvlb_maps.h"
#include "selection/select_defaults.h"

namespace kvlb {

// The XDP gateway's load-time constants (bpf/lib/gw_config.bpf.h) and its flow
// table's size. Addresses in network byte order; all zero: that family is not
// translated.
struct GatewaySettings {
  uint32_t snat4 = 0;
  std::array<uint32_t, 4> snat6{};
  uint16_t snat_port_lo = 10000;
  uint16_t snat_port_hi = 29999;
  uint32_t max_flows = KVLB_GW_DEFAULT_FLOWS;  // flows (the table holds two entries each)
  uint64_t idle_ns = 600ull * 1'000'000'000;
  uint64_t closing_ns = 120ull * 1'000'000'000;
  // Flow sync (gateway.sync_group): each open flow announced again every this
  // many sweeps; 0: no flow events at all.
  uint32_t sync_refresh_sweeps = 0;
  bool operator==(const GatewaySettings&) const = default;
};

// What the programs are built with at load time (their .rodata and the socket
// table's size): a change needs new programs. Compared member by member.
struct ProgramSettings {
  kvlb_select_cfg select = default_select_cfg();
  uint32_t bypass_mark = 0;        // sockets with this SO_MARK are never balanced (0: none)
  uint64_t host_netns_cookie = 0;  // balance only this network namespace (0: all)
  uint32_t max_sockets = KVLB_MAX_SOCKETS;  // entries of the socket table
  // The response-end hook (keep-alive rebalancing on for some service).
  bool response_ends = false;
  GatewaySettings gateway;  // used by the gateway's programs only
  bool operator==(const ProgramSettings&) const = default;
};

}  // namespace kvlb
