/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * gateway.bpf.h - the XDP gateway: L4 balancing with source NAT for traffic
 * that enters a host, with the socket LB's services, scores and selection.
 *
 *   client C:cp -> VIP:vp          rewritten to   S:sp -> B:bp   (forward)
 *   backend B:bp -> S:sp           rewritten to   VIP:vp -> C:cp (reverse)
 *
 * S is the gateway's SNAT address, sp a port of its SNAT range. One flow is
 * two entries of the flow table, one per direction, each holding the tuple its
 * packets are rewritten to; so an established packet of either direction costs
 * one lookup. A SYN to a service gets a backend from the service's policy
 * (pick.bpf.h, the socket LB's code) and counts in that backend's picks and
 * in-flight; a FIN or RST releases the in-flight count once; the sweep program
 * removes closed and idle flows. A non-SYN packet with no entry (the table
 * lost it: LRU eviction, another gateway's flow) is placed by the service's
 * Maglev table, and translated to the SNAT port the flow's first probe gives,
 * which is a function of the client's tuple only (flow_hash.h).
 *
 * Internals return an XDP verdict; the stat named with it is counted by the
 * entry point.
 */
#ifndef KVLB_GATEWAY_BPF_H
#define KVLB_GATEWAY_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "counters.bpf.h"
#include "csum.h"
#include "flow_hash.h"
#include "gw_config.bpf.h"
#include "gw_maps.bpf.h"
#include "parse.bpf.h"
#include "pick.bpf.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef EEXIST
#define EEXIST 17
#endif

struct bpf_map; /* the for_each callback's first argument, opaque here */

#define KVLB_NS_PER_S 1000000000ull

static __always_inline void gw_count(__u32 stat) {
  __u32 zero = 0;
  struct kvlb_gw_stats* s = bpf_map_lookup_elem(&kvlb_gwstat_v1, &zero);
  if (!s) return;
  s->n[KVLB_GW_PACKETS] += 1;
  if (stat < KVLB_GW_STAT_COUNT) s->n[stat] += 1;
}

static __always_inline void gw_count_only(__u32 stat) {
  __u32 zero = 0;
  struct kvlb_gw_stats* s = bpf_map_lookup_elem(&kvlb_gwstat_v1, &zero);
  if (s && stat < KVLB_GW_STAT_COUNT) s->n[stat] += 1;
}

/* The key of the other direction's entry: the rewritten tuple, reversed. */
static __always_inline void gw_partner_key(struct kvlb_flow_key* out, const struct kvlb_flow* f,
                                           __u8 family) {
  out->src = f->dst;
  out->dst = f->src;
  out->sport = f->dport;
  out->dport = f->sport;
  out->family = family;
  out->proto = IPPROTO_TCP;
  out->pad = 0; /* keys are compared byte for byte */
}

/* Flow sync (cfg_sync_refresh_sweeps set): the client-side entry `f` of key
 * `k`, a flow placed here, into the flow-event ring for the agent to share
 * with peer gateways. */
static __always_inline void gw_emit(__u8 kind, const struct kvlb_flow_key* k,
                                    const struct kvlb_flow* f) {
  struct kvlb_flow_event* e;
  if (!cfg_sync_refresh_sweeps) return;
  e = bpf_ringbuf_reserve(&kvlb_flowev_v1, sizeof(*e), 0);
  if (!e) {
    gw_count_only(KVLB_GW_SYNC_LOST);
    return;
  }
  e->key = *k;
  e->snat = f->src;
  e->backend = f->dst;
  e->snat_port = f->sport;
  e->backend_port = f->dport;
  e->kind = kind;
  e->pad[0] = e->pad[1] = e->pad[2] = 0;
  bpf_ringbuf_submit(e, 0);
}

/* The client's side of a flow ends: its in-flight count is released exactly
 * once, however many FINs, RSTs and sweeps race for it, and peers are told.
 * A peer's flow this gateway never carried (SYNCED) was not counted here, and
 * its end is the peer's to tell. */
static __always_inline void gw_close_forward(const struct kvlb_flow_key* k, struct kvlb_flow* f) {
  __u64 old = __sync_fetch_and_or(&f->flags, KVLB_FLOW_F_CLOSING);
  if (old & (KVLB_FLOW_F_CLOSING | KVLB_FLOW_F_SYNCED)) return;
  kvlb_account_release(f->backend_id);
  gw_count_only(KVLB_GW_CLOSED);
  gw_emit(KVLB_FLOW_EV_CLOSE, k, f);
}

static __always_inline void gw_close(const struct kvlb_flow_key* k, struct kvlb_flow* f) {
  struct kvlb_flow_key pk;
  struct kvlb_flow* fwd;
  if (!(f->flags & KVLB_FLOW_F_REVERSE)) {
    gw_close_forward(k, f);
    return;
  }
  f->flags |= KVLB_FLOW_F_CLOSING;
  gw_partner_key(&pk, f, k->family);
  fwd = bpf_map_lookup_elem(&kvlb_flow_v1, &pk);
  if (fwd) gw_close_forward(&pk, fwd);
}

/* The first packet here of a flow a peer gateway placed (an ECMP change in
 * front of the gateways, a failover): this gateway carries it from now on, so
 * it counts in flight here, once, unless it is closed already. */
static __always_inline void gw_take_over(struct kvlb_flow* f) {
  __u64 old = __sync_fetch_and_and(&f->flags, ~(__u64)KVLB_FLOW_F_SYNCED);
  if (!(old & KVLB_FLOW_F_SYNCED)) return;
  gw_count_only(KVLB_GW_TAKEN_OVER);
  if (!(old & (KVLB_FLOW_F_REVERSE | KVLB_FLOW_F_CLOSING))) kvlb_account_inflight(f->backend_id);
}

static __always_inline int gw_snat_addr(struct kvlb_addr* out, __u8 family) {
  if (family == KVLB_AF_INET) {
    if (!cfg_snat4) return -1;
    out->words[0] = cfg_snat4;
    out->words[1] = out->words[2] = out->words[3] = 0;
    return 0;
  }
  if (!(cfg_snat6[0] | cfg_snat6[1] | cfg_snat6[2] | cfg_snat6[3])) return -1;
  out->words[0] = cfg_snat6[0];
  out->words[1] = cfg_snat6[1];
  out->words[2] = cfg_snat6[2];
  out->words[3] = cfg_snat6[3];
  return 0;
}

/* A packet to the SNAT address and range that matched no flow. */
static __always_inline int gw_is_snat_dst(const struct kvlb_flow_key* k) {
  struct kvlb_addr s;
  __u16 port = bpf_ntohs(k->dport);
  if (gw_snat_addr(&s, k->family)) return 0;
  if (port < cfg_snat_port_lo || port > cfg_snat_port_hi) return 0;
  return s.words[0] == k->dst.words[0] && s.words[1] == k->dst.words[1] &&
         s.words[2] == k->dst.words[2] && s.words[3] == k->dst.words[3];
}

/* Rewrites the packet's addresses and ports to `f`'s, decrements the TTL or hop
 * limit, and updates the checksums incrementally. */
static __always_inline void gw_rewrite(struct kvlb_pkt* p, const struct kvlb_flow* f) {
  struct tcphdr* tcp = p->tcp;
  __u16 check = tcp->check;
  if (p->ip4) {
    struct iphdr* ip = p->ip4;
    __u16 old_ttl = *(__u16*)&ip->ttl, new_ttl;
    __u16 ipc = ip->check;
    ipc = kvlb_csum_replace32(ipc, ip->saddr, f->src.words[0]);
    ipc = kvlb_csum_replace32(ipc, ip->daddr, f->dst.words[0]);
    check = kvlb_csum_replace32(check, ip->saddr, f->src.words[0]);
    check = kvlb_csum_replace32(check, ip->daddr, f->dst.words[0]);
    ip->saddr = f->src.words[0];
    ip->daddr = f->dst.words[0];
    ip->ttl -= 1;
    new_ttl = *(__u16*)&ip->ttl;
    ip->check = kvlb_csum_replace16(ipc, old_ttl, new_ttl);
  } else if (p->ip6) {
    struct ipv6hdr* ip = p->ip6;
    __u32* s = ip->saddr.in6_u.u6_addr32;
    __u32* d = ip->daddr.in6_u.u6_addr32;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      check = kvlb_csum_replace32(check, s[i], f->src.words[i]);
      check = kvlb_csum_replace32(check, d[i], f->dst.words[i]);
      s[i] = f->src.words[i];
      d[i] = f->dst.words[i];
    }
    ip->hop_limit -= 1;
  }
  check = kvlb_csum_replace16(check, tcp->source, f->sport);
  check = kvlb_csum_replace16(check, tcp->dest, f->dport);
  tcp->source = f->sport;
  tcp->dest = f->dport;
  tcp->check = check;
}

/* Undoes gw_rewrite's TTL or hop-limit decrement (and its checksum change). */
static __always_inline void gw_unhop(struct kvlb_pkt* p) {
  struct iphdr* ip4 = p->ip4;
  struct ipv6hdr* ip6 = p->ip6;
  if (p->key.family == KVLB_AF_INET) {
    __u16 old_ttl, new_ttl;
    if (!ip4) return;
    old_ttl = *(__u16*)&ip4->ttl;
    ip4->ttl += 1;
    new_ttl = *(__u16*)&ip4->ttl;
    ip4->check = kvlb_csum_replace16(ip4->check, old_ttl, new_ttl);
  } else if (ip6) {
    ip6->hop_limit += 1;
  }
}

/* Sends the rewritten packet towards its new destination: the route and the
 * neighbour from the kernel's tables (bpf_fib_lookup), out of the interface
 * they name. */
static __noinline int gw_forward(struct xdp_md* ctx, struct kvlb_pkt* p, const struct kvlb_flow* f,
                                 __u32* stat) {
  __u32 zero = 0;
  struct kvlb_gw_scratch* sc = bpf_map_lookup_elem(&kvlb_gw_scratch, &zero);
  struct bpf_fib_lookup* fib;
  long rc;
  if (!sc) {
    *stat = KVLB_GW_FIB_FAIL;
    return XDP_DROP;
  }
  /* In scratch memory, not on the stack: 64 bytes the SYN path's call chain
   * has no room for on Linux 6.1 (gw_maps.bpf.h). */
  fib = &sc->fib;
  __builtin_memset(fib, 0, sizeof(*fib));
  fib->l4_protocol = IPPROTO_TCP;
  fib->sport = f->sport;
  fib->dport = f->dport;
  /* With the route's MTU checked: a packet larger than the next hop's MTU
   * (in generic mode, the receive side's coalesced GRO/GSO packets, up to
   * 64 KiB) is handed to the stack, which segments and forwards it; a redirect
   * would drop it (XDP cannot segment). */
  fib->tot_len = p->ip_len;
  fib->ifindex = ctx->ingress_ifindex;
  if (p->ip4) {
    fib->family = AF_INET;
    fib->tos = p->ip4->tos;
    fib->ipv4_src = f->src.words[0];
    fib->ipv4_dst = f->dst.words[0];
  } else {
    fib->family = AF_INET6;
    __builtin_memcpy(fib->ipv6_src, f->src.words, 16);
    __builtin_memcpy(fib->ipv6_dst, f->dst.words, 16);
  }
  rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
    /* Translated already: the stack forwards it, resolving the neighbour or
     * answering "fragmentation needed"; the next packets take the fast path.
     * The hop is the stack's to count: the TTL goes back up. */
    gw_unhop(p);
    *stat = KVLB_GW_FIB_PASS;
    return XDP_PASS;
  }
  if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
    *stat = KVLB_GW_FIB_FAIL;
    return XDP_DROP;
  }
  __builtin_memcpy(p->eth->h_dest, fib->dmac, ETH_ALEN);
  __builtin_memcpy(p->eth->h_source, fib->smac, ETH_ALEN);
  if (fib->ifindex == ctx->ingress_ifindex) return XDP_TX;
  return bpf_redirect(fib->ifindex, 0);
}

