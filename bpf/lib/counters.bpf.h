/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* counters.bpf.h - per-backend kernel accounting (picks, in-flight). */
#ifndef KVLB_COUNTERS_BPF_H
#define KVLB_COUNTERS_BPF_H

#include "maps.bpf.h"

static __always_inline void kvlb_account_pick(__u32 backend_id) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  if (!c) return;
  __sync_fetch_and_add(&c->picks, 1);
  __sync_fetch_and_add(&c->inflight, 1);
}

/* Never lets in-flight go below zero: a release can outlive the counter it was
 * counted in (a map migrated while the socket lived), and a negative count
 * would make that backend look better than idle forever. */
static __always_inline void kvlb_account_release(__u32 backend_id) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  __s64 old;
  if (!c) return;
  old = __sync_fetch_and_add(&c->inflight, -1);
  if (old <= 0) __sync_fetch_and_add(&c->inflight, 1);
}

/* Passive health: the outcome of a connect to the backend. Plain stores for the
 * streak and time are fine: racing updates only blur which failure was last. */
static __always_inline void kvlb_account_connect(__u32 backend_id, int ok, __u64 now) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  if (!c) return;
  if (ok) {
    if (c->consecutive_failures) c->consecutive_failures = 0;
    return;
  }
  __sync_fetch_and_add(&c->connect_failures, 1);
  __sync_fetch_and_add(&c->consecutive_failures, 1);
  c->last_failure_ns = now;
}

#endif /* KVLB_COUNTERS_BPF_H */
