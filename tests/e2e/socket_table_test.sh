#!/usr/bin/env bash
# End-to-end: the socket table's limit (max_sockets). With more balanced sockets
# open than it holds, every connection is still balanced and served; the ones
# beyond the limit are counted as socket_table_full events, not in flight, and
# report the backend as their peer. Everything is released when they close. A new
# agent asking for another size than the pinned table refuses to start with the
# reason, and the pinned data plane keeps serving. With passive health off the
# sockops program is not attached (and comes back when it is turned on again).
set -euo pipefail
BUILD=${1:?usage: socket_table_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
AGENT=$BUILD/userspace/kvlb-agent
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
PORT=8000 LIMIT=16 OPEN=20
probe() { harness_run_in_cgroup "$(harness_ns c)" "$PROBE" "$@"; }
PIN=
table_full() { kernel_event socket_table_full; }
table_full_is() { test "$(table_full)" = "$1"; }
inflight() { kernel_counters 'map(.inflight) | add'; }
tracked() { kvlb_maps "$PIN" | jq .sockets; }

harness_topology sockets 1
C=$(harness_ns c)
harness_start_replica 0 >/dev/null
VIP=$(harness_vip 0)
PIN=$HARNESS_BPFFS/kvlb
write_config() {  # file max_sockets [failure_threshold]
  cat >"$1" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $PIN
admin: {socket: $HARNESS_DIR/agent.sock}
scrape_interval: 50ms
max_sockets: $2
passive_health: {failure_threshold: ${3:-1}}
services:
  - name: s
    vip: $VIP:$PORT
    backends:
      - address: $(harness_replica_ip 0):$PORT
YAML
}
write_config "$HARNESS_DIR/a.yaml" $LIMIT
AGENT_PID=$(harness_spawn "$C" "$HARNESS_DIR/agent-a.log" "$AGENT" -c "$HARNESS_DIR/a.yaml")
agent_ready "$HARNESS_DIR/agent.sock" || fail "agent did not start"

pids=()
for i in $(seq 1 $OPEN); do
  probe --target "$VIP:$PORT" --hold 3 >"$HARNESS_DIR/held-$i.json" &
  pids+=($!)
done
harness_wait_for "$((OPEN - LIMIT)) socket_table_full events" 10 table_full_is $((OPEN - LIMIT)) || true
check "$OPEN sockets open, table of $LIMIT: $(table_full) counted as socket_table_full" \
  test "$(table_full)" = $((OPEN - LIMIT))
check "in flight: the $LIMIT tracked sockets ($(inflight)), table full ($(tracked) entries)" \
  test "$(inflight)" = $LIMIT -a "$(tracked)" = $LIMIT
wait "${pids[@]}"
served=0 peer_vip=0
for i in $(seq 1 $OPEN); do
  R=$(cat "$HARNESS_DIR/held-$i.json")
  [ -z "$(j .error "$R")" ] && [ "$(j .first "$R")" = r0 ] && served=$((served + 1))
  [ "$(j .peer_ok "$R")" = true ] && peer_vip=$((peer_vip + 1))
done
check "every connection balanced and served ($served/$OPEN)" test $served = $OPEN
check "getpeername shows the VIP on the tracked ones ($peer_vip), the backend on the rest" test $peer_vip = $LIMIT
check "all released: in flight $(inflight), table $(tracked) entries" test "$(inflight)" = 0 -a "$(tracked)" = 0

# A new agent asking for another size than the pinned table.
kill -KILL "$AGENT_PID"
write_config "$HARNESS_DIR/b.yaml" 64
rc=0
nsenter --net="/run/netns/$C" "$AGENT" -c "$HARNESS_DIR/b.yaml" >"$HARNESS_DIR/agent-b.log" 2>&1 || rc=$?
check "an agent asking for max_sockets 64 over a pinned table of $LIMIT refuses to start (rc $rc), saying why" \
  grep -q "max_sockets: the pinned table .* has $LIMIT entries, the configuration asks for 64" \
  "$HARNESS_DIR/agent-b.log"
R=$(probe --target "$VIP:$PORT" --count 10)
check "the pinned data plane keeps serving ($(j .ok "$R")/10, getpeername = VIP)" \
  test "$(j .ok "$R")" = 10 -a "$(j .peer_mismatch "$R")" = 0

# Passive health off: no sockops program; connections still counted and released.
write_config "$HARNESS_DIR/c.yaml" $LIMIT 0
AGENT_PID=$(harness_spawn "$C" "$HARNESS_DIR/agent-c.log" "$AGENT" -c "$HARNESS_DIR/c.yaml")
agent_ready "$HARNESS_DIR/agent.sock" || fail "agent c did not start"
attached() { bpftool cgroup show "$HARNESS_CGROUP" -j | jq -r '.[].attach_type' | sort | tr '\n' ' '; }
sockops_attached() { attached | grep -qw cgroup_sock_ops; }
check "passive health off: sockops detached and unpinned, the other hooks stay ($(attached))" \
  test ! -e "$PIN/links/sockops" -a "$(attached)" = \
  "cgroup_inet4_connect cgroup_inet4_getpeername cgroup_inet6_connect cgroup_inet6_getpeername cgroup_inet_ingress cgroup_inet_sock_release "
# (cgroup_inet_ingress: keep-alive rebalancing's response-end hook, on by default.)
failures() { kernel_counters 'map(.connect_failures) | add'; }
before=$(failures)
R=$(probe --target "$VIP:$PORT" --count 10)
check "passive health off: 10/10 served, no connect counted as failed ($(failures) - $before), in flight back to $(inflight)" \
  test "$(j .ok "$R")" = 10 -a "$(failures)" = "$before" -a "$(inflight)" = 0
write_config "$HARNESS_DIR/c.yaml" $LIMIT 1
kill -HUP "$AGENT_PID"
harness_wait_for "sockops attached again" 10 sockops_attached || true
check "passive health back on by reload: sockops attached and pinned again" \
  sockops_attached
check "... and pinned" test -e "$PIN/links/sockops"
harness_log "PASS: $CHECKS checks"
