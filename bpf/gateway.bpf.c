// SPDX-License-Identifier: GPL-2.0
/*
 * gateway.bpf.c - the XDP gateway: one object, attached to the client-facing and
 * the backend-facing interfaces of a gateway host (the same program on both:
 * one flow-table lookup tells a client's packet from a backend's). What it does
 * lives in bpf/lib/gateway.bpf.h; docs/gateway.md has the verdict table.
 *
 *   xdp  kvlb_gateway    every packet that enters an attached interface
 *   xdp  kvlb_gw_sweep   run by the agent (BPF_PROG_TEST_RUN), never attached:
 *                        removes closed and idle flows, releasing in-flight
 *   xdp  kvlb_gw_sync    run by the agent (BPF_PROG_TEST_RUN), never attached:
 *                        applies one flow event of a peer gateway (flow sync)
 */
#include "lib/gateway.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int kvlb_gateway(struct xdp_md* ctx) {
  return gw_process(ctx);
}

SEC("xdp")
int kvlb_gw_sweep(struct xdp_md* ctx) {
  gw_sweep();
  return XDP_PASS;
}

SEC("xdp")
int kvlb_gw_sync(struct xdp_md* ctx) {
  return gw_sync(ctx);
}
