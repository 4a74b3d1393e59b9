#!/usr/bin/env bash
# End-to-end: two XDP gateways of one sync group (docs/gateway.md, flow sync).
# Gateways A and B (namespaces g and g2, the agent in gateway mode on each,
# each with its own SNAT address), three emulated replicas reachable from both,
# a real NATS server (TLS, one user per gateway) on a management link between
# them. The client reaches the VIP through A; mid-stream its route moves to B
# (what an ECMP change in front of several gateways does to a flow):
#   1. with flow sync, every stream completes: B translates the moved flows as
#      A placed them (A's SNAT address and port, A's backend), the replicas'
#      answers still return through A, and B counts the flows it took over;
#   2. flows B places itself are announced to A;
#   3. without flow sync on B (the same move), the moved streams break: B
#      places them by its Maglev table from its own address, which the
#      replicas do not know, and they stall (the replicas' data still comes
#      through A, their acknowledgements never do) until the load generator
#      gives up after 20 s, where a stream takes ~4 s (what the test tells
#      apart).
set -euo pipefail
BUILD=${1:?usage: gateway_sync_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
command -v nats-server >/dev/null || { echo "nats-server is not installed (scripts/install-deps.sh)" >&2; exit 1; }
KVLB_BUILD=$BUILD
LOADGEN=$BUILD/userspace/loadgen/kvlb-loadgen
CTL=$BUILD/userspace/cli/kvlbctl
N=3 STREAMS=6

harness_init gwsync
harness_client
harness_gateway
for ((i = 0; i < N; i++)); do harness_replica "$i"; done
harness_bpffs
harness_gateway_vips 1
C=$(harness_ns c)
A=$(harness_ns g)
B=$(harness_ns g2)
S=$HARNESS_SHORT
VIP=$(harness_vip 0)
SNAT_A=$(harness_gateway_ip)
SNAT_B=$HARNESS_NET.240.2
IFS_A=$(harness_gateway_interfaces)

# Gateway B: a link to the client (HARNESS_NET.240.0/24) and one to each
# replica (HARNESS_NET.(241+i).0/24); the replicas reach B's SNAT address
# through it and keep their default route through A.
_harness_netns_add "$B"
ip link add "k${S}bc" netns "$B" type veth peer name "k${S}cb" netns "$C"
ip -n "$C" addr add "$HARNESS_NET.240.1/24" dev "k${S}cb"
ip -n "$B" addr add "$SNAT_B/24" dev "k${S}bc"
ip -n "$C" link set "k${S}cb" up
ip -n "$B" link set "k${S}bc" up
IFS_B="k${S}bc"
for ((i = 0; i < N; i++)); do
  r=$(harness_ns "r$i")
  ip link add "k${S}b$i" netns "$B" type veth peer name "k${S}s$i" netns "$r"
  ip -n "$B" addr add "$HARNESS_NET.$((241 + i)).1/24" dev "k${S}b$i"
  ip -n "$r" addr add "$HARNESS_NET.$((241 + i)).2/24" dev "k${S}s$i"
  ip -n "$B" link set "k${S}b$i" up
  ip -n "$r" link set "k${S}s$i" up
  ip -n "$B" route add "$(harness_replica_ip "$i")/32" via "$HARNESS_NET.$((241 + i)).2"
  ip -n "$r" route add "$HARNESS_NET.240.0/24" via "$HARNESS_NET.$((241 + i)).1"
  IFS_B+=",k${S}b$i"
done
ip netns exec "$B" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.accept_local=1
# The management link (not balanced: not in either gateway's interfaces).
ip link add "m${S}ab" netns "$A" type veth peer name "m${S}ba" netns "$B"
ip -n "$A" addr add "$HARNESS_NET.239.1/24" dev "m${S}ab"
ip -n "$B" addr add "$HARNESS_NET.239.2/24" dev "m${S}ba"
ip -n "$A" link set "m${S}ab" up
ip -n "$B" link set "m${S}ba" up

NATS_HOST=$HARNESS_NET.239.1
# shellcheck source=../../scripts/harness/nats.sh
source "$ROOT/scripts/harness/nats.sh"
harness_nats_cluster "$A" 1 "gwa gwb"

# Replicas streaming ~4 s per request (300 tokens at ~13 ms): a move 1 s in
# lands mid-stream.
for ((i = 0; i < N; i++)); do
  harness_start_replica "$i" --decode-t0-ms 12 --prefill-overhead-ms 1 >/dev/null
done
DATASET=$HARNESS_DIR/streams.jsonl
for ((k = 0; k < STREAMS; k++)); do
  echo "{\"index\": $k, \"question\": \"$(printf 'word %.0s' $(seq 1 40))\", \"tok_input_length\": 40, \"tok_output_length\": 300}"
done >"$DATASET"

config() {  # NAME SNAT INTERFACES SYNC(yes|no) PEER
  echo "mode: gateway"
  echo "bpffs: $HARNESS_BPFFS"
  echo "pin_dir: $HARNESS_BPFFS/$1"
  echo "admin: {socket: $HARNESS_DIR/$1.sock}"
  echo "gateway:"
  echo "  interfaces: \"$3\""
  echo "  snat_ipv4: $2"
  echo "  sweep_interval: 200ms"
  if [ "$4" = yes ]; then
    echo "  sync_group: edge"
    echo "  sync_peers: \"$5\""
    echo "cluster: {nats_servers: \"$NATS_URLS\", ca_file: $NATS_CA, user: $1, password_file: $NATS_PASSWORDS/$1, agent_id: $1}"
  fi
  echo "services:"
  echo "  - name: llm"
  echo "    vip: \"$VIP:8000\""
  echo "    backends: ["
  for ((i = 0; i < N; i++)); do echo "      {address: \"$(harness_replica_ip "$i"):8000\"},"; done
  echo "    ]"
}
start_gateway() {  # NAME NS SNAT INTERFACES SYNC PEER
  config "$1" "$3" "$4" "$5" "$6" >"$HARNESS_DIR/$1.yaml"
  rm -f "$HARNESS_DIR/$1.sock"
  harness_spawn "$2" "$HARNESS_DIR/agent-$1-$5.log" "$BUILD/userspace/kvlb-agent" -c "$HARNESS_DIR/$1.yaml" \
    --watch-config 0s
}
GA=$(start_gateway gwa "$A" "$SNAT_A" "$IFS_A" yes "$SNAT_B")
GB=$(start_gateway gwb "$B" "$SNAT_B" "$IFS_B" yes "$SNAT_A")
agent_ready "$HARNESS_DIR/gwa.sock" || fail "gateway A did not start"
agent_ready "$HARNESS_DIR/gwb.sock" || fail "gateway B did not start"
gw() { "$CTL" --socket "$HARNESS_DIR/$1.sock" -o json gateway; }
both_connected() {
  [ "$(gw gwa | jq -r '.sync.connected')" = true ] && [ "$(gw gwb | jq -r '.sync.connected')" = true ]
}
harness_wait_for "both gateways on NATS" 20 both_connected ||
  fail "flow sync did not connect: $(gw gwa | jq -c .sync) $(gw gwb | jq -c .sync)"
in_c() { nsenter --net="/run/netns/$C" -- "$@"; }
via() { ip -n "$C" route replace "$VIP/32" via "$1"; }
installed() { gw gwb | jq '.sync.applied.installed // 0'; }
a_has_streams() { [ "$(gw gwa | jq '[.flows[].flows] | add // 0')" -ge "$STREAMS" ]; }
b_knows() { [ "$(installed)" -ge "$1" ]; }

# Starts STREAMS streams through A, waits until they are open there (and, with
# sync, known to B), moves the client's route to B, waits for the streams.
# Prints the load generator's summary.
moved_streams() {  # LABEL WAIT_FOR_B(yes|no)
  local out=$HARNESS_DIR/moved-$1.json lg before
  via "$SNAT_A"
  before=$(installed)
  in_c "$LOADGEN" -q --model meta-llama/Llama-3.1-8B-Instruct --url "http://$VIP:8000" \
    --requests "$STREAMS" --concurrency "$STREAMS" --dataset "$DATASET" --seed 1 --timeout 20 \
    -o "$out" >/dev/null &
  lg=$!
  harness_wait_for "$STREAMS streams open through A" 20 a_has_streams ||
    fail "the streams did not start through A"
  if [ "$2" = yes ]; then
    harness_wait_for "B knows the streams" 5 b_knows $((before + STREAMS)) ||
      fail "B did not learn A's flows: $(gw gwb | jq -c .sync)"
  fi
  via "$SNAT_B"
  wait "$lg" || true
  jq -c .summary "$out"
}

# 1. The move, with flow sync.
SUM=$(moved_streams sync yes)
G_B=$(gw gwb)
check "moved to gateway B mid-stream with flow sync: $(j .ok "$SUM") of $STREAMS streams complete, $(j .error_count "$SUM") errors" \
  test "$(j .ok "$SUM")" = "$STREAMS" -a "$(j .error_count "$SUM")" = 0
check "B carried the moved flows: $(j .stats.taken_over "$G_B") taken over, $(j .stats.forward "$G_B") packets forwarded" \
  test "$(j .stats.taken_over "$G_B")" -ge "$STREAMS" -a "$(j .stats.forward "$G_B")" -gt 0
check "B placed none of them itself (no new flow, no Maglev placement)" \
  test "$(j .stats.new_flow "$G_B")" = 0 -a "$(j .stats.maglev "$G_B")" = 0
check "A announced its flows (open: $(gw gwa | jq '.sync.events_out.open // 0'))" \
  test "$(gw gwa | jq '.sync.events_out.open // 0')" -ge "$STREAMS"

# 2. Flows B places are announced to A.
A_BEFORE=$(gw gwa | jq '.sync.applied.installed // 0')
in_c "$LOADGEN" -q --model meta-llama/Llama-3.1-8B-Instruct --url "http://$VIP:8000" --requests 4 \
  --concurrency 2 --dataset "$ROOT/tests/fixtures/datasets/short.jsonl" --seed 2 -o "$HARNESS_DIR/via-b.json" >/dev/null
a_learned() { [ "$(gw gwa | jq '.sync.applied.installed // 0')" -ge $((A_BEFORE + 4)) ]; }
harness_wait_for "A learns B's flows" 5 a_learned || fail "A did not learn B's flows: $(gw gwa | jq -c .sync)"
check "4 requests placed by B ($(gw gwb | jq .stats.new_flow) new flows there) are known to A" true
M=$("$CTL" --socket "$HARNESS_DIR/gwa.sock" metrics)
grep -q '^kvlb_gateway_sync_applied_total{result="installed"} [1-9]' <<<"$M" || fail "no flow-sync counters in A's /metrics"
grep -q '^kvlb_gateway_sync_delay_seconds_count [1-9]' <<<"$M" || fail "no flow-sync delay in A's /metrics"
DELAY=$(awk '/^kvlb_gateway_sync_delay_seconds_sum/ {s = $2} /^kvlb_gateway_sync_delay_seconds_count/ {c = $2}
  END {if (c > 0) printf "%d batches, mean %.1f ms", c, 1000 * s / c}' <<<"$M")
check "flow sync's counters and delay in /metrics (announcement to install: $DELAY)" true

# 3. The same move without flow sync on B: the moved streams break.
harness_stop_pid "$GB"
GB=$(start_gateway gwb "$B" "$SNAT_B" "$IFS_B" no "")
agent_ready "$HARNESS_DIR/gwb.sock" || fail "gateway B did not restart"
SUM=$(moved_streams nosync no)
check "moved to gateway B without flow sync: $(j .error_count "$SUM") of $STREAMS streams broken (B's Maglev placement from its own address)" \
  test "$(j .error_count "$SUM")" -ge $((STREAMS - 1))
harness_log "PASS: $CHECKS checks"
