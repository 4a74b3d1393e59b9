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
  # real clients checked against the emulator and the balancers (tests/clients):
  # Python httpx and aiohttp; the official OpenAI Node SDK comes from npm (below)
  python3-httpx python3-aiohttp
  # the kernel matrix (scripts/kernel-matrix): Debian's kernels booted under qemu
  qemu-system-x86 busybox-static cpio
  # score sharing between agents (issue 13): the NATS C client and real servers for tests
  nats-server libnats-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm: the machine's own when present (they may come from outside
# Debian, with npm bundled), else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

HERE=$(cd "$(dirname "$0")" && pwd)
# The OpenAI Node SDK at the version package-lock.json pins (npm ci: exactly
# that tree, nothing newer), into tests/clients/node_modules (git-ignored).
npm_clients() {
  local dir="$HERE/../tests/clients"
  [ -f "$dir/node_modules/openai/package.json" ] && return 0
  echo "install-deps: npm ci in tests/clients (the OpenAI SDK)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  "$HERE/fetch-kernels.sh"
  npm_clients
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
for svc in haproxy nginx prometheus nats-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
"$HERE/fetch-kernels.sh"
npm_clients
echo "install-deps: done"
