// SPDX-License-Identifier: GPL-2.0
/*
 * sock_release.bpf.c - cgroup/sock_release: a socket the LB assigned goes away,
 * so its backend has one connection fewer in flight. Runs for every socket
 * release in the cgroup; sockets without kvlb state return at once.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.bpf.h"
#include "lib/counters.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/sock_release")
int kvlb_sock_release(struct bpf_sock* ctx) {
  struct kvlb_sock_state* st = bpf_sk_storage_get(&kvlb_sock_v1, ctx, 0, 0);
  if (st && st->backend_id != KVLB_BACKEND_NONE) {
    kvlb_account_release(st->backend_id);
    st->backend_id = KVLB_BACKEND_NONE;
  }
  return 1;
}
