// SPDX-License-Identifier: GPL-2.0
/*
 * connect4.bpf.c - cgroup/connect4: the socket load balancer for IPv4 TCP.
 *
 * A connect() to a configured VIP:port is rewritten to the backend chosen by the
 * service's policy, once per connection, before any packet leaves: no NAT, no
 * proxy hop. Any other destination is left untouched.
 */
#include "lib/sock_lb.bpf.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline int sock4_xlate(struct bpf_sock_addr* ctx) {
  struct kvlb_service_key key = {};
  struct kvlb_backend* be;
  int err;

  if (sock_lb_bypass(ctx)) return 0;
  key.vip.words[0] = ctx->user_ip4;
  key.port = (__u16)ctx->user_port;
  key.proto = IPPROTO_TCP;
  key.family = KVLB_AF_INET;
  err = sock_lb_select(ctx, &key, &be);
  if (err || !be) return err;
  ctx->user_ip4 = be->addr.words[0];
  ctx->user_port = be->port;
  return 0;
}

SEC("cgroup/connect4")
int kvlb_connect4(struct bpf_sock_addr* ctx) {
  return sock_lb_verdict(sock4_xlate(ctx));
}
