#!/usr/bin/env bash
# The unit tests need neither the BPF toolchain nor root: configure a build
# with KVLB_WITH_BPF=OFF (no BPF object, skeleton, agent or kernel test), build
# only the unit tests, and run them (ctest -L unit) as an unprivileged user.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/kvlb-unit-nobpf.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
# A copy of the sources under /tmp: the unprivileged user must read the test
# fixtures, and the checkout may sit in a directory only root can enter.
mkdir "$dir/src"
tar -C "$ROOT" --exclude=./.git --exclude='./build*' -cf - . | tar -C "$dir/src" -xf -
chmod 755 "$dir"
cmake -S "$dir/src" -B "$dir/b" -DKVLB_WITH_BPF=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir/configure.log"
grep -q "no BPF toolchain" "$dir/configure.log" || { echo "configure did not switch BPF off"; exit 1; }
cmake --build "$dir/b" -j"$(nproc)" --target kvlb_unit_tests >"$dir/build.log" 2>&1 ||
  { tail -n 30 "$dir/build.log"; exit 1; }
if [ -e "$dir/b/bpf/connect4.bpf.o" ] || [ -e "$dir/b/userspace/kvlb-agent" ]; then
  echo "a BPF object or the agent was built with KVLB_WITH_BPF=OFF"; exit 1
fi
run=()
if [ "$(id -u)" -eq 0 ]; then
  # As nobody: the build tree and the fixtures must be readable, Testing/ writable.
  mkdir -p "$dir/b/Testing"
  chmod -R o+rX "$dir" && chmod -R o+rwX "$dir/b/Testing"
  run=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  user=nobody
else
  user=$(id -un)
fi
echo "unit tests without the BPF toolchain, as $user:"
"${run[@]}" ctest --test-dir "$dir/b" -L unit --output-on-failure | tail -n 6
