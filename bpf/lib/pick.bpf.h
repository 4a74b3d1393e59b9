/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * pick.bpf.h - turns a service into one backend: samples the policy's candidate
 * slots, builds their views from the score and counter maps, and keeps the best
 * with the plain-C comparison of select.h.
 *
 * Verifier cost. The candidate loop runs in bpf_loop(). Since Linux 6.7 (and
 * 6.6.y) the verifier does not check a bpf_loop() callback once: it walks it
 * again and again until the state at the call is contained in one it has seen
 * (registers and stack, value ranges compared, not only types). Kept on the
 * program's stack, the best candidate's view and the pick's counters take a new
 * constant or range on almost every path (cooling 0 or 1, ties 1, 2, 3...), so
 * that state never converged and connect4 hit the 1M-instruction limit.
 *
 * Here the pick's state lives in memory the verifier does not track by value:
 * the program hands its stack copy to a global function (kvlb_pick_run), which
 * the verifier checks once, on its own, with its pointer arguments as opaque
 * memory. Inside, the loop context holds only pointers, so the state at the
 * bpf_loop() call is the same after every iteration and the walk converges on
 * the second pass. What select.h decides is unchanged: only where the state is
 * kept differs.
 */
#ifndef KVLB_PICK_BPF_H
#define KVLB_PICK_BPF_H

#include "maps.bpf.h"
#include "config.bpf.h"
#include "select.h"

/* Everything one pick reads and writes, scalars only (a global function's
 * memory argument may not hold pointers). */
struct kvlb_pick_run_ctx {
  struct kvlb_pick_state st;
  struct kvlb_select_cfg cfg;
  __u64 now;
};

/* The bpf_loop() context: pointers only, identical on every iteration. */
struct kvlb_pick_loop {
  struct kvlb_pick_run_ctx* p;
  const struct kvlb_service* svc;
};

static __always_inline void kvlb_cfg_load(struct kvlb_select_cfg* cfg) {
#define KVLB_CFG_LOAD_(type, field, def) cfg->field = cfg_##field;
  KVLB_SELECT_TUNABLES(KVLB_CFG_LOAD_)
#undef KVLB_CFG_LOAD_
}

/* View of the backend in slot `slot` of service `svc`. */
static __always_inline void kvlb_view_slot(struct kvlb_view* v, const struct kvlb_service* svc,
                                           __u32 slot, const struct kvlb_select_cfg* cfg,
                                           __u64 now) {
  __u32 id = svc->slots[slot & (KVLB_MAX_SLOTS - 1)];
  struct kvlb_score* sc = 0;
  struct kvlb_counters* c = 0;
  if (id != KVLB_BACKEND_NONE) {
    sc = bpf_map_lookup_elem(&kvlb_score_v1, &id);
    c = bpf_map_lookup_elem(&kvlb_ctr_v1, &id);
  }
  v->backend_id = id;
  kvlb_view_make(v, sc, c, cfg, now);
}

/* Candidate `i`: its view, compared with the best so far. A global function
 * too, verified once on its own: in the bpf_loop() callback itself, every path
 * through the view and the comparison (staleness, state, cool-down, the
 * policy's order) was walked again on each pass of the callback's
 * re-verification, with the booleans each path left behind keeping the states
 * apart. That was 6.4k instructions for connect4 on one build of 6.18.44 and
 * 38.4k on a later build of the same version (more precision marks, less
 * pruning); here the callback is a call and the walk happens once. */
__attribute__((noinline)) int kvlb_pick_candidate(struct kvlb_pick_run_ctx* p,
                                                  const struct kvlb_service* svc, __u32 i) {
  struct kvlb_view cur;
  if (!p || !svc) return 0;
  kvlb_view_slot(&cur, svc, kvlb_pick_slot(&p->st, i), &p->cfg, p->now);
  kvlb_pick_consider(&p->st, &cur);
  return 0;
}

/* One candidate (a bpf_loop() callback). */
static long kvlb_pick_step(__u32 i, void* data) {
  struct kvlb_pick_loop* l = data;
  if (!l->p || !l->svc) return 1;
  kvlb_pick_candidate(l->p, l->svc, i);
  return 0;
}

/* The sampled candidates, then every slot if none of them was eligible. A
 * global function (not static, not inlined): verified once, independently of
 * its callers, with `p` and `svc` as memory of their types' sizes. Returns the
 * chosen backend id or KVLB_BACKEND_NONE. */
__attribute__((noinline)) int kvlb_pick_run(struct kvlb_pick_run_ctx* p,
                                            const struct kvlb_service* svc) {
  struct kvlb_pick_loop l;
  if (!p || !svc) return KVLB_BACKEND_NONE;
  l.p = p;
  l.svc = svc;
  bpf_loop(p->st.k, kvlb_pick_step, &l, 0);
  if (!p->st.have) {
    kvlb_pick_begin_scan(&p->st);
    bpf_loop(p->st.n, kvlb_pick_step, &l, 0);
  }
  return p->st.have ? (int)p->st.best.backend_id : (int)KVLB_BACKEND_NONE;
}

/* The pick with its state in `p` (zeroed by the caller): the program's stack
 * (kvlb_pick) or, where the stack is short, per-CPU scratch memory (the XDP
 * gateway). Returns the chosen backend id, or KVLB_BACKEND_NONE when no backend
 * of the service is eligible. */
static __always_inline __u32 kvlb_pick_in(struct kvlb_pick_run_ctx* p,
                                          const struct kvlb_service* svc) {
  if (svc->backend_count == 0) return KVLB_BACKEND_NONE;
  kvlb_cfg_load(&p->cfg);
  /* Staleness bounds and cool-downs are tens of ms and up: the coarse clock
   * (a tick's resolution) is enough and does not read the clock source. */
  p->now = bpf_ktime_get_coarse_ns();
  /* One random draw seeds the pick's generator: a pick uses a handful of its
   * outputs, so 32 bits of entropy per connection are plenty. */
  kvlb_pick_init(&p->st, svc->policy, svc->choices, svc->backend_count,
                 (__u64)bpf_get_prandom_u32() * 0x9E3779B97F4A7C15ull);
  return (__u32)kvlb_pick_run(p, svc);
}

static __always_inline __u32 kvlb_pick(const struct kvlb_service* svc) {
  struct kvlb_pick_run_ctx p = {};
  return kvlb_pick_in(&p, svc);
}

#endif /* KVLB_PICK_BPF_H */
