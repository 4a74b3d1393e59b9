/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * config.bpf.h - load-time constants. `const volatile` globals live in .rodata:
 * the agent sets them through the skeleton before load, and the verifier then
 * treats them as constants (dead branches are pruned).
 */
#ifndef KVLB_CONFIG_BPF_H
#define KVLB_CONFIG_BPF_H

#include <linux/types.h>
#include "select.h"

/* cfg_stale_ns, cfg_kv_permille_per_pick, ...: one per row of select.h's table. */
#define KVLB_CFG_GLOBAL_(type, field, def) const volatile type cfg_##field = def;
KVLB_SELECT_TUNABLES(KVLB_CFG_GLOBAL_)
#undef KVLB_CFG_GLOBAL_

/* Sockets carrying this mark (SO_MARK) are never balanced: the agent marks its
 * own scrapes. 0: no bypass. */
const volatile __u32 cfg_bypass_mark = 0;
/* When non-zero, only sockets of this network namespace (the host's) are
 * balanced: pods in their own namespaces connect to VIPs unchanged. */
const volatile __u64 cfg_host_netns_cookie = 0;
/* errno returned by connect() to a VIP with no eligible backend. */
const volatile __u32 cfg_no_backend_errno = 111; /* ECONNREFUSED, as kube-proxy's REJECT */

#endif /* KVLB_CONFIG_BPF_H */
