#!/usr/bin/env bash
# End-to-end: score sharing over NATS (docs/cluster.md). Eight "nodes" (eight
# agents, each with its own cgroup, pin directory and admin socket), eight
# emulated replicas, one on each node, and a real three-server NATS cluster
# (TLS against a CA made for the run, one user per agent). Asserts:
#   1. each replica's /metrics is scraped about once per interval (counted on
#      the emulator), not once per agent per interval;
#   2. every agent holds every replica's score, fresh;
#   3. one NATS server killed: the agents move to another, nothing goes stale;
#   4. one agent killed: its replica is taken over by another agent; restarted,
#      it meets the others again and takes its node's replica back;
#   5. NATS stopped: every agent falls back to scraping, within the cap, and
#      says so; NATS back: shared again.
# Measured and logged: scrapes per replica per second in each phase, the worst
# score age, the takeover gap, the propagation p99 (owner's scrape -> another
# agent's map write).
set -euo pipefail
BUILD=${1:?usage: cluster_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=../../scripts/harness/nats.sh
source "$ROOT/scripts/harness/nats.sh"
# shellcheck source=../../scripts/harness/cluster.sh
source "$ROOT/scripts/harness/cluster.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
CTL=$BUILD/userspace/cli/kvlbctl
command -v nats-server >/dev/null || { echo "nats-server is not installed (scripts/install-deps.sh)" >&2; exit 1; }
N=8 PORT=8000 INTERVAL_MS=$CLUSTER_INTERVAL_MS FALLBACK_MS=$CLUSTER_FALLBACK_MS
# Generous bounds on the phases' rates (a 2-core machine running 8 agents,
# 8 replicas and 3 servers): the behaviour they tell apart differs by 3x or more.
SHARED_MAX=$(( 1000 / INTERVAL_MS * 3 / 2 ))  # 30/s; all-scrape-all would be 8 x 20 = 160/s

harness_topology cluster "$N"
C=$(harness_ns c)
VIP=$(harness_vip 0)
for ((i = 0; i < N; i++)); do harness_start_replica "$i" >/dev/null; done
users=""
for ((i = 0; i < N; i++)); do users+="agent$i "; done
harness_nats_cluster "$C" 3 "$users"
harness_log "NATS cluster up: $NATS_URLS"

sock() { cluster_sock "$1"; }
metric() { cluster_metric "$@"; }
for ((i = 0; i < N; i++)); do cluster_start_agent "$i" "$N" "$N" shared; done
AGENTS=("${CLUSTER_PIDS[@]}")
for ((i = 0; i < N; i++)); do
  "$CTL" --socket "$(sock "$i")" wait-ready --timeout 20 || fail "agent $i did not start"
done

cluster_json() { "$CTL" --socket "$(sock "$1")" cluster -o json; }
all_agents() {  # WANT LIVE...: every live agent counts WANT agents on the bus
  local want=$1 a
  shift
  for a in "$@"; do [ "$(metric "$a" kvlb_cluster_agents)" = "$want" ] || return 1; done
}
all_connected() {  # 1|0 LIVE...
  local want=$1 a
  shift
  for a in "$@"; do [ "$(metric "$a" kvlb_cluster_connected)" = "$want" ] || return 1; done
}
rates() { cluster_rates "$N" "$1"; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a < b)}'; }
# max_age SAMPLES LIVE...: the oldest score any live agent holds, over SAMPLES
# looks 100 ms apart (ms).
max_age() {
  local n=$1 worst=0 a age
  shift
  for ((s = 0; s < n; s++)); do
    for a in "$@"; do
      age=$(cluster_json "$a" | jq '[.replicas[].age_ms] | max')
      [ "$age" -gt "$worst" ] && worst=$age
    done
    sleep 0.1
  done
  echo "$worst"
}