/* The TTL or hop limit would expire here: the host answers (ICMP). */
static __always_inline int gw_ttl_expires(const struct kvlb_pkt* p) {
  struct iphdr* ip4 = p->ip4;
  struct ipv6hdr* ip6 = p->ip6;
  /* Each pointer checked on its own: clang would otherwise merge the two loads
   * into one through a selected pointer, which the verifier cannot follow. */
  if (p->key.family == KVLB_AF_INET) {
    if (!ip4) return 1;
    return ip4->ttl <= 1;
  }
  if (!ip6) return 1;
  return ip6->hop_limit <= 1;
}

static __always_inline int gw_tuple_eq(const struct kvlb_flow* r, const struct kvlb_flow_key* k) {
  return r->dst.words[0] == k->src.words[0] && r->dst.words[1] == k->src.words[1] &&
         r->dst.words[2] == k->src.words[2] && r->dst.words[3] == k->src.words[3] &&
         r->src.words[0] == k->dst.words[0] && r->src.words[1] == k->dst.words[1] &&
         r->src.words[2] == k->dst.words[2] && r->src.words[3] == k->dst.words[3] &&
         r->dport == k->sport && r->sport == k->dport;
}

/* SNAT probe `probe` for the client's flow `k`: claims the backend-side entry
 * `rk` (its port set here) for `rev`. True when the port is the flow's: free,
 * or already this flow's (its client-side entry was lost). A FIN or RST
 * (stateless) takes the first probe's port without an entry. */
