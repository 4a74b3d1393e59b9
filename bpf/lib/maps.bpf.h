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

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, KVLB_MAX_SERVICES);
  __type(key, struct kvlb_service_key);
  __type(value, struct kvlb_service);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_svc_v1 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_MAX_SERVICES* KVLB_MAX_SLOTS);
  __type(key, __u32);
  __type(value, struct kvlb_slot);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_slots_v1 SEC(".maps");

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

/* Socket-local storage: freed by the kernel together with the socket, so the
 * reverse mapping for getpeername() can never leak or go stale. */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct kvlb_sock_state);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_sock_v1 SEC(".maps");

#endif /* KVLB_MAPS_BPF_H */
