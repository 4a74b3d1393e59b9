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

# kernel_counters JQ: the per-backend kernel counters (kvlb_ctr_v1 under the
# run's pin directory, an array of objects) through a jq filter.
kernel_counters() {
  bpftool map dump pinned "$HARNESS_BPFFS/kvlb/kvlb_ctr_v1" -j |
    jq -r "[.[] | (.formatted // .) | .value] | $1"
}

# kernel_event N: data-plane event N (enum kvlb_event) summed over CPUs.
kernel_event() {
  bpftool map dump pinned "$HARNESS_BPFFS/kvlb/kvlb_events_v1" -j |
    jq "[.[] | (.formatted // .) | select(.key == $1) | .values[].value] | add"
}