static __always_inline int gw_claim_port(const struct kvlb_flow_key* k, struct kvlb_flow_key* rk,
                                         const struct kvlb_flow* rev, __u32 probe, int stateless) {
  struct kvlb_flow* old;
  rk->dport = bpf_htons(kvlb_snat_port(k, probe, cfg_snat_port_lo, cfg_snat_port_hi));
  if (stateless) return 1;
  if (bpf_map_update_elem(&kvlb_flow_v1, rk, rev, BPF_NOEXIST) == 0) return 1;
  old = bpf_map_lookup_elem(&kvlb_flow_v1, rk);
  /* A retired entry is an earlier connection on the same tuple (the client
   * reused its port): the backend may hold that port in TIME_WAIT, where a new
   * SYN is refused (PAWS). Taken: the next probe's port. */
  if (old && gw_tuple_eq(old, k) && !(old->flags & KVLB_FLOW_F_RETIRED)) {
    /* This flow's own backend side: its client side was lost (LRU). The flow
     * is counted in flight already. */
    *old = *rev;
    return 2;
  }
  return 0;
}

/* A new flow (a SYN, or a packet the table had lost) to backend `id`: both
 * entries written, the backend's picks and in-flight counted. `*out` gets the
 * forward translation. Stateless (no entry, no count) for a FIN or RST. */
