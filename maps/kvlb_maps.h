/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * kvlb_maps.h - the contract between the kernel programs (bpf/) and userspace.
 *
 * Included by every BPF program and by the C++ agent, CLI, tests and simulator.
 * Everything here is plain C with fixed-width kernel types so the layout is
 * identical on both sides; the sizes are pinned by static assertions at the end
 * of this file, which are compiled on both sides.
 *
 * Versioning: every pinned map's name carries the version of its own layout
 * (type, key, value, size). A layout change bumps that map's version, so a new
 * agent never trips over an old pin of another layout: it creates the new map
 * next to the old pin, the programs it swaps into the pinned links use the new
 * one, and maps whose layout did not change keep their name and contents
 * (counters, scores) across the upgrade.
 *
 * History (maps a v2 agent retires when it finds their pins; KVLB_RETIRED_MAPS):
 *   kvlb_svc_v1 + kvlb_slots_v1: services with a separate slot table ->
 *     kvlb_svc_v2, backend ids inside the service value.
 *   kvlb_sock_v1: socket-local storage -> kvlb_sock_v2, a hash keyed by socket
 *     cookie. Its pin is kept: sock_release and getpeername still read it for
 *     sockets a v1 agent recorded (see bpf/lib/legacy.bpf.h).
 */
#ifndef KVLB_MAPS_H
#define KVLB_MAPS_H

#include <linux/types.h>

/* ---- limits ------------------------------------------------------------ */

/* Services (VIP:port:proto) balanced at once. */
#define KVLB_MAX_SERVICES 16384
/* Slots per service in the slot table: the most backends one service can have. */
#define KVLB_MAX_SLOTS 256
/* Backends in total, across all services (backend ids are 1..KVLB_MAX_BACKENDS-1). */
#define KVLB_MAX_BACKENDS 16384
/* Upper bound on the number of choices a policy compares (2..KVLB_MAX_CHOICES). */
#define KVLB_MAX_CHOICES 16
/* Backends a policy compares per pick unless a service says otherwise. 8, not 4:
 * with kv_permille_per_pick at 80 it was best or within noise in every regime of
 * the ablation in virtual time (docs/benchmarks.md), e.g. p99 TTFT 0.97x the
 * oracle's against 1.11x with 4 under Poisson arrivals and 1 s scrapes, for ~90 ns
 * more per connect (scripts/bench/connect --choices 4|8 --bpf-stats). */
#define KVLB_DEFAULT_CHOICES 8
/* Sockets the per-socket state map tracks at once (LB-assigned sockets that are
 * still open). The map is preallocated (~80 bytes per entry: 10 MiB at this
 * size) so connect() never allocates; beyond this many open sockets new ones are
 * still balanced but not counted (see KVLB_EVENT_SOCKET_TABLE_FULL). */
#define KVLB_MAX_SOCKETS 131072

/* Gateway (XDP) data plane. Services one gateway balances (rows of the Maglev
 * table), the Maglev table's size per service (a prime; >= 64x the most backends
 * a service can have, so each backend's share of the table is within ~1.5% of
 * 1/N: docs/gateway.md), and the flow table's default size (two entries per
 * flow: ~128 bytes per flow in an LRU hash, 32 MiB at this size). */
#define KVLB_GW_MAX_SERVICES 128
#define KVLB_MAGLEV_SIZE 16411
#define KVLB_GW_DEFAULT_FLOWS 262144
/* The flow-event ring (flow sync between gateways): 1 MiB, ~13,000 events of
 * 80 bytes (plus the ring's 8-byte headers) waiting for the agent, which takes
 * them every scrape interval. A power of two pages, as the kernel requires. */
#define KVLB_GW_FLOW_EVENTS_BYTES (1u << 20)

/* Backend id 0 is never used: it marks an empty slot. */
#define KVLB_BACKEND_NONE 0u

