// program_settings.h - what the socket LB's programs are built with at load
// time (their .rodata and the socket table's size). No libbpf here: the agent's
// configuration maps onto it without the kernel (agent/settings.h).
#pragma once

#include <cstdint>

#include "kvlb_maps.h"
#include "selection/select_defaults.h"

namespace kvlb {

// What the programs are built with at load time (their .rodata and the socket
// table's size): a change needs new programs. Compared member by member.
struct ProgramSettings {
  kvlb_select_cfg select = default_select_cfg();
  uint32_t bypass_mark = 0;        // sockets with this SO_MARK are never balanced (0: none)
  uint64_t host_netns_cookie = 0;  // balance only this network namespace (0: all)
  uint32_t max_sockets = KVLB_MAX_SOCKETS;  // entries of the socket table
  bool operator==(const ProgramSettings&) const = default;
};

}  // namespace kvlb
