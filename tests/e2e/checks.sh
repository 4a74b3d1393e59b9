#!/usr/bin/env bash
# checks.sh - assertions shared by the end-to-end tests (sourced after
# scripts/harness/lib.sh). `check` counts passed checks in CHECKS; `fail` shows
# the tail of every agent log of the run and exits non-zero, which makes the
# harness clean up.
CHECKS=0

fail() {
  harness_log "FAIL: $*"
  local f
  for f in "$HARNESS_DIR"/agent*.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}

check() {  # check DESCRIPTION CONDITION...
  local what=$1
  shift
  if "$@"; then CHECKS=$((CHECKS + 1)); harness_log "ok: $what"; else fail "$what"; fi
}

# j FILTER JSON: one jq query over a JSON string.
j() { jq -r "$1" <<<"$2"; }

# kvlb_maps [PIN_DIR]: the pinned maps as JSON (kvlbctl maps): services,
# backends with their scores and kernel counters, tracked sockets, events. No
# map layout is spelled in a script. Needs KVLB_BUILD.
kvlb_maps() {
  "$KVLB_BUILD/userspace/cli/kvlbctl" maps --pin-dir "${1:-$HARNESS_BPFFS/kvlb}" -o json
}

# kernel_counters JQ: the backends' kernel counters (an array of objects with
# picks, inflight, connect_failures, ...) through a jq filter.
kernel_counters() { kvlb_maps | jq -r "[.backends[]] | $1"; }

# kernel_event NAME: a data-plane event's count (socket_table_full, no_backend).
kernel_event() { kvlb_maps | jq ".events.$1"; }

# agent_ready SOCKET [SECONDS]: waits until the agent's admin API answers.
agent_ready() { "$KVLB_BUILD/userspace/cli/kvlbctl" --socket "$1" wait-ready --timeout "${2:-20}"; }
