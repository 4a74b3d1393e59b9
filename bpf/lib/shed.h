/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * shed.h - keep-alive rebalancing: is a backend still a good choice for the
 * connections pooled on it? Plain C over the selection's views (select.h), so
 * the agent, the unit tests and the simulator decide alike.
 *
 * A backend is shed - its idle pooled connections are closed, so that the
 * client's next request opens a connection the socket LB places - when it is
 * draining, or when the service's best eligible backend beats it, on the load
 * the service's policy compares, by at least the margin. The margin is in
 * milli-requests: 1000 is one waiting request under p2c-queue-kv.
 */
#ifndef KVLB_SHED_H
#define KVLB_SHED_H

#include "select.h"

/* The load the policy compares, as one number (lower is better):
 *  p2c-queue-kv   waiting x 1000 + KV permille (waiting first, KV breaks ties)
 *  p2c-kv         KV permille x 2 (a full cache weighs two waiting requests)
 *  p2c-score      the weighted score (w_queue = 1000 per waiting request)
 *  least-inflight, or either score stale: in-flight x 1000. */
KVLB_INLINE __u64 kvlb_policy_load(__u8 policy, const struct kvlb_view* v, int on_inflight) {
  if (policy == KVLB_POLICY_LEAST_INFLIGHT || on_inflight) return (__u64)v->inflight * 1000;
  switch (policy) {
    case KVLB_POLICY_P2C_KV:
      return (__u64)v->kv * 2;
    case KVLB_POLICY_P2C_SCORE:
      return v->score;
    case KVLB_POLICY_P2C_QUEUE_KV:
    default:
      return (__u64)v->waiting * 1000 + v->kv;
  }
}

/* enum kvlb_shed_reason for backend b of a service whose best eligible backend
 * is `best` (b itself when it is the best). */
KVLB_INLINE __u32 kvlb_shed_reason(__u8 policy, const struct kvlb_view* b,
                                   const struct kvlb_view* best, __u32 draining,
                                   __u64 margin_milli) {
  int on_inflight;
  __u64 need;
  /* Nowhere better to go: closing would only make the client reconnect to b,
   * or be refused (a draining backend that is the last one standing). */
  if (!best || !best->eligible || best->backend_id == b->backend_id) return KVLB_SHED_NONE;
  if (draining) return KVLB_SHED_DRAINING;
  /* Random balances nothing to re-balance towards; a backend that is down or
   * cooling has its own handling (its connections fail or are refused). */
  if (policy == KVLB_POLICY_RANDOM || !b->eligible || b->cooling) return KVLB_SHED_NONE;
  on_inflight = policy == KVLB_POLICY_LEAST_INFLIGHT || b->stale || best->stale;
  need = margin_milli;
  /* On in-flight counts the move itself changes the loads: b loses the
   * connection and the best gains it (1,000 each). Without this, two backends
   * at 2 and 1 pooled connections would trade one back and forth forever. */
  if (on_inflight) need += 2000;
  if (kvlb_policy_load(policy, b, on_inflight) >=
      kvlb_policy_load(policy, best, on_inflight) + need)
    return KVLB_SHED_POOR_CHOICE;
  return KVLB_SHED_NONE;
}

#endif /* KVLB_SHED_H */
