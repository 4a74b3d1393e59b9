/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * response_end.bpf.h - cgroup_skb/ingress: a segment that ends a chunked
 * HTTP/1.1 response arrives on a balanced socket; remember where (its end
 * sequence number, the socket's snd_nxt, the time) for the rebalancing
 * iterator's idle rule (idle.h).
 *
 * Cost for every other packet of the cgroup: the IP and TCP headers and the
 * payload's last 7 bytes are read; only a segment that ends with the chunked
 * terminator costs a socket-table lookup and a map update. Why the payload and
 * not timing? A pooled connection waiting for a slow first token (prefill, a
 * queue) is silent too: only the response's own end says the request is over.
 */
#ifndef KVLB_RESPONSE_END_BPF_H
#define KVLB_RESPONSE_END_BPF_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.bpf.h"
#include "keepalive_maps.bpf.h"
#include "idle.h"

/* The payload's offset and the TCP sequence number of a packet that starts at
 * its IP header (cgroup_skb's view); -1 when it is not a TCP segment we read:
 * not IP, not TCP, a fragment, IPv6 extension headers. */
static __always_inline int response_end_tcp(struct __sk_buff* skb, __u32* seq) {
  __u8 ip[20];
  __u8 tcp[13];
  __u32 l4;
  if (bpf_skb_load_bytes(skb, 0, ip, 1)) return -1;
  if ((ip[0] >> 4) == 4) {
    if (bpf_skb_load_bytes(skb, 0, ip, 20)) return -1;
    if (ip[9] != IPPROTO_TCP) return -1;
    if (((ip[6] << 8) | ip[7]) & 0x3fff) return -1; /* more fragments, or an offset */
    l4 = (ip[0] & 0xf) * 4;
    if (l4 < 20) return -1;
  } else if ((ip[0] >> 4) == 6) {
    if (bpf_skb_load_bytes(skb, 6, ip, 1)) return -1;
    if (ip[0] != IPPROTO_TCP) return -1;
    l4 = 40;
  } else {
    return -1;
  }
  if (bpf_skb_load_bytes(skb, l4, tcp, sizeof(tcp))) return -1;
  *seq = ((__u32)tcp[4] << 24) | ((__u32)tcp[5] << 16) | ((__u32)tcp[6] << 8) | tcp[7];
  return (int)(l4 + (tcp[12] >> 4) * 4);
}

/* The payload (from `off` to `len`) ends a chunked response. */
static __always_inline int response_end_payload(struct __sk_buff* skb, __u32 off, __u32 len) {
  unsigned char tail[KVLB_CHUNKED_END_LEN];
  if (len == off + KVLB_LAST_CHUNK_LEN)
    return !bpf_skb_load_bytes(skb, off, tail, KVLB_LAST_CHUNK_LEN) && kvlb_is_last_chunk(tail);
  if (len < off + KVLB_CHUNKED_END_LEN) return 0;
  return !bpf_skb_load_bytes(skb, len - KVLB_CHUNKED_END_LEN, tail, sizeof(tail)) &&
         kvlb_is_chunked_end(tail);
}

static __always_inline void response_end_seen(struct __sk_buff* skb) {
  struct kvlb_response_end end = {};
  struct bpf_tcp_sock* tp;
  struct bpf_sock* sk;
  __u64 cookie;
  __u32 seq = 0, len = skb->len;
  int off = response_end_tcp(skb, &seq);

  if (off < 0 || !response_end_payload(skb, (__u32)off, len)) return;
  sk = skb->sk;
  if (!sk) return;
  sk = bpf_sk_fullsock(sk);
  if (!sk) return;
  cookie = bpf_get_socket_cookie(skb);
  if (!bpf_map_lookup_elem(&kvlb_sock_v2, &cookie)) return; /* not a balanced socket */
  tp = bpf_tcp_sock(sk);
  if (!tp) return;
  end.rcv_end = seq + (len - (__u32)off);
  /* The hook runs before TCP has looked at the segment: a duplicate must not
   * refresh the record. */
  if (!kvlb_brings_new_data(end.rcv_end, tp->rcv_nxt)) return;
  end.snd_nxt = tp->snd_nxt;
  end.at_ns = bpf_ktime_get_ns();
  bpf_map_update_elem(&kvlb_resp_v1, &cookie, &end, BPF_ANY);
}

#endif /* KVLB_RESPONSE_END_BPF_H */
