/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * legacy.bpf.h - sockets recorded by a previous map layout.
 *
 * A v1 agent kept per-socket state in socket-local storage (kvlb_sock_v1). After
 * an upgrade, connections it balanced are still open; their release must still
 * take back their in-flight count, and getpeername() must still report their VIP.
 * The map is declared unpinned: the agent hands the old pin to the programs when
 * one exists (bpf_map__reuse_fd), otherwise each object gets an empty private
 * map and the lookup below finds nothing (a socket without storage is a NULL
 * check in the kernel).
 */
#ifndef KVLB_LEGACY_BPF_H
#define KVLB_LEGACY_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kvlb_maps.h"

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct kvlb_sock_state); /* same size and fields; flags were 0 */
} kvlb_sock_v1 SEC(".maps");

static __always_inline struct kvlb_sock_state* kvlb_legacy_state(struct bpf_sock* sk) {
  if (!sk) return 0;
  return bpf_sk_storage_get(&kvlb_sock_v1, sk, 0, 0);
}

#endif /* KVLB_LEGACY_BPF_H */
