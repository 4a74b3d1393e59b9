#!/usr/bin/env bash
# End-to-end: keep-alive rebalancing with real clients (docs/keepalive.md).
#
# Three emulated replicas behind a VIP; kvlb-agent with keepalive_rebalance on.
# Each real client - the official OpenAI Node SDK (its default keep-alive agent
# and retries), Python httpx and aiohttp - streams a completion through the VIP
# on its pooled connection; the test then makes the replica that served it a
# poor choice (a queue of direct requests) or drains it, waits until the agent
# has closed the idle pooled connection from the kernel, and lets the client
# send its next request. Asserts, for every client:
#   - no request failed, every stream complete;
#   - the agent closed the idle connection (kvlb_keepalive_closed_total, by
#     reason) and the next request was served by another replica: the client
#     replaced the closed connection by itself, and the socket LB placed it;
#   - with rebalancing off for the service, nothing is closed and the pooled
#     connection stays on a drained replica (the behaviour it fixes).
# And curl, reusing one connection for several transfers (--rate), the same.
set -euo pipefail
BUILD=${1:?usage: keepalive_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
KVLB_BUILD=$BUILD
AGENT=$BUILD/userspace/kvlb-agent
KVLBCTL=$BUILD/userspace/cli/kvlbctl
CLIENTS=$ROOT/tests/clients
PY=/usr/bin/python3
PORT=8000
MODEL=meta-llama/Llama-3.1-8B-Instruct

missing=""
[ -f "$CLIENTS/node_modules/openai/package.json" ] || missing+=" the OpenAI SDK (npm ci in tests/clients)"
command -v node >/dev/null || missing+=" node"
"$PY" -c 'import httpx, aiohttp' 2>/dev/null || missing+=" python3-httpx/python3-aiohttp"
[ -z "$missing" ] || harness_die "missing$missing: run scripts/install-deps.sh"
if ! "$BUILD/userspace/tools/kvlb-bpf-check" --probe-socket-closer >/dev/null 2>&1; then
  echo "skipped: this kernel cannot close sockets from an iterator (bpf_sock_destroy, Linux 6.5+)" >&2
  exit 77
fi

fail() {
  harness_log "FAIL: $*"
  [ -f "$HARNESS_DIR/agent.log" ] && tail -n 25 "$HARNESS_DIR/agent.log" >&2
  exit 1
}

harness_topology keepalive 3
C=$(harness_ns c)
VIP=$(harness_vip 0)
D=$HARNESS_DIR
for i in 0 1 2; do harness_start_replica "$i" --max-num-seqs 2 >/dev/null; done

agent_config() {  # REBALANCE(true/false)
  cat <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
scrape_interval: 50ms
admin: {socket: $D/agent.sock}
keepalive: {interval: 200ms, idle: 100ms}
services:
  - name: llm
    vip: $VIP:$PORT
    policy: p2c-queue-kv
    keepalive_rebalance: $1
    backends:
$(for i in 0 1 2; do echo "      - address: $(harness_replica_ip "$i"):$PORT"; done)
YAML
}
agent_config true >"$D/agent.yaml"
harness_spawn "$C" "$D/agent.log" "$AGENT" -c "$D/agent.yaml" >/dev/null
"$KVLBCTL" --socket "$D/agent.sock" wait-ready --timeout 20 >/dev/null || fail "the agent did not start"
harness_wait_for "rebalancing on" 20 grep -q "keepalive rebalancing on" "$D/agent.log" ||
  fail "keepalive rebalancing did not start"

closed() {  # REASON: kvlb_keepalive_closed_total{reason=REASON}
  "$KVLBCTL" --socket "$D/agent.sock" metrics |
    sed -n "s/^kvlb_keepalive_closed_total{reason=\"$1\"} \([0-9]*\).*/\1/p"
}
closed_above() { [ "$(closed "$1")" -gt "$2" ]; }
waiting_at_least() {  # I N: the agent sees replica I's queue
  "$KVLBCTL" --socket "$D/agent.sock" -o json backends |
    jq -e --arg a "$(harness_replica_ip "$1"):$PORT" --argjson n "$2" \
      '.[] | select(.address == $a) | .waiting >= $n' >/dev/null
}
idle_replica() {  # I: nothing running or waiting on replica I (its queue drained)
  "$KVLBCTL" --socket "$D/agent.sock" -o json backends |
    jq -e --arg a "$(harness_replica_ip "$1"):$PORT" \
      '.[] | select(.address == $a) | .waiting == 0 and .running == 0' >/dev/null
}
echo '[{"input_tokens": 20, "output_tokens": 8}, {"input_tokens": 20, "output_tokens": 8}, {"input_tokens": 20, "output_tokens": 8}]' >"$D/requests.json"

# One client, gated: request 1 opens the pooled connection; then `$2` makes its
# replica a poor choice (busy) or drains it; after the close, request 2 must go
# elsewhere with no error; request 3 (after the replica is back) completes too.
run_client() {  # NAME HOW(busy|drain) CMD...
  local name=$1 how=$2 line r1 before
  shift 2
  coproc CL { harness_run_in_cgroup "$C" env KVLB_GATE=1 OPENAI_API_KEY=none "$@" 2>"$D/$name.err"; }
  read -r -t 60 line <&"${CL[0]}" || fail "$name: no first response: $(cat "$D/$name.err")"
  echo "$line" >"$D/$name.jsonl"
  r1=$(jq -r '.replica' <<<"$line")
  [ -n "$r1" ] && [ "$r1" != null ] || fail "$name: no X-Kvlb-Replica on the first response: $line"
  local i=${r1#r} addr
  addr=$(harness_replica_ip "$i"):$PORT
  if [ "$how" = drain ]; then
    before=$(closed draining)
    "$KVLBCTL" --socket "$D/agent.sock" drain "$addr" >/dev/null
    harness_wait_for "$name: the pooled connection to drained $r1 closed" 20 closed_above draining "$before" ||
      fail "$name: the idle connection to the drained replica was not closed"
  else
    before=$(closed poor_choice)
    harness_keep_busy "$i" 8
    harness_wait_for "$name: $r1 queuing" 30 waiting_at_least "$i" 2 || fail "$name: $r1 did not queue"
    harness_wait_for "$name: the pooled connection to busy $r1 closed" 20 closed_above poor_choice "$before" ||
      fail "$name: the idle connection to the busy replica was not closed"
  fi
  echo go >&"${CL[1]}"
  read -r -t 60 line <&"${CL[0]}" || fail "$name: no second response: $(cat "$D/$name.err")"
  echo "$line" >>"$D/$name.jsonl"
  local r2
  r2=$(jq -r '.replica' <<<"$line")
  if [ "$how" = drain ]; then
    "$KVLBCTL" --socket "$D/agent.sock" undrain "$addr" >/dev/null
  else
    # The busy requests end with the replica's restart: stop them by restarting it.
    pkill -f "curl -s --max-time 300 http://$addr" 2>/dev/null || true
  fi
  echo go >&"${CL[1]}"
  read -r -t 60 line <&"${CL[0]}" || fail "$name: no third response: $(cat "$D/$name.err")"
  echo "$line" >>"$D/$name.jsonl"
  wait "$CL_PID" 2>/dev/null || true
  jq -e -s 'length == 3 and all(.[]; (.error == null) and .chunks == .expected)' "$D/$name.jsonl" >/dev/null ||
    fail "$name: a request failed or a stream was cut: $(cat "$D/$name.jsonl")"
  [ "$r2" != "$r1" ] || fail "$name: the request after the close went to $r1 again"
  harness_log "$name ($how): request 1 on $r1, its idle pooled connection closed, request 2 on $r2; 3 of 3 complete"
  harness_wait_for "$r1 idle again" 60 idle_replica "$i" || fail "$r1 did not go idle"
}

run_client openai-node drain node "$CLIENTS/openai_sdk_stream.mjs" "http://$VIP:$PORT/v1" "$MODEL" "$D/requests.json"
run_client httpx busy "$PY" "$CLIENTS/python_stream.py" httpx "http://$VIP:$PORT/v1" "$MODEL" "$D/requests.json"
run_client aiohttp drain "$PY" "$CLIENTS/python_stream.py" aiohttp "http://$VIP:$PORT/v1" "$MODEL" "$D/requests.json"
run_client openai-node busy node "$CLIENTS/openai_sdk_stream.mjs" "http://$VIP:$PORT/v1" "$MODEL" "$D/requests.json"

# curl: one process, three transfers on one connection, 4 s apart (--rate);
# the replica of the first is drained as soon as it answered.
before=$(closed draining)
body="{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":8,\"min_tokens\":8,\"stream\":true}"
args=()  # after --next, curl takes each transfer's options afresh
for k in 1 2 3; do
  [ "$k" -gt 1 ] && args+=(--next)
  args+=(-sS --rate 15/m -D "$D/curl.h$k" -o "$D/curl.$k" -w '%{num_connects} %{http_code}\n'
    -H 'Content-Type: application/json' -d "$body" "http://$VIP:$PORT/v1/completions")
done
harness_run_in_cgroup "$C" curl "${args[@]}" >"$D/curl.out" 2>"$D/curl.err" &
CURL=$!
harness_wait_for "curl's first response" 20 grep -q X-Kvlb-Replica "$D/curl.h1" || fail "curl: no first response"
c1=$(sed -n 's/^X-Kvlb-Replica: \(r[0-9]\).*/\1/p' "$D/curl.h1" | tr -d '\r')
"$KVLBCTL" --socket "$D/agent.sock" drain "$(harness_replica_ip "${c1#r}"):$PORT" >/dev/null
wait "$CURL" || fail "curl failed: $(cat "$D/curl.err")"
"$KVLBCTL" --socket "$D/agent.sock" undrain "$(harness_replica_ip "${c1#r}"):$PORT" >/dev/null
for k in 1 2 3; do grep -q 'data: \[DONE\]' "$D/curl.$k" || fail "curl: transfer $k incomplete: $(cat "$D/curl.err")"; done
c_all=$(for k in 1 2 3; do sed -n 's/^X-Kvlb-Replica: \(r[0-9]\).*/\1/p' "$D/curl.h$k" | tr -d '\r'; done | paste -sd' ')
[ "$(awk '{print $2}' "$D/curl.out" | sort -u)" = 200 ] || fail "curl: not every transfer 200: $(cat "$D/curl.out")"
closed_above draining "$before" || fail "curl: the idle connection to drained $c1 was not closed"
[ "$(cut -d' ' -f2 <<<"$c_all")" != "$c1" ] || fail "curl: the transfer after the close went to $c1 again ($c_all)"
harness_log "curl: 3 of 3 transfers complete, replicas $c_all, connects per transfer $(awk '{print $1}' "$D/curl.out" | paste -sd' ')"

# Off for the service: nothing closed, the pooled connection stays on the
# drained replica (a drain only refuses new connections).
agent_config false >"$D/agent.yaml"
kill -HUP "$(pgrep -f "kvlb-agent -c $D/agent.yaml")"
harness_wait_for "reload" 20 grep -q "reloaded" "$D/agent.log" || fail "the agent did not reload"
total_before=$(($(closed draining) + $(closed poor_choice)))
coproc OFF { harness_run_in_cgroup "$C" env KVLB_GATE=1 "$PY" "$CLIENTS/python_stream.py" httpx "http://$VIP:$PORT/v1" "$MODEL" "$D/requests.json" 2>"$D/off.err"; }
read -r -t 60 line <&"${OFF[0]}" || fail "off: no first response"
r1=$(jq -r '.replica' <<<"$line")
"$KVLBCTL" --socket "$D/agent.sock" drain "$(harness_replica_ip "${r1#r}"):$PORT" >/dev/null
sleep 1  # five rebalancing intervals: nothing may be closed (an absence, so a wait)
echo go >&"${OFF[1]}"
read -r -t 60 line <&"${OFF[0]}" || fail "off: no second response"
r2=$(jq -r '.replica' <<<"$line")
echo go >&"${OFF[1]}"
read -r -t 60 line <&"${OFF[0]}" || true
[ "$r2" = "$r1" ] || fail "off: the pooled connection moved from $r1 to $r2 without rebalancing"
[ "$(($(closed draining) + $(closed poor_choice)))" = "$total_before" ] || fail "off: connections were closed"
harness_log "off: the pooled connection stayed on drained $r1 (nothing closed)"
"$KVLBCTL" --socket "$D/agent.sock" undrain "$(harness_replica_ip "${r1#r}"):$PORT" >/dev/null

# The race with a request being sent: idle 0 ms, a round every 100 ms, no
# budget to speak of, and the drain moving from replica to replica every
# 150 ms (two of three always open), so pooled connections keep being closed
# at moments unrelated to the client's; a raw client sends 600 requests on
# keep-alive connections with 0-40 ms between them (idle a third of the time). The iterator holds the
# socket's lock: a request whose bytes are in the socket is never cut (lost);
# one that comes after the close fails to send (refused) and goes out again on
# a new connection.
agent_config true | sed 's/^keepalive: .*/keepalive: {interval: 100ms, idle: 0ms, max_closes_per_second: 100000}/' >"$D/agent.yaml"
kill -HUP "$(pgrep -f "kvlb-agent -c $D/agent.yaml")"
reloads_at_least() { [ "$(grep -c "configuration reloaded" "$D/agent.log")" -ge "$1" ]; }
harness_wait_for "reload" 20 reloads_at_least 2 || fail "the agent did not reload"
rotate_drain() {
  local k=0 i
  while :; do
    for i in 0 1 2; do
      "$KVLBCTL" --socket "$D/agent.sock" "$([ "$i" = $((k % 3)) ] && echo drain || echo undrain)" \
        "$(harness_replica_ip "$i"):$PORT" >/dev/null
    done
    k=$((k + 1))
    sleep 0.15
  done
}
rotate_drain &
ROTATE=$!
echo "$ROTATE" >>"$D/pids"
before=$(closed draining)
RACE=$(harness_run_in_cgroup "$C" "$PY" "$CLIENTS/keepalive_race.py" "$VIP" "$PORT" "$MODEL" 600 40) ||
  fail "the race client failed"
kill "$ROTATE" 2>/dev/null || true
harness_log "race: $RACE; $(($(closed draining) - before)) closed"
[ "$(jq .lost <<<"$RACE")" = 0 ] || fail "race: requests were cut after they were sent: $RACE"
[ "$(jq .ok <<<"$RACE")" = 600 ] || fail "race: not every request answered: $RACE"
[ "$(jq .refused <<<"$RACE")" -ge 20 ] || fail "race: too few closes met the client to test the race: $RACE"
harness_log "PASS"
