// SPDX-License-Identifier: GPL-2.0
/*
 * xdp-map-floor.bpf.c - what the gateway's SYN path is made of, measured alone
 * (scripts/bench/xdp-map-floor): one insert into an LRU hash of the flow
 * table's key and value sizes (40 and 56 bytes) with random keys, in a table as
 * large as the gateway's default and in a small one; a lookup that misses; and
 * the program's own floor. Not part of kvlb: a measuring aid.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct k40 {
  __u32 w[10];
};
struct v56 {
  __u64 w[7];
};
#define LRU(name, size)                  \
  struct {                               \
    __uint(type, BPF_MAP_TYPE_LRU_HASH); \
    __uint(max_entries, size);           \
    __type(key, struct k40);             \
    __type(value, struct v56);           \
  } name SEC(".maps")
LRU(large, 524288); /* the gateway's default: 2 x 262,144 flows */
LRU(small, 2048);   /* fits in the caches */

static __always_inline void random_key(struct k40* k) {
  k->w[0] = bpf_get_prandom_u32();
  k->w[1] = bpf_get_prandom_u32();
}

SEC("xdp") int floor_only(struct xdp_md* c) {
  struct k40 k = {};
  random_key(&k);
  return k.w[0] == 7 ? XDP_DROP : XDP_PASS;
}
SEC("xdp") int lookup_miss_large(struct xdp_md* c) {
  struct k40 k = {};
  random_key(&k);
  return bpf_map_lookup_elem(&large, &k) ? XDP_DROP : XDP_PASS;
}
SEC("xdp") int insert_large(struct xdp_md* c) {
  struct k40 k = {};
  struct v56 v = {};
  random_key(&k);
  bpf_map_update_elem(&large, &k, &v, BPF_NOEXIST);
  return XDP_PASS;
}
SEC("xdp") int insert_small(struct xdp_md* c) {
  struct k40 k = {};
  struct v56 v = {};
  random_key(&k);
  bpf_map_update_elem(&small, &k, &v, BPF_NOEXIST);
  return XDP_PASS;
}
char LICENSE[] SEC("license") = "GPL";