static __noinline int gw_new_flow(struct xdp_md* ctx, struct kvlb_pkt* p, __u32 id, __u64 flags,
                                  __u32* stat) {
  const struct kvlb_flow_key* k = &p->key;
  struct kvlb_backend* be = bpf_map_lookup_elem(&kvlb_be_v1, &id);
  struct kvlb_gw_scratch* sc;
  struct kvlb_flow_key* rk;
  struct kvlb_flow *rev, *out;
  struct kvlb_addr snat;
  __u64 now = bpf_ktime_get_coarse_ns();
  int stateless = p->tcp->fin || p->tcp->rst;
  int claimed;
  __u32 zero = 0;

  if (!be || be->family != k->family || gw_snat_addr(&snat, k->family)) {
    *stat = KVLB_GW_NO_BACKEND;
    return XDP_DROP;
  }
  sc = bpf_map_lookup_elem(&kvlb_gw_scratch, &zero);
  if (!sc) {
    *stat = KVLB_GW_FLOW_TABLE_FULL;
    return XDP_DROP;
  }
  rk = &sc->rkey;
  rev = &sc->rev;
  out = &sc->fwd;
  out->src = snat;
  out->dst = be->addr;
  out->dport = be->port;
  out->backend_id = id;
  out->last_seen_ns = now;
  out->flags = flags;

  rk->src = be->addr;
  rk->dst = snat;
  rk->sport = be->port;
  rk->family = k->family;
  rk->proto = IPPROTO_TCP;
  rk->pad = 0;
  rev->src = k->dst;
  rev->dst = k->src;
  rev->sport = k->dport;
  rev->dport = k->sport;
  rev->backend_id = id;
  rev->last_seen_ns = now;
  rev->flags = flags | KVLB_FLOW_F_REVERSE;

  /* Written out, not a loop: clang keeps a loop here, and the verifier, which
   * does not track the counter precisely through the map calls, takes it for
   * an infinite one. */
#define GW_PROBE(i) \
  if (!claimed) claimed = gw_claim_port(k, rk, rev, i, stateless)
  claimed = gw_claim_port(k, rk, rev, 0, stateless);
  GW_PROBE(1);
  GW_PROBE(2);
  GW_PROBE(3);
  GW_PROBE(4);
  GW_PROBE(5);
  GW_PROBE(6);
  GW_PROBE(7);
  GW_PROBE(8);
  GW_PROBE(9);
  GW_PROBE(10);
  GW_PROBE(11);
  GW_PROBE(12);
  GW_PROBE(13);
  GW_PROBE(14);
  GW_PROBE(15);
#undef GW_PROBE
  KVLB_STATIC_ASSERT(KVLB_SNAT_PROBES == 16, "gw_new_flow writes out every probe");
  if (!claimed) {
    *stat = KVLB_GW_SNAT_BUSY;
    return XDP_DROP;
  }
  out->sport = rk->dport;
  if (!stateless) {
    if (bpf_map_update_elem(&kvlb_flow_v1, k, out, BPF_ANY) != 0) {
      bpf_map_delete_elem(&kvlb_flow_v1, rk);
      *stat = KVLB_GW_FLOW_TABLE_FULL;
      return XDP_DROP;
    }
    if (claimed == 1) kvlb_account_pick(id);
  }
  sc->counted = !stateless && claimed == 1;
  sc->stateful = !stateless;
  return -1; /* translated in sc->fwd: the caller forwards (gw_new_flow_forward) */
}

