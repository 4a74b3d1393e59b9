#!/usr/bin/env bash
# End-to-end: a lying replica. Of four emulated replicas, one answers every
# completion with HTTP 500 at once (kvlb-replica-sim --fault-fail-requests), so
# it reports 0 waiting and 0% KV: to the p2c policies it is the best backend
# there is, and its TCP connects succeed (passive health cannot see it). Real
# streaming completions from kvlb-loadgen, through the socket LB (every backend
# compared: choices 4):
#   1. suspect detection off: the liar takes far more than its fair share
#      (over 1.5 times a random balancer's 1 in 4; measured 48% here, and 94% in
#      the simulator at 1 req/s per replica, where healthy replicas are busier);
#   2. on (after a reload): the agent finds it from the kernel's counts (its
#      connections close at once while it reports nothing running), bounds it to
#      the median, reports it (log, metric, kvlbctl), and its share falls below a
#      random balancer's (1 in 4).
set -euo pipefail
BUILD=${1:?usage: lying_replica_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
LOADGEN=$BUILD/userspace/loadgen/kvlb-loadgen
CTL=$BUILD/userspace/cli/kvlbctl
DATASET=$ROOT/tests/fixtures/datasets/short.jsonl
PORT=8000 RPS=6 SECONDS_EACH=30

harness_topology liar 4
C=$(harness_ns c)
VIP=$(harness_vip 0)
harness_start_replica 0 --fault-fail-requests >/dev/null
for i in 1 2 3; do harness_start_replica "$i" >/dev/null; done
LIAR=$(harness_replica_ip 0):$PORT
SOCK=$HARNESS_DIR/agent.sock
config() {  # suspect detection on/off
  echo "cgroup: $HARNESS_CGROUP"
  echo "bpffs: $HARNESS_BPFFS"
  echo "pin_dir: $HARNESS_BPFFS/kvlb"
  echo "admin: {socket: $SOCK}"
  echo "suspect_backends: {enabled: $1}"
  echo "services:"
  echo "  - {name: llm, vip: \"$VIP:$PORT\", choices: 4, backends: ["
  for i in 0 1 2 3; do echo "      {address: \"$(harness_replica_ip "$i"):$PORT\"},"; done
  echo "    ]}"
}
config false >"$HARNESS_DIR/agent.yaml"
AGENT=$(harness_spawn "$C" "$HARNESS_DIR/agent.log" "$BUILD/userspace/kvlb-agent" -c "$HARNESS_DIR/agent.yaml" --watch-config 0s)
harness_wait_for "agent" 20 test -S "$SOCK" || fail "agent did not start"
sleep 0.3
load() {  # OUT: SECONDS_EACH seconds at RPS of streaming completions, a connection each
  harness_run_in_cgroup "$C" "$LOADGEN" --url "http://$VIP:$PORT" --rps "$RPS" \
    --duration "$SECONDS_EACH" --dataset "$DATASET" --timeout 30 -q -o "$1" >/dev/null
}
share() {  # REPORT: requests the liar took (each one a 500), of all
  jq -r '"\(.summary.errors.http_500 // 0) \(.summary.requests)"' "$1"
}

load "$HARNESS_DIR/off.json"
read -r lied total < <(share "$HARNESS_DIR/off.json")
harness_log "detection off: the liar took $lied of $total requests"
check "without detection the liar takes over 1.5x a fair share ($lied of $total)" \
  test $((lied * 8)) -gt $((total * 3))

config true >"$HARNESS_DIR/agent.yaml"
kill -HUP "$AGENT"
harness_wait_for "reload" 10 grep -q "SIGHUP: configuration reloaded" "$HARNESS_DIR/agent.log" || fail "reload"
load "$HARNESS_DIR/on.json"
read -r lied_on total_on < <(share "$HARNESS_DIR/on.json")
harness_log "detection on: the liar took $lied_on of $total_on requests"
check "with detection the liar takes less than a random balancer's share ($lied_on of $total_on)" \
  test $((lied_on * 4)) -lt "$total_on"
check "the healthy replicas served the rest without error" \
  test "$(jq '.summary.ok' "$HARNESS_DIR/on.json")" = $((total_on - lied_on))
check "the agent logged the suspect, with the evidence" \
  grep -q "backend $LIAR is suspect, bounded to the median of its peers: .* mean lifetime" "$HARNESS_DIR/agent.log"
check "kvlbctl shows it" bash -c "'$CTL' --socket '$SOCK' backends -o json | jq -e '.[] | select(.address == \"$LIAR\") | .suspect_reason != \"\" or .suspect' >/dev/null ||
  grep -q 'no longer suspect' '$HARNESS_DIR/agent.log'"
check "the metric counts the finding" \
  bash -c "'$CTL' --socket '$SOCK' metrics | grep -q '^kvlb_agent_suspect_events_total [1-9]'"
harness_log "PASS ($CHECKS checks): liar share $lied/$total without detection, $lied_on/$total_on with it"