/* ---- pin names --------------------------------------------------------- */
/* Map names are limited to 15 characters by the kernel (BPF_OBJ_NAME_LEN). */
#define KVLB_MAP_SERVICES "kvlb_svc_v2"
#define KVLB_MAP_BACKENDS "kvlb_be_v1"
#define KVLB_MAP_SCORES "kvlb_score_v1"
#define KVLB_MAP_COUNTERS "kvlb_ctr_v1"
#define KVLB_MAP_SOCKETS "kvlb_sock_v2"
#define KVLB_MAP_EVENTS "kvlb_events_v1"
#define KVLB_MAP_LEGACY_SOCKETS "kvlb_sock_v1"
/* Gateway maps (bpf/gateway.bpf.c only; the socket LB's maps above are shared). */
#define KVLB_MAP_FLOWS "kvlb_flow_v1"
#define KVLB_MAP_MAGLEV "kvlb_maglev_v1"
#define KVLB_MAP_VIPS "kvlb_vip_v1"
#define KVLB_MAP_GW_STATS "kvlb_gwstat_v1"
#define KVLB_MAP_FLOW_EVENTS "kvlb_flowev_v1"
/* Keep-alive rebalancing (bpf/response_end.bpf.c, bpf/rebalance.bpf.c). */
#define KVLB_MAP_RESPONSE_ENDS "kvlb_resp_v1"
#define KVLB_MAP_SHED "kvlb_shed_v1"
#define KVLB_RETIRED_MAPS \
  { "kvlb_svc_v1", "kvlb_slots_v1" }
/* Links live in a subdirectory of the pin directory, one file per attach point. */
#define KVLB_LINK_DIR "links"
#define KVLB_LINK_CONNECT4 "connect4"
#define KVLB_LINK_GETPEERNAME4 "getpeername4"
#define KVLB_LINK_SOCK_RELEASE "sock_release"
#define KVLB_LINK_CONNECT6 "connect6"
#define KVLB_LINK_GETPEERNAME6 "getpeername6"
#define KVLB_LINK_SOCKOPS "sockops"
#define KVLB_LINK_RESPONSE_END "response_end"
/* The gateway's XDP links: one per interface, "xdp_<ifname>". */
#define KVLB_LINK_XDP_PREFIX "xdp_"

/* ---- enums ------------------------------------------------------------- */

enum kvlb_family {
  KVLB_AF_INET = 4,
  KVLB_AF_INET6 = 6,
};

enum kvlb_policy {
  KVLB_POLICY_RANDOM = 0,
  KVLB_POLICY_LEAST_INFLIGHT = 1,
  KVLB_POLICY_P2C_KV = 2,
  KVLB_POLICY_P2C_QUEUE_KV = 3,
  KVLB_POLICY_P2C_SCORE = 4,
  KVLB_POLICY_COUNT = 5,
};

enum kvlb_backend_state {
  KVLB_STATE_ACTIVE = 0,   /* eligible for new connections */
  KVLB_STATE_DRAINING = 1, /* no new connections; existing ones untouched */
  KVLB_STATE_DOWN = 2,     /* no new connections; failed health or scrapes */
};

/* Data-plane events counted per CPU in the events map (index = event). */
enum kvlb_event {
  /* A balanced socket found the socket table full: it was balanced, but its
   * in-flight accounting and getpeername() rewrite were skipped. */
  KVLB_EVENT_SOCKET_TABLE_FULL = 0,
  /* A service had no eligible backend: connect() was refused. */
  KVLB_EVENT_NO_BACKEND = 1,
  KVLB_EVENT_COUNT = 8,
};

/* Gateway packet counters (per CPU, index = stat): every packet the gateway
 * program sees is counted once under KVLB_GW_PACKETS and once under the reason
 * for its verdict. docs/gateway.md has the table of verdicts. */
