/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * kernel_types.bpf.h - the few kernel-internal structures the rebalancing
 * iterator reads, declared with only the fields it uses. preserve_access_index
 * makes every access a CO-RE relocation: libbpf finds each field's offset in
 * the running kernel's BTF at load, so these declarations need not match any
 * kernel's layout (no vmlinux.h from the build machine's kernel).
 */
#ifndef KVLB_KERNEL_TYPES_BPF_H
#define KVLB_KERNEL_TYPES_BPF_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct sock_common {
  unsigned short skc_family;
  volatile unsigned char skc_state;
};

struct bpf_iter_meta {
  void* seq;
  __u64 session_id;
  __u64 seq_num;
};

struct bpf_iter__tcp {
  struct bpf_iter_meta* meta;
  struct sock_common* sk_common;
  __u32 uid;
};

struct tcp_sock {
  __u32 write_seq;
  __u32 snd_nxt;
  __u32 snd_una;
  __u32 rcv_nxt;
  __u32 copied_seq;
};

#pragma clang attribute pop

#endif /* KVLB_KERNEL_TYPES_BPF_H */
