# shellcheck shell=bash
# kernel-vm.sh - boot a kernel under qemu (TCG: no KVM needed) with a busybox
# initramfs that runs a script and powers off. Used by scripts/kernel-matrix and
# scripts/bench/bpf-ab.
#
#   vm_initramfs OUT.cpio.gz SCRIPT FILE...   # FILEs land in /kvlb (binaries bring
#                                             # their shared libraries); SCRIPT runs
#                                             # after proc, sys, bpffs and cgroup2 are mounted
#   vm_boot VMLINUZ INITRD TIMEOUT_S LOG      # console output (CR stripped) into LOG

vm_initramfs() {
  local out=$1 script=$2 r f lib
  shift 2
  r=$(mktemp -d)
  mkdir -p "$r"/{bin,dev,proc,sys,tmp,kvlb}
  cp "$(command -v busybox)" "$r/bin/busybox"
  for f in "$@"; do
    cp "$f" "$r/kvlb/"
    # A binary's shared libraries and the dynamic loader, at the same paths.
    if [ -x "$f" ] && ldd "$f" >/dev/null 2>&1; then
      ldd "$f" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
      done
    fi
  done
  {
    echo '#!/bin/busybox sh'
    echo '/bin/busybox --install -s /bin'
    echo 'mount -t proc proc /proc; mount -t sysfs sysfs /sys'
    echo 'mount -t devtmpfs devtmpfs /dev 2>/dev/null'
    echo 'mount -t bpf bpf /sys/fs/bpf; mount -t cgroup2 cgroup2 /sys/fs/cgroup'
    cat "$script"
    echo 'sleep 1  # let the serial console drain'
    echo 'poweroff -f'
  } >"$r/init"
  chmod +x "$r/init"
  (cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$r"
}

vm_boot() {
  local vmlinuz=$1 initrd=$2 timeout_s=$3 log=$4
  timeout "$timeout_s" qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 1024 -smp 1 \
    -nographic -no-reboot -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null 2>&1 | tr -d '\r' >"$log" || true
}

# The kernels scripts/fetch-kernels.sh put in the cache, oldest first.
vm_kernels() {
  find "${KVLB_KERNEL_CACHE:-/var/cache/kvlb/kernels}" -mindepth 2 -maxdepth 2 -name vmlinuz \
    2>/dev/null | sort -V
}
