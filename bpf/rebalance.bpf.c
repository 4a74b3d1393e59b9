// SPDX-License-Identifier: GPL-2.0
/*
 * rebalance.bpf.c - keep-alive rebalancing: a TCP socket iterator the agent
 * reads once per rebalancing round in every network namespace with balanced
 * clients. It closes (bpf_sock_destroy(): the kernel's abort, an RST to the
 * replica and ECONNABORTED to the client) the idle pooled connections to
 * backends the agent marked shed, so that the client's next request opens a
 * new connection, which the socket LB places. Its own object: the kfunc needs
 * Linux 6.5, and the socket LB must load without it.
 *
 *   iter/tcp  kvlb_rebalance   every TCP socket of the namespace, under its
 *                              socket lock (the kernel takes it for sockets
 *                              the program may destroy), so the rule of
 *                              lib/idle.h sees a consistent socket and an
 *                              application's send() waits for the verdict
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/kernel_types.bpf.h"
#include "lib/maps.bpf.h"
#include "lib/keepalive_maps.bpf.h"
#include "lib/idle.h"

char LICENSE[] SEC("license") = "GPL";

#define KVLB_AF_INET_ 2
#define KVLB_AF_INET6_ 10
#define KVLB_TCP_ESTABLISHED_ 1

extern int bpf_sock_destroy(struct sock_common* sk) __ksym;

/* Set by the agent before each run (.bss, through the skeleton). */
__u64 idle_ns = 0; /* a response must have ended this long ago */
__u32 budget = 0;  /* closes left in this round, over every namespace (0: none) */
/* Read by the agent after each run. Power-of-two sizes: an index is masked,
 * which the verifier follows where a compared bound can be lost. */
#define KVLB_RB_SLOTS_ 8
#define KVLB_RB_REASON_SLOTS_ 4
_Static_assert(KVLB_RB_VERDICT_COUNT <= KVLB_RB_SLOTS_, "verdict slots");
_Static_assert(KVLB_SHED_REASON_COUNT <= KVLB_RB_REASON_SLOTS_, "reason slots");
__u64 verdicts[KVLB_RB_SLOTS_];
__u64 closed_by_reason[KVLB_RB_REASON_SLOTS_];

static __always_inline void rebalance_visit(struct sock_common* skc) {
  struct kvlb_sock_snapshot snap = {};
  struct kvlb_sock_state* st;
  struct tcp_sock* tp;
  __u32 *shed, reason, verdict, id;
  __u64 cookie;

  if (skc->skc_state != KVLB_TCP_ESTABLISHED_) return;
  if (skc->skc_family != KVLB_AF_INET_ && skc->skc_family != KVLB_AF_INET6_) return;
  cookie = bpf_get_socket_cookie(skc);
  st = bpf_map_lookup_elem(&kvlb_sock_v2, &cookie);
  if (!st || st->backend_id == KVLB_BACKEND_NONE) return; /* not balanced by kvlb */
  id = st->backend_id;
  shed = bpf_map_lookup_elem(&kvlb_shed_v1, &id);
  reason = shed ? *shed : KVLB_SHED_NONE;
  if (reason == KVLB_SHED_NONE || reason >= KVLB_SHED_REASON_COUNT) {
    verdicts[KVLB_RB_BACKEND_OK] += 1;
    return;
  }
  tp = bpf_skc_to_tcp_sock(skc);
  if (!tp) return;
  snap.write_seq = tp->write_seq;
  snap.snd_nxt = tp->snd_nxt;
  snap.snd_una = tp->snd_una;
  snap.rcv_nxt = tp->rcv_nxt;
  snap.copied_seq = tp->copied_seq;
  snap.now_ns = bpf_ktime_get_ns();
  snap.end = bpf_map_lookup_elem(&kvlb_resp_v1, &cookie);
  verdict = kvlb_idle_verdict(&snap, idle_ns);
  if (verdict == KVLB_RB_CLOSED) {
    if (budget == 0) {
      verdict = KVLB_RB_BUDGET;
    } else if (bpf_sock_destroy(skc)) {
      verdict = KVLB_RB_DESTROY_FAILED;
    } else {
      budget -= 1;
      /* The barrier keeps the mask: the compiler knows reason < 3 and would
       * drop it, and the verifier has lost that bound by here. */
      barrier_var(reason);
      closed_by_reason[reason & (KVLB_RB_REASON_SLOTS_ - 1)] += 1;
    }
  }
  barrier_var(verdict);
  verdicts[verdict & (KVLB_RB_SLOTS_ - 1)] += 1;
}

SEC("iter/tcp")
int kvlb_rebalance(struct bpf_iter__tcp* ctx) {
  struct sock_common* skc = ctx->sk_common;
  if (skc) rebalance_visit(skc);
  return 0;
}
