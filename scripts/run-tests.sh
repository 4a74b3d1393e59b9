#!/usr/bin/env bash
# Runs every test: unit tests, style, and the end-to-end tests that load BPF
# programs into this kernel (those need root).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: the end-to-end tests load BPF programs and create network namespaces: run as root" >&2
  exit 1
fi
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error "$@"
