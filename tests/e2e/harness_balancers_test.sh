#!/usr/bin/env bash
# The experiment harness itself: with a gateway host between the client and three
# replicas, every balancer of the seed experiment (kvlb's socket LB, kube-proxy
# iptables, HAProxy leastconn and random(2), nginx random two least_conn, the
# oracle) carries real kvlb-loadgen traffic with no error, reaches every replica,
# and the load generator's report is complete.
set -euo pipefail
BUILD=${1:?usage: harness_balancers_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KVLB_BUILD=$BUILD
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
# shellcheck source=../../scripts/harness/balancers.sh
source "$ROOT/scripts/harness/balancers.sh"
LOADGEN=$BUILD/userspace/loadgen/kvlb-loadgen
DATASET=$ROOT/tests/fixtures/datasets/short.jsonl
PORT=8000 N=3

harness_init balancers
harness_client
harness_gateway
for i in $(seq 0 $((N - 1))); do harness_replica "$i"; done
harness_cgroup
harness_bpffs
C=$(harness_ns c)
monitor=""
for i in $(seq 0 $((N - 1))); do
  harness_start_replica "$i" >/dev/null  # reached through the gateway
  monitor+="${monitor:+,}http://$(harness_replica_ip "$i"):$PORT/metrics"
done

checks=0
for bal in kvlb-p2c-queue-kv kvlb-random kube-proxy haproxy-leastconn haproxy-random2 nginx-random2-leastconn oracle; do
  balancer_start "$bal" "$N" "$PORT" || harness_die "cannot start $bal"
  args=(--rps 20 --requests 40 --dataset "$DATASET" --monitor "$monitor" -q -o "$HARNESS_DIR/$bal.json")
  [ -n "$BAL_URL" ] && args+=(--url "$BAL_URL")
  args+=("${BAL_ARGS[@]}")
  if [ "$BAL_CGROUP" = 1 ]; then
    harness_run_in_cgroup "$C" "$LOADGEN" "${args[@]}" >/dev/null
  else
    nsenter --net="/run/netns/$C" -- "$LOADGEN" "${args[@]}" >/dev/null
  fi
  balancer_stop "$bal" "$N"
  R=$HARNESS_DIR/$bal.json
  ok=$(jq .summary.ok "$R")
  used=$(jq '.summary.per_replica | length' "$R")
  samples=$(jq '[.replicas[].samples] | min' "$R")
  harness_log "$bal: ok $ok/40, replicas used $used, per replica $(jq -c .summary.per_replica "$R"), errors $(jq -c .summary.errors "$R")"
  [ "$ok" = 40 ] || harness_die "FAIL: $bal: $((40 - ok)) requests failed"
  [ "$used" = "$N" ] || harness_die "FAIL: $bal reached $used of $N replicas"
  [ "$(jq '[.results[] | select(.output_tokens != .expected_output)] | length' "$R")" = 0 ] ||
    harness_die "FAIL: $bal: streamed token counts differ from the requested lengths"
  [ "$(jq '[.results[] | select(.first < .sent or .end < .first)] | length' "$R")" = 0 ] ||
    harness_die "FAIL: $bal: inconsistent timestamps"
  [ "$samples" -gt 0 ] || harness_die "FAIL: $bal: the replica monitor recorded nothing"
  checks=$((checks + 1))
done
# Keep-alive pools, as OpenAI SDK clients use them: 4 connections carry 40
# requests; through the socket LB each connection is balanced once, so requests
# land on at most 4 backends and every one succeeds.
balancer_start kvlb-p2c-queue-kv "$N" "$PORT" || harness_die "cannot start kvlb"
# The model named, so the generator does not ask /v1/models first (a connection
# of its own, balanced too).
harness_run_in_cgroup "$C" "$LOADGEN" --url "$BAL_URL" --rps 20 --requests 40 --dataset "$DATASET" \
  --model meta-llama/Llama-3.1-8B-Instruct --connections keepalive --pool-size 4 -q \
  -o "$HARNESS_DIR/keepalive.json" >/dev/null
picks=$(kernel_counters 'map(.picks) | add')
balancer_stop kvlb-p2c-queue-kv "$N"
ok=$(jq .summary.ok "$HARNESS_DIR/keepalive.json")
harness_log "keep-alive pool of 4: ok $ok/40, kernel picks $picks, per replica $(jq -c .summary.per_replica "$HARNESS_DIR/keepalive.json")"
[ "$ok" = 40 ] || harness_die "FAIL: keep-alive: $((40 - ok)) requests failed"
[ "$picks" -le 4 ] || harness_die "FAIL: keep-alive: $picks connections balanced for a pool of 4"
harness_log "PASS: $checks balancers through the gateway topology, and a keep-alive pool"
