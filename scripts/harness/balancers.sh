# shellcheck shell=bash
# Balancers of the experiments, each started and stopped the same way, in front
# of the replicas that lib.sh created (harness_replica 0..N-1):
#
#   kvlb-<policy>[:<k>][+rebalance]
#                           kvlb socket LB (connect4 in the client's cgroup), VIP 0,
#                           comparing k backends (default: the agent's); +rebalance:
#                           keep-alive rebalancing on (docs/keepalive.md)
#   kvlb-xdp[-<policy>][:<k>][+accept-local][+gso-mtu]
#                           kvlb's XDP gateway (the agent in gateway mode on the
#                           gateway host, generic XDP on its veths), VIP 0; the
#                           policy defaults to the agent's (p2c-queue-kv). Needs
#                           the gateway topology (harness_gateway) and harness_bpffs.
#                           Workarounds (docs/results/xdp/README.md):
#                           +accept-local: net.ipv4.conf.all.accept_local=1 on the
#                           gateway host, so that the stack forwards the translated
#                           packets the program passes to it (fib_pass), whose
#                           source is the gateway's own SNAT address;
#                           +gso-mtu: the veths that send into the gateway (the
#                           client's, the replicas') build no GSO packet above
#                           their MTU (gso_max_size), so generic XDP never sees one
#   kube-proxy              iptables DNAT chains with the statistic match, as
#                           kube-proxy's iptables mode writes them, VIP 1
#   haproxy-leastconn       HAProxy, mode http, balance leastconn (Knative-style least requests)
#   haproxy-random2         HAProxy, balance random(2)
#   nginx-random2-leastconn nginx, random two least_conn
#   oracle                  the load generator picks with every replica's instant metrics
#
# balancer_start NAME N PORT sets:
#   BAL_URL       the base URL clients use
#   BAL_CGROUP    1 when clients must run in the harness cgroup (socket LB)
#   BAL_ARGS      extra kvlb-loadgen arguments (the oracle's targets)
# balancer_stop NAME removes everything it added.
# balancer_virtual NAME prints the name kvlb-sim models NAME by (kvlb-xdp runs the
# socket LB's policy and selection code: kvlb-xdp[-P][:k] -> kvlb-P[:k]).
# Needs KVLB_BUILD (the build directory); KVLB_CHOICES overrides kvlb's choices
# (the agent's default otherwise); KVLB_KEEPALIVE_SETTINGS, "key: value, ...",
# sets kvlb's keepalive.* settings (e.g. "interval: 100ms, idle: 0ms");
# KVLB_GATEWAY_SETTINGS, lines "key: value",
# are added to kvlb-xdp's gateway settings (e.g. "closing_timeout: 5s").

BAL_PROXY_PORT=18080

_bal_backends() {  # N PORT -> "ip:port" lines
  local i
  for ((i = 0; i < $1; i++)); do echo "$(harness_replica_ip "$i"):$2"; done
}

# Proxies run on the gateway host when there is one, else next to the client.
_bal_ns() { harness_ns c; }
_bal_proxy_ns() { harness_ns "$HARNESS_UPSTREAM"; }
_bal_proxy_addr() { [ "$HARNESS_UPSTREAM" = g ] && harness_gateway_ip || echo 127.0.0.1; }

# kvlb's one service, the replicas as backends (the configuration's tail).
_bal_kvlb_services() {  # VIP PORT N POLICY CHOICES [REBALANCE]
  echo "services:"
  echo "  - name: llm"
  echo "    vip: $1:$2"
  [ -n "$4" ] && echo "    policy: $4"
  [ -n "$5" ] && echo "    choices: $5"
  # Explicit either way: kvlb-<policy> names the balancer without rebalancing
  # (the agent's default is on), kvlb-<policy>+rebalance with it.
  if [ -n "${6:-}" ]; then echo "    keepalive_rebalance: true"; else echo "    keepalive_rebalance: false"; fi
  echo "    backends:"
  _bal_backends "$3" "$2" | sed 's/^/      - address: /'
}

# Starts kvlb-agent on $HARNESS_DIR/NAME.yaml in NS, its log LOG.log; sets
# BAL_PID and waits for its admin socket ($HARNESS_DIR/NAME.sock).
_bal_kvlb_spawn() {  # NS NAME LOG
  BAL_PID=$(harness_spawn "$1" "$HARNESS_DIR/$3.log" \
    "$KVLB_BUILD/userspace/kvlb-agent" -c "$HARNESS_DIR/$2.yaml" --log-scores 10s)
  "$KVLB_BUILD/userspace/cli/kvlbctl" --socket "$HARNESS_DIR/$2.sock" wait-ready --timeout 20 ||
    { cat "$HARNESS_DIR/$3.log" >&2; return 1; }
}