/* Forwards a new flow's packet (gw_new_flow's translation, in scratch memory).
 * A separate call from the entry point's frame, not from gw_new_flow's: the
 * route lookup's frame then never stacks on the flow builder's (BPF's 512
 * bytes for a call chain; Linux 6.1 rounds every frame up to 32). */
static __noinline int gw_new_flow_forward(struct xdp_md* ctx, struct kvlb_pkt* p, __u32* stat) {
  __u32 zero = 0;
  struct kvlb_gw_scratch* sc = bpf_map_lookup_elem(&kvlb_gw_scratch, &zero);
  int verdict;
  if (!sc) {
    *stat = KVLB_GW_FLOW_TABLE_FULL;
    return XDP_DROP;
  }
  gw_rewrite(p, &sc->fwd);
  verdict = gw_forward(ctx, p, &sc->fwd, stat);
  if (sc->stateful && verdict == XDP_DROP) {
    /* No route to the backend: the flow never starts; nothing stays counted. */
    bpf_map_delete_elem(&kvlb_flow_v1, &sc->rkey);
    bpf_map_delete_elem(&kvlb_flow_v1, &p->key);
    if (sc->counted) kvlb_account_release(sc->fwd.backend_id);
  } else if (sc->counted && !(sc->fwd.flags & KVLB_FLOW_F_MAGLEV)) {
    /* A new flow, on its way: peers learn the LLM-aware placement (a Maglev
     * placement they would make themselves). Here, not in gw_new_flow: there
     * every path through the sixteen probes verified it again (8,300 more
     * instructions on 6.18). */
    gw_emit(KVLB_FLOW_EV_OPEN, &p->key, &sc->fwd);
  }
  return verdict;
}

/* A SYN reusing the tuple of a closed flow starts a new connection: the old
 * flow's backend-side entry is retired (its in-flight was released at the
 * close), not deleted: it keeps its SNAT port from this client tuple until the
 * closing timeout (longer than TIME_WAIT), and the sweep removes it then. */
static __noinline void gw_retire_partner(const struct kvlb_flow* f, __u8 family) {
  struct kvlb_flow_key pk;
  struct kvlb_flow* old;
  gw_partner_key(&pk, f, family);
  old = bpf_map_lookup_elem(&kvlb_flow_v1, &pk);
  if (!old) return;
  old->flags |= KVLB_FLOW_F_RETIRED | KVLB_FLOW_F_CLOSING;
  old->last_seen_ns = bpf_ktime_get_coarse_ns();
}

/* The service's pick, its state in per-CPU scratch memory and its frame its
 * own: BPF's stack is 512 bytes for a whole call chain (gw_maps.bpf.h). Also
 * gw_new_flow and gw_forward are __noinline for the same reason. */
static __noinline __u32 gw_pick(const struct kvlb_service* svc) {
  __u32 zero = 0;
  struct kvlb_gw_scratch* sc = bpf_map_lookup_elem(&kvlb_gw_scratch, &zero);
  if (!sc) return KVLB_BACKEND_NONE;
  __builtin_memset(&sc->pick, 0, sizeof(sc->pick));
  return kvlb_pick_in(&sc->pick, svc);
}

