#!/usr/bin/env bash
# End-to-end: a reload is all or nothing. Each reload below changes the
# programs' load-time settings (stale_after, passive health) and the backend set
# (r0,r1 -> r1,r2), and a failpoint (KVLB_FAILPOINTS) makes one step fail:
#   1. after the new programs are loaded;
#   2. after the maps are filled with the new configuration;
#   3. while swapping programs into the pinned links (after connect4 and connect6
#      were swapped);
#   4. after every link was swapped and the sockops link, new in this
#      configuration, was created.
# After each failure the old programs are still attached (same program id in
# every pinned link, no sockops link), the old configuration is in force (admin
# API and where connections go), and the log says why. A fifth reload, with no
# failpoint left, applies the new configuration.
set -euo pipefail
BUILD=${1:?usage: agent_reload_rollback_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
CTL=$BUILD/userspace/cli/kvlbctl
PORT=8000

harness_topology rollback 3
C=$(harness_ns c)
VIP=$(harness_vip 0)
for i in 0 1 2; do harness_start_replica "$i" >/dev/null; done
SOCK=$HARNESS_DIR/agent.sock
LINKS=$HARNESS_BPFFS/kvlb/links

config() {  # stale_after failure_threshold replica-indexes...
  local stale=$1 threshold=$2
  shift 2
  echo "cgroup: $HARNESS_CGROUP"
  echo "bpffs: $HARNESS_BPFFS"
  echo "pin_dir: $HARNESS_BPFFS/kvlb"
  echo "admin: {socket: $SOCK}"
  echo "stale_after: $stale"
  echo "passive_health: {failure_threshold: $threshold}"
  echo "services:"
  echo "  - {name: llm, vip: \"$VIP:$PORT\", backends: ["
  for i in "$@"; do echo "      {address: \"$(harness_replica_ip "$i"):$PORT\"},"; done
  echo "    ]}"
}
# Program id behind every pinned link, "name=id ..." (sockops absent when off).
links() {
  local l
  for l in connect4 connect6 getpeername4 getpeername6 sock_release sockops; do
    [ -e "$LINKS/$l" ] && printf '%s=%s ' "$l" "$(bpftool link show pinned "$LINKS/$l" -j | jq .prog_id)"
  done
  echo
}
probe() { harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" "$@"; }
backends_in_force() { "$CTL" --socket "$SOCK" services -o json | jq -r '.[0].backends | join(",")'; }
OLD_BACKENDS="$(harness_replica_ip 0):$PORT,$(harness_replica_ip 1):$PORT"
NEW_BACKENDS="$(harness_replica_ip 1):$PORT,$(harness_replica_ip 2):$PORT"

CFG=$HARNESS_DIR/agent.yaml
config 2s 0 0 1 >"$CFG"
# Hits: the start-up's attach is the first pass through attach:*, so the reloads'
# are the second (and later) ones.
export KVLB_FAILPOINTS="reload:after_load@1,reload:after_fill@1,attach:getpeername4@2,attach:done@2"
AGENT=$(harness_spawn "$C" "$HARNESS_DIR/agent.log" "$BUILD/userspace/kvlb-agent" -c "$CFG" --watch-config 0s)
unset KVLB_FAILPOINTS
harness_wait_for "agent" 20 test -S "$SOCK" || fail "agent did not start"
BEFORE=$(links)
[[ "$BEFORE" != *sockops* ]] || fail "sockops attached with passive health off: $BEFORE"
harness_log "links before: $BEFORE"

config 3s 1 1 2 >"$CFG"
n=0
for step in "failpoint reload:after_load" "failpoint reload:after_fill" \
  "failpoint attach:getpeername4" "failpoint attach:done"; do
  n=$((n + 1))
  kill -HUP "$AGENT"
  harness_wait_for "reload $n to fail" 10 grep -q "SIGHUP: reload failed, the old configuration stays in force: $step" \
    "$HARNESS_DIR/agent.log" || fail "reload $n: no failure reported for $step"
  check "reload $n ($step): the old programs are still attached" test "$(links)" = "$BEFORE"
  check "reload $n ($step): the old configuration is in force" test "$(backends_in_force)" = "$OLD_BACKENDS"
  R=$(probe --count 40)
  check "reload $n ($step): connections go to r0 and r1 only" \
    test "$(j '.by_replica | keys | join(",")' "$R"),$(j .ok "$R")" = "r0,r1,40"
done
grep -q "rollback: detached sockops" "$HARNESS_DIR/agent.log" || fail "the sockops link created by reload 4 was not removed"
grep -q "rollback: connect4 runs its previous program again" "$HARNESS_DIR/agent.log" || fail "no swap back logged"

kill -HUP "$AGENT"
harness_wait_for "reload 5" 10 grep -q "SIGHUP: configuration reloaded" "$HARNESS_DIR/agent.log" || fail "reload 5"
AFTER=$(links)
check "reload 5: new programs in every link, sockops attached" \
  bash -c "[[ '$AFTER' == *sockops=* ]] && [ '${AFTER%% *}' != '${BEFORE%% *}' ]"
check "reload 5: the new configuration is in force" test "$(backends_in_force)" = "$NEW_BACKENDS"
R=$(probe --count 40)
check "reload 5: connections go to r1 and r2" \
  test "$(j '.by_replica | keys | join(",")' "$R"),$(j .ok "$R")" = "r1,r2,40"
harness_log "PASS ($CHECKS checks)"
