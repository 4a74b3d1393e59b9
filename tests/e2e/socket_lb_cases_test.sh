#!/usr/bin/env bash
# End-to-end: the socket LB's behaviour under failure and change, with real
# connect()s from a cgroup, real BPF programs and real replicas.
#
#   IPv4, IPv6 and IPv4-mapped VIPs, getpeername on each; a VIP with no eligible
#   backend fails connect() with ECONNREFUSED; marked sockets (the agent's
#   scrapes) are never rebalanced; the agent SIGKILLed under load loses no
#   connection; stale scores fall back to least-inflight; a new agent adopts the
#   pinned data plane (a held connection keeps working and reports the VIP); a
#   program swap under load loses no connection; passive health benches a dead
#   backend after one refused connect; draining stops new connections and leaves
#   existing ones alone; host_network_only leaves other namespaces untouched.
set -euo pipefail
BUILD=${1:?usage: socket_lb_cases_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
SIM=$BUILD/userspace/replica_sim/kvlb-replica-sim
AGENT=$BUILD/userspace/kvlb-agent
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
PORT=8000
probe() { harness_run_in_cgroup "$(harness_ns c)" "$PROBE" "$@"; }

harness_topology cases 3
C=$(harness_ns c)
VIP4=$(harness_vip 0) VIPNONE=$(harness_vip 1) VIPMARK=$(harness_vip 2) VIP6=$(harness_vip6 0)

declare -A RPID
# Dual-stack replicas (IPv4 and IPv6 VIPs reach the same ones).
RPID[0]=$(harness_start_replica 0 --listen :: --max-num-seqs 2)
RPID[1]=$(harness_start_replica 1 --listen ::)
RPID[2]=$(harness_start_replica 2 --listen ::)
# r0 is kept busy: 12 long generations straight to it, so its queue is ~10.
harness_keep_busy 0 12
# A listener on VIPMARK inside the client namespace: a connection that the LB
# leaves alone reaches it ("untouched"); a balanced one reaches r0..r2.
ip -n "$C" addr add "$VIPMARK/32" dev lo
harness_spawn "$C" "$HARNESS_DIR/untouched.log" "$SIM" --listen "$VIPMARK" --port $PORT --name untouched >/dev/null
# Replica namespaces reach each other through the client namespace (a node's
# pods do), so a connection balanced from r0's namespace can reach any replica.
ip netns exec "$C" sysctl -qw net.ipv4.ip_forward=1
# The same in r0's namespace, for the host_network_only case, on the next port
# (r0's replica holds [::]:PORT there).
ip -n "$(harness_ns r0)" addr add "$VIPMARK/32" dev lo
harness_spawn "$(harness_ns r0)" "$HARNESS_DIR/untouched-r0.log" "$SIM" --listen "$VIPMARK" --port $((PORT + 1)) --name untouched-r0 >/dev/null
harness_wait_for "untouched listener" 20 nsenter --net="/run/netns/$C" curl -sf "http://$VIPMARK:$PORT/health" || fail "untouched listener"

backends4() { for i in 0 1 2; do echo "      - address: $(harness_replica_ip "$i"):$PORT${1:+
        state: $( [ "$i" = "$1" ] && echo draining || echo active)}"; done; }
write_config() {  # file draining_index host_only
  cat >"$1" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
admin: {socket: $HARNESS_DIR/agent.sock}
scrape_interval: 50ms
stale_after: 500ms
down_after_failures: 1000   # leave dead backends to passive health here
host_network_only: ${3:-false}
passive_health: {failure_threshold: 1, cooldown: 5s}
services:
  - name: v4
    vip: $VIP4:$PORT
    backends:
$(backends4 "$2")
  - name: v6
    vip: "[$VIP6]:$PORT"
    backends:
$(for i in 0 1 2; do echo "      - address: \"[$(harness_replica_ip6 "$i")]:$PORT\""; done)
  - name: none
    vip: $VIPNONE:$PORT
    backends:
      - address: $(harness_replica_ip 0):$((PORT + 1))
        state: draining
  - name: marked
    vip: $VIPMARK:$PORT
    backends:
$(backends4 "$2")
  - name: marked-next-port
    vip: $VIPMARK:$((PORT + 1))
    backends:
$(backends4 "$2")
YAML
}
start_agent() {  # name config
  AGENT_PID=$(harness_spawn "$C" "$HARNESS_DIR/agent-$1.log" "$AGENT" -c "$2" --log-scores 200ms)
  local log="$HARNESS_DIR/agent-$1.log"
  agent_ready "$HARNESS_DIR/agent.sock" || fail "agent $1 did not start"
}
r0_queued() { grep -qE "score $(harness_replica_ip 0):$PORT .*waiting=([5-9]|[1-9][0-9])" "$HARNESS_DIR/agent-$1.log"; }

write_config "$HARNESS_DIR/a.yaml" "" false
start_agent a "$HARNESS_DIR/a.yaml"
harness_wait_for "r0's queue in the scores" 30 r0_queued a || fail "agent never saw r0 queuing"

# --- addresses and reverse lookup
R=$(probe --target "$VIP4:$PORT" --count 60)
check "IPv4 VIP: 60/60 connected, getpeername shows the VIP, busy r0 avoided" \
  test "$(j .ok "$R")" = 60 -a "$(j .peer_mismatch "$R")" = 0 -a "$(j '.by_replica.r0 // 0' "$R")" = 0
R=$(probe --target "[$VIP6]:$PORT" --count 60)
check "IPv6 VIP: 60/60 connected, getpeername shows the VIP, r1 and r2 used" \
  test "$(j .ok "$R")" = 60 -a "$(j .peer_mismatch "$R")" = 0 -a "$(j '.by_replica.r1 // 0' "$R")" -gt 10 -a "$(j '.by_replica.r2 // 0' "$R")" -gt 10
R=$(probe --target "$VIP4:$PORT" --count 30 --v4mapped)
check "IPv4-mapped VIP from an AF_INET6 socket: 30/30, getpeername shows ::ffff:VIP" \
  test "$(j .ok "$R")" = 30 -a "$(j .peer_mismatch "$R")" = 0
R=$(probe --target "$VIPNONE:$PORT" --count 10)
check "no eligible backend: connect() fails with ECONNREFUSED" \
  test "$(j '.errors["connect: Connection refused"] // 0' "$R")" = 10
NOBACKEND=$(kernel_event no_backend)
check "the kernel counted the refused connects as no_backend events ($NOBACKEND)" test "$NOBACKEND" = 10
R=$(probe --target "$VIPMARK:$PORT" --count 20 --mark $((0x6b766c62)))
check "sockets with the agent's mark are not rebalanced" test "$(j '.by_replica.untouched // 0' "$R")" = 20
R=$(probe --target "$VIPMARK:$PORT" --count 20)
check "unmarked sockets to the same VIP are balanced" test "$(j '.by_replica.untouched // 0' "$R")" = 0 -a "$(j .ok "$R")" = 20

R=$(harness_run_in_cgroup "$(harness_ns r0)" "$PROBE" --target "$VIPMARK:$((PORT + 1))" --count 10)
check "without host_network_only, another namespace in the cgroup is balanced too" \
  test "$(j '.by_replica["untouched-r0"] // 0' "$R")" = 0 -a "$(j .ok "$R")" = 10

# --- agent killed under load; stale scores; adoption with a held connection
probe --target "$VIP4:$PORT" --hold 4 >"$HARNESS_DIR/held.json" &
HELD=$!
probe --target "$VIP4:$PORT" --count 1500 >"$HARNESS_DIR/load1.json" &
LOAD=$!
sleep 0.5
kill -KILL "$AGENT_PID"
wait "$LOAD"
R=$(cat "$HARNESS_DIR/load1.json")
check "agent SIGKILLed under load: $(j .ok "$R")/1500 connections succeeded" test "$(j .ok "$R")" = 1500
sleep 1  # scores are now older than stale_after (500 ms)
R=$(probe --target "$VIP4:$PORT" --count 90)
check "stale scores fall back to least-inflight: busy r0 gets its share again ($(j '.by_replica.r0 // 0' "$R")/90)" \
  test "$(j .ok "$R")" = 90 -a "$(j '.by_replica.r0 // 0' "$R")" -ge 15
start_agent b "$HARNESS_DIR/a.yaml"
check "a new agent adopts the pinned links" grep -q "adopted pinned link" "$HARNESS_DIR/agent-b.log"
inflight() { kernel_counters 'map(.inflight) | "\(add) \(min)"'; }  # sum and minimum
read -r SUM MIN <<<"$(inflight)"
check "in-flight is right after the restart: the held connection counts once ($SUM)" test "$SUM" = 1 -a "$MIN" -ge 0
wait "$HELD"
read -r SUM MIN <<<"$(inflight)"
check "every connection released: in-flight back to 0, never negative ($SUM, min $MIN)" test "$SUM" = 0 -a "$MIN" = 0
R=$(cat "$HARNESS_DIR/held.json")
check "a connection held across the restart keeps its backend ($(j .first "$R")) and reports the VIP" \
  test -z "$(j .error "$R")" -a "$(j .first "$R")" = "$(j .second "$R")" -a "$(j .peer_ok "$R")" = true

# --- program swap under load
probe --target "$VIP4:$PORT" --count 1500 >"$HARNESS_DIR/load2.json" &
LOAD=$!
sleep 0.5
kill -KILL "$AGENT_PID"
start_agent c "$HARNESS_DIR/a.yaml"
wait "$LOAD"
R=$(cat "$HARNESS_DIR/load2.json")
check "programs swapped into the links under load: $(j .ok "$R")/1500 succeeded" \
  test "$(j .ok "$R")" = 1500 && grep -q "adopted pinned link" "$HARNESS_DIR/agent-c.log"

# --- passive health: r2 dies; the first refused connect benches it
harness_stop_pid "${RPID[2]}"
sleep 0.3
R=$(probe --target "$VIP4:$PORT" --count 60)
check "dead r2 benched after its first refused connect: $(j .ok "$R")/60 ok" \
  test "$(j .ok "$R")" -ge 59 -a "$(j '.by_replica.r2 // 0' "$R")" = 0
FAILS=$(kernel_counters 'map(select(.connect_failures > 0)) | length')
check "the kernel counted the failed connect against one backend" test "$FAILS" = 1
r2_stale() { grep -q "backend $(harness_replica_ip 2):$PORT: score older than 500 ms" "$HARNESS_DIR/agent-c.log"; }
harness_wait_for "the agent to count r2's stale score" 10 r2_stale
check "the agent counts the dead backend's score as stale" r2_stale
RPID[2]=$(harness_start_replica 2 --listen ::)

# --- draining and host_network_only (a new agent with a new config)
probe --target "$VIP4:$PORT" --hold 3 >"$HARNESS_DIR/held2.json" &
HELD=$!
sleep 0.5
HELD_ON=$(grep -h '"first"' "$HARNESS_DIR/held2.json" 2>/dev/null | jq -r .first || true)
kill -KILL "$AGENT_PID"
write_config "$HARNESS_DIR/d.yaml" 1 true
start_agent d "$HARNESS_DIR/d.yaml"
sleep 0.3
R=$(probe --target "$VIP4:$PORT" --count 60)
check "draining r1 gets no new connections" test "$(j .ok "$R")" = 60 -a "$(j '.by_replica.r1 // 0' "$R")" = 0
wait "$HELD"
R=$(cat "$HARNESS_DIR/held2.json")
check "a connection opened before draining keeps working ($(j .first "$R") -> $(j .second "$R"))" \
  test -z "$(j .error "$R")" -a "$(j .first "$R")" = "$(j .second "$R")"
R=$(harness_run_in_cgroup "$(harness_ns r0)" "$PROBE" --target "$VIPMARK:$((PORT + 1))" --count 10)
check "host_network_only: a connection from another namespace is not rewritten" \
  test "$(j '.by_replica["untouched-r0"] // 0' "$R")" = 10
R=$(probe --target "$VIPMARK:$PORT" --count 10)
check "host_network_only: the agent's namespace is still balanced" test "$(j '.by_replica.untouched // 0' "$R")" = 0 -a "$(j .ok "$R")" = 10

harness_stop_pid "$AGENT_PID"
check "SIGTERM detaches and removes the pins" test ! -e "$HARNESS_BPFFS/kvlb"
harness_log "PASS: $CHECKS checks"
