/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * peer.bpf.h - getpeername(): applications that connected to a VIP see the VIP
 * as their peer, not the backend the socket LB chose (TLS SNI checks, logs and
 * protocols that echo the peer address stay correct).
 */
#ifndef KVLB_PEER_BPF_H
#define KVLB_PEER_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"
#include "legacy.bpf.h"

/* The socket's kvlb state: the socket table's, or a v1 agent's socket storage. */
static __always_inline struct kvlb_sock_state* peer_state(struct bpf_sock_addr* ctx) {
  struct kvlb_sock_state* st = kvlb_sock_state_of(ctx);
  if (!st) st = kvlb_legacy_state(ctx->sk); /* balanced by a v1 agent */
  if (!st || st->backend_id == KVLB_BACKEND_NONE) return 0;
  return st;
}

static __always_inline void peer4_report_vip(struct bpf_sock_addr* ctx) {
  struct kvlb_sock_state* st = peer_state(ctx);
  if (!st || st->family != KVLB_AF_INET) return;
  ctx->user_ip4 = st->vip.words[0];
  ctx->user_port = st->vip_port;
}

/* AF_INET6 sockets: IPv6 VIPs, or IPv4 VIPs as ::ffff:a.b.c.d. */
static __always_inline void peer6_report_vip(struct bpf_sock_addr* ctx) {
  struct kvlb_sock_state* st = peer_state(ctx);
  if (!st) return;
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
}

#endif /* KVLB_PEER_BPF_H */
