// SPDX-License-Identifier: GPL-2.0
/*
 * sockops.bpf.c - passive health, success side: a connect the LB assigned that
 * reaches ESTABLISHED is marked in the socket table and ends its backend's
 * failure streak. The failure side needs no callback of its own: a socket
 * released (or re-connected) without the mark was a failed connect, and
 * sock_release / connect account it (refused, unreachable, timed out, or given
 * up by the application). Selection skips a backend with a streak for a
 * cool-down.
 *
 * Why not the TCP state callback (SYN_SENT -> CLOSE)? It costs one more program
 * run per connection plus a flags update on connect, on every balanced
 * connection, to learn about failures a few microseconds before close().
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.bpf.h"
#include "lib/counters.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("sockops")
int kvlb_sockops(struct bpf_sock_ops* skops) {
  struct kvlb_sock_state* st;

  /* Every TCP socket of the cgroup calls in for several ops per connection
   * (timeout and window init, ECN...): leave at once unless it is the one that
   * matters, before the socket-table lookup. */
  if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) return 1;
  st = kvlb_sock_state_of(skops);
  if (!st || st->backend_id == KVLB_BACKEND_NONE) return 1;
  st->flags |= KVLB_SOCK_F_ESTABLISHED;
  kvlb_account_connected(st->backend_id);
  return 1;
}
