/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * inline.h - KVLB_INLINE for the plain-C headers shared by the BPF programs and
 * userspace (select.h, flow_hash.h, csum.h): always inlined in BPF, plain
 * static inline elsewhere.
 */
#ifndef KVLB_INLINE_H
#define KVLB_INLINE_H

#ifndef KVLB_INLINE
#ifdef __BPF__
#define KVLB_INLINE static __always_inline
#else
#define KVLB_INLINE static inline
#endif
#endif

#endif /* KVLB_INLINE_H */
