// select_defaults.h - default tunables of the selection (see bpf/lib/select.h),
// shared by the agent (written to the programs' .rodata) and the simulator.
#pragma once

extern "C" {
#include "select.h"
}

namespace kvlb {

inline kvlb_select_cfg default_select_cfg() {
  kvlb_select_cfg c{};
  c.stale_ns = 2'000'000'000ull;  // 2 s
  c.kv_permille_per_pick = 15;    // ~ a 540-token prompt in 2,200 blocks of 16
  c.kv_full_permille = 950;
  c.w_queue = 1000;
  c.w_kv = 1;
  c.w_inflight = 100;
  c.fail_threshold = 1;                   // the first refused connect...
  c.fail_cooldown_ns = 5'000'000'000ull;  // ...benches a backend for 5 s
  return c;
}

}  // namespace kvlb
