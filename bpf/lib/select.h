/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * select.h - backend selection, in plain C with no kernel helper calls.
 *
 * The same code is compiled into the BPF programs, the userspace unit tests and
 * the simulator, so what is tested and simulated is exactly what runs in the
 * kernel. Randomness comes in through struct kvlb_rng (seeded by the caller: the
 * kernel seeds it from bpf_get_prandom_u32(), tests with fixed seeds); map
 * lookups are the caller's job: the caller turns each sampled slot into a
 * struct kvlb_view with kvlb_view_make() and keeps the best with kvlb_prefer().
 *
 * Everything is loop-free except where bounded by a constant, so the verifier
 * accepts it.
 */
#ifndef KVLB_SELECT_H
#define KVLB_SELECT_H

#include "kvlb_maps.h"
#include "inline.h"

/* Everything is inlined. In the kernel the candidate loop runs in bpf_loop()
 * inside one BPF global function (bpf/lib/pick.bpf.h explains why): the
 * comparison's branches add to one iteration's work instead of multiplying
 * across candidates. */

/*
 * The selection's tunables, one row each: X(type, field, default). This table is
 * their one definition: it declares struct kvlb_select_cfg (userspace: a plain
 * struct), the BPF programs' load-time constants cfg_<field> (bpf/lib/config.bpf.h,
 * const volatile globals in .rodata, set by the agent before load), and the
 * defaults both sides start from.
 *
 *  stale_ns              a score older than this is stale: the backend is then
 *                        compared on in-flight counts only (least-inflight),
 *                        which the kernel always knows exactly (2 s).
 *  kv_permille_per_pick  estimated KV-cache growth per connection assigned since
 *                        the last score (permille of the cache). Lets picks
 *                        between two scrapes spread out instead of all landing on
 *                        the backend that looked emptiest at the scrape. 80, not
 *                        the 15 one 540-token prompt occupies (2,200 blocks of 16):
 *                        the ablation in virtual time (docs/benchmarks.md, "What
 *                        kvlb's own ideas are worth") measured p99 TTFT against
 *                        the oracle at 15/40/50/65/80/100/120/150/300/1000 and
 *                        80 was best or within noise in every regime (Poisson
 *                        arrivals with 1 s scrapes: 1.81x the oracle at 15, 1.11x
 *                        at 80, with 4 choices); a request grows its cache while
 *                        it decodes, and the estimate must also stand for the
 *                        load the last scrape missed.
 *  kv_full_permille      above this KV usage a new request is likely to queue
 *                        rather than be admitted to the running batch, so
 *                        assignments since the score count as waiting.
 *  w_queue, w_kv,        p2c-score weights: score = w_queue*waiting +
 *  w_inflight            w_kv*kv_permille + w_inflight*inflight.
 *  fail_threshold        passive health: after this many failed connects in a
 *                        row (0: off), a backend is cooling down for
 *  fail_cooldown_ns      fail_cooldown_ns: picked only when every candidate is
 *                        (the first refused connect benches it for 5 s).
 */
#define KVLB_SELECT_TUNABLES(X)      \
  X(__u64, stale_ns, 2000000000ull)  \
  X(__u32, kv_permille_per_pick, 80) \
  X(__u32, kv_full_permille, 950)    \
  X(__u32, w_queue, 1000)            \
  X(__u32, w_kv, 1)                  \
  X(__u32, w_inflight, 100)          \
  X(__u32, fail_threshold, 1)        \
  X(__u64, fail_cooldown_ns, 5000000000ull)

#define KVLB_SELECT_FIELD_(type, field, def) type field;
struct kvlb_select_cfg {
  KVLB_SELECT_TUNABLES(KVLB_SELECT_FIELD_)
};
#undef KVLB_SELECT_FIELD_

/* What the comparison needs to know about one candidate backend. */
struct kvlb_view {
  __u32 backend_id;
  __u32 eligible; /* active, has an address */
  __u32 cooling;  /* recent connect failures: only when nothing else is eligible */
  __u32 stale;    /* score too old (or never scored): compare on in-flight only */
  __u32 waiting;  /* waiting corrected for assignments since the score */
  __u32 kv;       /* KV permille corrected for assignments since the score */
  __u32 weight;
  __s64 inflight;
  __u64 score; /* p2c-score weighted sum, normalised by weight */
};

/* xorshift64*: small, fast, good enough for picking among a few backends. */
struct kvlb_rng {
  __u64 s;
};

KVLB_INLINE void kvlb_rng_seed(struct kvlb_rng* r, __u64 seed) {
  r->s = seed ? seed : 0x9E3779B97F4A7C15ull;
}

