#!/usr/bin/env bash
# The unit tests and the fuzz targets in a second build: clang (the main build
# is GCC, so both compilers are kept honest), AddressSanitizer and
# UndefinedBehaviorSanitizer, and no BPF toolchain (KVLB_WITH_BPF=OFF: no BPF
# object, skeleton, agent or kernel test). The unit tests then run as an
# unprivileged user, and each fuzz target over its seeds (ctest -L unit).
#
#   scripts/sanitized-build.sh [DIR]      # DIR: where to build (a temporary one by default)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
keep=${1:-}
dir=${keep:-$(mktemp -d /tmp/kvlb-sanitized.XXXXXX)}
[ -n "$keep" ] || trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
# A copy of the sources under $dir: the unprivileged user must read the test
# fixtures, and the checkout may sit in a directory only root can enter.
mkdir -p "$dir/src"
tar -C "$ROOT" --exclude=./.git --exclude='./build*' -cf - . | tar -C "$dir/src" -xf -
chmod 755 "$dir"
CC=clang CXX=clang++ cmake -S "$dir/src" -B "$dir/b" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVLB_WITH_BPF=OFF -DKVLB_SANITIZE=address,undefined -DKVLB_FUZZ=ON >"$dir/configure.log"
grep -q "no BPF toolchain" "$dir/configure.log" || { echo "configure did not switch BPF off"; exit 1; }
targets=(kvlb_unit_tests)
for f in "$ROOT"/tests/fuzz/*_fuzz.cpp; do targets+=("fuzz_$(basename "$f" _fuzz.cpp)"); done
cmake --build "$dir/b" -j"$(nproc)" --target "${targets[@]}" >"$dir/build.log" 2>&1 ||
  { tail -n 40 "$dir/build.log"; exit 1; }
if [ -e "$dir/b/bpf/sock.bpf.o" ] || [ -e "$dir/b/userspace/kvlb-agent" ]; then
  echo "a BPF object or the agent was built with KVLB_WITH_BPF=OFF"; exit 1
fi
run=()
user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$dir/b/Testing"
  chmod -R o+rX "$dir" && chmod -R o+rwX "$dir/b/Testing"
  run=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  user=nobody
fi
echo "clang, ASan + UBSan, no BPF toolchain, as $user: unit tests and fuzz regression"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"${run[@]}" ctest --test-dir "$dir/b" -L unit --output-on-failure | tail -n 8
