/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * keepalive_maps.bpf.h - the maps of keep-alive rebalancing, shared (pinned by
 * name, like maps.bpf.h's) by the socket LB's object, which writes where each
 * response ends, and the rebalancing iterator, which reads them.
 */
#ifndef KVLB_KEEPALIVE_MAPS_BPF_H
#define KVLB_KEEPALIVE_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kvlb_maps.h"

/* Where the last response of a balanced socket ended, by socket cookie. Not
 * preallocated: only balanced sockets that received a complete chunked
 * response have an entry (the agent sizes it like the socket table), and
 * sock_release removes it with the socket's. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, KVLB_MAX_RESPONSE_ENDS);
  __type(key, __u64);
  __type(value, struct kvlb_response_end);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_resp_v1 SEC(".maps");

/* Per backend id, enum kvlb_shed_reason: written by the agent each round. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_shed_v1 SEC(".maps");

#endif /* KVLB_KEEPALIVE_MAPS_BPF_H */
