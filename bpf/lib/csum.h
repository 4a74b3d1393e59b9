/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * csum.h - incremental Internet checksum updates (RFC 1624), plain C.
 *
 * The gateway rewrites addresses, ports and the TTL of packets it forwards and
 * updates the IPv4 header checksum and the TCP checksum by the difference
 * instead of summing the packet again: HC' = ~(~HC + ~m + m'), in 16-bit one's
 * complement. Shared with the userspace tests, which check every rewrite
 * against a checksum computed from scratch.
 */
#ifndef KVLB_CSUM_H
#define KVLB_CSUM_H

#include <linux/types.h>
#include "inline.h"

KVLB_INLINE __u16 kvlb_csum_fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)sum;
}

/* A checksum field (as stored, network order) after a 16-bit word of the data
 * it covers changed from `from` to `to` (both as stored). */
KVLB_INLINE __u16 kvlb_csum_replace16(__u16 check, __u16 from, __u16 to) {
  __u32 sum = (__u16)~check;
  sum += (__u16)~from;
  sum += to;
  return (__u16)~kvlb_csum_fold(sum);
}

/* The same for a 32-bit word (an IPv4 address, a quarter of an IPv6 one). */
KVLB_INLINE __u16 kvlb_csum_replace32(__u16 check, __u32 from, __u32 to) {
  check = kvlb_csum_replace16(check, (__u16)(from >> 16), (__u16)(to >> 16));
  return kvlb_csum_replace16(check, (__u16)(from & 0xffff), (__u16)(to & 0xffff));
}

#endif /* KVLB_CSUM_H */
