// SPDX-License-Identifier: GPL-2.0
/*
 * connect4.bpf.c - cgroup/connect4: the socket load balancer for IPv4 TCP.
 *
 * A connect() to a configured VIP:port is rewritten to the backend chosen by the
 * service's policy, once per connection, before any packet leaves: no NAT, no
 * proxy hop. Any other destination is left untouched. The choice is remembered
 * in socket-local storage for getpeername4 and sock_release.
 */
#include <linux/bpf.h>
#include <linux/in.h>
/* sys/socket.h does not build for the BPF target; the one constant we need: */
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#include <bpf/bpf_helpers.h>
#include "lib/maps.bpf.h"
#include "lib/counters.bpf.h"
#include "lib/pick.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Socket-LB internals return 0 or a negative errno; the entry point turns that
 * into the hook's verdict. */
static __always_inline int sock4_xlate(struct bpf_sock_addr* ctx) {
  struct kvlb_service_key key = {};
  struct kvlb_service* svc;
  struct kvlb_backend* be;
  struct kvlb_sock_state* st;
  __u32 id;

  if (ctx->type != SOCK_STREAM) return 0;
  if (ctx->protocol != IPPROTO_TCP && ctx->protocol != 0) return 0;

  key.vip.words[0] = ctx->user_ip4;
  key.port = (__u16)ctx->user_port;
  key.proto = IPPROTO_TCP;
  key.family = KVLB_AF_INET;
  svc = bpf_map_lookup_elem(&kvlb_svc_v1, &key);
  if (!svc) return 0; /* not a VIP: leave the connect alone */

  id = kvlb_pick(svc);
  if (id == KVLB_BACKEND_NONE) return -(int)cfg_no_backend_errno;
  be = bpf_map_lookup_elem(&kvlb_be_v1, &id);
  if (!be || be->family != KVLB_AF_INET) return -(int)cfg_no_backend_errno;

  st = bpf_sk_storage_get(&kvlb_sock_v1, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (st) {
    /* A second connect() on the same socket (after a failed attempt) moves the
     * in-flight count instead of counting the socket twice. */
    if (st->backend_id != KVLB_BACKEND_NONE) kvlb_account_release(st->backend_id);
    st->vip = key.vip;
    st->vip_port = key.port;
    st->family = KVLB_AF_INET;
    st->backend_id = id;
  }
  kvlb_account_pick(id);

  ctx->user_ip4 = be->addr.words[0];
  ctx->user_port = be->port;
  return 0;
}

SEC("cgroup/connect4")
int kvlb_connect4(struct bpf_sock_addr* ctx) {
  int err = sock4_xlate(ctx);
  if (err < 0) {
    bpf_set_retval(err);
    return 0; /* reject: connect() fails with the errno set above */
  }
  return 1;
}
