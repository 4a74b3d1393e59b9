#!/usr/bin/env bash
# End-to-end: configuration reload without dropping a connection.
#   SIGHUP with an invalid config: rejected with the field and reason; the old
#   config keeps serving. SIGHUP with a new backend set: applied. A file change
#   with no signal, which also changes a program setting: picked up by the
#   watcher and applied by swapping new programs into the pinned links. A
#   keep-alive connection held across all of it keeps working.
set -euo pipefail
BUILD=${1:?usage: agent_reload_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
PORT=8000

harness_topology reload 3
C=$(harness_ns c)
VIP=$(harness_vip 0)
for i in 0 1 2; do harness_start_replica "$i" >/dev/null; done

config() {  # stale_after policy replica-indexes...
  local stale=$1 policy=$2
  shift 2
  echo "cgroup: $HARNESS_CGROUP"
  echo "bpffs: $HARNESS_BPFFS"
  echo "pin_dir: $HARNESS_BPFFS/kvlb"
  echo "admin: {socket: $HARNESS_DIR/agent.sock}"
  echo "stale_after: $stale"
  echo "services:"
  echo "  - {name: llm, vip: \"$VIP:$PORT\", policy: $policy, backends: ["
  for i in "$@"; do echo "      {address: \"$(harness_replica_ip "$i"):$PORT\"},"; done
  echo "    ]}"
}
CFG=$HARNESS_DIR/agent.yaml
config 2s p2c-queue-kv 0 1 >"$CFG"
AGENT=$(harness_spawn "$C" "$HARNESS_DIR/agent.log" "$BUILD/userspace/kvlb-agent" -c "$CFG" --watch-config 200ms)
agent_ready "$HARNESS_DIR/agent.sock" || fail "agent did not start"
sleep 0.3
probe() { harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" "$@"; }
# Replicas used, as a sorted comma list. A held connection adds one in-flight to
# its backend, and idle replicas otherwise tie, so "which of the configured
# replicas" is asserted, not an even split.
used() { j '.by_replica | keys | join(",")' "$1"; }
only() {  # only RESULT allowed... : every replica used is in the allowed list
  local r=$1 x
  shift
  for x in $(j '.by_replica | keys[]' "$r"); do [[ " $* " == *" $x "* ]] || return 1; done
}

R=$(probe --count 40)
[ "$(used "$R")" = "r0,r1" ] && [ "$(j .ok "$R")" = 40 ] || fail "initial config: $R"
probe --hold 4 >"$HARNESS_DIR/held.json" &
HELD=$!
sleep 0.3

config 2s round-robin 0 1 >"$CFG.new" && mv "$CFG.new" "$CFG"
kill -HUP "$AGENT"
harness_wait_for "rejection" 10 grep -q "new configuration rejected, keeping the old one: services\[0\].policy: unknown policy 'round-robin'" "$HARNESS_DIR/agent.log" ||
  fail "invalid config not rejected with its reason"
R=$(probe --count 40)
only "$R" r0 r1 && [ "$(j .ok "$R")" = 40 ] || fail "after a rejected reload: $R"
harness_log "ok: invalid config rejected with its reason; the old one keeps serving"

config 2s p2c-queue-kv 1 2 >"$CFG.new" && mv "$CFG.new" "$CFG"
kill -HUP "$AGENT"
harness_wait_for "reload" 10 grep -q "SIGHUP: configuration reloaded" "$HARNESS_DIR/agent.log" || fail "SIGHUP reload"
R=$(probe --count 40)
only "$R" r1 r2 && [ "$(j '.by_replica.r2 // 0' "$R")" -gt 0 ] && [ "$(j .ok "$R")" = 40 ] ||
  fail "after SIGHUP reload: $R"
harness_log "ok: SIGHUP applied the new backend set: r0 removed, r2 added ($(used "$R"))"

config 3s p2c-queue-kv 0 1 2 >"$CFG.new" && mv "$CFG.new" "$CFG"
harness_wait_for "file-change reload" 10 grep -q "config file changed: configuration reloaded" "$HARNESS_DIR/agent.log" ||
  fail "file change not picked up"
grep -q "adopted pinned link" "$HARNESS_DIR/agent.log" || fail "program settings changed but programs were not swapped"
R=$(probe --count 60)
[ "$(j '.by_replica.r0 // 0' "$R")" -gt 0 ] && [ "$(j .ok "$R")" = 60 ] || fail "after file-change reload: $R"
harness_log "ok: a file change was picked up without a signal; new programs swapped in; r0 back ($(used "$R"))"

wait "$HELD"
R=$(cat "$HARNESS_DIR/held.json")
[ -z "$(j .error "$R")" ] && [ "$(j .first "$R")" = "$(j .second "$R")" ] && [ "$(j .peer_ok "$R")" = true ] ||
  fail "held connection: $R"
harness_log "ok: a connection held across three reloads kept its backend ($(j .first "$R"))"
harness_log "PASS"