balancer_start() {
  local name=$1 n=$2 port=$3 c
  c=$(_bal_ns)
  BAL_URL="" BAL_CGROUP=0 BAL_ARGS=()
  case "$name" in
    kvlb-xdp | kvlb-xdp[-:+]*)
      # kvlb-xdp[-<policy>][:<choices>][+accept-local][+gso-mtu]: the agent in gateway mode in namespace g.
      if [ "$HARNESS_UPSTREAM" != g ]; then
        harness_log "$name needs the gateway topology (harness_gateway before harness_replica; seed-experiment --gateway)"
        return 1
      fi
      [ -n "$HARNESS_BPFFS" ] || { harness_log "$name: harness_bpffs was not called"; return 1; }
      local spec=${name#kvlb-xdp} policy="" choices=${KVLB_CHOICES:-} g vip
      g=$(harness_ns g)
      BAL_XDP_ACCEPT_LOCAL="" BAL_XDP_GSO=()
      if [[ $spec == *+accept-local* ]]; then
        spec=${spec/+accept-local/}
        BAL_XDP_ACCEPT_LOCAL=$(ip netns exec "$g" sysctl -n net.ipv4.conf.all.accept_local)
        ip netns exec "$g" sysctl -qw net.ipv4.conf.all.accept_local=1
      fi
      if [[ $spec == *+gso-mtu* ]]; then
        spec=${spec/+gso-mtu/}
        local i ns dev
        for ((i = -1; i < n; i++)); do
          if ((i < 0)); then ns=$c dev="k${HARNESS_SHORT}cg"; else ns=$(harness_ns "r$i") dev="k${HARNESS_SHORT}r$i"; fi
          BAL_XDP_GSO+=("$ns $dev $(ip -d -j -n "$ns" link show dev "$dev" | jq '.[0].gso_max_size')")
          ip -n "$ns" link set dev "$dev" gso_max_size "$(ip -j -n "$ns" link show dev "$dev" | jq '.[0].mtu')"
        done
      fi
      if [[ $spec == *:* ]]; then
        choices=${spec#*:}
        spec=${spec%%:*}
      fi
      policy=${spec#-}
      vip=$(harness_vip 0)
      {
        echo "mode: gateway"
        echo "bpffs: $HARNESS_BPFFS"
        echo "pin_dir: $HARNESS_BPFFS/kvlb-xdp"
        echo "scrape_interval: ${KVLB_SCRAPE_INTERVAL:-50ms}"
        echo "admin: {socket: $HARNESS_DIR/kvlb-xdp.sock}"
        echo "gateway:"
        echo "  interfaces: \"$(harness_gateway_interfaces)\""
        echo "  snat_ipv4: $(harness_gateway_ip)"
        [ -n "${KVLB_GATEWAY_SETTINGS:-}" ] && sed 's/^/  /' <<<"$KVLB_GATEWAY_SETTINGS"
        _bal_kvlb_services "$vip" "$port" "$n" "$policy" "$choices"
      } >"$HARNESS_DIR/kvlb-xdp.yaml"
      _bal_kvlb_spawn "$g" kvlb-xdp kvlb-xdp || return 1
      # The client reaches VIP 0 through the gateway host (as harness_gateway_vips
      # sets it up), unless the caller routed it already.
      BAL_XDP_ROUTES=0
      if [ -z "$(ip -n "$c" route show "$vip/32")" ]; then
        harness_gateway_vips 1
        BAL_XDP_ROUTES=1
      fi
      sleep 0.3  # a few scrape rounds: scores in place
      BAL_URL="http://$vip:$port"
      BAL_CGROUP=0
      ;;
    kvlb-*)
      # kvlb-<policy>[:<choices>][+rebalance]
      local policy=${name#kvlb-} choices=${KVLB_CHOICES:-} rebalance=""
      if [[ $policy == *+rebalance ]]; then
        rebalance=1
        policy=${policy%+rebalance}
      fi
      if [[ $policy == *:* ]]; then
        choices=${policy#*:}
        policy=${policy%%:*}
      fi
      {
        echo "cgroup: $HARNESS_CGROUP"
        echo "bpffs: $HARNESS_BPFFS"
        echo "pin_dir: $HARNESS_BPFFS/kvlb"
        echo "scrape_interval: ${KVLB_SCRAPE_INTERVAL:-50ms}"
        echo "admin: {socket: $HARNESS_DIR/kvlb.sock}"
        [ -n "${KVLB_KEEPALIVE_SETTINGS:-}" ] && echo "keepalive: {$KVLB_KEEPALIVE_SETTINGS}"
        _bal_kvlb_services "$(harness_vip 0)" "$port" "$n" "$policy" "$choices" "$rebalance"
      } >"$HARNESS_DIR/kvlb.yaml"
      _bal_kvlb_spawn "$c" kvlb "kvlb-$policy" || return 1
      sleep 0.3  # a few scrape rounds: scores in place
      BAL_URL="http://$(harness_vip 0):$port"
      BAL_CGROUP=1
      ;;
    kube-proxy)
      local vip i prob ipt="ip netns exec $c iptables-legacy -w -t nat"
      vip=$(harness_vip 1)
      # The VIP must be routable for the locally generated SYN to reach nat OUTPUT
      # (a node has a default route); DNAT then re-routes it to the backend.
      if [ "$HARNESS_UPSTREAM" = g ]; then
        ip -n "$c" route add "$vip/32" via "$(harness_gateway_ip)"
      else
        ip -n "$c" route add "$vip/32" dev "k${HARNESS_SHORT}c0"
      fi
      $ipt -N KUBE-SERVICES
      $ipt -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
      $ipt -N KUBE-SVC-KVLBLLM
      $ipt -A KUBE-SERVICES -d "$vip/32" -p tcp -m comment --comment "default/llm cluster IP" \
        -m tcp --dport "$port" -j KUBE-SVC-KVLBLLM
      for ((i = 0; i < n; i++)); do
        $ipt -N "KUBE-SEP-KVLB$i"
        $ipt -A "KUBE-SEP-KVLB$i" -p tcp -m comment --comment "default/llm" -m tcp \
          -j DNAT --to-destination "$(harness_replica_ip "$i"):$port"
        if ((i < n - 1)); then
          prob=$(awk -v k=$((n - i)) 'BEGIN { printf "%.10f", 1 / k }')
          $ipt -A KUBE-SVC-KVLBLLM -m comment --comment "default/llm" \
            -m statistic --mode random --probability "$prob" -j "KUBE-SEP-KVLB$i"
        else
          $ipt -A KUBE-SVC-KVLBLLM -m comment --comment "default/llm" -j "KUBE-SEP-KVLB$i"
        fi
      done
      BAL_URL="http://$vip:$port"
      ;;
    haproxy-leastconn | haproxy-random2)
      local algo=leastconn
      [ "$name" = haproxy-random2 ] && algo="random(2)"
      {
        printf 'global\n  maxconn 8000\n  pidfile %s/haproxy.pid\n' "$HARNESS_DIR"
        printf 'defaults\n  mode http\n  timeout connect 5s\n  timeout client 900s\n  timeout server 900s\n'
        printf 'frontend llm\n  bind %s:%s\n  default_backend replicas\n' "$(_bal_proxy_addr)" "$BAL_PROXY_PORT"
        # One server connection per request, so leastconn counts requests in flight.
        printf 'backend replicas\n  balance %s\n  http-reuse never\n  option http-server-close\n' "$algo"
        # Streamed tokens are small writes: without this HAProxy may hold a chunk
        # (MSG_MORE) until the client ACKs the previous one, adding 200 ms steps.
        [ "${BAL_HAPROXY_NO_DELAY:-1}" = 1 ] && printf '  option http-no-delay\n'
        local i=0 b
        for b in $(_bal_backends "$n" "$port"); do printf '  server r%d %s maxconn 10000\n' $((i++)) "$b"; done
      } >"$HARNESS_DIR/haproxy.cfg"
      BAL_PID=$(harness_spawn "$(_bal_proxy_ns)" "$HARNESS_DIR/haproxy.log" haproxy -db -f "$HARNESS_DIR/haproxy.cfg")
      BAL_URL="http://$(_bal_proxy_addr):$BAL_PROXY_PORT"
      harness_wait_for "haproxy" 10 nsenter --net="/run/netns/$c" curl -sf "$BAL_URL/health" ||
        { cat "$HARNESS_DIR/haproxy.log" >&2; return 1; }
      ;;
    nginx-random2-leastconn)
      mkdir -p "$HARNESS_DIR/nginx"
      {
        printf 'daemon off;\nworker_processes 1;\npid %s/nginx/nginx.pid;\nerror_log %s/nginx/error.log warn;\n' \
          "$HARNESS_DIR" "$HARNESS_DIR"
        printf 'events { worker_connections 16384; }\n'
        printf 'http {\n  access_log off;\n  client_body_temp_path %s/nginx/body;\n' "$HARNESS_DIR"
        printf '  proxy_temp_path %s/nginx/proxy;\n' "$HARNESS_DIR"
        printf '  upstream replicas {\n    random two least_conn;\n'
        local b
        for b in $(_bal_backends "$n" "$port"); do printf '    server %s;\n' "$b"; done
        printf '  }\n  server {\n    listen %s:%s;\n    location / {\n' "$(_bal_proxy_addr)" "$BAL_PROXY_PORT"
        printf '      proxy_pass http://replicas;\n      proxy_http_version 1.1;\n'
        printf '      proxy_buffering off;\n      proxy_read_timeout 900s;\n    }\n  }\n}\n'
      } >"$HARNESS_DIR/nginx/nginx.conf"
      BAL_PID=$(harness_spawn "$(_bal_proxy_ns)" "$HARNESS_DIR/nginx/stderr.log" nginx -e "$HARNESS_DIR/nginx/error.log" -p "$HARNESS_DIR/nginx" -c "$HARNESS_DIR/nginx/nginx.conf")
      BAL_URL="http://$(_bal_proxy_addr):$BAL_PROXY_PORT"
      harness_wait_for "nginx" 10 nsenter --net="/run/netns/$c" curl -sf "$BAL_URL/health" ||
        { cat "$HARNESS_DIR/nginx/stderr.log" "$HARNESS_DIR/nginx/error.log" >&2; return 1; }
      ;;
    oracle)
      local targets="" b
      for b in $(_bal_backends "$n" "$port"); do targets+="${targets:+,}http://$b"; done
      BAL_ARGS=(--oracle "$targets")
      ;;
    *)
      harness_log "unknown balancer $name"
      return 1
      ;;
  esac
}

