// SPDX-License-Identifier: GPL-2.0
/*
 * getpeername6.bpf.c - cgroup/getpeername6: AF_INET6 sockets that connected to a
 * VIP (IPv6, or IPv4 as ::ffff:a.b.c.d) see the VIP as their peer.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/maps.bpf.h"
#include "lib/legacy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/getpeername6")
int kvlb_getpeername6(struct bpf_sock_addr* ctx) {
  struct kvlb_sock_state* st = kvlb_sock_state_of(ctx);
  if (!st) st = kvlb_legacy_state(ctx->sk); /* balanced by a v1 agent */
  if (!st || st->backend_id == KVLB_BACKEND_NONE) return 1;
  if (st->family == KVLB_AF_INET) {
    ctx->user_ip6[0] = 0;
    ctx->user_ip6[1] = 0;
    ctx->user_ip6[2] = bpf_htonl(0xffff);
    ctx->user_ip6[3] = st->vip.words[0];
  } else {
    ctx->user_ip6[0] = st->vip.words[0];
    ctx->user_ip6[1] = st->vip.words[1];
    ctx->user_ip6[2] = st->vip.words[2];
    ctx->user_ip6[3] = st->vip.words[3];
  }
  ctx->user_port = st->vip_port;
  return 1;
}
