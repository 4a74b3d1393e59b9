#!/usr/bin/env bash
# End-to-end: backends discovered from Kubernetes EndpointSlices, against the
# strict API test double (tests/k8s), over TLS with a CA made for this run.
#   - a wrong CA: the agent refuses the server; no request reaches the API;
#   - list + watch: the socket LB balances over the discovered pods;
#   - a pod terminating (serving): draining, no new connections; a new pod: used;
#   - the token rotates and the watch's version expires (410): re-listed with the
#     new token, no 401;
#   - the API fails (500 x3): backoff, then it catches up.
set -euo pipefail
BUILD=${1:?usage: k8s_discovery_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
PORT=8000 API=127.0.0.1:6443

harness_topology k8s 3
C=$(harness_ns c)
VIP=$(harness_vip 0)
for i in 0 1 2; do harness_start_replica "$i" >/dev/null; done
D=$HARNESS_DIR
harness_kube_api "$C" "$BUILD" --bookmark-ms 500
# A second CA that did not sign the server: the agent must refuse it.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/other.key" -out "$D/other-ca.crt" -subj /CN=not-the-cluster-ca -days 1 2>/dev/null
api() { harness_api "$@"; }  # METHOD PATH [BODY]: the double's test control
harness_wait_for "API double" 20 api GET /_test/requests || fail "the API double did not start"

slice() {  # name, then "ip:ready:serving:terminating" entries
  local name=$1 eps="" e ip r s t
  shift
  for e in "$@"; do
    IFS=: read -r ip r s t <<<"$e"
    eps+="${eps:+,}{\"addresses\":[\"$ip\"],\"conditions\":{\"ready\":$r,\"serving\":$s,\"terminating\":$t},\"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-$ip\"}}"
  done
  echo "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"labels\":{\"kubernetes.io/service-name\":\"llm\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":$PORT,\"protocol\":\"TCP\"}],\"endpoints\":[$eps]}"
}
R0=$(harness_replica_ip 0) R1=$(harness_replica_ip 1) R2=$(harness_replica_ip 2)
api PUT /_test/slices/default/llm-a "$(slice llm-a "$R0:true:true:false" "$R1:true:true:false")" >/dev/null
api PUT /_test/services/default/llm "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"llm\",\"namespace\":\"default\"},\"spec\":{\"clusterIP\":\"$VIP\",\"ports\":[{\"name\":\"metrics\",\"port\":9090},{\"name\":\"http\",\"port\":$PORT,\"protocol\":\"TCP\"}]}}" >/dev/null

kubeconfig() {  # CA file
  cat <<YAML
apiVersion: v1
kind: Config
current-context: test
clusters: [{name: c, cluster: {server: "https://$API", certificate-authority: "$1"}}]
users: [{name: u, user: {tokenFile: "$D/token"}}]
contexts: [{name: test, context: {cluster: c, user: u}}]
YAML
}
kubeconfig "$D/other-ca.crt" >"$D/wrong.kubeconfig"
kubeconfig "$D/ca.crt" >"$D/kubeconfig"
agent_config() {
  cat <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
admin: {socket: ""}
kubernetes: {kubeconfig: $1}
services:
  - name: llm
    kubernetes: {namespace: default, service: llm, port: http}   # vip: the ClusterIP
YAML
}

# --- TLS is verified against the cluster CA
agent_config "$D/wrong.kubeconfig" >"$D/wrong.yaml"
BAD=$(harness_spawn "$C" "$D/agent-wrong-ca.log" "$BUILD/userspace/kvlb-agent" -c "$D/wrong.yaml")
harness_wait_for "a TLS error" 20 grep -qi "SSL\|certificate" "$D/agent-wrong-ca.log" || fail "no TLS error with a wrong CA"
harness_stop_pid "$BAD"
[ "$(api GET /_test/requests | jq '.requests // 0')" = 0 ] || fail "a request got through with a wrong CA"
[ ! -e "$HARNESS_BPFFS/kvlb" ] || fail "an agent that could not reach the API attached a data plane"
harness_log "ok: a server not signed by the cluster CA is refused (no request reached the API)"

# --- list and watch drive the socket LB
agent_config "$D/kubeconfig" >"$D/agent.yaml"
AGENT=$(harness_spawn "$C" "$D/agent.log" "$BUILD/userspace/kvlb-agent" -c "$D/agent.yaml")
harness_wait_for "discovery" 20 grep -q "discovery: 2 backends" "$D/agent.log" || fail "no discovery"
grep -q "vip $VIP:$PORT from the ClusterIP of default/llm" "$D/agent.log" || fail "VIP not taken from the ClusterIP"
harness_log "ok: VIP $VIP:$PORT taken from the Service's ClusterIP and its port named http"
sleep 0.3
probe() { harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" --count "$1"; }
R=$(probe 40)
[ "$(j .ok "$R")" = 40 ] && [ "$(j '.by_replica.r2 // 0' "$R")" = 0 ] && [ "$(j '.by_replica.r0 // 0' "$R")" -gt 0 ] ||
  fail "initial discovery: $R"
harness_log "ok: list: balanced over the two discovered pods ($(jq -c .by_replica <<<"$R"))"

api PUT /_test/slices/default/llm-a "$(slice llm-a "$R0:true:true:false" "$R1:false:true:true" "$R2:true:true:false")" >/dev/null
harness_wait_for "the watch event" 20 grep -q "discovery: 3 backends" "$D/agent.log" || fail "watch event not applied"
sleep 0.3
R=$(probe 60)
[ "$(j .ok "$R")" = 60 ] && [ "$(j '.by_replica.r1 // 0' "$R")" = 0 ] && [ "$(j '.by_replica.r2 // 0' "$R")" -gt 0 ] ||
  fail "after the watch event: $R"
harness_log "ok: watch: terminating r1 drained, new r2 used ($(jq -c .by_replica <<<"$R"))"

# --- token rotation + expired version: re-list with the new token
echo "token-two" >"$D/api-token"
echo "token-two" >"$D/token"
api POST /_test/compact >/dev/null
api PUT /_test/slices/default/llm-a "$(slice llm-a "$R1:true:true:false" "$R2:true:true:false")" >/dev/null
harness_wait_for "re-list after 410" 20 grep -q "(410 Gone), listing again" "$D/agent.log" || fail "no re-list after 410"
# The last discovery line tells the current backend count.
last_discovery() { grep "discovery: " "$D/agent.log" | tail -n 1 | grep -q "discovery: $1 backends"; }
harness_wait_for "r0 removed" 20 last_discovery 2 || fail "state after re-list"
C1=$(api GET /_test/requests)
[ "$(j '.unauthorized // 0' "$C1")" = 0 ] && [ "$(j '.gone // 0' "$C1")" -ge 1 ] || fail "rotation/410: $C1"
R=$(probe 40)
[ "$(j '.by_replica.r0 // 0' "$R")" = 0 ] && [ "$(j .ok "$R")" = 40 ] || fail "after re-list: $R"
harness_log "ok: token rotated and version expired: re-listed with the new token, no 401 ($(jq -c . <<<"$C1"))"

# --- API errors: backoff, then catch up
api POST "/_test/fail?n=3" >/dev/null
api POST /_test/compact >/dev/null
api PUT /_test/slices/default/llm-a "$(slice llm-a "$R0:true:true:false" "$R1:true:true:false" "$R2:true:true:false")" >/dev/null
harness_wait_for "recovery after 500s" 30 last_discovery 3 || fail "no recovery after API errors"
C2=$(api GET /_test/requests)
[ "$(j '.injected_500' "$C2")" = 3 ] || fail "injected failures not all seen: $C2"
grep -q "HTTP 500" "$D/agent.log" || fail "API errors not reported"
R=$(probe 60)
[ "$(j .ok "$R")" = 60 ] && [ "$(j '.by_replica.r0 // 0' "$R")" -gt 0 ] || fail "after recovery: $R"
harness_log "ok: 3 API failures backed off and recovered; r0 back ($(jq -c .by_replica <<<"$R"))"
# --- auth errors: a token the API server does not accept is reported and retried
echo "token-wrong" >"$D/token"
api POST /_test/compact >/dev/null
harness_wait_for "401 reported" 20 grep -q "HTTP 401" "$D/agent.log" || fail "401 not reported"
echo "token-two" >"$D/token"
api PUT /_test/slices/default/llm-a "$(slice llm-a "$R0:true:true:false" "$R2:true:true:false")" >/dev/null
harness_wait_for "recovery after 401" 30 last_discovery 2 || fail "no recovery after the token was fixed"
C3=$(api GET /_test/requests)
[ "$(j '.unauthorized' "$C3")" -ge 1 ] || fail "no 401 seen: $C3"
R=$(probe 40)
[ "$(j '.by_replica.r1 // 0' "$R")" = 0 ] && [ "$(j .ok "$R")" = 40 ] || fail "after the 401s: $R"
harness_log "ok: a rejected token is reported (HTTP 401), retried with backoff, and recovers ($(j '.unauthorized' "$C3") x 401)"
# --- more endpoints than a service has slots: 300 terminating endpoints (on
# addresses nothing serves) next to the 2 ready replicas. The agent used to
# overflow a 256-entry array and crash; now it keeps the ready ones, fills the
# subset with draining ones, reports the rest, and keeps balancing.
many=()
for i in $(seq 0 299); do many+=("$HARNESS_NET.$((120 + i / 250)).$((i % 250 + 1)):false:true:true"); done
api PUT /_test/slices/default/llm-b "$(slice llm-b "${many[@]}")" >/dev/null
harness_wait_for "302 endpoints capped" 30 last_discovery 256 || fail "a 302-endpoint service not capped at 256"
grep -q "302 endpoints, 256 balanced from this node (256 is the most a service balances); 46 left out" \
  "$D/agent.log" || fail "no warning about the endpoints left out"
kill -0 "$AGENT" || fail "the agent died with 302 endpoints"
R=$(probe 40)
[ "$(j .ok "$R")" = 40 ] && [ "$(j '.by_replica.r1 // 0' "$R")" = 0 ] || fail "with 302 endpoints: $R"
harness_log "ok: 302 endpoints: 256 balanced (the 2 ready ones first), 46 reported, connections still served"
harness_log "PASS"
