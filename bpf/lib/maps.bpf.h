/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * maps.bpf.h - the pinned maps, defined once for every kvlb BPF object.
 *
 * Each attach point is its own BPF object (one file per hook); they share these
 * maps through pinning by name: the agent opens every object with the same
 * pin_root_path, the first load creates and pins a map, later loads (and later
 * agents) reuse the pinned one. So the maps outlive the agent, and a restarted
 * agent adopts them instead of starting from empty counters.
 */
#ifndef KVLB_MAPS_BPF_H
#define KVLB_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kvlb_maps.h"

/* Services by VIP. Not preallocated: a value holds up to 256 backend ids (1 KiB),
 * so memory follows the services in use; only the agent updates it. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, KVLB_MAX_SERVICES);
  __type(key, struct kvlb_service_key);
  __type(value, struct kvlb_service);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_svc_v2 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, struct kvlb_backend);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_be_v1 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, struct kvlb_score);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_score_v1 SEC(".maps");

/* Shared (not per-CPU) on purpose: selection needs the global in-flight count
 * of a backend at the moment of the pick; updates are atomic adds. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, struct kvlb_counters);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_ctr_v1 SEC(".maps");

/* Per-socket state keyed by socket cookie: a preallocated hash, not socket-local
 * storage. Socket storage allocates (and charges to the map's memory cgroup) on
 * every connect() and frees through RCU on every close (perf: ~45% of
 * connect4's samples). A preallocated entry costs a free-list pop and push.
 * Cookies are never reused, so an entry cannot be mistaken for a later socket;
 * sock_release deletes it when the socket goes away. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, KVLB_MAX_SOCKETS);
  __type(key, __u64);
  __type(value, struct kvlb_sock_state);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_sock_v2 SEC(".maps");

/* Data-plane event counters (enum kvlb_event), per CPU: no shared cache line. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, KVLB_EVENT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_events_v1 SEC(".maps");

/* The kvlb state of the socket behind a program's context (any context type
 * bpf_get_socket_cookie() accepts), or NULL when the LB did not assign it. */
static __always_inline struct kvlb_sock_state* kvlb_sock_state_of(void* ctx) {
  __u64 cookie = bpf_get_socket_cookie(ctx);
  return bpf_map_lookup_elem(&kvlb_sock_v2, &cookie);
}

static __always_inline void kvlb_event(__u32 event) {
  __u64* n = bpf_map_lookup_elem(&kvlb_events_v1, &event);
  if (n) *n += 1;
}

#endif /* KVLB_MAPS_BPF_H */
