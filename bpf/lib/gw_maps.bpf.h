/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * gw_maps.bpf.h - the gateway's own maps, pinned next to the socket LB's
 * (services, backends, scores and counters are shared: maps.bpf.h).
 */
#ifndef KVLB_GW_MAPS_BPF_H
#define KVLB_GW_MAPS_BPF_H

#include "maps.bpf.h"
#include "pick.bpf.h"

/* Flows, both directions (struct kvlb_flow_key -> struct kvlb_flow). LRU: when
 * full, the least recently used entries go instead of new flows failing; the
 * agent sizes it (flow_table) so that takes more open flows than the gateway
 * serves. Its size is set at load. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 2 * KVLB_GW_DEFAULT_FLOWS);
  __type(key, struct kvlb_flow_key);
  __type(value, struct kvlb_flow);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_flow_v1 SEC(".maps");

/* Maglev tables: row r (kvlb_service.maglev_row - 1) is entries
 * [r * KVLB_MAGLEV_SIZE, (r + 1) * KVLB_MAGLEV_SIZE), each a backend id. Built
 * by the agent when a service's backends change. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_GW_MAX_SERVICES* KVLB_MAGLEV_SIZE);
  __type(key, __u32);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_maglev_v1 SEC(".maps");

/* Addresses that are VIPs (key: a service key with port 0 and protocol 0):
 * what decides the verdict of a packet that is not a well-formed TCP segment. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, KVLB_GW_MAX_SERVICES);
  __type(key, struct kvlb_service_key);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_vip_v1 SEC(".maps");

/* Flow events for the agent to share with peer gateways (struct
 * kvlb_flow_event; written only with cfg_sync_refresh_sweeps set). Pinned:
 * events written while the agent restarts wait for the next one. When full,
 * an event is dropped and counted (KVLB_GW_SYNC_LOST); the flow itself is
 * unaffected here. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, KVLB_GW_FLOW_EVENTS_BYTES);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_flowev_v1 SEC(".maps");

/* Packet counters (enum kvlb_gw_stat), per CPU, all in one value: one lookup
 * per packet. */
struct kvlb_gw_stats {
  __u64 n[KVLB_GW_STAT_COUNT];
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct kvlb_gw_stats);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} kvlb_gwstat_v1 SEC(".maps");

/* Scratch space: the pick's state, a new flow's two entries being built, and
 * the route lookup's 64 bytes. BPF's stack is 512 bytes for a whole call chain (Linux 6.1 rounds
 * each frame up to 32 bytes: the pick's chain, entry point -> pick -> its global function -> the
 * bpf_loop() callback, came to 576 there with the state on the stack), and the flow builder's chain
 * (entry point, builder, route lookup) would not fit either. Per CPU, and an XDP program runs to
 * completion on its CPU: no sharing. Not pinned: nothing outside one program run reads it. */
struct kvlb_gw_scratch {
  struct kvlb_flow_key rkey;
  struct kvlb_flow rev;
  struct kvlb_flow fwd;
  struct kvlb_pick_run_ctx pick; /* the pick's state (pick.bpf.h) */
  struct bpf_fib_lookup fib;     /* the route lookup's parameters and result */
  __u32 counted;                 /* the new flow counted in flight */
  __u32 stateful;                /* the new flow has entries (not a FIN or RST) */
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct kvlb_gw_scratch);
} kvlb_gw_scratch SEC(".maps");

/* Open flows per backend (index: backend id), counted by the sweep as it walks
 * the flow table, so the agent reads one array instead of walking the table
 * itself: that walk was two system calls per entry every sweep interval (with
 * closed flows kept for the closing timeout, hundreds of thousands of entries
 * at a few thousand connections a second: ~8% of a core). An entry counts for
 * the sweep whose number it carries; older numbers are zero. Not pinned: only
 * the agent that runs the sweep reads it (struct kvlb_gw_open: kvlb_maps.h). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, KVLB_MAX_BACKENDS);
  __type(key, __u32);
  __type(value, struct kvlb_gw_open);
} kvlb_gw_open SEC(".maps");

/* Sweeps run so far (the agent runs them one at a time): numbers the counts. */
__u32 gw_sweeps = 0;

#endif /* KVLB_GW_MAPS_BPF_H */
