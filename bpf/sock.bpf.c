// SPDX-License-Identifier: GPL-2.0
/*
 * sock.bpf.c - the socket load balancer: one BPF object for every socket hook,
 * sharing one set of maps and load-time constants (bpf/lib/config.bpf.h). Each
 * hook is a one-line entry point; what it does lives in bpf/lib/:
 *
 *   cgroup/connect4, connect6   pick a backend for a connect() to a VIP   sock_lb.bpf.h
 *   cgroup/getpeername4, 6      report the VIP as the peer                 peer.bpf.h
 *   sockops                     a balanced connect reached ESTABLISHED     lifecycle.bpf.h
 *   cgroup/sock_release         a balanced socket goes away                lifecycle.bpf.h
 *   cgroup_skb/ingress          a chunked HTTP response ends on a balanced  response_end.bpf.h
 *                               socket (keep-alive rebalancing)
 *
 * sockops serves passive health only: with it off, the agent does not load it
 * (autoload off) and nothing attaches there. The same for the response-end hook
 * when no service rebalances keep-alive connections.
 */
#include "lib/lifecycle.bpf.h"
#include "lib/peer.bpf.h"
#include "lib/response_end.bpf.h"
#include "lib/sock_lb.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/connect4")
int kvlb_connect4(struct bpf_sock_addr* ctx) {
  return sock_lb_verdict(sock4_xlate(ctx));
}

SEC("cgroup/connect6")
int kvlb_connect6(struct bpf_sock_addr* ctx) {
  return sock_lb_verdict(sock6_xlate(ctx));
}

SEC("cgroup/getpeername4")
int kvlb_getpeername4(struct bpf_sock_addr* ctx) {
  peer4_report_vip(ctx);
  return 1;
}

SEC("cgroup/getpeername6")
int kvlb_getpeername6(struct bpf_sock_addr* ctx) {
  peer6_report_vip(ctx);
  return 1;
}

SEC("sockops")
int kvlb_sockops(struct bpf_sock_ops* skops) {
  sock_established(skops);
  return 1;
}

SEC("cgroup/sock_release")
int kvlb_sock_release(struct bpf_sock* ctx) {
  sock_released(ctx);
  return 1;
}

SEC("cgroup_skb/ingress")
int kvlb_response_end(struct __sk_buff* skb) {
  response_end_seen(skb);
  return 1; /* every packet passes: the hook only watches */
}