/* A TCP segment: a known flow's, a new flow's, or not the gateway's. */
static __always_inline int gw_tcp(struct xdp_md* ctx, struct kvlb_pkt* p, __u32* stat) {
  struct kvlb_flow_key* k = &p->key;
  struct kvlb_service_key sk = {};
  struct kvlb_service* svc;
  struct kvlb_flow* f;
  struct tcphdr* tcp = p->tcp;
  int syn = tcp->syn && !tcp->ack;
  int v;
  __u64 flags = 0;
  __u32 id;
  __u64 now;

  f = bpf_map_lookup_elem(&kvlb_flow_v1, k);
  if (f && (f->flags & KVLB_FLOW_F_RETIRED)) {
    /* A late segment of the connection before the tuple's reuse: as if its
     * entry were gone (the host resets it), never delivered into the new one. */
    *stat = KVLB_GW_REVERSE_MISS;
    return XDP_PASS;
  }
  if (f && !(syn && (f->flags & KVLB_FLOW_F_CLOSING) && !(f->flags & KVLB_FLOW_F_REVERSE))) {
    if (gw_ttl_expires(p)) {
      *stat = KVLB_GW_TTL;
      return XDP_PASS;
    }
    now = bpf_ktime_get_coarse_ns();
    if (now - f->last_seen_ns > KVLB_NS_PER_S) f->last_seen_ns = now;
    if (f->flags & KVLB_FLOW_F_SYNCED) gw_take_over(f);
    if (tcp->fin || tcp->rst) gw_close(k, f);
    *stat = (f->flags & KVLB_FLOW_F_REVERSE) ? KVLB_GW_REVERSE : KVLB_GW_FORWARD;
    gw_rewrite(p, f);
    return gw_forward(ctx, p, f, stat);
  }

  sk.vip = k->dst;
  sk.port = k->dport;
  sk.proto = IPPROTO_TCP;
  sk.family = k->family;
  svc = bpf_map_lookup_elem(&kvlb_svc_v2, &sk);
  if (!svc) {
    *stat = gw_is_snat_dst(k) ? KVLB_GW_REVERSE_MISS : KVLB_GW_NOT_VIP;
    return XDP_PASS;
  }
  if (gw_ttl_expires(p)) {
    *stat = KVLB_GW_TTL;
    return XDP_PASS;
  }
  if (f) gw_retire_partner(f, k->family);
  if (syn) {
    id = gw_pick(svc);
    *stat = KVLB_GW_NEW_FLOW;
  } else {
    __u32 row = svc->maglev_row, slot;
    __u32* e;
    if (row == 0 || row > KVLB_GW_MAX_SERVICES) {
      *stat = KVLB_GW_NO_BACKEND;
      return XDP_DROP;
    }
    slot = (row - 1) * KVLB_MAGLEV_SIZE + kvlb_maglev_slot(k);
    e = bpf_map_lookup_elem(&kvlb_maglev_v1, &slot);
    id = e ? *e : KVLB_BACKEND_NONE;
    flags = KVLB_FLOW_F_MAGLEV;
    *stat = KVLB_GW_MAGLEV;
  }
  if (id == KVLB_BACKEND_NONE) {
    if (syn) kvlb_event(KVLB_EVENT_NO_BACKEND);
    *stat = KVLB_GW_NO_BACKEND;
    return XDP_DROP;
  }
  v = gw_new_flow(ctx, p, id, flags, stat);
  if (v >= 0) return v;
  return gw_new_flow_forward(ctx, p, stat);
}

/* Anything that is not a well-formed TCP segment: its class's verdict when it
 * is addressed to a VIP, untouched otherwise. */
static __always_inline int gw_other(int parsed, const struct kvlb_pkt* p, __u32* stat) {
  struct kvlb_service_key vk = {};
  if (parsed == KVLB_P_NOT_IP) {
    *stat = KVLB_GW_NOT_VIP;
    return XDP_PASS;
  }
  if (parsed == KVLB_P_TRUNCATED) {
    *stat = KVLB_GW_TRUNCATED;
    return XDP_PASS;
  }
  vk.vip = p->key.dst;
  vk.family = p->key.family;
  if (!bpf_map_lookup_elem(&kvlb_vip_v1, &vk)) {
    *stat = KVLB_GW_NOT_VIP;
    return XDP_PASS;
  }
  switch (parsed) {
    case KVLB_P_ICMP:
      *stat = KVLB_GW_ICMP;
      return XDP_PASS;
    case KVLB_P_FRAGMENT:
      *stat = KVLB_GW_FRAGMENT;
      return XDP_DROP;
    case KVLB_P_IPV6_EXT:
      *stat = KVLB_GW_IPV6_EXT;
      return XDP_DROP;
    case KVLB_P_NOT_TCP:
      *stat = KVLB_GW_NOT_TCP;
      return XDP_DROP;
    default:
      *stat = KVLB_GW_MALFORMED;
      return XDP_DROP;
  }
}

static __always_inline int gw_process(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct kvlb_pkt p = {};
  __u32 stat = KVLB_GW_NOT_VIP;
  int parsed = kvlb_parse(&p, data, end);
  int verdict;
  if (parsed == KVLB_P_TCP)
    verdict = gw_tcp(ctx, &p, &stat);
  else
    verdict = gw_other(parsed, &p, &stat);
  gw_count(stat);
  return verdict;
}

/* ---- the sweep ---------------------------------------------------------- */

struct gw_sweep_ctx {
  __u64 now;
  __u64 expired;
  __u32 sweep; /* this sweep's number (kvlb_gw_open) */
};

/* One more open flow to backend `id` in this sweep's counts. */
static __always_inline void gw_count_open(__u32 id, __u32 sweep) {
  struct kvlb_gw_open* o = bpf_map_lookup_elem(&kvlb_gw_open, &id);
  if (!o) return;
  if (o->sweep != sweep) {
    o->sweep = sweep;
    o->open = 0;
  }
  o->open += 1;
}

