#!/usr/bin/env bash
# End-to-end: the XDP gateway. Clients in one namespace, the gateway host in
# another (the agent in gateway mode, the XDP program on its veths, generic
# mode), emulated replicas behind it. Real TCP through the gateway:
#   - requests and streamed completions to the VIP, IPv4 and IPv6, all answered,
#     the clients seeing the VIP (the connection is to the VIP, not a backend);
#   - a busy replica gets clearly fewer new flows than its share;
#   - flows per backend (kvlbctl gateway) and the kernel's in-flight count
#     follow the real number of open connections, and go back to 0 after close;
#   - the agent killed (SIGKILL) and started again mid-stream: every stream
#     completes (pinned flow table and links);
#   - the gateway's counters in /metrics.
set -euo pipefail
BUILD=${1:?usage: gateway_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
LOADGEN=$BUILD/userspace/loadgen/kvlb-loadgen
CTL=$BUILD/userspace/cli/kvlbctl
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
N=3

harness_init gateway
harness_client
harness_gateway
for ((i = 0; i < N; i++)); do harness_replica "$i"; done
harness_bpffs
harness_gateway_vips 1
C=$(harness_ns c)
G=$(harness_ns g)
VIP=$(harness_vip 0)
VIP6=$(harness_vip6 0)
for ((i = 0; i < N; i++)); do harness_start_replica "$i" --listen :: >/dev/null; done
SOCK=$HARNESS_DIR/agent.sock
CFG=$HARNESS_DIR/gateway.yaml
{
  echo "mode: gateway"
  echo "bpffs: $HARNESS_BPFFS"
  echo "pin_dir: $HARNESS_BPFFS/kvlb"
  echo "admin: {socket: $SOCK}"
  echo "gateway:"
  echo "  interfaces: \"$(harness_gateway_interfaces)\""
  echo "  snat_ipv4: $(harness_gateway_ip)"
  echo "  snat_ipv6: \"$(harness_gateway_ip6)\""
  echo "  sweep_interval: 200ms"
  echo "services:"
  echo "  - name: llm"
  echo "    vip: \"$VIP:8000\""
  echo "    backends: ["
  for ((i = 0; i < N; i++)); do echo "      {address: \"$(harness_replica_ip "$i"):8000\"},"; done
  echo "    ]"
  echo "  - name: llm6"
  echo "    vip: \"[$VIP6]:8000\""
  echo "    backends: ["
  for ((i = 0; i < N; i++)); do echo "      {address: \"[$(harness_replica_ip6 "$i")]:8000\"},"; done
  echo "    ]"
} >"$CFG"
# The unit's capabilities (deploy/systemd/kvlb-agent.service), no more: the
# gateway attaches XDP links and runs its sweep with CAP_BPF, CAP_NET_ADMIN and
# CAP_PERFMON alone.
start_agent() {
  harness_spawn "$G" "$HARNESS_DIR/agent$1.log" setpriv --bounding-set=-all,+bpf,+net_admin,+perfmon \
    --no-new-privs "$BUILD/userspace/kvlb-agent" -c "$CFG"
}
AGENT=$(start_agent 1)
agent_ready "$SOCK" || fail "agent did not start: $(tail -n 5 "$HARNESS_DIR/agent1.log")"
grep -q "attached the gateway to .* in generic XDP mode (driver veth)" "$HARNESS_DIR/agent1.log" ||
  fail "the XDP mode is not logged"
check "the gateway agent runs with exactly CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON" \
  test "$(grep CapEff "/proc/$(pgrep -f "kvlb-agent -c $CFG" | head -n 1)/status" | awk '{print $2}')" = 000000c000001000
gw() { "$CTL" --socket "$SOCK" -o json gateway; }
in_c() { nsenter --net="/run/netns/$C" -- "$@"; }
loadgen() { in_c "$LOADGEN" -q --model meta-llama/Llama-3.1-8B-Instruct "$@"; }

# 1. Requests through the gateway, both families; the client's peer is the VIP.
R=$(in_c "$PROBE" --target "$VIP:8000" --count 30)
check "30 IPv4 connections through the gateway answered, spread over the replicas" \
  test "$(j .ok "$R")" = 30 -a "$(j '.by_replica | length' "$R")" -ge 2
R6=$(in_c "$PROBE" --target "[$VIP6]:8000" --count 30)
check "30 IPv6 connections through the gateway answered" test "$(j .ok "$R6")" = 30
check "the client's peer is the VIP on every connection" test "$(j .peer_mismatch "$R")" = 0 -a "$(j .peer_mismatch "$R6")" = 0
SHORT=$ROOT/tests/fixtures/datasets/short.jsonl
loadgen --url "http://$VIP:8000" --requests 40 --concurrency 4 --seed 3 --dataset "$SHORT" -o "$HARNESS_DIR/stream.json" >/dev/null
S=$(jq .summary "$HARNESS_DIR/stream.json")
check "40 streamed completions through the gateway, every token" \
  test "$(j .ok "$S")" = 40 -a "$(j .error_count "$S")" = 0

# 2. Flows per backend follow the open connections, and go back to 0.
for k in 1 2 3 4 5 6; do in_c "$PROBE" --target "$VIP:8000" --hold 3 >"$HARNESS_DIR/held$k.json" & done
sleep 1.2
G1=$(gw)
check "6 held connections: 6 flows in the gateway's table and 6 in flight" \
  test "$(j '[.flows[].flows] | add' "$G1")" = 6 -a "$(j '[.flows[].inflight] | add' "$G1")" = 6
wait
sleep 0.5
G2=$(gw)
check "after they close: 0 flows and 0 in flight" \
  test "$(j '[.flows[].flows] | add' "$G2")" = 0 -a "$(j '[.flows[].inflight] | add' "$G2")" = 0
check "closes counted" test "$(j .stats.closed "$G2")" -ge 6

# 3. A busy replica gets clearly fewer new flows.
harness_keep_busy 0 24
sleep 1.5
loadgen --url "http://$VIP:8000" --rps 10 --requests 60 --seed 5 --dataset "$SHORT" -o "$HARNESS_DIR/busy.json" >/dev/null
S=$(jq .summary "$HARNESS_DIR/busy.json")
R0=$(j '.per_replica.r0 // 0' "$S")
check "busy replica r0 got $R0 of 60 new flows (fair share 20; at most 6)" test "$R0" -le 6 -a "$(j .ok "$S")" = 60

# 4. The agent killed and restarted mid-stream: every stream completes. (The
# synthetic dataset's outputs, ~400 tokens, stream for seconds: across the restart.)
loadgen --url "http://$VIP:8000" --requests 6 --concurrency 6 --seed 7 -o "$HARNESS_DIR/restart.json" >/dev/null &
LG=$!
loadgen --url "http://[$VIP6]:8000" --requests 3 --concurrency 3 --seed 8 -o "$HARNESS_DIR/restart6.json" >/dev/null &
LG6=$!
# The kill comes once all nine streams are open through the gateway (the flow
# table says so), not after a fixed wait: a slow start must not let the
# streams begin after the restart.
open_flows() { gw | jq '[.flows[].flows] | add // 0'; }
streams_open() { [ "$(open_flows)" -ge 9 ]; }
harness_wait_for "the nine streams open" 30 streams_open || fail "the streams did not start: $(gw | jq -c .flows)"
OPEN=$(open_flows)
kill -KILL "$AGENT"
sleep 1
AGENT=$(start_agent 2)
agent_ready "$SOCK" || fail "agent did not restart"
grep -q "adopted pinned link" "$HARNESS_DIR/agent2.log" || fail "the restarted agent did not adopt the pinned links"
wait "$LG" "$LG6"
S=$(jq .summary "$HARNESS_DIR/restart.json")
S6=$(jq .summary "$HARNESS_DIR/restart6.json")
check "agent killed and restarted mid-stream: 6 IPv4 and 3 IPv6 streams complete, no error" \
  test "$(j .ok "$S")" = 6 -a "$(j .error_count "$S")" = 0 -a "$(j .ok "$S6")" = 3 -a "$(j .error_count "$S6")" = 0
check "the streams were running at the restart ($OPEN flows open when the agent was killed)" \
  test "$OPEN" -ge 9

# 5. The gateway's counters in the agent's /metrics.
M=$("$CTL" --socket "$SOCK" metrics)
grep -q '^kvlb_gateway_packets_total{reason="new_flow"} [1-9]' <<<"$M" || fail "no new_flow counter in /metrics"
grep -q '^kvlb_gateway_attached{interface=".*",mode="generic"} 1' <<<"$M" || fail "no attachment in /metrics"
check "gateway counters and attachments in /metrics" true
# What the program hands to the stack (coalesced packets above the MTU) is
# forwarded by it: the streams above completed with it; without accept_local
# the agent refuses to start.
ip netns exec "$G" sysctl -qw net.ipv4.conf.all.accept_local=0
harness_stop_pid "$AGENT"
AGENT=$(start_agent 3)
harness_wait_for "refusal" 10 grep -q "accept_local is off" "$HARNESS_DIR/agent3.log" ||
  fail "the agent started without accept_local"
check "without accept_local the agent refuses to start, naming the sysctl" \
  grep -q "sysctl net.ipv4.conf.*accept_local=1" "$HARNESS_DIR/agent3.log"
harness_log "PASS: $CHECKS checks"
