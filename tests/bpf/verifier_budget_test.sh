#!/usr/bin/env bash
# Every BPF program loads on this machine's kernel within its verifier budget
# (bpf/verifier-budget.txt), and the attached socket-LB programs balance one real
# connection per address family (in a network namespace, cgroup and pin
# directory of the check's own, removed afterwards).
set -euo pipefail
BUILD=${1:?usage: verifier_budget_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
  exit 77
fi
exec "$BUILD/userspace/tools/kvlb-bpf-check" --budget "$ROOT/bpf/verifier-budget.txt" --smoke
