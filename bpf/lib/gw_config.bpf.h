/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * gw_config.bpf.h - the gateway's load-time constants (`const volatile`, set by
 * the agent through the skeleton before load; see config.bpf.h).
 */
#ifndef KVLB_GW_CONFIG_BPF_H
#define KVLB_GW_CONFIG_BPF_H

#include <linux/types.h>

/* The gateway's source address towards IPv4 / IPv6 backends (network byte
 * order; 0 / :: : that family is not translated and its services get no
 * flows). Backends answer to it, so the return traffic comes back here. */
const volatile __u32 cfg_snat4 = 0;
const volatile __u32 cfg_snat6[4] = {0, 0, 0, 0};
/* Source ports the gateway hands out (host byte order, inclusive). Must be
 * outside the host's ip_local_port_range: a backend's packet to one of these
 * ports is the gateway's, never a local socket's (the agent checks). */
const volatile __u16 cfg_snat_port_lo = 10000;
const volatile __u16 cfg_snat_port_hi = 29999;
/* A flow with no packet for this long is removed by the sweep and its
 * in-flight count released (an LLM stream can be silent between tokens for a
 * while, and TCP keep-alives refresh it). */
const volatile __u64 cfg_flow_idle_ns = 600ull * 1000000000ull;
/* A flow that saw a FIN or RST is kept this long for the rest of the close
 * (the other side's FIN, the last ACK, retransmissions) and, above all, its
 * SNAT port is not handed out again while the backend may still hold the old
 * connection in TIME_WAIT (60 s on Linux): a new SYN on the same 4-tuple with
 * an older timestamp (per-connection offsets) is refused there (PAWS). 120 s,
 * as conntrack's TIME_WAIT. */
const volatile __u64 cfg_flow_closing_ns = 120ull * 1000000000ull;

/* Flow sync with peer gateways (gateway.sync_group): 0 is off (every event
 * site is dead code then). Otherwise new and closed flows placed here are
 * written to the flow-event ring, and each open one again every this many
 * sweeps (spread by the flow's hash), so that peers keep it past their idle
 * timeout while it lives here. */
const volatile __u32 cfg_sync_refresh_sweeps = 0;

#endif /* KVLB_GW_CONFIG_BPF_H */