KVLB_INLINE __u32 kvlb_rng_next(struct kvlb_rng* r) {
  __u64 x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return (__u32)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

/* A number in [0, m) from a uniform 32-bit r, by multiply and shift (Lemire)
 * instead of r % m: no division on the per-connection path. */
KVLB_INLINE __u32 kvlb_range(__u32 r, __u32 m) {
  return (__u32)(((__u64)r * m) >> 32);
}

/* Number of candidates the policy compares for a service with n backends. */
KVLB_INLINE __u32 kvlb_num_choices(__u8 policy, __u8 choices, __u32 n) {
  __u32 k = choices;
  if (policy == KVLB_POLICY_RANDOM) return n ? 1 : 0;
  if (k < 2) k = 2;
  if (k > KVLB_MAX_CHOICES) k = KVLB_MAX_CHOICES;
  if (k > n) k = n;
  return k;
}

/*
 * The i-th of k distinct slots out of n, for a rotation `start` (< n) and a random
 * number r. The ring of n slots, rotated by `start`, is cut into k contiguous
 * strata of size n/k (rounded); candidate i is a uniformly random slot of stratum i.
 * Candidates are therefore always distinct, every slot is sampled with
 * probability k/n, and no rejection loop is needed (which the verifier would
 * have to walk k*k times). For k == n it enumerates every slot exactly once.
 */
KVLB_INLINE __u32 kvlb_sample_slot(__u32 n, __u32 k, __u32 i, __u32 start, __u32 r) {
  __u32 lo, hi, size;
  if (n == 0 || k == 0) return 0;
  lo = (i * n) / k;
  hi = ((i + 1) * n) / k;
  size = hi > lo ? hi - lo : 1;
  /* start < n and lo + offset < n, so one subtraction wraps the ring. */
  lo += start + kvlb_range(r, size);
  return lo >= n ? lo - n : lo;
}

KVLB_INLINE __u32 kvlb_clamp_u32(__u64 v) {
  return v > 0xffffffffull ? 0xffffffffu : (__u32)v;
}

/* Builds the comparison view of backend v->backend_id (set by the caller) from
 * its score and kernel counters (either may be NULL). Returns 0. */
KVLB_INLINE int kvlb_view_make(struct kvlb_view* v, const struct kvlb_score* s,
                               const struct kvlb_counters* c, const struct kvlb_select_cfg* cfg,
                               __u64 now_ns) {
  __u64 assigned = 0;
  __u64 kv;
  __u64 weight;
  __s64 inflight = c ? c->inflight : 0;

  if (!v || !cfg) return 0;
  v->eligible = v->backend_id != KVLB_BACKEND_NONE && s && s->state == KVLB_STATE_ACTIVE;
  v->inflight = inflight < 0 ? 0 : inflight;
  v->cooling = c && cfg->fail_threshold && c->consecutive_failures >= cfg->fail_threshold &&
               now_ns >= c->last_failure_ns && now_ns - c->last_failure_ns < cfg->fail_cooldown_ns;
  v->stale = 1;
  v->waiting = 0;
  v->kv = 0;
  v->weight = 100;
  v->score = 0;
  if (!s) return 0;

  weight = s->weight ? s->weight : 100;
  v->weight = (__u32)weight;
  /* The kernel reads a coarse clock (one tick behind at most): a score written a
   * moment ago can look like it is from the future, and is then fresh. */
  v->stale =
      s->updated_ns == 0 || (now_ns > s->updated_ns && now_ns - s->updated_ns > cfg->stale_ns);
  /* Load the last scrape cannot have seen: connections assigned since the score
   * that are still open. A connection that already closed has finished its
   * request and loads the replica no more, so assignments are capped by the
   * in-flight count (streaming requests keep their connection open). */
  if (c && c->picks > s->picks_at_score) assigned = c->picks - s->picks_at_score;
  if (assigned > (__u64)v->inflight) assigned = (__u64)v->inflight;
  /* The agent's bias for a suspect backend counts as connections in flight in
   * every comparison (after the correction above, which wants the real count). */
  v->inflight += s->inflight_bias;

  /* Correction for stale metrics (BRIEF.md "Stale metrics"): most requests sent
   * to a replica that is not queuing are admitted to its running batch at once,
   * so unseen assignments raise its KV estimate, and count as waiting only once
   * the replica was already queuing or its cache is nearly full. */
  kv = (__u64)s->kv_permille + assigned * cfg->kv_permille_per_pick;
  v->kv = kvlb_clamp_u32(kv);
  v->waiting = s->waiting;
  if (s->waiting > 0 || kv >= cfg->kv_full_permille)
    v->waiting = kvlb_clamp_u32((__u64)s->waiting + assigned);
  v->score = ((__u64)cfg->w_queue * v->waiting + (__u64)cfg->w_kv * v->kv +
              (__u64)cfg->w_inflight * (__u64)v->inflight) *
             100 / weight;
  return 0;
}

/* Three-way compare helper: -1 when a < b, 1 when a > b, else 0. */
#define KVLB_CMP(a, b) ((a) < (b) ? -1 : ((a) > (b) ? 1 : 0))

/*
 * Returns 1 when candidate a should be preferred over b under the policy.
 * Ineligible candidates never win. When either score is stale the comparison
 * falls back to in-flight counts, which the kernel keeps exactly.
 */
KVLB_INLINE int kvlb_prefer(__u8 policy, const struct kvlb_view* a, const struct kvlb_view* b) {
  int c = 0;
  if (!a || !b) return 0;
  if (!a->eligible) return 0;
  if (!b->eligible) return 1;
  /* A backend whose connects just failed loses to any healthy one, but still
   * beats nothing: if every backend is cooling down, connections are tried. */
  if (a->cooling != b->cooling) return b->cooling;
  if (policy == KVLB_POLICY_RANDOM) return 0;
  if (policy == KVLB_POLICY_LEAST_INFLIGHT || a->stale || b->stale)
    return a->inflight < b->inflight;

  switch (policy) {
    case KVLB_POLICY_P2C_KV:
      c = KVLB_CMP(a->kv, b->kv);
      if (!c) c = KVLB_CMP(a->inflight, b->inflight);
      break;
    case KVLB_POLICY_P2C_SCORE:
      c = KVLB_CMP(a->score, b->score);
      if (!c) c = KVLB_CMP(a->inflight, b->inflight);
      break;
    case KVLB_POLICY_P2C_QUEUE_KV:
    default:
      c = KVLB_CMP(a->waiting, b->waiting);
      if (!c) c = KVLB_CMP(a->kv, b->kv);
      if (!c) c = KVLB_CMP(a->inflight, b->inflight);
      break;
  }
  return c < 0;
}

/*
 * One pick, as a small state machine so every caller runs the same steps:
 *   kvlb_pick_init();  for i in [0, state.k): kvlb_pick_consider(kvlb_view of
 *   kvlb_pick_slot(i));  if (!state.have) { kvlb_pick_begin_scan(); for i in
 *   [0, n): consider(view of kvlb_pick_slot(i)) }
 * The caller only turns a slot into a view (the kernel with map lookups, tests
 * and the simulator from arrays).
 */
struct kvlb_pick_state {
  struct kvlb_view best;
  struct kvlb_rng rng;
  __u32 n;        /* backends of the service (slots in use) */
  __u32 k;        /* candidates to sample */
  __u32 start;    /* random rotation of the slot ring */
  __u32 have;     /* best holds an eligible backend */
  __u32 scan_all; /* fallback: walk every slot */
  __u32 policy;
  __u32 ties; /* candidates equal to best so far */
};

KVLB_INLINE void kvlb_pick_init(struct kvlb_pick_state* p, __u8 policy, __u8 choices, __u32 n,
                                __u64 seed) {
  if (n > KVLB_MAX_SLOTS) n = KVLB_MAX_SLOTS;
  p->have = 0;
  p->ties = 0;
  p->scan_all = 0;
  p->n = n;
  p->policy = policy;
  p->k = kvlb_num_choices(policy, choices, n);
  kvlb_rng_seed(&p->rng, seed);
  p->start = kvlb_range(kvlb_rng_next(&p->rng), n);
}

/* The slot to look at in iteration i. */
KVLB_INLINE __u32 kvlb_pick_slot(struct kvlb_pick_state* p, __u32 i) {
  if (p->n == 0) return 0;
  if (p->scan_all) return p->start + i >= p->n ? p->start + i - p->n : p->start + i;
  return kvlb_sample_slot(p->n, p->k, i, p->start, kvlb_rng_next(&p->rng));
}

/* Keeps v if it is eligible and better than the best so far. Candidates that
 * compare equal are kept with probability 1/(number of equals so far)
 * (reservoir sampling): ties are broken uniformly, whatever order the slots were
 * visited in. Keeping the first one would favour the backend that follows a
 * worse one in the ring. */
KVLB_INLINE void kvlb_pick_consider(struct kvlb_pick_state* p, const struct kvlb_view* v) {
  if (!v->eligible) return;
  if (!p->have || kvlb_prefer((__u8)p->policy, v, &p->best)) {
    p->best = *v;
    p->have = 1;
    p->ties = 1;
  } else if (!kvlb_prefer((__u8)p->policy, &p->best, v)) {
    p->ties++;
    if (kvlb_range(kvlb_rng_next(&p->rng), p->ties) == 0) p->best = *v;
  }
}

/* Every sampled candidate was draining or down: walk all slots instead, so one
 * bad sample never refuses a connection that a healthy backend could take. */
KVLB_INLINE void kvlb_pick_begin_scan(struct kvlb_pick_state* p) {
  p->scan_all = 1;
}

#endif /* KVLB_SELECT_H */
