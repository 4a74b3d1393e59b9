# shellcheck shell=bash
# kvlb harness: network namespaces, veth links, a cgroup and a private bpffs
# mount, for the end-to-end tests, the demo and the benchmarks.
#
# Everything created is named after one unique id and recorded, and
# harness_cleanup (installed as an EXIT/INT/TERM trap by harness_init) removes it
# on success, on failure and on interrupt.
#
#   source scripts/harness/lib.sh
#   harness_init e2e            # id, state dir, traps
#   harness_client              # the client namespace
#   harness_replica 0           # replica namespace 0 + veth to the client
#   harness_cgroup; harness_bpffs
#   harness_spawn "$(harness_ns r0)" r0.log kvlb-replica-sim ...
#   harness_run_in_cgroup "$(harness_ns c)" kvlb-conn-probe ...

set -o pipefail

harness_log() { printf '[harness %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
harness_die() { harness_log "ERROR: $*"; exit 1; }

# harness_init LABEL: unique id, state directory, a random /16 for addresses.
harness_init() {
  if [ "$(id -u)" -ne 0 ]; then
    # 77: "skipped" to ctest; the demo and benchmarks stop here too.
    echo "skipped: needs root (network namespaces, BPF programs, cgroups)" >&2
    exit 77
  fi
  local label=$1
  HARNESS_SHORT=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
  HARNESS_ID="kvlb-${label}-${HARNESS_SHORT}"
  HARNESS_DIR="/run/kvlb-harness/${HARNESS_ID}"
  # 10.<200..249>.x.y: a block per run, so concurrent runs never share addresses.
  HARNESS_NET="10.$((200 + 0x${HARNESS_SHORT:0:2} % 50))"
  mkdir -p "$HARNESS_DIR"
  : >"$HARNESS_DIR/pids"
  : >"$HARNESS_DIR/netns"
  HARNESS_CGROUP=""
  HARNESS_BPFFS=""
  trap 'harness_cleanup' EXIT
  trap 'harness_log "interrupted"; exit 130' INT TERM
  harness_log "id $HARNESS_ID, addresses $HARNESS_NET.0.0/16, state in $HARNESS_DIR"
}

harness_ns() { echo "${HARNESS_ID}-$1"; }
# Where replicas are linked: the client namespace, or the gateway (harness_gateway).
HARNESS_UPSTREAM=c
harness_client_ip() { echo "${HARNESS_NET}.$(( $1 + 1 )).1"; }
harness_replica_ip() { echo "${HARNESS_NET}.$(( $1 + 1 )).2"; }
harness_vip() { echo "${HARNESS_NET}.250.$(( ${1:-0} + 1 ))"; }
# IPv6: a ULA /48 per run, fdXX:XXXX:<link>::/64 per veth link.
harness_net6() { echo "fd${HARNESS_SHORT:0:2}:${HARNESS_SHORT:2:4}"; }
harness_client_ip6() { echo "$(harness_net6):$(( $1 + 1 ))::1"; }
harness_replica_ip6() { echo "$(harness_net6):$(( $1 + 1 ))::2"; }
harness_vip6() { echo "$(harness_net6):fa::$(( ${1:-0} + 1 ))"; }

_harness_netns_add() {
  ip netns add "$1" || harness_die "ip netns add $1"
  echo "$1" >>"$HARNESS_DIR/netns"
  ip -n "$1" link set lo up
}

# The client namespace: where the load balancer's clients (and the agent) run.
# It has no default route: a connection the LB failed to rewrite goes nowhere.
harness_client() { _harness_netns_add "$(harness_ns c)"; }

# An optional gateway host between the client and the replicas (call it after
# harness_client, before harness_replica): replicas are linked to the gateway,
# which forwards for the client; proxies can run there, as on a gateway host.
# The client reaches the gateway at harness_gateway_ip over HARNESS_NET.0.0/24.
harness_gateway() {
  local c g vc vg
  c=$(harness_ns c)
  g=$(harness_ns g)
  vc="k${HARNESS_SHORT}cg"
  vg="k${HARNESS_SHORT}gc"
  _harness_netns_add "$g"
  ip link add "$vc" netns "$c" type veth peer name "$vg" netns "$g" || harness_die "veth $vc"
  ip -n "$c" addr add "${HARNESS_NET}.0.1/24" dev "$vc"
  ip -n "$g" addr add "${HARNESS_NET}.0.2/24" dev "$vg"
  ip -n "$c" -6 addr add "$(harness_net6):0::1/64" dev "$vc" nodad
  ip -n "$g" -6 addr add "$(harness_net6):0::2/64" dev "$vg" nodad
  ip -n "$c" link set "$vc" up
  ip -n "$g" link set "$vg" up
  # accept_local: what kvlb's XDP gateway hands to the stack is translated
  # already, from the gateway's own address (docs/gateway.md).
  ip netns exec "$g" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.conf.all.accept_local=1
  HARNESS_UPSTREAM=g
}
harness_gateway_ip() { echo "${HARNESS_NET}.0.2"; }
harness_gateway_ip6() { echo "$(harness_net6):0::2"; }
# The gateway's interfaces (its veth to the client, then one per replica),
# comma-separated: what the XDP gateway attaches to (gateway.interfaces).
harness_gateway_interfaces() {
  ip -n "$(harness_ns g)" -o link show | awk -F': ' '$2 ~ /^k/ {split($2, a, "@"); print a[1]}' |
    paste -sd,
}
# harness_gateway_vips N: the client reaches VIPs 0..N-1 (both families)
# through the gateway, as clients reach a gateway host's VIPs.
harness_gateway_vips() {
  local i c
  c=$(harness_ns c)
  for ((i = 0; i < $1; i++)); do
    ip -n "$c" route add "$(harness_vip "$i")/32" via "$(harness_gateway_ip)"
    ip -n "$c" -6 route add "$(harness_vip6 "$i")/128" via "$(harness_gateway_ip6)"
  done
}

# harness_replica I: namespace rI linked to the client namespace (or the gateway)
# by a veth pair, upstream side .1, replica side .2 of HARNESS_NET.(I+1).0/24.
harness_replica() {
  local i=$1 c r vc vr
  c=$(harness_ns "$HARNESS_UPSTREAM")
  r=$(harness_ns "r$i")
  vc="k${HARNESS_SHORT}c$i"
  vr="k${HARNESS_SHORT}r$i"
  _harness_netns_add "$r"
  ip link add "$vc" netns "$c" type veth peer name "$vr" netns "$r" || harness_die "veth $vc"
  ip -n "$c" addr add "$(harness_client_ip "$i")/24" dev "$vc"
  ip -n "$r" addr add "$(harness_replica_ip "$i")/24" dev "$vr"
  # nodad: usable at once, no duplicate-address detection delay.
  ip -n "$c" -6 addr add "$(harness_client_ip6 "$i")/64" dev "$vc" nodad
  ip -n "$r" -6 addr add "$(harness_replica_ip6 "$i")/64" dev "$vr" nodad
  ip -n "$c" link set "$vc" up
  ip -n "$r" link set "$vr" up
  # Replies go back through the client namespace whatever source address a
  # client used (after a DNAT the source may belong to another veth, as on a
  # node). The client namespace has no default route, so nothing leaves it.
  ip -n "$r" route add default via "$(harness_client_ip "$i")"
  ip -n "$r" -6 route add default via "$(harness_client_ip6 "$i")"
  if [ "$HARNESS_UPSTREAM" = g ]; then  # the client reaches replicas through the gateway
    ip -n "$(harness_ns c)" route add "${HARNESS_NET}.$(( i + 1 )).0/24" via "$(harness_gateway_ip)"
    ip -n "$(harness_ns c)" -6 route add "$(harness_net6):$(( i + 1 ))::/64" via "$(harness_net6):0::2"
  fi
}

# harness_topology LABEL N: the usual test set-up in one call: harness_init, the
# client namespace, replicas 0..N-1, the cgroup and a private bpffs.
harness_topology() {
  local i
  harness_init "$1"
  harness_client
  for ((i = 0; i < $2; i++)); do harness_replica "$i"; done
  harness_cgroup
  harness_bpffs
}

# The cgroup v2 hierarchy's mount point (hybrid hosts have it at .../unified).
harness_cgroup2_mount() {
  findmnt -n -t cgroup2 -o TARGET | head -n 1
}

harness_cgroup() {
  local root
  root=$(harness_cgroup2_mount)
  [ -n "$root" ] || harness_die "no cgroup v2 hierarchy is mounted"
  HARNESS_CGROUP="$root/$HARNESS_ID"
  mkdir "$HARNESS_CGROUP" || harness_die "mkdir $HARNESS_CGROUP"
}

# A private bpffs instance: pins of this run cannot collide with anything else,
# and unmounting it releases them all.
harness_bpffs() {
  HARNESS_BPFFS="$HARNESS_DIR/bpffs"
  mkdir -p "$HARNESS_BPFFS"
  mount -t bpf -o mode=0700 bpf "$HARNESS_BPFFS" || harness_die "mount bpffs at $HARNESS_BPFFS"
}

# harness_spawn NS LOGFILE CMD...: runs CMD in the background in namespace NS
# (network namespace only: the mount namespace stays, so cgroupfs and bpffs are
# visible). Prints the pid.
harness_spawn() {
  local ns=$1 log=$2
  shift 2
  nsenter --net="/run/netns/$ns" -- "$@" >"$log" 2>&1 &
  local pid=$!
  echo "$pid" >>"$HARNESS_DIR/pids"
  echo "$pid"
}

# harness_start_replica I [kvlb-replica-sim args...]: an emulated replica named rI
# in namespace rI, on its address and port ${HARNESS_PORT:-8000} unless the args
# say --listen/--port; waits until its /health answers from the client namespace.
# Prints the pid. Needs KVLB_BUILD.
harness_start_replica() {
  local i=$1 pid listen=(--listen "$(harness_replica_ip "$1")")
  shift
  [[ " $* " == *" --listen "* ]] && listen=()
  pid=$(harness_spawn "$(harness_ns "r$i")" "$HARNESS_DIR/r$i.log" \
    "$KVLB_BUILD/userspace/replica_sim/kvlb-replica-sim" "${listen[@]}" --port "${HARNESS_PORT:-8000}" \
    --name "r$i" "$@")
  harness_wait_for "replica r$i" 20 nsenter --net="/run/netns/$(harness_ns c)" \
    curl -sf "http://$(harness_replica_ip "$i"):${HARNESS_PORT:-8000}/health" ||
    harness_die "replica r$i did not start: $(tail -n 3 "$HARNESS_DIR/r$i.log")"
  echo "$pid"
}

# harness_keep_busy I N: N long generations sent straight to replica I (not
# through any balancer), so its queue builds; they end with the run.
harness_keep_busy() {
  local i=$1 n=$2 k
  for k in $(seq 1 "$n"); do
    harness_spawn "$(harness_ns c)" /dev/null curl -s --max-time 300 \
      "http://$(harness_replica_ip "$i"):${HARNESS_PORT:-8000}/v1/completions" \
      -H 'Content-Type: application/json' \
      -d '{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"x","max_tokens":4000,"min_tokens":4000}' >/dev/null
  done
}

# harness_run_in_cgroup NS CMD...: runs CMD in the foreground, inside the test
# cgroup (so the socket LB applies) and in namespace NS.
harness_run_in_cgroup() {
  local ns=$1
  shift
  [ -n "$HARNESS_CGROUP" ] || harness_die "harness_cgroup was not called"
  bash -c 'echo $$ > "$1/cgroup.procs" && shift 2 && exec nsenter --net="/run/netns/$0" -- "$@"' \
    "$ns" "$HARNESS_CGROUP" _ "$@"
}

# harness_kube_api NS BUILD [API double arguments...]: the strict Kubernetes API
# test double on 127.0.0.1:6443 in namespace NS, over TLS: a CA made for this run
# ($HARNESS_DIR/ca.crt) and a server certificate for 127.0.0.1; the double's
# valid token in $HARNESS_DIR/api-token, a client's token file in
# $HARNESS_DIR/token (both "token-one"; rotate by rewriting them). Then
# `harness_api METHOD PATH [BODY]` is its test control and `harness_kget PATH`
# an authenticated read, as a client would do it.
harness_kube_api() {
  local ns=$1 build=$2 d=$HARNESS_DIR
  shift 2
  HARNESS_API_NS=$ns
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -subj /CN=kvlb-test-ca -days 1 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$d/srv.key" -out "$d/srv.csr" -subj /CN=kube-apiserver 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$d/san.ext"
  openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -out "$d/srv.crt" \
    -days 1 -extfile "$d/san.ext" 2>/dev/null
  echo "token-one" >"$d/api-token"
  echo "token-one" >"$d/token"
  harness_spawn "$ns" "$d/api.log" "$build/tests/k8s/kube-api-double" --port 6443 --cert "$d/srv.crt" \
    --key "$d/srv.key" --token-file "$d/api-token" "$@" >/dev/null
}
harness_api() {  # METHOD PATH [BODY]
  nsenter --net="/run/netns/$HARNESS_API_NS" curl -sf --cacert "$HARNESS_DIR/ca.crt" -X "$1" \
    -H "X-Kvlb-Test-Control: yes" "https://127.0.0.1:6443$2" ${3:+-d "$3"}
}
harness_kget() {  # PATH
  nsenter --net="/run/netns/$HARNESS_API_NS" curl -sf --cacert "$HARNESS_DIR/ca.crt" \
    -H "Authorization: Bearer $(cat "$HARNESS_DIR/token")" "https://127.0.0.1:6443$1"
}

# harness_wait_for DESCRIPTION TIMEOUT_S CMD...: polls CMD until it succeeds.
harness_wait_for() {
  local what=$1 timeout=$2 start
  shift 2
  start=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) - start >= timeout )); then
      harness_log "timed out after ${timeout}s waiting for: $what"
      return 1
    fi
    sleep 0.2
  done
}