balancer_stop() {
  local name=$1 n=$2 c i ipt
  c=$(_bal_ns)
  case "$name" in
    kube-proxy)
      ipt="ip netns exec $c iptables-legacy -w -t nat"
      $ipt -F OUTPUT
      $ipt -F KUBE-SERVICES && $ipt -X KUBE-SERVICES
      $ipt -F KUBE-SVC-KVLBLLM && $ipt -X KUBE-SVC-KVLBLLM
      for ((i = 0; i < n; i++)); do $ipt -F "KUBE-SEP-KVLB$i" && $ipt -X "KUBE-SEP-KVLB$i"; done
      ip -n "$c" route del "$(harness_vip 1)/32" 2>/dev/null || true
      ;;
    kvlb-xdp | kvlb-xdp[-:+]*)
      # SIGTERM: the agent detaches its XDP links and unpins them.
      [ -n "${BAL_PID:-}" ] && harness_stop_pid "$BAL_PID"
      if [ "${BAL_XDP_ROUTES:-0}" = 1 ]; then
        ip -n "$c" route del "$(harness_vip 0)/32" 2>/dev/null || true
        ip -n "$c" -6 route del "$(harness_vip6 0)/128" 2>/dev/null || true
      fi
      BAL_XDP_ROUTES=0
      if [ -n "${BAL_XDP_ACCEPT_LOCAL:-}" ]; then
        ip netns exec "$(harness_ns g)" sysctl -qw net.ipv4.conf.all.accept_local="$BAL_XDP_ACCEPT_LOCAL"
      fi
      BAL_XDP_ACCEPT_LOCAL=""
      local gso ns dev size
      for gso in ${BAL_XDP_GSO[@]+"${BAL_XDP_GSO[@]}"}; do
        read -r ns dev size <<<"$gso"
        ip -n "$ns" link set dev "$dev" gso_max_size "$size" || true
      done
      BAL_XDP_GSO=()
      # Whatever a stop that needed SIGKILL left pinned (a pinned link keeps the
      # program attached) goes with its pins.
      if [ -d "$HARNESS_BPFFS/kvlb-xdp" ]; then
        rm -rf "$HARNESS_BPFFS/kvlb-xdp"
      fi
      # The links go when the exited agent's last descriptor does: moments later.
      harness_wait_for "XDP detached from the gateway's interfaces" 5 \
        bash -c '! ip -n "$0" -o link show | grep -q " xdp"' "$(harness_ns g)" ||
        harness_log "WARNING: an XDP program is still attached in the gateway namespace after $name stopped"
      ;;
    oracle) ;;
    *) [ -n "${BAL_PID:-}" ] && harness_stop_pid "$BAL_PID" ;;
  esac
  BAL_PID=""
}

balancer_virtual() {
  local name=$1 spec policy choices=""
  case "$name" in
    kvlb-xdp | kvlb-xdp[-:+]*)
      spec=${name#kvlb-xdp}
      spec=${spec/+accept-local/}
      spec=${spec/+gso-mtu/}
      if [[ $spec == *:* ]]; then
        choices=":${spec#*:}"
        spec=${spec%%:*}
      fi
      policy=${spec#-}
      echo "kvlb-${policy:-p2c-queue-kv}$choices"
      ;;
    *) echo "${name%+rebalance}" ;;  # kvlb-sim opens a connection per request
  esac
}
