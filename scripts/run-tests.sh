#!/usr/bin/env bash
# Runs every test: unit tests (label unit), style, the kernel tests (label
# kernel: the verifier budget here and the kernel matrix under qemu) and the
# end-to-end tests in network namespaces (label e2e). The kernel and e2e tests
# need root; without it ctest reports them as skipped, each with its reason.
#   scripts/run-tests.sh [BUILD_DIR] [ctest arguments, e.g. -L unit]
set -euo pipefail
BUILD=${1:-build}
shift || true
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: not root: the kernel and end-to-end tests will be skipped" >&2
fi
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error "$@"
