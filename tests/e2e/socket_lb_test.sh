#!/usr/bin/env bash
# End-to-end: the socket LB steers new connections away from a busy replica.
#
# Three emulated vLLM replicas, each in its own network namespace; replica r0 is
# kept busy by direct requests (it runs at most 2 sequences, so the rest queue).
# kvlb-agent attaches to a fresh cgroup and scrapes the replicas; a client in
# that cgroup opens connections to the VIP. Asserts:
#   - every connection succeeds and getpeername() reports the VIP;
#   - the busy replica gets clearly fewer connections than each idle one;
#   - a connection to a non-VIP address from the same cgroup is not rewritten;
#   - on SIGTERM the agent detaches: the VIP no longer answers, pins are gone.
set -euo pipefail
BUILD=${1:?usage: socket_lb_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"

KVLB_BUILD=$BUILD
AGENT=$BUILD/userspace/kvlb-agent
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
for b in "$AGENT" "$PROBE"; do [ -x "$b" ] || harness_die "missing binary $b"; done

# On failure, show what the kernel saw: scores and counters of the backends.
dump_state() {
  "$KVLB_BUILD/userspace/cli/kvlbctl" maps --pin-dir "$HARNESS_BPFFS/kvlb" >&2 || true
  [ -f "$HARNESS_DIR/agent.log" ] && tail -n 20 "$HARNESS_DIR/agent.log" >&2
}
fail() { harness_log "FAIL: $*"; dump_state; exit 1; }

harness_topology e2e 3
C=$(harness_ns c)
VIP=$(harness_vip 0)
PORT=8000

harness_start_replica 0 --max-num-seqs 2 >/dev/null
harness_start_replica 1 >/dev/null
harness_start_replica 2 >/dev/null
# Keep r0 busy: 12 long generations straight to its address (not via the VIP,
# and not from the test cgroup). With max-num-seqs 2, about 10 wait.
harness_keep_busy 0 12

cat >"$HARNESS_DIR/agent.yaml" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
scrape_interval: 50ms
services:
  - name: llama
    vip: $VIP:$PORT
    policy: p2c-queue-kv
    backends:
$(for i in 0 1 2; do echo "      - address: $(harness_replica_ip "$i"):$PORT"; done)
YAML
AGENT_PID=$(harness_spawn "$C" "$HARNESS_DIR/agent.log" "$AGENT" -c "$HARNESS_DIR/agent.yaml" --log-scores 250ms)

r0_queued() {
  grep -E "score $(harness_replica_ip 0):$PORT .*waiting=([5-9]|[1-9][0-9])" "$HARNESS_DIR/agent.log"
}
harness_wait_for "the agent to see r0's queue" 30 r0_queued || {
  cat "$HARNESS_DIR/agent.log" >&2
  fail "agent never reported r0 as queuing"
}
grep "score" "$HARNESS_DIR/agent.log" | tail -n 3 >&2

RESULT=$(harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" --count 300)
harness_log "via VIP: $RESULT"
ok=$(jq -r '.ok' <<<"$RESULT")
mismatch=$(jq -r '.peer_mismatch' <<<"$RESULT")
n0=$(jq -r '.by_replica.r0 // 0' <<<"$RESULT")
n1=$(jq -r '.by_replica.r1 // 0' <<<"$RESULT")
n2=$(jq -r '.by_replica.r2 // 0' <<<"$RESULT")
[ "$ok" -eq 300 ] || fail "$((300 - ok)) of 300 connections failed: $(jq -c .errors <<<"$RESULT")"
[ "$mismatch" -eq 0 ] || fail "getpeername did not report the VIP on $mismatch connections"
# Clearly fewer: the busy replica gets under a fifth of what each idle one gets,
# and the idle ones share the rest.
[ $((n0 * 5)) -lt "$n1" ] && [ $((n0 * 5)) -lt "$n2" ] ||
  fail "busy r0 got $n0 connections vs r1 $n1, r2 $n2"
[ "$n1" -ge 90 ] && [ "$n2" -ge 90 ] || fail "idle replicas unevenly loaded: r1 $n1, r2 $n2"

# A destination that is not a VIP is left alone, even from the LB's cgroup.
DIRECT=$(harness_run_in_cgroup "$C" "$PROBE" --target "$(harness_replica_ip 1):$PORT" --count 20)
harness_log "direct to r1: $DIRECT"
[ "$(jq -r '.by_replica.r1 // 0' <<<"$DIRECT")" -eq 20 ] || fail "a non-VIP connection was rewritten"
[ "$(jq -r '.peer_mismatch' <<<"$DIRECT")" -eq 0 ] || fail "getpeername changed for a non-VIP connection"

# Clean shutdown: the agent detaches and removes its pins.
harness_stop_pid "$AGENT_PID"
grep -q "detached and removed pins" "$HARNESS_DIR/agent.log" || fail "agent did not detach on SIGTERM"
[ ! -e "$HARNESS_BPFFS/kvlb" ] || fail "pins left under $HARNESS_BPFFS/kvlb"
AFTER=$(harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" --count 3)
[ "$(jq -r '.ok' <<<"$AFTER")" -eq 0 ] || fail "the VIP still answered after the agent detached: $AFTER"

harness_log "PASS: busy r0 $n0, r1 $n1, r2 $n2 of 300; getpeername showed the VIP on all"