enum kvlb_gw_stat {
  KVLB_GW_PACKETS = 0,
  KVLB_GW_NOT_VIP = 1,          /* PASS: not addressed to a service (or not IP) */
  KVLB_GW_NEW_FLOW = 2,         /* TX/REDIRECT: a SYN to a service, backend picked */
  KVLB_GW_FORWARD = 3,          /* TX/REDIRECT: a packet of a known flow, client side */
  KVLB_GW_REVERSE = 4,          /* TX/REDIRECT: a backend's packet back to its client */
  KVLB_GW_MAGLEV = 5,           /* TX/REDIRECT: non-SYN without a flow entry, placed by Maglev */
  KVLB_GW_NO_BACKEND = 6,       /* DROP: the service has no eligible backend */
  KVLB_GW_TRUNCATED = 7,        /* PASS: headers cut short before the destination is known */
  KVLB_GW_MALFORMED = 8,        /* DROP: to a VIP, IP or TCP header inconsistent or cut short */
  KVLB_GW_FRAGMENT = 9,         /* DROP: an IPv4 fragment or IPv6 fragment header to a VIP */
  KVLB_GW_IPV6_EXT = 10,        /* DROP: IPv6 extension headers before TCP, to a VIP */
  KVLB_GW_NOT_TCP = 11,         /* DROP: UDP and others to a VIP */
  KVLB_GW_ICMP = 12,            /* PASS: ICMP/ICMPv6 to a VIP (the host answers) */
  KVLB_GW_TTL = 13,             /* PASS: TTL/hop limit would expire (the host answers) */
  KVLB_GW_FIB_PASS = 14,        /* PASS: translated, next hop unresolved (the stack forwards) */
  KVLB_GW_FIB_FAIL = 15,        /* DROP: no route to the backend or client */
  KVLB_GW_REVERSE_MISS = 16,    /* PASS: to a SNAT port with no flow (the host resets it) */
  KVLB_GW_SNAT_BUSY = 17,       /* DROP: no free SNAT port for the flow after every probe */
  KVLB_GW_FLOW_TABLE_FULL = 18, /* DROP: the flow entry could not be written */
  KVLB_GW_CLOSED = 19,          /* a FIN or RST ended a flow (counted with its verdict) */
  KVLB_GW_EXPIRED = 20,         /* flows removed by the sweep (idle or closed) */
  KVLB_GW_SYNC_LOST = 21,       /* flow events the ring had no room for (flow sync) */
  KVLB_GW_TAKEN_OVER = 22,      /* flows a peer gateway placed that carried a packet here */
  KVLB_GW_STAT_COUNT = 24,
};

/* Service flags. */
#define KVLB_SVC_F_NONE 0u

/* ---- keys and values --------------------------------------------------- */

/* An IPv4 or IPv6 address in network byte order. IPv4 uses words[0] only and
 * leaves the rest zero, so keys compare equal byte for byte. */
struct kvlb_addr {
  __u32 words[4];
};

/* Service map key: VIP + port (network byte order) + IP protocol. */
struct kvlb_service_key {
  struct kvlb_addr vip;
  __u16 port;  /* network byte order */
  __u8 proto;  /* IPPROTO_TCP */
  __u8 family; /* enum kvlb_family */
};

/* Service map value: the policy and the backend ids, in one value. The agent
 * replaces a service with one map update, so the kernel sees the old backend
 * list or the new one, never a mix; and a connect reads the candidates from the
 * cache lines the service lookup already brought in (a separate slot table cost
 * a cache miss per connection). */
struct kvlb_service {
  __u32 id;            /* the agent's id for the service (stable across restarts) */
  __u16 backend_count; /* slots in use, 0..KVLB_MAX_SLOTS */
  __u8 policy;         /* enum kvlb_policy */
  __u8 choices;        /* backends compared per pick, 2..KVLB_MAX_CHOICES */
  __u32 flags;         /* KVLB_SVC_F_* */
  /* Gateway only: 1 + this service's row of the Maglev table, 0 for none. (Was
   * `reserved`, always 0: same layout, the socket LB ignores it.) */
  __u32 maglev_row;
  __u32 slots[KVLB_MAX_SLOTS]; /* backend ids; [0, backend_count) in use */
};

/* Backend map (array indexed by backend id). */
struct kvlb_backend {
  struct kvlb_addr addr;
  __u16 port;  /* network byte order */
  __u8 family; /* enum kvlb_family; 0 = unused entry */
  __u8 pad;
  __u32 reserved;
};

/* Score map (array indexed by backend id), written by the agent after each scrape. */
struct kvlb_score {
  __u32 waiting;     /* requests queued in the engine */
  __u32 running;     /* requests in the running batch */
  __u16 kv_permille; /* KV-cache usage 0..1000 */
  __u16 weight;      /* relative capacity, 100 = nominal */
  __u8 state;        /* enum kvlb_backend_state */
  __u8 pad[3];
  /* Connections the comparison counts on top of the kernel's in-flight count:
   * the agent's bound on a suspect backend (one that reports itself idle while
   * the connections it gets close at once), so it looks no better than the
   * median. 0 for every other backend. (Was `reserved`, always 0: same layout,
   * older programs ignore it.) */
  __u32 inflight_bias;
  __u64 updated_ns;     /* CLOCK_MONOTONIC time of the scrape (the kernel compares it
                         * with bpf_ktime_get_coarse_ns(), the same clock) */
  __u64 picks_at_score; /* kvlb_counters.picks when the score was taken */
};

/* Counter map (array indexed by backend id), written only by the kernel
 * with atomic adds (and by a new agent resetting a freshly allocated id). */
