/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * flow_hash.h - the gateway's hashes, in plain C with no kernel helper calls.
 *
 * Compiled into the gateway program and into userspace (the agent's Maglev
 * builder, the unit tests, the packet fixtures), so both sides agree on where a
 * flow lands without sharing anything but this file. Two uses:
 *
 *  - the Maglev slot of a flow without a table entry: kvlb_flow_hash(client's
 *    key, KVLB_HASH_SEED_MAGLEV) % KVLB_MAGLEV_SIZE;
 *  - the gateway's source port towards the backend (source NAT): the first probe
 *    is a function of the client's key alone, so a second gateway, or this one
 *    after losing its table, translates a flow to the same port and the backend
 *    sees the same connection.
 *
 * The mixing is murmur3's 32-bit finaliser over the key's words: not
 * cryptographic (a client can choose its port, not the seed), but every output
 * bit depends on every input bit, which is what slot and port spreading need.
 */
#ifndef KVLB_FLOW_HASH_H
#define KVLB_FLOW_HASH_H

#include "kvlb_maps.h"
#include "inline.h"

#define KVLB_HASH_SEED_MAGLEV 0x6b766c62u /* "kvlb" */
#define KVLB_HASH_SEED_SNAT 0x736e6174u   /* "snat" */
#define KVLB_HASH_SEED_OFFSET 0x6f666673u /* Maglev permutation: offset */
#define KVLB_HASH_SEED_SKIP 0x736b6970u   /* Maglev permutation: skip */

KVLB_INLINE __u32 kvlb_rotl32(__u32 x, int r) {
  return (x << r) | (x >> (32 - r));
}

KVLB_INLINE __u32 kvlb_fmix32(__u32 h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* One word into the running hash (murmur3's body step). */
KVLB_INLINE __u32 kvlb_hash_step(__u32 h, __u32 k) {
  k *= 0xcc9e2d51u;
  k = kvlb_rotl32(k, 15);
  k *= 0x1b873593u;
  h ^= k;
  h = kvlb_rotl32(h, 13);
  return h * 5 + 0xe6546b64u;
}

/* The hash of a flow's key (both addresses, both ports, family, protocol). */
KVLB_INLINE __u32 kvlb_flow_hash(const struct kvlb_flow_key* k, __u32 seed) {
  __u32 h = seed;
  h = kvlb_hash_step(h, k->src.words[0]);
  h = kvlb_hash_step(h, k->src.words[1]);
  h = kvlb_hash_step(h, k->src.words[2]);
  h = kvlb_hash_step(h, k->src.words[3]);
  h = kvlb_hash_step(h, k->dst.words[0]);
  h = kvlb_hash_step(h, k->dst.words[1]);
  h = kvlb_hash_step(h, k->dst.words[2]);
  h = kvlb_hash_step(h, k->dst.words[3]);
  h = kvlb_hash_step(h, ((__u32)k->sport << 16) | k->dport);
  h = kvlb_hash_step(h, ((__u32)k->family << 8) | k->proto);
  return kvlb_fmix32(h ^ 40u);
}

/* A backend's identity for the Maglev permutation: its address and port, so
 * every gateway (and every restart, whatever ids the agent hands out) builds
 * the same table from the same backends. */
KVLB_INLINE __u32 kvlb_backend_hash(const struct kvlb_addr* a, __u16 port, __u8 family,
                                    __u32 seed) {
  __u32 h = seed;
  h = kvlb_hash_step(h, a->words[0]);
  h = kvlb_hash_step(h, a->words[1]);
  h = kvlb_hash_step(h, a->words[2]);
  h = kvlb_hash_step(h, a->words[3]);
  h = kvlb_hash_step(h, ((__u32)port << 8) | family);
  return kvlb_fmix32(h ^ 20u);
}

/* The Maglev slot (0..KVLB_MAGLEV_SIZE-1) of a client's flow. */
KVLB_INLINE __u32 kvlb_maglev_slot(const struct kvlb_flow_key* client) {
  return kvlb_flow_hash(client, KVLB_HASH_SEED_MAGLEV) % KVLB_MAGLEV_SIZE;
}

/* The SNAT ports a new flow tries (gw_new_flow writes every probe out). 16:
 * a benchmark burst of 20,000 connections over 4 backends (a quarter of each
 * backend's range held at the end, clients reusing their ports) found all 8 of
 * the earlier probes busy for 0-8 SYNs a round (each retried by its client a
 * second later); 16 for none (docs/gateway.md, source ports). */
#define KVLB_SNAT_PROBES 16

/* The gateway's source port (host byte order) for a client's flow, probe
 * `probe` (0 first, below 16) in [lo, hi] (lo <= hi: the agent checks). The
 * probes start at a hash of the tuple and step 1, 2, 3, ... (offsets 0, 1, 3,
 * 6, 10, ...: triangular numbers), so flows whose first ports are neighbours
 * do not queue up behind each other for the next free one (linear probing's
 * clusters); in a range of at most 136 ports they step 1. Either way the first
 * 16 probes are distinct ports while the range has 16. */
KVLB_INLINE __u16 kvlb_snat_port(const struct kvlb_flow_key* client, __u32 probe, __u16 lo,
                                 __u16 hi) {
  __u32 range = (__u32)hi - lo + 1;
  __u32 start = kvlb_flow_hash(client, KVLB_HASH_SEED_SNAT) % range;
  __u32 offset = range > 136 ? probe * (probe + 1) / 2 : probe;
  return (__u16)(lo + (start + offset) % range);
}

#endif /* KVLB_FLOW_HASH_H */
