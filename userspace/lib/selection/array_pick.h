// array_pick.h - select.h's pick over arrays, step for step what
// bpf/lib/pick.bpf.h does over the kernel maps (sample, view, keep the best;
// scan all slots when no sample was eligible). Used by the simulator and tests.
#pragma once

#include <cstdint>

extern "C" {
#include "select.h"
}

namespace kvlb {

// Returns the chosen slot (0..n-1), or -1 when no backend is eligible. Backend ids
// in the views are slot + 1 (0 is "none").
inline int pick_from_arrays(uint8_t policy, uint8_t choices, const kvlb_score* scores,
                            const kvlb_counters* counters, uint32_t n, const kvlb_select_cfg& cfg,
                            uint64_t now_ns, uint64_t seed) {
  kvlb_pick_state st{};
  kvlb_pick_init(&st, policy, choices, n, seed);
  auto consider = [&](uint32_t i) {
    uint32_t slot = kvlb_pick_slot(&st, i);
    kvlb_view v{};
    v.backend_id = slot + 1;
    kvlb_view_make(&v, &scores[slot], &counters[slot], &cfg, now_ns);
    kvlb_pick_consider(&st, &v);
  };
  for (uint32_t i = 0; i < st.k; ++i) consider(i);
  if (!st.have) {
    kvlb_pick_begin_scan(&st);
    for (uint32_t i = 0; i < st.n; ++i) consider(i);
  }
  return st.have ? static_cast<int>(st.best.backend_id) - 1 : -1;
}

}  // namespace kvlb
