#!/usr/bin/env bash
# Fetches the kernels of the kernel matrix (scripts/kernel-matrix): the newest
# Debian 12 cloud kernel of each series users run (6.1, Debian 12's own; 6.12,
# its backport), as packaged. Only the kernel image is kept, unpacked from the
# .deb into the cache (nothing is installed on this machine, no boot loader or
# initramfs hook runs). Idempotent: a kernel already in the cache is not fetched.
#
#   scripts/fetch-kernels.sh            # into $KVLB_KERNEL_CACHE (/var/cache/kvlb/kernels)
set -euo pipefail
CACHE=${KVLB_KERNEL_CACHE:-/var/cache/kvlb/kernels}
# One package-name pattern per series (the names carry the ABI or the version).
SERIES=(
  '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$'
  '^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$'
)
mkdir -p "$CACHE"
for pattern in "${SERIES[@]}"; do
  pkg=$(apt-cache search --names-only "$pattern" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1)
  if [ -z "$pkg" ]; then
    echo "fetch-kernels: no package matches $pattern (run apt-get update?)" >&2
    exit 1
  fi
  dir=$CACHE/$pkg
  [ -s "$dir/vmlinuz" ] && continue
  if [ "$(id -u)" -ne 0 ]; then
    echo "fetch-kernels: $pkg is missing from $CACHE; run as root to fetch it" >&2
    exit 1
  fi
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt downloads as _apt
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch-kernels: fetching $pkg"
  (cd "$tmp" && apt-get download -q "$pkg" >/dev/null)
  dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
  mkdir -p "$dir"
  mv "$tmp"/boot/vmlinuz-* "$dir/vmlinuz.tmp"
  dpkg-deb -f "$tmp"/*.deb Version >"$dir/version"
  mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
  rm -rf "$tmp"
  trap - EXIT
done
ls "$CACHE"
