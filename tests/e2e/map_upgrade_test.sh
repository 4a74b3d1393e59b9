#!/usr/bin/env bash
# End-to-end: an upgrade from the v1 map layout with connections open.
#
# The v1 state is recreated as a v1 agent left it: pinned kvlb_be_v1 (r0 as
# backend 1), kvlb_ctr_v1, the retired kvlb_svc_v1 / kvlb_slots_v1, and v1
# socket-local storage kvlb_sock_v1 filled by a connect4 program that records
# sockets the v1 way (tests/e2e/fixtures/legacy_v1_connect4.bpf.c). Connections
# are opened and held through it; then the current agent starts on those pins,
# the v1 program goes away, and the held connections finish. Checked: the agent
# adopts backend 1 and the counters; a VIP of the new layout is served from the
# first connect; the retired pins are removed; getpeername on a v1 socket still
# reports its VIP; closing the v1 sockets takes their in-flight count back to 0.
set -euo pipefail
BUILD=${1:?usage: map_upgrade_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
AGENT=$BUILD/userspace/kvlb-agent
PROBE=$BUILD/tests/e2e/kvlb-conn-probe
FIXTURE=$BUILD/tests/e2e/legacy_v1_connect4.bpf.o
PORT=8000
probe() { harness_run_in_cgroup "$(harness_ns c)" "$PROBE" "$@"; }
ip_hex() { printf '%02x %02x %02x %02x' ${1//./ }; }
port_hex() { printf '%02x %02x' $(($1 >> 8)) $(($1 & 255)); }
inflight_sum() { kernel_counters 'map(.inflight) | add'; }
inflight_is() { test "$(inflight_sum)" = "$1"; }

harness_topology upgrade 1
C=$(harness_ns c)
harness_start_replica 0 >/dev/null
R0=$(harness_replica_ip 0)
OLDVIP=$(harness_vip 0) NEWVIP=$(harness_vip 1)
PIN=$HARNESS_BPFFS/kvlb
mkdir -m 0700 "$PIN"

# --- the v1 agent's pins
bpftool map create "$PIN/kvlb_be_v1" type array key 4 value 24 entries 16384 name kvlb_be_v1
bpftool map create "$PIN/kvlb_svc_v1" type hash key 20 value 16 entries 16384 name kvlb_svc_v1 flags 1
bpftool map create "$PIN/kvlb_slots_v1" type array key 4 value 4 entries 4096 name kvlb_slots_v1
# backend 1 = r0: address (16 bytes), port, family 4, pad, reserved
bpftool map update pinned "$PIN/kvlb_be_v1" key hex 01 00 00 00 \
  value hex $(ip_hex "$R0") 00 00 00 00 00 00 00 00 00 00 00 00 $(port_hex $PORT) 04 00 00 00 00 00
# The v1 connect4. Loading it creates the socket storage (which needs BTF) and
# the counters with their BTF; both are pinned where the v1 agent had them.
LEGACY=$HARNESS_BPFFS/legacy
mkdir "$LEGACY"
bpftool prog load "$FIXTURE" "$LEGACY/prog" type cgroup/connect4 pinmaps "$LEGACY"
for m in kvlb_sock_v1 kvlb_ctr_v1; do
  bpftool map pin id "$(bpftool map show pinned "$LEGACY/$m" -j | jq .id)" "$PIN/$m"
done
bpftool map update pinned "$LEGACY/legacy_cfg" key hex 00 00 00 00 \
  value hex $(ip_hex "$OLDVIP") $(port_hex $PORT) 00 00 $(ip_hex "$R0") $(port_hex $PORT) 00 00 01 00 00 00
bpftool cgroup attach "$HARNESS_CGROUP" connect4 pinned "$LEGACY/prog" multi

# --- connections balanced by "v1", held across the upgrade
probe --target "$OLDVIP:$PORT" --hold 5 >"$HARNESS_DIR/held1.json" &
H1=$!
probe --target "$OLDVIP:$PORT" --hold 5 >"$HARNESS_DIR/held2.json" &
H2=$!
harness_wait_for "the v1 sockets counted in flight" 10 inflight_is 2 ||
  fail "the fixture did not count its connections"

# --- the upgrade
cat >"$HARNESS_DIR/agent.yaml" <<YAML
cgroup: $HARNESS_CGROUP
bpffs: $HARNESS_BPFFS
pin_dir: $PIN
admin: {socket: $HARNESS_DIR/agent.sock}
scrape_interval: 50ms
services:
  - name: new
    vip: $NEWVIP:$PORT
    backends:
      - address: $R0:$PORT
YAML
harness_spawn "$C" "$HARNESS_DIR/agent.log" "$AGENT" -c "$HARNESS_DIR/agent.yaml" >/dev/null
agent_ready "$HARNESS_DIR/agent.sock" || fail "agent did not start"
check "the agent found the v1 socket storage" grep -q "found $PIN/kvlb_sock_v1" "$HARNESS_DIR/agent.log"
SLOT0=$(kvlb_maps "$PIN" | jq '.services[0].backends[0]')
check "the agent kept backend 1 for r0 (ids adopted from kvlb_be_v1: slot 0 is $SLOT0)" test "$SLOT0" = 1
check "the retired v1 service and slot maps are unpinned" \
  test ! -e "$PIN/kvlb_svc_v1" -a ! -e "$PIN/kvlb_slots_v1" -a -e "$PIN/kvlb_svc_v2"
R=$(probe --target "$NEWVIP:$PORT" --count 20)
check "the new layout's VIP is served at once (20/20, getpeername = VIP)" \
  test "$(j .ok "$R")" = 20 -a "$(j .peer_mismatch "$R")" = 0
check "in flight: the two v1 sockets, still counted once each ($(inflight_sum))" test "$(inflight_sum)" = 2
# The v1 program is replaced (a v1 agent's links would be swapped; here it is detached).
bpftool cgroup detach "$HARNESS_CGROUP" connect4 pinned "$LEGACY/prog"

wait "$H1" "$H2"
for f in held1 held2; do
  R=$(cat "$HARNESS_DIR/$f.json")
  check "$f: v1 connection kept working and getpeername reports its VIP after the upgrade" \
    test -z "$(j .error "$R")" -a "$(j .peer_ok "$R")" = true
done
harness_wait_for "v1 sockets released" 10 inflight_is 0 || true
check "closing the v1 sockets took their in-flight count back to 0 ($(inflight_sum))" \
  test "$(inflight_sum)" = 0
harness_log "PASS: $CHECKS checks"
