/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * parse.bpf.h - the gateway's packet parser: Ethernet, IPv4 or IPv6, TCP.
 *
 * Every header is bounds-checked against data_end before it is read. The
 * result says how far the packet made sense: a well-formed TCP segment (its
 * flow key filled), or why not, with the destination address filled whenever
 * the IP header got that far, so the caller can tell traffic for a VIP (a
 * defined verdict per class) from anything else (passed untouched).
 */
#ifndef KVLB_PARSE_BPF_H
#define KVLB_PARSE_BPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "kvlb_maps.h"

enum kvlb_parse {
  KVLB_P_TCP = 0,   /* a whole TCP header; key, ip and tcp set */
  KVLB_P_NOT_IP,    /* not IPv4 or IPv6 (ARP, VLAN-tagged, ...) */
  KVLB_P_TRUNCATED, /* cut short before the destination address */
  KVLB_P_MALFORMED, /* destination known, headers inconsistent or cut short */
  KVLB_P_FRAGMENT,  /* destination known: a fragment */
  KVLB_P_IPV6_EXT,  /* destination known: IPv6 extension headers */
  KVLB_P_ICMP,      /* destination known: ICMP or ICMPv6 */
  KVLB_P_NOT_TCP,   /* destination known: another transport */
};

struct kvlb_pkt {
  struct ethhdr* eth;
  struct iphdr* ip4; /* one of ip4 / ip6 */
  struct ipv6hdr* ip6;
  struct tcphdr* tcp;
  struct kvlb_flow_key key; /* src, dst, ports as they arrive */
  __u16 ip_len;             /* IPv4 total length / IPv6 40 + payload length */
};

/* A 16-bit length from a header, with a bound the verifier can see. Before
 * Linux 6.10 the verifier does not track a byte swap's result range, so a
 * length from bpf_ntohs() added to a packet pointer is refused (6.1, 6.12:
 * "math between pkt pointer and register with unbounded min value"). The empty
 * asm hides the value from the compiler, which would otherwise drop the check
 * as always true. */
static __always_inline __u32 kvlb_len16(__be16 v) {
  __u32 x = bpf_ntohs(v);
  asm volatile("" : "+r"(x));
  return x > 0xffff ? 0xffff : x;
}

#define KVLB_IP_MF 0x2000
#define KVLB_IP_OFFSET 0x1fff

static __always_inline int kvlb_parse_tcp(struct kvlb_pkt* p, void* l4, void* end, __u32 l4_len) {
  struct tcphdr* tcp = l4;
  if ((void*)(tcp + 1) > end || l4_len < sizeof(*tcp)) return KVLB_P_MALFORMED;
  if (tcp->doff < 5 || (__u32)tcp->doff * 4 > l4_len) return KVLB_P_MALFORMED;
  p->tcp = tcp;
  p->key.sport = tcp->source;
  p->key.dport = tcp->dest;
  p->key.proto = IPPROTO_TCP;
  return KVLB_P_TCP;
}

static __always_inline int kvlb_parse4(struct kvlb_pkt* p, void* data, void* end) {
  struct iphdr* ip = data;
  __u32 ihl, tot;
  if ((void*)(ip + 1) > end) return KVLB_P_TRUNCATED;
  p->ip4 = ip;
  p->key.family = KVLB_AF_INET;
  p->key.src.words[0] = ip->saddr;
  p->key.dst.words[0] = ip->daddr;
  if (ip->version != 4 || ip->ihl < 5) return KVLB_P_MALFORMED;
  ihl = (__u32)ip->ihl * 4;
  tot = kvlb_len16(ip->tot_len);
  /* The IP packet must fit in the frame (a frame may carry padding after it). */
  if (tot < ihl || data + tot > end) return KVLB_P_MALFORMED;
  p->ip_len = (__u16)tot;
  if (ip->frag_off & bpf_htons(KVLB_IP_MF | KVLB_IP_OFFSET)) return KVLB_P_FRAGMENT;
  if (ip->protocol == IPPROTO_ICMP) return KVLB_P_ICMP;
  if (ip->protocol != IPPROTO_TCP) return KVLB_P_NOT_TCP;
  /* Options (ihl > 5) are carried through: ports are read past them. */
  return kvlb_parse_tcp(p, data + ihl, end, tot - ihl);
}

static __always_inline int kvlb_parse6(struct kvlb_pkt* p, void* data, void* end) {
  struct ipv6hdr* ip = data;
  __u32 plen;
  __u8 nh;
  if ((void*)(ip + 1) > end) return KVLB_P_TRUNCATED;
  p->ip6 = ip;
  p->key.family = KVLB_AF_INET6;
  __builtin_memcpy(&p->key.src, &ip->saddr, 16);
  __builtin_memcpy(&p->key.dst, &ip->daddr, 16);
  if (ip->version != 6) return KVLB_P_MALFORMED;
  plen = kvlb_len16(ip->payload_len);
  if (data + sizeof(*ip) + plen > end) return KVLB_P_MALFORMED;
  p->ip_len = (__u16)(sizeof(*ip) + plen);
  nh = ip->nexthdr;
  if (nh == IPPROTO_TCP) return kvlb_parse_tcp(p, ip + 1, end, plen);
  if (nh == IPPROTO_ICMPV6) return KVLB_P_ICMP;
  if (nh == IPPROTO_FRAGMENT) return KVLB_P_FRAGMENT;
  /* Hop-by-hop, routing, destination options, AH, ESP, mobility, HIP, shim6:
   * not walked (a VIP's clients do not send them; walking costs a loop). */
  if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH ||
      nh == IPPROTO_ESP || nh == 135 || nh == 139 || nh == 140)
    return KVLB_P_IPV6_EXT;
  return KVLB_P_NOT_TCP;
}

static __always_inline int kvlb_parse(struct kvlb_pkt* p, void* data, void* end) {
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > end) return KVLB_P_TRUNCATED;
  p->eth = eth;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) return kvlb_parse4(p, eth + 1, end);
  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) return kvlb_parse6(p, eth + 1, end);
  return KVLB_P_NOT_IP;
}

#endif /* KVLB_PARSE_BPF_H */
