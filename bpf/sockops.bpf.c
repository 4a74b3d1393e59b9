// SPDX-License-Identifier: GPL-2.0
/*
 * sockops.bpf.c - passive health from the TCP state machine. For sockets the LB
 * assigned, a connect that reaches ESTABLISHED clears its backend's failure
 * streak; one that goes from SYN_SENT straight to CLOSE (refused, unreachable,
 * timed out) extends it, and selection then skips the backend for a cool-down.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.bpf.h"
#include "lib/counters.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("sockops")
int kvlb_sockops(struct bpf_sock_ops* skops) {
  struct kvlb_sock_state* st;
  struct bpf_sock* sk = skops->sk;

  /* Every socket of the cgroup calls in for several ops per connection (timeout
   * and window init, ECN, RTT...): leave at once unless the op matters here,
   * before the socket-storage lookup. */
  if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB && skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
      skops->op != BPF_SOCK_OPS_STATE_CB)
    return 1;
  if (!sk) return 1;
  st = bpf_sk_storage_get(&kvlb_sock_v1, sk, 0, 0);
  if (!st || st->backend_id == KVLB_BACKEND_NONE) return 1;

  switch (skops->op) {
    case BPF_SOCK_OPS_TCP_CONNECT_CB:
      /* State callbacks cost a call per transition: ask only for LB sockets. */
      bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
      break;
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
      kvlb_account_connect(st->backend_id, 1, bpf_ktime_get_ns());
      bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_STATE_CB_FLAG);
      break;
    case BPF_SOCK_OPS_STATE_CB:
      if (skops->args[0] == BPF_TCP_SYN_SENT && skops->args[1] == BPF_TCP_CLOSE)
        kvlb_account_connect(st->backend_id, 0, bpf_ktime_get_ns());
      break;
  }
  return 1;
}