# True while PID runs. A zombie counts as gone: spawned processes are orphans
# (their spawning subshell has exited), reaped by whatever PID 1 is, whenever.
_harness_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

# harness_stop_pid PID...: SIGTERM to all, up to 5 s for them to exit, then SIGKILL.
harness_stop_pid() {
  local pid i left
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    left=0
    for pid in "$@"; do _harness_alive "$pid" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.1
  done
  for pid in "$@"; do _harness_alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  return 0
}

harness_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "${HARNESS_DIR:-}" ] && [ -d "$HARNESS_DIR" ] || return $rc
  local pid ns
  # Processes first (the agent gets SIGTERM and detaches cleanly).
  if [ -f "$HARNESS_DIR/pids" ]; then
    # shellcheck disable=SC2046
    harness_stop_pid $(tac "$HARNESS_DIR/pids")
  fi
  if [ -n "$HARNESS_CGROUP" ] && [ -d "$HARNESS_CGROUP" ]; then
    # Child cgroups (one per emulated node in the cluster tests) first, deepest first.
    for pid in $(find "$HARNESS_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null
    done
    for _ in $(seq 1 50); do
      find "$HARNESS_CGROUP" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
      [ -z "$(find "$HARNESS_CGROUP" -mindepth 1 -type d 2>/dev/null)" ] && break
      sleep 0.1
    done
    for _ in $(seq 1 50); do rmdir "$HARNESS_CGROUP" 2>/dev/null && break; sleep 0.1; done
    [ -d "$HARNESS_CGROUP" ] && harness_log "could not remove cgroup $HARNESS_CGROUP"
  fi
  if [ -f "$HARNESS_DIR/netns" ]; then
    while read -r ns; do ip netns del "$ns" 2>/dev/null; done <"$HARNESS_DIR/netns"
  fi
  if [ -n "$HARNESS_BPFFS" ] && mountpoint -q "$HARNESS_BPFFS"; then
    umount "$HARNESS_BPFFS" || umount -l "$HARNESS_BPFFS"
  fi
  rm -rf "$HARNESS_DIR"
  rmdir /run/kvlb-harness 2>/dev/null || true
  harness_log "cleaned up $HARNESS_ID"
  return $rc
}
