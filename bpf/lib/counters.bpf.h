/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* counters.bpf.h - per-backend kernel accounting (picks, in-flight). */
#ifndef KVLB_COUNTERS_BPF_H
#define KVLB_COUNTERS_BPF_H

#include "maps.bpf.h"
#include "config.bpf.h"

static __always_inline void kvlb_account_pick(__u32 backend_id) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  if (!c) return;
  __sync_fetch_and_add(&c->picks, 1);
  __sync_fetch_and_add(&c->inflight, 1);
}

/* A flow counted in flight without a pick: one a peer gateway placed, now
 * carried here (the pick, and its correction, were the peer's). */
static __always_inline void kvlb_account_inflight(__u32 backend_id) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  if (c) __sync_fetch_and_add(&c->inflight, 1);
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

/* Passive health: a connect to the backend reached ESTABLISHED. Only writes
 * when there is a streak to end (no cache-line bouncing on the common path). */
static __always_inline void kvlb_account_connected(__u32 backend_id) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  if (c && c->consecutive_failures) c->consecutive_failures = 0;
}

/* Passive health: a connect to the backend failed (refused, unreachable, timed
 * out, or given up by the application before it completed). Plain store for the
 * time: racing updates only blur which failure was last. */
static __always_inline void kvlb_account_failed(__u32 backend_id) {
  struct kvlb_counters* c = bpf_map_lookup_elem(&kvlb_ctr_v1, &backend_id);
  if (!c) return;
  __sync_fetch_and_add(&c->connect_failures, 1);
  __sync_fetch_and_add(&c->consecutive_failures, 1);
  c->last_failure_ns = bpf_ktime_get_coarse_ns();
}

/* A socket's assignment ends (released, or re-connected elsewhere): one
 * connection fewer in flight, and a failed connect if it never established. */
static __always_inline void kvlb_account_end(const struct kvlb_sock_state* st) {
  if (st->backend_id == KVLB_BACKEND_NONE) return;
  kvlb_account_release(st->backend_id);
  /* With passive health off, sockops is not attached and nothing marks
   * ESTABLISHED: no failure can be told from a success, so none is counted. */
  if (cfg_fail_threshold && !(st->flags & KVLB_SOCK_F_ESTABLISHED))
    kvlb_account_failed(st->backend_id);
}

#endif /* KVLB_COUNTERS_BPF_H */
