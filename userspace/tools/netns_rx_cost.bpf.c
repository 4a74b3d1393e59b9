// SPDX-License-Identifier: GPL-2.0
/*
 * netns_rx_cost.bpf.c - a measuring aid for scripts/bench/xdp-connect (not part
 * of kvlb's data plane): the time the kernel spends forwarding each packet that
 * a device of one network namespace receives and sends on to a device of
 * another, from the netif_receive_skb tracepoint (the start of the receive) to
 * the netif_rx tracepoint of the same packet entering the next namespace's
 * veth (its transmit has reached the peer, which only queues it).
 *
 * For a gateway namespace of veths, that span is the gateway's whole work on
 * the packet: generic XDP (with kvlb: the program, the redirect and the
 * transmit) or the stack (ip_rcv, netfilter's conntrack and NAT, routing,
 * forwarding and the same transmit). The next namespace's own work runs later,
 * outside the span. So the sum over a round is what the gateway did, apart
 * from what the clients, the replicas and the delivery of packets between
 * namespaces cost. Receives do not nest on one CPU, so one open span per CPU
 * is enough; a packet that does not leave for another namespace (delivered to
 * a local socket, dropped) leaves its span open until the next receive on that
 * CPU discards it, and is counted under `unfinished`. (fentry/fexit would
 * time the function itself; this kernel refuses tracing programs of that kind,
 * tracepoints load.)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct ns_common {
  unsigned int inum;
};
struct net {
  struct ns_common ns;
};
typedef struct {
  struct net* net;
} possible_net_t;
struct net_device {
  possible_net_t nd_net;
};
struct sk_buff {
  struct net_device* dev;
};
#pragma clang attribute pop

/* The namespace measured: its inode number (ls -Li /run/netns/NAME). */
const volatile __u32 cfg_netns_inum = 0;

struct rx_cost {
  __u64 packets;    /* spans that ended in another namespace */
  __u64 ns;         /* their total time */
  __u64 unfinished; /* spans discarded (the packet did not leave) */
};
/* Per CPU: the running totals (read by summing the CPUs). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct rx_cost);
} totals SEC(".maps");
/* Per CPU: when the packet being received on this CPU entered (0: none of the
 * namespace's). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} started SEC(".maps");

static __always_inline int in_ns(const struct sk_buff* skb) {
  return skb->dev && skb->dev->nd_net.net && skb->dev->nd_net.net->ns.inum == cfg_netns_inum;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(rx_start, struct sk_buff* skb) {
  __u32 zero = 0;
  __u64* t = bpf_map_lookup_elem(&started, &zero);
  struct rx_cost* c = bpf_map_lookup_elem(&totals, &zero);
  if (!t || !c) return 0;
  if (*t) c->unfinished += 1;
  *t = in_ns(skb) ? bpf_ktime_get_ns() : 0;
  return 0;
}

SEC("tp_btf/netif_rx")
int BPF_PROG(rx_leave, struct sk_buff* skb) {
  __u32 zero = 0;
  __u64* t = bpf_map_lookup_elem(&started, &zero);
  struct rx_cost* c = bpf_map_lookup_elem(&totals, &zero);
  if (!t || !c || !*t || in_ns(skb)) return 0;
  c->packets += 1;
  c->ns += bpf_ktime_get_ns() - *t;
  *t = 0;
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
