#!/usr/bin/env bash
# End-to-end: the agent's admin API through kvlbctl (services, backends, drain,
# undrain, top, -o json), its /metrics validated by promtool, and scraped by a
# real Prometheus server.
set -euo pipefail
BUILD=${1:?usage: agent_admin_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
CTL=$BUILD/userspace/cli/kvlbctl
PORT=8000 ADMIN=127.0.0.1:19464 PROM=127.0.0.1:19090

harness_topology admin 2
C=$(harness_ns c)
VIP=$(harness_vip 0)
for i in 0 1; do harness_start_replica "$i" >/dev/null; done
SOCK=$HARNESS_DIR/agent.sock
R0=$(harness_replica_ip 0):$PORT
cat >"$HARNESS_DIR/agent.yaml" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $HARNESS_BPFFS/kvlb
admin: {socket: $SOCK, listen: "$ADMIN"}
services:
  - name: llm
    vip: $VIP:$PORT
    backends: [{address: "$R0"}, {address: "$(harness_replica_ip 1):$PORT"}]
YAML
harness_spawn "$C" "$HARNESS_DIR/agent.log" "$BUILD/userspace/kvlb-agent" -c "$HARNESS_DIR/agent.yaml" >/dev/null
harness_wait_for "admin socket" 20 test -S "$SOCK" || fail "no admin socket"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "admin socket is not root-only: $(stat -c %a "$SOCK")"
harness_log "ok: admin socket is mode 0600"
ctl() { "$CTL" --socket "$SOCK" "$@"; }
probe() { harness_run_in_cgroup "$C" "$PROBE" --target "$VIP:$PORT" "$@"; }

S=$(ctl services -o json)
[ "$(j '.[0].vip' "$S")" = "$VIP:$PORT" ] && [ "$(j '.[0].backends | length' "$S")" = 2 ] || fail "services: $S"
ctl services | grep -q "p2c-queue-kv" || fail "services table"
harness_log "ok: kvlbctl services"
B=$(ctl backends -o json)
[ "$(j '[.[].engine] | unique | join(",")' "$B")" = vllm ] || fail "engines not detected: $B"
grep -q "engine detected as vllm" "$HARNESS_DIR/agent.log" || fail "no detection log"
harness_log "ok: engines detected from the first scrape (vllm)"

ctl drain "$R0" >/dev/null
B=$(ctl backends -o json)
[ "$(j ".[] | select(.address == \"$R0\") | .state" "$B")" = draining ] || fail "drain not shown: $B"
R=$(probe --count 40)
[ "$(j '.by_replica.r0 // 0' "$R")" = 0 ] && [ "$(j .ok "$R")" = 40 ] || fail "drained r0 still picked: $R"
harness_log "ok: kvlbctl drain: r0 draining, 0/40 new connections"
ctl undrain "$R0" >/dev/null
R=$(probe --count 40)
[ "$(j '.by_replica.r0 // 0' "$R")" -gt 0 ] || fail "undrained r0 not picked: $R"
ctl backends | grep -q "$R0 .*active" || fail "backends table after undrain"
harness_log "ok: kvlbctl undrain: r0 picked again ($(j '.by_replica.r0' "$R")/40)"
ctl drain 10.9.9.9:1 2>"$HARNESS_DIR/err" && fail "draining an unknown backend succeeded"
grep -q "no backend 10.9.9.9:1" "$HARNESS_DIR/err" || fail "unclear error for an unknown backend"
[ "$(ctl top --iterations 2 --interval 0.1 -o json | wc -l)" = 2 ] || fail "top"
harness_log "ok: unknown backend refused with a clear error; top refreshes"

# The TCP listener (for Prometheus) reads, never writes: a POST is refused there,
# whatever the route, and the backend's state does not change.
tcp() { nsenter --net="/run/netns/$C" curl -s -o "$HARNESS_DIR/tcp.out" -w '%{http_code}' "$@"; }
[ "$(tcp "http://$ADMIN/v1/backends")" = 200 ] || fail "GET over TCP: $(cat "$HARNESS_DIR/tcp.out")"
code=$(tcp -X POST "http://$ADMIN/v1/backends/$R0/drain")
[ "$code" = 403 ] || fail "POST drain over TCP answered $code: $(cat "$HARNESS_DIR/tcp.out")"
grep -q "unix socket only" "$HARNESS_DIR/tcp.out" || fail "unclear refusal: $(cat "$HARNESS_DIR/tcp.out")"
[ "$(tcp -X POST "http://$ADMIN/v1/no/such/route")" = 403 ] || fail "POST to an unknown route over TCP not refused"
B=$(ctl backends -o json)
[ "$(j ".[] | select(.address == \"$R0\") | .state" "$B")" = active ] || fail "a POST over TCP changed state: $B"
harness_log "ok: TCP listener serves GET, refuses POST with 403 (state unchanged)"

ctl metrics >"$HARNESS_DIR/metrics.txt"
promtool check metrics <"$HARNESS_DIR/metrics.txt" || fail "promtool check metrics"
grep -q "kvlb_backend_picks_total{backend=\"$R0\"}" "$HARNESS_DIR/metrics.txt" || fail "no picks metric"
harness_log "ok: /metrics passes promtool check metrics"

cat >"$HARNESS_DIR/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: kvlb
    static_configs: [{targets: ["$ADMIN"]}]
YAML
harness_spawn "$C" "$HARNESS_DIR/prometheus.log" prometheus --config.file "$HARNESS_DIR/prometheus.yml" \
  --storage.tsdb.path "$HARNESS_DIR/tsdb" --web.listen-address "$PROM" >/dev/null
query() { nsenter --net="/run/netns/$C" curl -sf "http://$PROM/api/v1/query" --data-urlencode "query=$1"; }
scraped() { [ "$(query "sum(kvlb_backend_picks_total)" | jq -r '.data.result[0].value[1] // 0')" -ge 80 ]; }
harness_wait_for "Prometheus to scrape the agent" 60 scraped || fail "Prometheus did not scrape kvlb metrics: $(query up)"
[ "$(query 'up{job="kvlb"}' | jq -r '.data.result[0].value[1]')" = 1 ] || fail "up != 1"
harness_log "ok: a Prometheus server scrapes the agent (up=1, picks $(query "sum(kvlb_backend_picks_total)" | jq -r '.data.result[0].value[1]'))"
harness_log "PASS"
