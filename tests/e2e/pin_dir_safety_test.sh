#!/usr/bin/env bash
# End-to-end: the agent (root) never lets another local user steer where it
# pins or what it chmods. On a private bpffs whose root is world-writable with
# the sticky bit (as /sys/fs/bpf often is), each of these is refused with its
# reason, and nothing outside the pin directory changes mode:
#   - a pin directory pre-created by another user (nobody);
#   - a pin directory that is a symlink (to a directory outside bpffs);
#   - a root-owned pin directory that group or others may write to;
#   - a pin_dir with '..' in it (refused by the config check);
#   - a bpffs path where nothing is mounted, outside /sys/fs/bpf (not mounted).
# Then a clean pin directory works, and is left mode 0700.
set -euo pipefail
BUILD=${1:?usage: pin_dir_safety_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/harness/lib.sh
source "$ROOT/scripts/harness/lib.sh"
# shellcheck source=checks.sh
source "$ROOT/tests/e2e/checks.sh"
KVLB_BUILD=$BUILD
AGENT=$BUILD/userspace/kvlb-agent

harness_init pins
harness_cgroup
harness_bpffs
chmod 1777 "$HARNESS_BPFFS"
OUTSIDE=$HARNESS_DIR/outside
mkdir -m 0755 "$OUTSIDE"

config() {  # pin_dir [bpffs]
  cat <<YAML
cgroup: $HARNESS_CGROUP
bpffs: ${2:-$HARNESS_BPFFS}
pin_dir: $1
admin: {socket: ""}
services:
  - {name: llm, vip: "10.255.0.1:80", backends: [{address: "127.0.0.1:1"}]}
YAML
}
# refused REASON PIN [BPFFS]: the agent exits non-zero and logs REASON.
refused() {
  local reason=$1 log=$HARNESS_DIR/agent.log
  config "${@:2}" >"$HARNESS_DIR/agent.yaml"
  if timeout 20 "$AGENT" -c "$HARNESS_DIR/agent.yaml" >"$log" 2>&1; then
    fail "the agent started with pin_dir $2"
  fi
  grep -q -- "$reason" "$log" || fail "no '$reason' in: $(tail -n 3 "$log")"
}

setpriv --reuid=nobody --regid=nogroup --clear-groups mkdir "$HARNESS_BPFFS/theirs"
check "a pin directory owned by another user is refused" \
  refused "is owned by uid $(id -u nobody)" "$HARNESS_BPFFS/theirs"

ln -s "$OUTSIDE" "$HARNESS_BPFFS/link"
check "a pin directory that is a symlink is refused" refused "a symlink" "$HARNESS_BPFFS/link"
check "nothing outside bpffs changed mode" test "$(stat -c %a "$OUTSIDE")" = 755

mkdir -m 0777 "$HARNESS_BPFFS/open"
chmod 0777 "$HARNESS_BPFFS/open"
check "a pin directory others may write to is refused" refused "writable by group or others" \
  "$HARNESS_BPFFS/open"

check "pin_dir with '..' is refused" refused "must not contain '..'" "$HARNESS_BPFFS/kvlb/../../outside"
check "nothing outside bpffs changed mode" test "$(stat -c %a "$OUTSIDE")" = 755

mkdir -p "$HARNESS_DIR/notbpf"
check "bpffs is never mounted outside /sys/fs/bpf" \
  refused "mounts bpffs only at or below /sys/fs/bpf" "$HARNESS_DIR/notbpf/kvlb" "$HARNESS_DIR/notbpf"
check "nothing was mounted there" bash -c "! mountpoint -q '$HARNESS_DIR/notbpf'"

config "$HARNESS_BPFFS/kvlb" | sed "s|admin: {socket: \"\"}|admin: {socket: $HARNESS_DIR/good.sock}|" >"$HARNESS_DIR/agent.yaml"
"$AGENT" -c "$HARNESS_DIR/agent.yaml" >"$HARNESS_DIR/good.log" 2>&1 &
GOOD=$!
echo "$GOOD" >>"$HARNESS_DIR/pids"
agent_ready "$HARNESS_DIR/good.sock" || fail "clean pin dir: $(tail -n 3 "$HARNESS_DIR/good.log")"
check "a clean pin directory is created mode 0700, root's" test "$(stat -c '%a %u' "$HARNESS_BPFFS/kvlb")" = "700 0"
harness_log "PASS ($CHECKS checks)"
