#!/usr/bin/env bash
# clang-format over every C/C++ source of the project: checks by default (exit 1
# and the offending files when anything differs), --fix rewrites in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
# One clang-format per file, as many at once as there are cores (the check is
# part of make test).
mapfile -t bad < <(printf '%s\0' "${files[@]}" | xargs -0 -P "$(nproc)" -n 1 sh -c \
  'clang-format --dry-run -Werror "$1" >/dev/null 2>&1 || echo "$1"' sh)
if [ ${#bad[@]} -gt 0 ]; then
  printf 'not clang-formatted (run make format):\n' >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "clang-format: ${#files[@]} files clean"