/* One entry: a client-side entry whose flow is closed (for cfg_flow_closing_ns)
 * or idle in both directions (for cfg_flow_idle_ns) goes with its partner, its
 * in-flight released if no FIN or RST did; one that stays open is counted for
 * its backend (kvlb_gw_open); a backend-side entry whose partner is gone, or
 * that was retired, goes after cfg_flow_closing_ns. */
static long gw_sweep_one(struct bpf_map* map, struct kvlb_flow_key* k, struct kvlb_flow* f,
                         struct gw_sweep_ctx* c) {
  struct kvlb_flow_key pk;
  struct kvlb_flow* partner;
  __u64 last, limit;
  gw_partner_key(&pk, f, k->family);
  partner = bpf_map_lookup_elem(&kvlb_flow_v1, &pk);
  if (f->flags & KVLB_FLOW_F_REVERSE) {
    /* The client-side entry decides, unless this one was retired (the tuple's
     * client side now belongs to a newer connection). */
    if (partner && !(f->flags & KVLB_FLOW_F_RETIRED)) return 0;
    /* A packet on another CPU may refresh an entry after the sweep read the
     * clock: last_seen ahead of now is fresh, not 2^64 ns old. */
    if (f->last_seen_ns < c->now && c->now - f->last_seen_ns > cfg_flow_closing_ns) {
      bpf_map_delete_elem(&kvlb_flow_v1, k);
      c->expired++;
    }
    return 0;
  }
  last = f->last_seen_ns;
  if (partner && partner->last_seen_ns > last) last = partner->last_seen_ns;
  limit = (f->flags & KVLB_FLOW_F_CLOSING) ? cfg_flow_closing_ns : cfg_flow_idle_ns;
  if (last >= c->now || c->now - last <= limit) {
    if (f->flags & (KVLB_FLOW_F_CLOSING | KVLB_FLOW_F_SYNCED)) return 0;
    gw_count_open(f->backend_id, c->sweep);
    /* Flow sync: each open flow of this gateway's again every
     * cfg_sync_refresh_sweeps sweeps, a different share each sweep. */
    if (cfg_sync_refresh_sweeps && (kvlb_flow_hash(k, 0) + c->sweep) % cfg_sync_refresh_sweeps == 0)
      gw_emit(KVLB_FLOW_EV_REFRESH, k, f);
    return 0;
  }
  gw_close_forward(k, f);
  if (partner) bpf_map_delete_elem(&kvlb_flow_v1, &pk);
  bpf_map_delete_elem(&kvlb_flow_v1, k);
  c->expired++;
  return 0;
}

static __always_inline void gw_sweep(void) {
  struct gw_sweep_ctx c = {.now = bpf_ktime_get_coarse_ns(), .expired = 0, .sweep = ++gw_sweeps};
  __u32 zero = 0;
  struct kvlb_gw_stats* s;
  bpf_for_each_map_elem(&kvlb_flow_v1, gw_sweep_one, &c, 0);
  s = bpf_map_lookup_elem(&kvlb_gwstat_v1, &zero);
  if (s) s->n[KVLB_GW_EXPIRED] += c.expired;
}

/* ---- flow sync: a peer's event ------------------------------------------- */

static __always_inline int gw_same_placement(const struct kvlb_flow* f,
                                             const struct kvlb_flow_event* e) {
  return f->src.words[0] == e->snat.words[0] && f->src.words[1] == e->snat.words[1] &&
         f->src.words[2] == e->snat.words[2] && f->src.words[3] == e->snat.words[3] &&
         f->dst.words[0] == e->backend.words[0] && f->dst.words[1] == e->backend.words[1] &&
         f->dst.words[2] == e->backend.words[2] && f->dst.words[3] == e->backend.words[3] &&
         f->sport == e->snat_port && f->dport == e->backend_port;
}

/* A flow a peer gateway placed (OPEN or REFRESH): both entries, flagged
 * SYNCED, so that its packets are translated here exactly as there if they
 * come here (the peer's SNAT address and port, its backend). A live flow of
 * this gateway's on the same tuple wins; a closed one, or another peer's
 * placement, gives way (its backend side retired, as for a SYN). */
