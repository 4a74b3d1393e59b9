// SPDX-License-Identifier: GPL-2.0
/*
 * connect6.bpf.c - cgroup/connect6: the socket load balancer for IPv6 TCP, and
 * for IPv4 VIPs dialled from AF_INET6 sockets as IPv4-mapped addresses
 * (::ffff:a.b.c.d), which dual-stack clients do.
 */
#include "lib/sock_lb.bpf.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline int sock6_xlate(struct bpf_sock_addr* ctx) {
  struct kvlb_service_key key = {};
  struct kvlb_backend* be;
  __u32 ip6[4];
  int err;

  if (sock_lb_bypass(ctx)) return 0;
  ip6[0] = ctx->user_ip6[0];
  ip6[1] = ctx->user_ip6[1];
  ip6[2] = ctx->user_ip6[2];
  ip6[3] = ctx->user_ip6[3];
  key.port = (__u16)ctx->user_port;
  key.proto = IPPROTO_TCP;
  if (sock_lb_v4mapped(ip6)) {
    key.vip.words[0] = ip6[3];
    key.family = KVLB_AF_INET;
  } else {
    key.vip.words[0] = ip6[0];
    key.vip.words[1] = ip6[1];
    key.vip.words[2] = ip6[2];
    key.vip.words[3] = ip6[3];
    key.family = KVLB_AF_INET6;
  }
  err = sock_lb_select(ctx, &key, &be);
  if (err || !be) return err;
  if (key.family == KVLB_AF_INET) {
    ctx->user_ip6[3] = be->addr.words[0]; /* stays ::ffff:backend */
  } else {
    ctx->user_ip6[0] = be->addr.words[0];
    ctx->user_ip6[1] = be->addr.words[1];
    ctx->user_ip6[2] = be->addr.words[2];
    ctx->user_ip6[3] = be->addr.words[3];
  }
  ctx->user_port = be->port;
  return 0;
}

SEC("cgroup/connect6")
int kvlb_connect6(struct bpf_sock_addr* ctx) {
  return sock_lb_verdict(sock6_xlate(ctx));
}