struct kvlb_counters {
  __u64 picks;                /* connections assigned, ever */
  __s64 inflight;             /* connections assigned and not yet released */
  __u64 connect_failures;     /* connects that failed or were refused, ever */
  __u32 consecutive_failures; /* since the last successful connect */
  __u32 pad;
  __u64 last_failure_ns; /* bpf_ktime_get_coarse_ns() of the last failure */
};

/* Per-socket state, keyed by the socket cookie (__u64): what connect() chose, so
 * getpeername() can report the VIP, sockops can attribute the connect's outcome
 * and sock_release can decrement in-flight and delete the entry. */
struct kvlb_sock_state {
  struct kvlb_addr vip;
  __u16 vip_port; /* network byte order */
  __u8 family;
  __u8 flags; /* KVLB_SOCK_F_* */
  __u32 backend_id;
};

/* The connect reached ESTABLISHED (set by sockops). A socket released or
 * re-connected without it was a failed connect to its backend. */
#define KVLB_SOCK_F_ESTABLISHED 1u

/* Keep-alive rebalancing: where the last complete HTTP/1.1 response of a
 * balanced socket ended, written by the response-end hook when the segment that
 * ends it arrives, keyed by the socket cookie. The socket is between requests
 * while nothing was received after rcv_end and nothing sent after snd_nxt. */
struct kvlb_response_end {
  __u32 rcv_end; /* sequence number just after the response's last byte */
  __u32 snd_nxt; /* the socket's snd_nxt when that segment arrived */
  __u64 at_ns;   /* bpf_ktime_get_ns() then */
};
#define KVLB_MAX_RESPONSE_ENDS KVLB_MAX_SOCKETS

/* Why a backend's idle pooled connections are closed (the shed map's value,
 * per backend id, written by the agent; 0: keep them). */
enum kvlb_shed_reason {
  KVLB_SHED_NONE = 0,
  KVLB_SHED_POOR_CHOICE = 1, /* the service's best backend beats it by the margin */
  KVLB_SHED_DRAINING = 2,    /* draining: it takes no new connections */
  KVLB_SHED_REASON_COUNT = 3,
};

/* What the rebalancing iterator did with one balanced, established socket. */
enum kvlb_rebalance_verdict {
  KVLB_RB_CLOSED = 0,          /* idle, to a shed backend: destroyed */
  KVLB_RB_BACKEND_OK = 1,      /* its backend is still a good choice */
  KVLB_RB_IN_FLIGHT = 2,       /* bytes unsent, unacknowledged or unread */
  KVLB_RB_NO_RESPONSE_END = 3, /* no complete response since the last bytes sent */
  KVLB_RB_TOO_RECENT = 4,      /* the last response ended less than the idle time ago */
  KVLB_RB_BUDGET = 5,          /* idle, but the run's close budget was spent */
  KVLB_RB_DESTROY_FAILED = 6,  /* bpf_sock_destroy() refused */
  KVLB_RB_VERDICT_COUNT = 8,
};

/* Gateway flow table key: a TCP packet's addresses and ports as they arrive. One
 * flow has two entries: the client's side (client -> VIP) and the backend's
 * (backend -> the gateway's SNAT address and port). */
struct kvlb_flow_key {
  struct kvlb_addr src;
  struct kvlb_addr dst;
  __u16 sport; /* network byte order */
  __u16 dport; /* network byte order */
  __u8 family; /* enum kvlb_family */
  __u8 proto;  /* IPPROTO_TCP */
  __u16 pad;
};

/* Gateway flow table value: what a packet of the entry's direction is rewritten
 * to. The partner entry's key is this tuple reversed. */
struct kvlb_flow {
  struct kvlb_addr src;
  struct kvlb_addr dst;
  __u16 sport; /* network byte order */
  __u16 dport; /* network byte order */
  __u32 backend_id;
  __u64 last_seen_ns; /* bpf_ktime_get_coarse_ns(), refreshed at most once a second */
  __u64 flags;        /* KVLB_FLOW_F_* (64 bits: the kernel's atomic or) */
};

/* A flow event (flow sync between gateways, docs/gateway.md): the gateway
 * placed a new flow, saw one end, or (from the sweep, now and then) still
 * carries one. Written by the XDP program into the flow-event ring, published
 * by the agent to the gateway's peers, whose agents hand it to their gateway's
 * sync program (with the backend's id there: struct kvlb_flow_sync). */