static __always_inline int gw_sync_open(const struct kvlb_flow_sync* s) {
  const struct kvlb_flow_event* e = &s->ev;
  __u64 now = bpf_ktime_get_coarse_ns();
  struct kvlb_flow_key k = e->key, rk = {};
  struct kvlb_flow fwd = {}, rev = {};
  struct kvlb_flow *f, *r;
  k.proto = IPPROTO_TCP;
  k.pad = 0;
  fwd.src = e->snat;
  fwd.dst = e->backend;
  fwd.sport = e->snat_port;
  fwd.dport = e->backend_port;
  fwd.backend_id = s->backend_id;
  fwd.last_seen_ns = now;
  fwd.flags = KVLB_FLOW_F_SYNCED;
  gw_partner_key(&rk, &fwd, k.family);
  rev.src = k.dst;
  rev.dst = k.src;
  rev.sport = k.dport;
  rev.dport = k.sport;
  rev.backend_id = s->backend_id;
  rev.last_seen_ns = now;
  rev.flags = KVLB_FLOW_F_SYNCED | KVLB_FLOW_F_REVERSE;

  f = bpf_map_lookup_elem(&kvlb_flow_v1, &k);
  if (f) {
    if (gw_same_placement(f, e) && !(f->flags & KVLB_FLOW_F_CLOSING)) {
      /* Known: kept fresh (here or at the peer, it is alive). */
      if (f->last_seen_ns < now) f->last_seen_ns = now;
      r = bpf_map_lookup_elem(&kvlb_flow_v1, &rk);
      if (r && r->last_seen_ns < now) r->last_seen_ns = now;
      return KVLB_SYNC_REFRESHED;
    }
    if (!(f->flags & (KVLB_FLOW_F_SYNCED | KVLB_FLOW_F_CLOSING))) return KVLB_SYNC_CONFLICT;
    gw_retire_partner(f, k.family);
  }
  r = bpf_map_lookup_elem(&kvlb_flow_v1, &rk);
  /* The backend side: taken by a live flow of this gateway's (peers share its
   * SNAT address and the port): that one wins. */
  if (r && !(r->flags & (KVLB_FLOW_F_SYNCED | KVLB_FLOW_F_CLOSING | KVLB_FLOW_F_RETIRED)) &&
      !gw_tuple_eq(r, &k))
    return KVLB_SYNC_CONFLICT;
  if (bpf_map_update_elem(&kvlb_flow_v1, &rk, &rev, BPF_ANY) != 0) return KVLB_SYNC_FULL;
  if (bpf_map_update_elem(&kvlb_flow_v1, &k, &fwd, BPF_ANY) != 0) {
    bpf_map_delete_elem(&kvlb_flow_v1, &rk);
    return KVLB_SYNC_FULL;
  }
  return KVLB_SYNC_INSTALLED;
}

/* A peer saw the flow end (it carried the FIN or RST, or its sweep expired
 * it): closing here too. If this gateway counted it (its own, or taken over),
 * the in-flight count goes now: the end went by the peer. */
static __always_inline int gw_sync_close(const struct kvlb_flow_sync* s) {
  struct kvlb_flow_key k = s->ev.key, pk;
  struct kvlb_flow *f, *r;
  __u64 old;
  k.proto = IPPROTO_TCP;
  k.pad = 0;
  f = bpf_map_lookup_elem(&kvlb_flow_v1, &k);
  if (!f || !gw_same_placement(f, &s->ev)) return KVLB_SYNC_UNKNOWN;
  old = __sync_fetch_and_or(&f->flags, KVLB_FLOW_F_CLOSING);
  if (!(old & (KVLB_FLOW_F_CLOSING | KVLB_FLOW_F_SYNCED))) {
    kvlb_account_release(f->backend_id);
    gw_count_only(KVLB_GW_CLOSED);
  }
  gw_partner_key(&pk, f, k.family);
  r = bpf_map_lookup_elem(&kvlb_flow_v1, &pk);
  if (r) r->flags |= KVLB_FLOW_F_CLOSING;
  return KVLB_SYNC_CLOSED;
}

/* The sync program's body: one struct kvlb_flow_sync in the run's data. The
 * agent validated it (its service, backend and SNAT address); the checks here
 * only keep the kernel's table consistent. Never writes a flow event: what a
 * peer said is not said again. */
static __always_inline int gw_sync(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct kvlb_flow_sync s;
  if (data + sizeof(s) > end) return KVLB_SYNC_INVALID;
  __builtin_memcpy(&s, data, sizeof(s));
  if ((s.ev.key.family != KVLB_AF_INET && s.ev.key.family != KVLB_AF_INET6) ||
      s.backend_id == KVLB_BACKEND_NONE || s.backend_id >= KVLB_MAX_BACKENDS)
    return KVLB_SYNC_INVALID;
  switch (s.ev.kind) {
    case KVLB_FLOW_EV_OPEN:
    case KVLB_FLOW_EV_REFRESH:
      return gw_sync_open(&s);
    case KVLB_FLOW_EV_CLOSE:
      return gw_sync_close(&s);
    default:
      return KVLB_SYNC_INVALID;
  }
}

#endif /* KVLB_GATEWAY_BPF_H */
