/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * pick.bpf.h - turns a service into one backend: samples the policy's candidate
 * slots, builds their views from the score and counter maps, and keeps the best
 * with the plain-C comparison of select.h.
 */
#ifndef KVLB_PICK_BPF_H
#define KVLB_PICK_BPF_H

#include "maps.bpf.h"
#include "config.bpf.h"
#include "select.h"

static __always_inline void kvlb_cfg_load(struct kvlb_select_cfg* cfg) {
  cfg->stale_ns = cfg_stale_ns;
  cfg->kv_permille_per_pick = cfg_kv_permille_per_pick;
  cfg->kv_full_permille = cfg_kv_full_permille;
  cfg->w_queue = cfg_w_queue;
  cfg->w_kv = cfg_w_kv;
  cfg->w_inflight = cfg_w_inflight;
  cfg->fail_threshold = cfg_fail_threshold;
  cfg->fail_cooldown_ns = cfg_fail_cooldown_ns;
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

/* State carried through the bpf_loop() iterations of one pick. */
struct kvlb_pick_ctx {
  struct kvlb_pick_state st;
  struct kvlb_select_cfg cfg;
  __u64 now;
  const struct kvlb_service* svc; /* map value: valid for the whole program run */
};

/* One candidate. Runs as a bpf_loop() callback, so the verifier checks this body
 * once instead of once per iteration: a 256-slot scan with the policy's
 * branches inside would otherwise exceed its complexity limit. */
static long kvlb_pick_step(__u32 i, void* data) {
  struct kvlb_pick_ctx* p = data;
  struct kvlb_view cur;
  const struct kvlb_service* svc = p->svc;
  if (!svc) return 1;
  kvlb_view_slot(&cur, svc, kvlb_pick_slot(&p->st, i), &p->cfg, p->now);
  kvlb_pick_consider(&p->st, &cur);
  return 0;
}

/* Returns the chosen backend id, or KVLB_BACKEND_NONE when no backend of the
 * service is eligible. */
static __always_inline __u32 kvlb_pick(const struct kvlb_service* svc) {
  struct kvlb_pick_ctx p = {};

  if (svc->backend_count == 0) return KVLB_BACKEND_NONE;
  kvlb_cfg_load(&p.cfg);
  /* Staleness bounds and cool-downs are tens of ms and up: the coarse clock
   * (a tick's resolution) is enough and does not read the clock source. */
  p.now = bpf_ktime_get_coarse_ns();
  p.svc = svc;
  /* One random draw seeds the pick's generator: a pick uses a handful of its
   * outputs, so 32 bits of entropy per connection are plenty. */
  kvlb_pick_init(&p.st, svc->policy, svc->choices, svc->backend_count,
                 (__u64)bpf_get_prandom_u32() * 0x9E3779B97F4A7C15ull);

  bpf_loop(p.st.k, kvlb_pick_step, &p, 0);
  if (!p.st.have) {
    kvlb_pick_begin_scan(&p.st);
    bpf_loop(p.st.n, kvlb_pick_step, &p, 0);
  }
  return p.st.have ? p.st.best.backend_id : KVLB_BACKEND_NONE;
}

#endif /* KVLB_PICK_BPF_H */
