/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * sock_lb.bpf.h - the socket load balancer's core, shared by the connect4 and
 * connect6 hooks: internals return 0 or a negative errno, and the one-line entry
 * points of each hook turn that into the verdict.
 */
#ifndef KVLB_SOCK_LB_BPF_H
#define KVLB_SOCK_LB_BPF_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"
#include "counters.bpf.h"
#include "pick.bpf.h"

/* sys/socket.h does not build for the BPF target; the one constant we need: */
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef EEXIST
#define EEXIST 17
#endif

/* Connections the socket LB must leave alone: not TCP; marked by the agent (its
 * own scrapes); or, with the host-only option, from another network namespace. */
static __always_inline int sock_lb_bypass(struct bpf_sock_addr* ctx) {
  struct bpf_sock* sk;
  if (ctx->type != SOCK_STREAM) return 1;
  if (ctx->protocol != IPPROTO_TCP && ctx->protocol != 0) return 1;
  if (cfg_bypass_mark) {
    sk = ctx->sk;
    if (sk && sk->mark == cfg_bypass_mark) return 1;
  }
  if (cfg_host_netns_cookie && bpf_get_netns_cookie(ctx) != cfg_host_netns_cookie) return 1;
  return 0;
}

/* Records the choice for the socket (for getpeername, sockops and release) and
 * counts the pick. One hash update on the common path; a second connect() on
 * the same socket (after a failed attempt) finds its entry and moves the
 * in-flight count instead of counting the socket twice. With the table full,
 * the connection is still balanced but neither counted nor recorded: a count
 * that no release would ever take back would skew selection for good. */
static __always_inline void sock_lb_record(void* ctx, const struct kvlb_service_key* key,
                                           __u32 id) {
  struct kvlb_sock_state st = {};
  struct kvlb_sock_state* old;
  __u64 cookie = bpf_get_socket_cookie(ctx);
  long err;

  st.vip = key->vip;
  st.vip_port = key->port;
  st.family = key->family;
  st.backend_id = id;
  err = bpf_map_update_elem(&kvlb_sock_v2, &cookie, &st, BPF_NOEXIST);
  if (err == -EEXIST) {
    old = bpf_map_lookup_elem(&kvlb_sock_v2, &cookie);
    if (!old) return;
    kvlb_account_end(old);
    *old = st;
  } else if (err) {
    kvlb_event(KVLB_EVENT_SOCKET_TABLE_FULL);
    return;
  }
  kvlb_account_pick(id);
}

/*
 * Picks a backend for a connect() to `key`. Returns 0 with *out = NULL when the
 * destination is not a VIP, 0 with *out set to the backend, or -errno when the
 * VIP has no eligible backend.
 */
static __always_inline int sock_lb_select(struct bpf_sock_addr* ctx,
                                          const struct kvlb_service_key* key,
                                          struct kvlb_backend** out) {
  struct kvlb_service* svc;
  struct kvlb_backend* be;
  __u32 id;

  *out = 0;
  svc = bpf_map_lookup_elem(&kvlb_svc_v2, key);
  if (!svc) return 0;
  id = kvlb_pick(svc);
  if (id == KVLB_BACKEND_NONE) goto none;
  be = bpf_map_lookup_elem(&kvlb_be_v1, &id);
  if (!be || be->family != key->family) goto none;
  sock_lb_record(ctx, key, id);
  *out = be;
  return 0;
none:
  kvlb_event(KVLB_EVENT_NO_BACKEND);
  return -(int)cfg_no_backend_errno;
}

/* The verdict of a connect hook for an internal result. */
static __always_inline int sock_lb_verdict(int err) {
  if (err < 0) {
    bpf_set_retval(err);
    return 0; /* reject: connect() fails with the errno set above */
  }
  return 1;
}

/* IPv4-mapped IPv6 address (::ffff:a.b.c.d): an AF_INET6 socket dialling IPv4. */
static __always_inline int sock_lb_v4mapped(const __u32* ip6) {
  return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff);
}

/* connect4: a connect() to a configured VIP:port is rewritten to the backend
 * chosen by the service's policy, once per connection, before any packet leaves:
 * no NAT, no proxy hop. Any other destination is left untouched. */
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

/* connect6: IPv6 VIPs, and IPv4 VIPs dialled from AF_INET6 sockets as
 * IPv4-mapped addresses (::ffff:a.b.c.d), which dual-stack clients do. */
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

#endif /* KVLB_SOCK_LB_BPF_H */
