#!/usr/bin/env bash
# kvlb demo: three emulated vLLM replicas in network namespaces, one of them busy
# with a long queue. Two VIPs front the same replicas: one balanced like
# kube-proxy (random), one by kvlb's default policy (p2c-queue-kv). A client in
# the LB's cgroup opens connections to each VIP; the demo prints where they went
# and the scores the agent saw, then removes everything it created.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
KVLB_BUILD=$BUILD
AGENT=$BUILD/userspace/kvlb-agent
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
CONNS=${DEMO_CONNECTIONS:-200}

harness_topology demo 3
C=$(harness_ns c)
PORT=8000
VIP_RANDOM=$(harness_vip 0)
VIP_KVLB=$(harness_vip 1)

echo "== 3 replicas (emulated vLLM, Llama-3.1-8B on A10G profile); r0 limited to 2 running sequences"
harness_start_replica 0 --max-num-seqs 2 >/dev/null
harness_start_replica 1 >/dev/null
harness_start_replica 2 >/dev/null

echo "== making r0 busy: 12 long generations sent straight to it"
harness_keep_busy 0 12

backends=$(for i in 0 1 2; do echo "      - address: $(harness_replica_ip "$i"):$PORT"; done)
cat >"$HARNESS_DIR/agent.yaml" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
scrape_interval: 50ms
services:
  - name: like-kube-proxy
    vip: $VIP_RANDOM:$PORT
    policy: random
    backends:
$backends
  - name: kvlb
    vip: $VIP_KVLB:$PORT
    policy: p2c-queue-kv
    backends:
$backends
YAML
echo "== starting kvlb-agent (attaches connect4/getpeername4/sock_release to cgroup $HARNESS_CGROUP)"
harness_spawn "$C" "$HARNESS_DIR/agent.log" "$AGENT" -c "$HARNESS_DIR/agent.yaml" --log-scores 500ms >/dev/null
r0_queued() { grep -qE "score $(harness_replica_ip 0):$PORT .*waiting=([5-9]|[1-9][0-9])" "$HARNESS_DIR/agent.log"; }
harness_wait_for "the agent to see r0's queue" 30 r0_queued || { cat "$HARNESS_DIR/agent.log"; harness_die "no scores"; }

echo
echo "== scores the agent wrote to the kernel (last scrape)"
grep " score " "$HARNESS_DIR/agent.log" | tail -n 3 | sed 's/^.* score /  /'

run() {
  local name=$1 vip=$2 out
  out=$(harness_run_in_cgroup "$C" "$PROBE" --target "$vip:$PORT" --count "$CONNS")
  printf '  %-16s %-20s %6s %6s %6s %8s %10s\n' "$name" "$vip:$PORT" \
    "$(jq -r '.by_replica.r0 // 0' <<<"$out")" "$(jq -r '.by_replica.r1 // 0' <<<"$out")" \
    "$(jq -r '.by_replica.r2 // 0' <<<"$out")" "$(jq -r '.connections - .ok' <<<"$out")" \
    "$(jq -r 'if .peer_mismatch == 0 then "VIP" else "WRONG" end' <<<"$out")"
}
echo
echo "== $CONNS connections per VIP from a client in the cgroup"
printf '  %-16s %-20s %6s %6s %6s %8s %10s\n' policy vip "r0*" r1 r2 failed getpeername
run random "$VIP_RANDOM"
run p2c-queue-kv "$VIP_KVLB"
echo "  (* r0 is the busy replica)"
echo
echo "== kernel counters after the run (both VIPs share these replicas)"
picks_logged() { grep " score " "$HARNESS_DIR/agent.log" | tail -n 3 | grep -q "picks=[1-9]"; }
harness_wait_for "the agent's next report" 10 picks_logged || true
grep " score " "$HARNESS_DIR/agent.log" | tail -n 3 | sed 's/^.* score /  /' | sed 's/ age=.*//'
echo
echo "== stopping the agent (SIGTERM: programs detached, pins removed) and cleaning up"
