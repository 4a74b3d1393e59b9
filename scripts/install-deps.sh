#!/usr/bin/env bash
# Installs every Debian package kvlb needs to build, test, run the demo and the
# benchmarks. Idempotent: packages already present are not touched, and apt is
# not even consulted when nothing is missing.
set -euo pipefail

PACKAGES=(
  # build
  cmake make g++ clang llvm pkg-config libbpf-dev bpftool libelf-dev zlib1g-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libcurl4-openssl-dev libssl-dev openssl libboost-dev libgtest-dev libgmock-dev googletest
  libbenchmark-dev clang-format
  # the sanitized clang build and the fuzzers (libFuzzer, ASan and UBSan runtimes)
  libclang-rt-14-dev
  # tests, harness, demo and peers
  iproute2 iptables util-linux procps time curl jq haproxy nginx-light prometheus gnuplot-nox
  # the bench report tool (scripts/bench/report.py: the standard library only)
  python3
  # the kernel matrix (scripts/kernel-matrix): Debian's kernels booted under qemu
  qemu-system-x86 busybox-static cpio
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

HERE=$(cd "$(dirname "$0")" && pwd)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  "$HERE/fetch-kernels.sh"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (sudo $0) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The packaged haproxy/nginx/prometheus units must not run on their own: the
# harness starts private instances on its own ports inside network namespaces.
for svc in haproxy nginx prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
"$HERE/fetch-kernels.sh"
echo "install-deps: done"
