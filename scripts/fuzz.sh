#!/usr/bin/env bash
# Fuzzes every parser of untrusted input for a while (libFuzzer, clang, with
# AddressSanitizer and UndefinedBehaviorSanitizer): `make fuzz`.
#
#   scripts/fuzz.sh [SECONDS_EACH]        # default 60; FUZZ_BUILD=dir to keep the build
# New inputs that reach new code go to $FUZZ_BUILD/corpus/<target>; a crash
# leaves its input in $FUZZ_BUILD/crashes and fails the run: add it to
# tests/fuzz/corpus/<target>/ with the fix.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${1:-60}
B=${FUZZ_BUILD:-$ROOT/build-fuzz}
CC=clang CXX=clang++ cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVLB_WITH_BPF=OFF -DKVLB_SANITIZE=address,undefined -DKVLB_FUZZ=ON >/dev/null
names=()
for f in "$ROOT"/tests/fuzz/*_fuzz.cpp; do names+=("$(basename "$f" _fuzz.cpp)"); done
cmake --build "$B" -j"$(nproc)" --target "${names[@]/#/fuzz_}" >/dev/null
mkdir -p "$B/crashes"
failed=0
for n in "${names[@]}"; do
  mkdir -p "$B/corpus/$n"
  seeds=("$ROOT/tests/fuzz/corpus/$n")
  [ "$n" = metrics ] && seeds+=("$ROOT/tests/fixtures/metrics")
  echo "== $n: ${SECONDS_EACH}s"
  if ! "$B/tests/fuzz/fuzz_$n" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$B/crashes/$n-" -print_final_stats=1 "$B/corpus/$n" "${seeds[@]}" \
    2>"$B/$n.log"; then
    failed=1
    tail -n 30 "$B/$n.log"
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$B/$n.log" | tail -n 2
done
[ "$failed" -eq 0 ] || { echo "fuzz: crashes in $B/crashes"; exit 1; }
echo "fuzz: no crash in ${#names[@]} targets"
