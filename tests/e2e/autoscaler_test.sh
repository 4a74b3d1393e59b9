#!/usr/bin/env bash
# End-to-end: kvlb-autoscaler on the path it has in a cluster. The strict API
# test double (tests/k8s) holds a Deployment `llm`; the harness's deployment
# controller (scripts/harness/deployment-controller) watches it there, starts
# and stops emulated replicas in replica namespaces and publishes their
# EndpointSlice; the agent discovers them from it; the autoscaler reads the
# agent's scores and patches the Deployment's scale. Load through the VIP.
#   - --dry-run: the load changes nothing in the API, the decision shows in
#     kvlbctl autoscale;
#   - two autoscalers on one Lease: only the leader acts;
#   - under load: scale up (ScaledUp Event), the controller's replicas are
#     discovered and take traffic, never beyond max;
#   - load gone: a victim is drained in the agent first, and in a second
#     node's agent the autoscaler does not talk to (through the pod's draining
#     label), gets the deletion cost, the scale goes down and the controller
#     removes exactly that pod;
#   - 403 on the scale patch: a clear error, errors_total{kind="Forbidden"},
#     acts again after allow;
#   - the leader killed: the standby takes over within lease_duration + retry
#     and acts;
#   - no request failed in any load run.
set -euo pipefail
BUILD=${1:?usage: autoscaler_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
# A failure shows the autoscalers' and the controller's logs too (and keeps them
# all in $KVLB_TEST_KEEP_LOGS when that is set).
fail() {
  harness_log "FAIL: $*"
  local f
  for f in "$HARNESS_DIR"/agent.log "$HARNESS_DIR"/agent2.log "$HARNESS_DIR"/autoscaler-*.log "$HARNESS_DIR"/controller.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
  done
  if [ -n "${KVLB_TEST_KEEP_LOGS:-}" ]; then
    mkdir -p "$KVLB_TEST_KEEP_LOGS" && cp "$HARNESS_DIR"/*.log "$HARNESS_DIR"/*.json* "$HARNESS_DIR"/samples "$KVLB_TEST_KEEP_LOGS/" 2>/dev/null
  fi
  exit 1
}
KVLBCTL=$BUILD/userspace/cli/kvlbctl
PORT=8000 API=127.0.0.1:6443 SLOTS=4 MAX=3
LEASE_S=15 RETRY_S=2  # the autoscaler's Lease duration and retry period (k8s/leader_election.h)

harness_topology autoscale "$SLOTS"
C=$(harness_ns c)
VIP=$(harness_vip 0)
D=$HARNESS_DIR
harness_kube_api "$C" "$BUILD" --bookmark-ms 500
api() { harness_api "$@"; }  # METHOD PATH [BODY]: the double's test control
kget() { harness_kget "$@"; }  # PATH: an authenticated read, as a client would
harness_wait_for "API double" 20 api GET /_test/requests || fail "the API double did not start"
api PUT /_test/deployments/default/llm '{"spec":{"replicas":1,"selector":{"matchLabels":{"app":"llm"}},"template":{"metadata":{"labels":{"app":"llm"}}}}}' >/dev/null
api PUT /_test/services/default/llm "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"llm\",\"namespace\":\"default\"},\"spec\":{\"clusterIP\":\"$VIP\",\"ports\":[{\"name\":\"http\",\"port\":$PORT,\"protocol\":\"TCP\"}]}}" >/dev/null
cat >"$D/kubeconfig" <<YAML
apiVersion: v1
kind: Config
current-context: test
clusters: [{name: c, cluster: {server: "https://$API", certificate-authority: "$D/ca.crt"}}]
users: [{name: u, user: {tokenFile: "$D/token"}}]
contexts: [{name: test, context: {cluster: c, user: u}}]
YAML

# --- the deployment controller: the replica slots the harness made
{
  printf '{"port": %d, "slots": [' "$PORT"
  for ((i = 0; i < SLOTS; i++)); do
    printf '%s{"netns": "%s", "ip": "%s"}' "$([ "$i" -gt 0 ] && echo ,)" "$(harness_ns "r$i")" "$(harness_replica_ip "$i")"
  done
  printf '], "command": ["%s", "--listen", "{ip}", "--port", "{port}", "--name", "{name}", "--load-delay", "{startup}"]}\n' \
    "$BUILD/userspace/replica_sim/kvlb-replica-sim"
} >"$D/slots.json"
CTRL=$(harness_spawn "$C" "$D/controller.log" "$ROOT/scripts/harness/deployment-controller" \
  --server "https://$API" --ca "$D/ca.crt" --token-file "$D/token" --deployment llm --service llm \
  --slots "$D/slots.json" --startup 3s --grace 20s --events "$D/controller-events.jsonl" \
  --pids "$D/pids" --log-dir "$D")
pods_ready() { [ "$(kget /api/v1/namespaces/default/pods?labelSelector=app%3Dllm |
  jq "[.items[] | select(.metadata.deletionTimestamp == null) | select(.status.conditions[]? | .type == \"Ready\" and .status == \"True\")] | length")" = "$1" ]; }
harness_wait_for "the first pod ready" 30 pods_ready 1 || fail "the controller did not start the first replica: $(tail -n 5 "$D/controller.log")"
check "the controller created the first pod from the Deployment and published it" \
  grep -q '"action": "ready"' "$D/controller-events.jsonl"

# --- the agent, discovering from the EndpointSlice
cat >"$D/agent.yaml" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
admin: {socket: $D/agent.sock}
kubernetes: {kubeconfig: $D/kubeconfig}
services:
  - name: llm
    kubernetes: {namespace: default, service: llm, port: http}
YAML
harness_spawn "$C" "$D/agent.log" "$BUILD/userspace/kvlb-agent" -c "$D/agent.yaml" >/dev/null
harness_wait_for "discovery" 20 grep -q "discovery: 1 backends" "$D/agent.log" || fail "no discovery"
# A second node's agent (its own cgroup and pins): the autoscaler never talks
# to it; it learns of a drain from the pod's draining label alone.
mkdir "$HARNESS_CGROUP/node2"
sed -e "s#^cgroup: .*#cgroup: $HARNESS_CGROUP/node2#" -e "s#^pin_dir: .*#pin_dir: $HARNESS_BPFFS/node2#" \
  -e "s#^admin: .*#admin: {socket: $D/agent2.sock}#" "$D/agent.yaml" >"$D/agent2.yaml"
harness_spawn "$C" "$D/agent2.log" "$BUILD/userspace/kvlb-agent" -c "$D/agent2.yaml" >/dev/null
harness_wait_for "discovery on node 2" 20 grep -q "discovery: 1 backends" "$D/agent2.log" || fail "no discovery on node 2"
backends() { "$KVLBCTL" --socket "$D/agent.sock" -o json backends; }
backends2() { "$KVLBCTL" --socket "$D/agent2.sock" -o json backends; }
active_backends() { [ "$(backends | jq '[.[] | select(.state == "active")] | length')" -ge "$1" ]; }
harness_wait_for "the agent's admin API" 20 active_backends 1 || fail "the agent shows no active backend"

# --- sampler: the Deployment's spec.replicas and the agent's backend states, with times
sampler() {
  while :; do
    local t spec
    t=$(date +%s.%N)
    spec=$(kget /apis/apps/v1/namespaces/default/deployments/llm | jq '.spec.replicas' 2>/dev/null || echo null)
    echo "$t spec $spec" >>"$D/samples"
    backends 2>/dev/null | jq -r --arg t "$t" '.[] | "\($t) backend \(.address) \(.state)"' >>"$D/samples" 2>/dev/null || true
    backends2 2>/dev/null | jq -r --arg t "$t" '.[] | "\($t) backend2 \(.address) \(.state)"' >>"$D/samples" 2>/dev/null || true
    sleep 0.25
  done
}
sampler &
echo $! >>"$D/pids"

autoscaler_config() {  # NAME
  cat <<YAML
agent_socket: $D/agent.sock
kubeconfig: $D/kubeconfig
interval: 500ms
leader_election: {namespace: default, name: kvlb-autoscaler, identity: $1}
admin: {socket: $D/$1.sock}
services:
  - service: llm
    namespace: default
    workload: {kind: Deployment, name: llm}
    port: $PORT
    policy: kvlb
    signal: saturation          # scales at a queue of 2 a replica: quick in a test
    target: 1.0
    queue_target: 2
    min_replicas: 1
    max_replicas: $MAX
    sync_period: 1s
    metric_window: 2s
    expected_startup: 3s
    drain_timeout: 30s
    panic: {enabled: false}
    behavior:
      scaleDown: {stabilizationWindowSeconds: 5}
YAML
}
status() { "$KVLBCTL" -o json autoscale --autoscaler-socket "$D/$1.sock" 2>/dev/null; }
spec_replicas() { kget /apis/apps/v1/namespaces/default/deployments/llm | jq '.spec.replicas'; }
spec_is() { [ "$(spec_replicas)" "$1" "$2" ]; }  # OP N, polled by harness_wait_for
events_count() { api GET /_test/events | jq 'length'; }
scale_patches() { api GET /_test/requests | jq '.scale_patches // 0'; }
load() {  # NAME RPS SECONDS: kvlb-loadgen through the VIP in the background
  harness_run_in_cgroup "$C" "$BUILD/userspace/loadgen/kvlb-loadgen" --url "http://$VIP:$PORT" \
    --rps "$2" --duration "$3" --arrival constant --dataset synthetic --seed 7 --connections new \
    --timeout 120 -q -o "$D/$1.json" >"$D/$1.out" 2>&1 &
  LOAD_PID=$!
  echo "$LOAD_PID" >>"$D/pids"
}
load_clean() {  # NAME: every request answered, none failed or cut
  local s
  s=$(jq -c '.summary // .' "$D/$1.json")
  [ "$(j .error_count "$s")" = 0 ] && [ "$(j .cut "$s")" = 0 ] && [ "$(j .ok "$s")" = "$(j .requests "$s")" ] &&
    [ "$(j .ok "$s")" -gt 0 ] || { harness_log "$1: $s"; return 1; }
}

# --- dry run: the same load decides, and the API is left alone
autoscaler_config dry >"$D/dry.yaml"
DRY=$(harness_spawn "$C" "$D/autoscaler-dry.log" "$BUILD/userspace/kvlb-autoscaler" --config "$D/dry.yaml" --dry-run)
E0=$(events_count) P0=$(scale_patches)
load load1 3 35
dry_wants_more() { [ "$(status dry | jq '.[0].desired')" -gt 1 ]; }
harness_wait_for "the dry run's decision" 40 dry_wants_more || fail "the dry run never wanted more replicas: $(status dry)"
harness_stop_pid "$DRY"
S=$(status dry || true)
check "dry run: spec.replicas unchanged, no Event, no scale patch (patches $P0 -> $(scale_patches))" \
  test "$(spec_replicas)" = 1 -a "$(events_count)" = "$E0" -a "$(scale_patches)" = "$P0"
check "dry run: the decision is in the log" grep -q "scale 1 -> [2-9].*\[dry run\]" "$D/autoscaler-dry.log"

# --- two autoscalers on one Lease; the leader acts
autoscaler_config as-a >"$D/as-a.yaml"
autoscaler_config as-b >"$D/as-b.yaml"
A=$(harness_spawn "$C" "$D/autoscaler-a.log" "$BUILD/userspace/kvlb-autoscaler" --config "$D/as-a.yaml")
harness_wait_for "a leads" 20 grep -q "leading: acting" "$D/autoscaler-a.log" || fail "a never led"
B=$(harness_spawn "$C" "$D/autoscaler-b.log" "$BUILD/userspace/kvlb-autoscaler" --config "$D/as-b.yaml")
harness_wait_for "b's admin socket" 20 status as-b || fail "b's admin API does not answer"
scaled_up() { api GET /_test/events | jq -e 'any(.[]; .reason == "ScaledUp")' >/dev/null && [ "$(spec_replicas)" -ge 2 ]; }
harness_wait_for "a scale-up" 40 scaled_up || fail "no scale-up under load: $(status as-a)"
check "the leader patched the scale up with a ScaledUp Event (spec.replicas $(spec_replicas))" true
harness_wait_for "two replicas active in the agent" 30 active_backends 2 || fail "new replicas not discovered: $(backends)"
check "kvlbctl backends shows the new replicas" active_backends 2
wait "$LOAD_PID" || true
check "load 1: no request failed" load_clean load1
served=$(jq '.summary.per_replica // .per_replica | length' "$D/load1.json")
check "replicas added by the autoscaler took traffic ($served replicas served: $(jq -c '.summary.per_replica // .per_replica' "$D/load1.json"))" \
  test "$served" -ge 2
maxspec=$(awk '$2 == "spec" && $3 != "null" { if ($3 > m) m = $3 } END { print m + 0 }' "$D/samples")
creates=$(grep -c '"action": "create"' "$D/controller-events.jsonl")
check "never beyond max while replicas loaded (spec.replicas at most $maxspec, $creates pods created, none refused)" \
  test "$maxspec" -le "$MAX" -a "$creates" -le "$MAX" -a "$(grep -c '"action": "refused"' "$D/controller-events.jsonl")" = 0
check "the standby did not act (leader false, no scale in its log)" \
  test "$(status as-b | jq '.[0].leader')" = false
! grep -q "scale [0-9]* -> \|drain " "$D/autoscaler-b.log" || fail "the standby acted: $(grep 'scale\|drain' "$D/autoscaler-b.log")"

# --- the load is gone: drain, deletion cost, scale down, exactly that pod removed
harness_wait_for "scale down to 1" 60 spec_is -eq 1 || fail "no scale-down: $(status as-a)"
harness_wait_for "the victims removed" 40 pods_ready 1 || fail "victims not removed"
deletions_at_least() { [ "$(grep -c '"action": "delete"' "$D/controller-events.jsonl")" -ge "$1" ]; }
harness_wait_for "the controller deleted them" 40 deletions_at_least $((maxspec - 1)) || fail "no pod deletion"
drained=$(grep -oP 'llm: drain \K\S+' "$D/autoscaler-a.log" | sort -u | paste -sd,)
terminated=$(jq -r 'select(.action == "terminate") | .pod' "$D/controller-events.jsonl" | sort -u | paste -sd,)
check "the controller removed exactly the pods the autoscaler drained ($drained)" test -n "$drained" -a "$drained" = "$terminated"
for pod in ${drained//,/ }; do
  addr=$(grep -oP "llm: drain $pod \(\K[^)]+" "$D/autoscaler-a.log" | head -n 1)
  t_term=$(jq -r --arg p "$pod" 'select(.action == "terminate" and .pod == $p) | .t' "$D/controller-events.jsonl")
  t_drain=$(awk -v a="$addr" '$2 == "backend" && $3 == a && $4 == "draining" { print $1; exit }' "$D/samples")
  check "$pod ($addr) was draining in the agent before the pod was terminated" \
    awk -v d="${t_drain:-9e99}" -v t="$t_term" 'BEGIN { exit !(d < t) }'
  t_drain2=$(awk -v a="$addr" '$2 == "backend2" && $3 == a && $4 == "draining" { print $1; exit }' "$D/samples")
  check "$pod was draining in node 2's agent too (from its draining label) before it was terminated" \
    awk -v d="${t_drain2:-9e99}" -v t="$t_term" 'BEGIN { exit !(d < t) }'
  check "$pod was chosen for its deletion cost" \
    grep -q "pod $pod .*deletion cost -1000000" "$D/controller.log"
done
event_seen() { api GET /_test/events | jq -e --arg r "$1" 'any(.[]; .reason == $r)' >/dev/null; }
check "a ScalingDown Event recorded" event_seen ScalingDown
! event_seen VictimNotRemoved || fail "the autoscaler saw another pod removed than its victim"

# --- 403 on the scale patch: reported, counted, and acted on again after allow
api POST "/_test/deny?verb=patch&resource=deployments/scale" >/dev/null
load load2 3 30
forbidden() { curl -s --unix-socket "$D/as-a.sock" http://x/metrics | grep -q 'kvlb_autoscaler_errors_total{.*kind="Forbidden".*} [1-9]'; }
harness_wait_for "a Forbidden error" 40 forbidden || fail "no Forbidden counted: $(curl -s --unix-socket "$D/as-a.sock" http://x/metrics | grep errors)"
check "403: the scale stayed at 1" test "$(spec_replicas)" = 1
check "403: a clear error in the log" grep -qi "forbidden\|403" "$D/autoscaler-a.log"
api POST /_test/allow >/dev/null
harness_wait_for "a scale-up after allow" 30 spec_is -ge 2 || fail "no scale-up after allow"
check "after allow the autoscaler acted again (spec.replicas $(spec_replicas))" true
harness_wait_for "two replicas active" 30 active_backends 2 || fail "replicas not discovered after allow"

# --- the leader killed: the standby takes over and acts
t0=$(date +%s.%N)
kill -KILL "$A"
harness_wait_for "b leads" $((LEASE_S + RETRY_S + 10)) grep -q "leading: acting" "$D/autoscaler-b.log" || fail "b never took over"
took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "the standby took over in ${took}s (lease ${LEASE_S}s + retry ${RETRY_S}s)" \
  awk -v t="$took" -v m="$((LEASE_S + RETRY_S + 1))" 'BEGIN { exit !(t <= m) }'
wait "$LOAD_PID" || true
check "load 2: no request failed" load_clean load2
harness_wait_for "b scales down" 60 spec_is -eq 1 || fail "b did not scale down: $(status as-b)"
check "the new leader acted (drained and scaled down)" grep -q "scale [0-9]* -> 1" "$D/autoscaler-b.log"
harness_wait_for "one pod left" 40 pods_ready 1 || fail "victims not removed after the takeover"
harness_stop_pid "$B"
check "the autoscaler stops cleanly on SIGTERM (lease released)" grep -q "kvlb-autoscaler: stopped" "$D/autoscaler-b.log"
harness_log "PASS ($CHECKS checks)"
