#!/usr/bin/env bash
# Runs every test: unit tests (label unit), style, the kernel tests (label
# kernel: the verifier budget here and the kernel matrix under qemu) and the
# end-to-end tests in network namespaces (label e2e). The kernel and e2e tests
# need root; without it ctest reports them as skipped, each with its reason.
#   scripts/run-tests.sh [BUILD_DIR] [ctest arguments, e.g. -L unit]
#
# With no ctest arguments (make test, CI), the sanitized second build
# (build.sanitized_clang_no_bpf_no_root: seven minutes of compiling on 2
# cores) runs beside the other tests instead of before them: most of those
# wait on network namespaces, replicas and timers, and leave the CPU idle. Its
# output comes at the end; its failure fails the run.
set -euo pipefail
BUILD=${1:-build}
shift || true
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: not root: the kernel and end-to-end tests will be skipped" >&2
fi
SANITIZED=build.sanitized_clang_no_bpf_no_root
if [ $# -gt 0 ]; then
  exec ctest --test-dir "$BUILD" --output-on-failure --no-tests=error "$@"
fi
log=$(mktemp /tmp/kvlb-sanitized-log.XXXXXX)
# The script itself, not through ctest: two ctest runs would share one build
# directory's Testing/ files.
# Its own process group (setsid), so an interrupt stops its compilers too.
setsid scripts/sanitized-build.sh >"$log" 2>&1 &
bg=$!
trap 'kill -- -"$bg" 2>/dev/null || true; rm -f "$log"' EXIT
rc=0
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error -E "^${SANITIZED}\$" || rc=$?
echo "run-tests: waiting for $SANITIZED (scripts/sanitized-build.sh, run beside the others)"
src=0
wait "$bg" || src=$?
cat "$log"
[ "$src" -eq 0 ] || echo "run-tests: $SANITIZED FAILED" >&2
[ "$rc" -eq 0 ] && [ "$src" -eq 0 ]
