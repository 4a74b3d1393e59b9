/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * lifecycle.bpf.h - a balanced socket after connect(): it reaches ESTABLISHED
 * (sockops) or goes away (sock_release).
 *
 * Passive health, success side: a connect the LB assigned that reaches
 * ESTABLISHED is marked in the socket table and ends its backend's failure
 * streak. The failure side needs no callback of its own: a socket released (or
 * re-connected) without the mark was a failed connect (refused, unreachable,
 * timed out, or given up by the application). Why not the TCP state callback
 * (SYN_SENT -> CLOSE)? It costs one more program run per connection plus a flags
 * update on connect, on every balanced connection, to learn about failures a few
 * microseconds before close().
 *
 * Release: the backend has one connection fewer in flight; if the connect never
 * reached ESTABLISHED, that was a failed connect; the socket-table entry is
 * freed. Runs for every socket release in the cgroup; sockets without kvlb state
 * return after one lookup.
 */
#ifndef KVLB_LIFECYCLE_BPF_H
#define KVLB_LIFECYCLE_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"
#include "counters.bpf.h"
#include "legacy.bpf.h"
#include "keepalive_maps.bpf.h"

static __always_inline void sock_established(struct bpf_sock_ops* skops) {
  struct kvlb_sock_state* st;
  /* Every TCP socket of the cgroup calls in for several ops per connection
   * (timeout and window init, ECN...): leave at once unless it is the one that
   * matters, before the socket-table lookup. */
  if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) return;
  st = kvlb_sock_state_of(skops);
  if (!st || st->backend_id == KVLB_BACKEND_NONE) return;
  st->flags |= KVLB_SOCK_F_ESTABLISHED;
  kvlb_account_connected(st->backend_id);
}

static __always_inline void sock_released(struct bpf_sock* ctx) {
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct kvlb_sock_state* st = bpf_map_lookup_elem(&kvlb_sock_v2, &cookie);
  if (!st) {
    /* Balanced by a v1 agent: in flight, outcome unknown (no failure counted). */
    st = kvlb_legacy_state(ctx);
    if (st && st->backend_id != KVLB_BACKEND_NONE) {
      kvlb_account_release(st->backend_id);
      st->backend_id = KVLB_BACKEND_NONE;
    }
    return;
  }
  kvlb_account_end(st);
  bpf_map_delete_elem(&kvlb_sock_v2, &cookie);
  /* Unconditionally: entries written while the response-end hook was on must
   * go with their sockets after a reload turned it off. */
  bpf_map_delete_elem(&kvlb_resp_v1, &cookie);
}

#endif /* KVLB_LIFECYCLE_BPF_H */
