#!/usr/bin/env bash
# End-to-end: the agent works with the privileges deploy/ gives it and no more.
# Started as the systemd unit and the DaemonSet start it: capability bounding set
# CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON only (no CAP_SYS_ADMIN), no_new_privs,
# umask 0077, the unit's LimitNOFILE. It loads and attaches, balances, serves the
# admin API, and reloads with new programs (the rollback path included: a reload
# does not need CAP_SYS_ADMIN to open the programs it may put back). The unit
# file passes systemd-analyze verify, and carries the capabilities tested here.
set -euo pipefail
BUILD=${1:?usage: least_privilege_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
CTL=$BUILD/userspace/cli/kvlbctl
UNIT=$ROOT/deploy/systemd/kvlb-agent.service
PORT=8000

# The capabilities, as the unit and the manifest spell them.
unit_caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT")
check "the unit and the DaemonSet grant the same three capabilities" \
  test "$unit_caps" = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON"
grep -q 'add: \["BPF", "NET_ADMIN", "PERFMON"\]' "$ROOT/deploy/kubernetes/kvlb.yaml" ||
  fail "the DaemonSet's capabilities differ from the unit's"
grep -q 'seccompProfile: {type: RuntimeDefault}' "$ROOT/deploy/kubernetes/kvlb.yaml" ||
  fail "no RuntimeDefault seccomp profile in the DaemonSet"
bounding=$(echo "$unit_caps" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
nofile=$(sed -n 's/^LimitNOFILE=//p' "$UNIT")
# This machine may cap the hard limit below the unit's: use the lower one.
[ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$nofile" ] && nofile=$(ulimit -Hn)
umask_unit=$(sed -n 's/^UMask=//p' "$UNIT")

harness_topology leastpriv 2
C=$(harness_ns c)
VIP=$(harness_vip 0)
for i in 0 1; do harness_start_replica "$i" >/dev/null; done
SOCK=$HARNESS_DIR/agent.sock
config() {  # stale_after
  cat <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
admin: {socket: $SOCK}
stale_after: $1
services:
  - {name: llm, vip: "$VIP:$PORT", backends: [{address: "$(harness_replica_ip 0):$PORT"}, {address: "$(harness_replica_ip 1):$PORT"}]}
YAML
}
config 2s >"$HARNESS_DIR/agent.yaml"
AGENT=$(harness_spawn "$C" "$HARNESS_DIR/agent.log" \
  prlimit --nofile="$nofile" -- bash -c "umask $umask_unit; exec setpriv --bounding-set=-all,$bounding --no-new-privs \
    $BUILD/userspace/kvlb-agent -c $HARNESS_DIR/agent.yaml --watch-config 0s")
agent_ready "$SOCK" ||
  fail "the agent did not start with $unit_caps"
pid=$(pgrep -f "kvlb-agent -c $HARNESS_DIR/agent.yaml" | head -n 1)
check "the agent holds exactly the three capabilities" \
  test "$(grep CapEff /proc/"$pid"/status | awk '{print $2}')" = 000000c000001000
check "no_new_privs is set" test "$(grep NoNewPrivs /proc/"$pid"/status | awk '{print $2}')" = 1
check "the admin socket is root's alone" test "$(stat -c %a "$SOCK")" = 600
R=$(harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" --count 20)
check "connections are balanced" test "$(j .ok "$R")" = 20
check "kvlbctl works" bash -c "'$CTL' --socket '$SOCK' backends -o json | jq -e 'length == 2' >/dev/null"
config 3s >"$HARNESS_DIR/agent.yaml"
kill -HUP "$(pgrep -f "kvlb-agent -c $HARNESS_DIR/agent.yaml" | head -n 1)"
harness_wait_for "reload" 10 grep -q "SIGHUP: configuration reloaded" "$HARNESS_DIR/agent.log" ||
  fail "reload with new programs failed: $(tail -n 3 "$HARNESS_DIR/agent.log")"
check "a reload swapped new programs in" grep -q "adopted pinned link" "$HARNESS_DIR/agent.log"
check "keep-alive rebalancing (on by default) starts with these capabilities" \
  grep -q "keepalive rebalancing on" "$HARNESS_DIR/agent.log"
check "no capability was missing along the way" bash -c "! grep -qi 'operation not permitted' '$HARNESS_DIR/agent.log'"

if command -v systemd-analyze >/dev/null; then
  # verify wants the binary where ExecStart says: point it at this build.
  sed "s|/usr/local/bin/kvlb-agent|$(cd "$BUILD" && pwd)/userspace/kvlb-agent|" "$UNIT" >"$HARNESS_DIR/kvlb-agent.service"
  out=$(systemd-analyze verify "$HARNESS_DIR/kvlb-agent.service" 2>&1) || fail "systemd-analyze verify: $out"
  check "systemd-analyze verify finds nothing in the unit" test -z "$out"
fi
harness_log "PASS ($CHECKS checks)"
