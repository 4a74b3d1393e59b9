// SPDX-License-Identifier: GPL-2.0
/*
 * sock_release.bpf.c - cgroup/sock_release: a socket the LB assigned goes away,
 * so its backend has one connection fewer in flight; if its connect never
 * reached ESTABLISHED, that was a failed connect (passive health); and its entry
 * in the socket table is freed. Runs for every socket release in the cgroup;
 * sockets without kvlb state return after one lookup.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.bpf.h"
#include "lib/counters.bpf.h"
#include "lib/legacy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/sock_release")
int kvlb_sock_release(struct bpf_sock* ctx) {
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct kvlb_sock_state* st = bpf_map_lookup_elem(&kvlb_sock_v2, &cookie);
  if (!st) {
    /* Balanced by a v1 agent: in flight, outcome unknown (no failure counted). */
    st = kvlb_legacy_state(ctx);
    if (st && st->backend_id != KVLB_BACKEND_NONE) {
      kvlb_account_release(st->backend_id);
      st->backend_id = KVLB_BACKEND_NONE;
    }
    return 1;
  }
  kvlb_account_end(st);
  bpf_map_delete_elem(&kvlb_sock_v2, &cookie);
  return 1;
}