ALL=(0 1 2 3 4 5 6 7)
harness_wait_for "eight agents on the bus" 30 all_agents 8 "${ALL[@]}" || fail "the agents did not all meet"
check "every agent is connected and sees the eight" all_connected 1 "${ALL[@]}"
check "each agent owns exactly its node's replica" bash -c "
  for a in ${ALL[*]}; do
    [ \"\$('$CTL' --socket '$HARNESS_DIR/agent'\$a.sock cluster -o json | jq -r '[.replicas[] | select(.scraped_here)] | map(.node) | join(\",\")')\" = node\$a ] || exit 1
  done"

rates 6
SHARED_RATES=$RATES
harness_log "shared: scrapes per replica per second: $RATES"
check "each replica is scraped about once per interval, not once per agent ($RATE_MAX <= $SHARED_MAX/s; all-scrape-all: 160/s)" \
  lt "$RATE_MAX" "$SHARED_MAX"
check "and it is scraped (>= 10/s)" lt 10 "$RATE_MIN"
AGE=$(max_age 6 "${ALL[@]}")
harness_log "shared: worst score age held by any agent over 0.6 s: $AGE ms"
check "every agent holds every replica's score, fresh (worst $AGE ms < 500 ms; stale at 2,000)" lt "$AGE" 500
check "shared scores reached every agent's maps" bash -c "
  for a in ${ALL[*]}; do
    n=\$('$CTL' --socket '$HARNESS_DIR/agent'\$a.sock cluster -o json | jq '[.replicas[] | select(.scraped_here | not) | select(.source | startswith(\"node\"))] | length')
    [ \"\$n\" = 7 ] || exit 1
  done"
# The kernel's maps (read directly from the pins) hold them: scores with ages.
check "node 0's pinned maps hold all eight scores" bash -c \
  "[ \"\$('$CTL' maps --pin-dir '$HARNESS_BPFFS/node0' -o json | jq '[.backends[] | select(.updated_ns > 0 and .state == \"active\")] | length')\" = 8 ]"

# 3. One NATS server down.
ON0=$(harness_nats_varz "$C" 0 | jq .connections)
kill -KILL "${NATS_PIDS[0]}"
harness_log "killed NATS server 0 ($ON0 agents were connected to it)"
sleep 1
harness_wait_for "every agent connected again" 10 all_connected 1 "${ALL[@]}" || true
check "after one NATS server dies every agent is connected again" all_connected 1 "${ALL[@]}"
AGE=$(max_age 6 "${ALL[@]}")
check "and nothing went stale (worst age $AGE ms < 500 ms)" lt "$AGE" 500
check "the $ON0 agents that were on it counted the lost connection" bash -c \
  "[ \$(for a in ${ALL[*]}; do '$CTL' --socket '$HARNESS_DIR/agent'\$a.sock metrics; done | awk '\$1 == \"kvlb_cluster_disconnects_total\" {n += \$2} END {print n + 0}') -ge $ON0 ]"

# 4. One agent down (SIGKILL: no goodbye).
R3=$(harness_replica_ip 3):$PORT
kill -KILL "${AGENTS[3]}"
LIVE=(0 1 2 4 5 6 7)
harness_log "killed agent 3 (owner of $R3)"
GAP=0
for ((s = 0; s < 30; s++)); do  # 1.5 s of looks at r3's age on agent 0
  age=$(cluster_json 0 | jq --arg b "$R3" '.replicas[] | select(.backend == $b) | .age_ms')
  [ "$age" -gt "$GAP" ] && GAP=$age
  sleep 0.05
done
harness_log "takeover: the oldest r3 score agent 0 held after agent 3 died: $GAP ms"
check "agent 3's replica was taken over (oldest score held $GAP ms < 500 ms)" lt "$GAP" 500
check "the others count seven agents" all_agents 7 "${LIVE[@]}"
check "one of them scrapes r3 now" bash -c "
  for a in ${LIVE[*]}; do
    '$CTL' --socket '$HARNESS_DIR/agent'\$a.sock cluster -o json |
      jq -e --arg b '$R3' '.replicas[] | select(.backend == \$b) | .scraped_here' >/dev/null && exit 0
  done; exit 1"

# Agent 3 restarted (its pins were left by the SIGKILL: it adopts them): it
# subscribes, meets the others and takes its node's replica back.
cluster_start_agent 3 "$N" "$N" shared
"$CTL" --socket "$(sock 3)" wait-ready --timeout 20 || fail "agent 3 did not restart"
RESTART_AGE=$(max_age 10 3)
harness_log "restart: the oldest score restarted agent 3 held over its first second: $RESTART_AGE ms"
check "restarted agent 3 holds fresh scores at once (oldest $RESTART_AGE ms < 500 ms)" lt "$RESTART_AGE" 500
check "and it resubscribed: it applies shared scores" harness_wait_for "applied shared scores" 10 bash -c \
  "[ \"\$('$CTL' --socket '$(sock 3)' metrics | awk '\$1 == \"kvlb_cluster_applied_reports_total\" {print \$2}')\" -gt 0 ]"
harness_wait_for "eight agents again" 15 all_agents 8 "${ALL[@]}" || fail "agent 3 was not seen again"
check "restarted agent 3 scrapes its node's replica again, and only it" bash -c \
  "[ \"\$('$CTL' --socket '$(sock 3)' cluster -o json | jq -r '[.replicas[] | select(.scraped_here)] | map(.node) | join(\",\")')\" = node3 ]"
check "and holds every replica's score" bash -c \
  "[ \"\$('$CTL' --socket '$(sock 3)' cluster -o json | jq '[.replicas[] | select(.age_ms >= 0 and .age_ms < 500)] | length')\" = $N ]"
LIVE=("${ALL[@]}")

# Propagation while shared, from every agent's histogram.
PROPAGATION="$(cluster_propagation_p99 "${LIVE[@]}") ms"
harness_log "propagation p99 (owner's scrape -> another agent's map write, histogram bound): $PROPAGATION"

# 5. NATS stopped entirely: every agent falls back, capped.
kill -KILL "${NATS_PIDS[1]}" "${NATS_PIDS[2]}"
harness_log "killed NATS servers 1 and 2: no NATS"
harness_wait_for "every agent off the bus" 15 all_connected 0 "${LIVE[@]}" || fail "agents still report connected"
sleep 1
rates 4
FALLBACK_RATES=$RATES
CAP=$(( 1000 / INTERVAL_MS + (${#LIVE[@]} - 1) * 1000 / FALLBACK_MS ))  # owner each round, others each 250 ms
harness_log "no NATS: scrapes per replica per second: $RATES (cap $CAP)"
check "off the bus every agent scrapes for itself: more than the shared rate ($RATE_MIN/s > 20/s)" lt 20 "$RATE_MIN"
check "within the cap: owner every round, the others every ${FALLBACK_MS} ms ($RATE_MAX <= $CAP x 1.3)" \
  lt "$RATE_MAX" "$(( CAP * 13 / 10 ))"
check "the agents say so in a metric (every replica they do not own is a fallback one)" bash -c "
  for a in ${LIVE[*]}; do
    m=\$('$CTL' --socket '$HARNESS_DIR/agent'\$a.sock metrics)
    f=\$(awk '\$1 == \"kvlb_cluster_fallback_replicas\" {print \$2}' <<<\"\$m\")
    o=\$(awk '\$1 == \"kvlb_cluster_owned_replicas\" {print \$2}' <<<\"\$m\")
    [ \$((f + o)) = $N ] && [ \"\$f\" -ge 6 ] || exit 1
  done"
check "and in the log" grep -q "not connected to NATS" "$HARNESS_DIR/agent0.log"
AGE=$(max_age 3 "${LIVE[@]}")
check "scores stay fresher than stale_after meanwhile (worst $AGE ms < 2,000)" lt "$AGE" 2000

# Back: every server restarted, sharing resumes.
for k in 0 1 2; do harness_nats_start "$C" "$k"; done
harness_wait_for "agents back on the bus" 30 all_connected 1 "${LIVE[@]}" || fail "agents did not reconnect"
harness_wait_for "${#LIVE[@]} agents again" 15 all_agents "${#LIVE[@]}" "${LIVE[@]}" || fail "membership did not settle"
sleep 1
rates 4
harness_log "NATS back: scrapes per replica per second: $RATES"
check "back to about once per interval ($RATE_MAX <= $SHARED_MAX/s)" lt "$RATE_MAX" "$SHARED_MAX"
REJECTED=$(for a in "${LIVE[@]}"; do "$CTL" --socket "$(sock "$a")" metrics; done |
  awk '/^kvlb_cluster_rejected_total/ {match($0, /reason="[^"]+"/); n[substr($0, RSTART + 8, RLENGTH - 9)] += $2}
       END {for (r in n) printf "%s=%d ", r, n[r]}')
harness_log "refused by the agents over the run: ${REJECTED:-nothing}"
check "nothing an honest agent sends was refused as malformed, foreign or stale (${REJECTED:-none})" \
  bash -c "! grep -Eq '(malformed|subject_mismatch|unknown_service|unknown_replica|too_old)=' <<<'$REJECTED'"
harness_log "PASS ($CHECKS checks): shared [$SHARED_RATES] scrapes/s per replica, no NATS [$FALLBACK_RATES] (cap $CAP), takeover gap $GAP ms, restarted agent's oldest score $RESTART_AGE ms, propagation p99 $PROPAGATION"
