// SPDX-License-Identifier: GPL-2.0
/*
 * getpeername4.bpf.c - cgroup/getpeername4: applications that connected to a VIP
 * see the VIP as their peer, not the backend the socket LB chose (TLS SNI checks,
 * logs and protocols that echo the peer address stay correct).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.bpf.h"
#include "lib/legacy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/getpeername4")
int kvlb_getpeername4(struct bpf_sock_addr* ctx) {
  struct kvlb_sock_state* st = kvlb_sock_state_of(ctx);
  if (!st) st = kvlb_legacy_state(ctx->sk); /* balanced by a v1 agent */
  if (st && st->family == KVLB_AF_INET && st->backend_id != KVLB_BACKEND_NONE) {
    ctx->user_ip4 = st->vip.words[0];
    ctx->user_port = st->vip_port;
  }
  return 1;
}
