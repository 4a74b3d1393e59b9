/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * idle.h - keep-alive rebalancing: is a pooled connection between requests?
 * Plain C with no helper calls: the iterator (bpf/rebalance.bpf.c) fills a
 * snapshot from the socket under its lock and asks; unit tests ask the same
 * function with hand-made snapshots.
 *
 * The rule (docs/keepalive.md): a balanced, established client socket is idle
 * when all of
 *   1. write_seq == snd_nxt == snd_una: every byte the client wrote was sent
 *      and acknowledged (no request, or part of one, queued or in flight);
 *   2. rcv_nxt == copied_seq: the client read every byte it received;
 *   3. a complete HTTP/1.1 response was seen to end (the response-end hook
 *      recorded it), nothing was received after its last byte (rcv_nxt ==
 *      rcv_end) and nothing was sent since it arrived (snd_nxt unchanged):
 *      the last exchange on the connection is a finished response;
 *   4. that response ended at least idle_ns ago.
 * A response whose end cannot be seen (TLS, Content-Length bodies, HTTP/2)
 * never satisfies 3: such connections are never closed.
 */
#ifndef KVLB_IDLE_H
#define KVLB_IDLE_H

#include "kvlb_maps.h"
#include "inline.h"

struct kvlb_sock_snapshot {
  __u32 write_seq, snd_nxt, snd_una; /* the client's sending side */
  __u32 rcv_nxt, copied_seq;         /* its receiving side */
  __u64 now_ns;
  const struct kvlb_response_end* end; /* NULL: no complete response seen */
};

KVLB_INLINE enum kvlb_rebalance_verdict kvlb_idle_verdict(const struct kvlb_sock_snapshot* s,
                                                          __u64 idle_ns) {
  if (s->write_seq != s->snd_nxt || s->snd_nxt != s->snd_una || s->rcv_nxt != s->copied_seq)
    return KVLB_RB_IN_FLIGHT;
  if (!s->end || s->end->rcv_end != s->rcv_nxt || s->end->snd_nxt != s->snd_nxt)
    return KVLB_RB_NO_RESPONSE_END;
  /* A response end from the future (clock read before the segment's update
   * raced) is recent. */
  if (s->now_ns < s->end->at_ns || s->now_ns - s->end->at_ns < idle_ns) return KVLB_RB_TOO_RECENT;
  return KVLB_RB_CLOSED;
}

/* The last bytes of a chunked HTTP/1.1 message: the CRLF that ends the last
 * data chunk (or the headers), the zero-size last chunk, the empty trailer. A
 * segment whose payload ends with them completes a response; so does a segment
 * that is the last chunk alone (uvicorn, under vLLM and SGLang, writes it on
 * its own after the data, and with TCP_NODELAY it travels alone). */
#define KVLB_CHUNKED_END_LEN 7
#define KVLB_LAST_CHUNK_LEN 5

KVLB_INLINE int kvlb_is_chunked_end(const unsigned char* tail) {
  return tail[0] == '\r' && tail[1] == '\n' && tail[2] == '0' && tail[3] == '\r' &&
         tail[4] == '\n' && tail[5] == '\r' && tail[6] == '\n';
}

KVLB_INLINE int kvlb_is_last_chunk(const unsigned char* p) {
  return p[0] == '0' && p[1] == '\r' && p[2] == '\n' && p[3] == '\r' && p[4] == '\n';
}

/* The segment ending at sequence number `end` brings bytes the socket has not
 * received yet (rcv_nxt: the next one it expects). A retransmitted or
 * duplicated last segment does not: recording it again would stamp the
 * response end with a snd_nxt taken after the next request went out, and that
 * request would look finished. */
KVLB_INLINE int kvlb_brings_new_data(__u32 end, __u32 rcv_nxt) {
  return (__s32)(end - rcv_nxt) > 0;
}

#endif /* KVLB_IDLE_H */