enum kvlb_flow_event_kind {
  KVLB_FLOW_EV_OPEN = 1,
  KVLB_FLOW_EV_CLOSE = 2,
  KVLB_FLOW_EV_REFRESH = 3,
};
struct kvlb_flow_event {
  struct kvlb_flow_key key; /* the client's side: client -> VIP */
  struct kvlb_addr snat;    /* the placing gateway's source address and port towards... */
  struct kvlb_addr backend; /* ...the backend */
  __u16 snat_port;          /* network byte order */
  __u16 backend_port;       /* network byte order */
  __u8 kind;                /* enum kvlb_flow_event_kind */
  __u8 pad[3];
};
/* What the agent hands the sync program (BPF_PROG_TEST_RUN data): an event
 * from a peer, validated, and the backend's id on this gateway. */
struct kvlb_flow_sync {
  struct kvlb_flow_event ev;
  __u32 backend_id;
  __u32 pad;
};
/* The sync program's verdicts (its return value). */
enum kvlb_flow_sync_result {
  KVLB_SYNC_INSTALLED = 1, /* a new flow of a peer's: both entries written */
  KVLB_SYNC_REFRESHED = 2, /* already known as the peer's: kept fresh */
  KVLB_SYNC_CONFLICT = 3,  /* the tuple is a live flow of this gateway's: left alone */
  KVLB_SYNC_CLOSED = 4,    /* marked closing (released here if this gateway counted it) */
  KVLB_SYNC_UNKNOWN = 5,   /* a close for a flow this gateway does not hold */
  KVLB_SYNC_FULL = 6,      /* the flow table refused the entries */
  KVLB_SYNC_INVALID = 7,   /* malformed (short data, bad kind, family, id) */
};

/* Open flows to one backend as the gateway's last sweep counted them
 * (kvlb_gw_open, indexed by backend id; not pinned). */
struct kvlb_gw_open {
  __u32 sweep; /* the sweep that counted (the object's gw_sweeps at the time) */
  __u32 open;  /* client-side entries of open (not closing) flows to this backend */
};

#define KVLB_FLOW_F_REVERSE 1u /* the backend's side of the flow */
#define KVLB_FLOW_F_CLOSING 2u /* a FIN or RST was seen: in-flight released */
#define KVLB_FLOW_F_MAGLEV 4u  /* created on a table miss by the Maglev table */
/* A backend side whose client reused the tuple for a new connection: kept,
 * translating nothing, until the closing timeout, so that its SNAT port is not
 * handed to the same client tuple while the backend holds it in TIME_WAIT. */
#define KVLB_FLOW_F_RETIRED 8u
/* Placed by a peer gateway (flow sync) and carried by it: this gateway has not
 * forwarded a packet of it, and does not count it in flight. Cleared by the
 * first packet here (a take-over), which counts it from then on. */
#define KVLB_FLOW_F_SYNCED 16u

/* ---- compile-time layout checks (compiled by the BPF and C++ sides) ------ */

#ifdef __cplusplus
#define KVLB_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define KVLB_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

KVLB_STATIC_ASSERT(sizeof(struct kvlb_addr) == 16, "kvlb_addr layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_service_key) == 20, "kvlb_service_key layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_service) == 16 + 4 * KVLB_MAX_SLOTS, "kvlb_service layout");

KVLB_STATIC_ASSERT(sizeof(struct kvlb_backend) == 24, "kvlb_backend layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_score) == 40, "kvlb_score layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_counters) == 40, "kvlb_counters layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_sock_state) == 24, "kvlb_sock_state layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_flow_key) == 40, "kvlb_flow_key layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_flow) == 56, "kvlb_flow layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_gw_open) == 8, "kvlb_gw_open layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_flow_event) == 80, "kvlb_flow_event layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_flow_sync) == 88, "kvlb_flow_sync layout");
KVLB_STATIC_ASSERT(sizeof(struct kvlb_response_end) == 16, "kvlb_response_end layout");
KVLB_STATIC_ASSERT(KVLB_MAGLEV_SIZE >= 64 * KVLB_MAX_SLOTS, "Maglev table per service");
KVLB_STATIC_ASSERT(KVLB_MAX_CHOICES >= 2, "at least two choices");
KVLB_STATIC_ASSERT((KVLB_MAX_SLOTS & (KVLB_MAX_SLOTS - 1)) == 0, "slots a power of two");

#endif /* KVLB_MAPS_H */
