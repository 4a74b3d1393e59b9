# shellcheck shell=bash
# Balancers of the experiments, each started and stopped the same way, in front
# of the replicas that lib.sh created (harness_replica 0..N-1):
#
#   kvlb-<policy>[:<k>]     kvlb socket LB (connect4 in the client's cgroup), VIP 0,
#                           comparing k backends (default: the agent's)
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
# Needs KVLB_BUILD (the build directory); KVLB_CHOICES overrides kvlb's choices
# (the agent's default otherwise).

BAL_PROXY_PORT=18080

_bal_backends() {  # N PORT -> "ip:port" lines
  local i
  for ((i = 0; i < $1; i++)); do echo "$(harness_replica_ip "$i"):$2"; done
}

# Proxies run on the gateway host when there is one, else next to the client.
_bal_ns() { harness_ns c; }
_bal_proxy_ns() { harness_ns "$HARNESS_UPSTREAM"; }
_bal_proxy_addr() { [ "$HARNESS_UPSTREAM" = g ] && harness_gateway_ip || echo 127.0.0.1; }

balancer_start() {
  local name=$1 n=$2 port=$3 c
  c=$(_bal_ns)
  BAL_URL="" BAL_CGROUP=0 BAL_ARGS=()
  case "$name" in
    kvlb-*)
      # kvlb-<policy>[:<choices>]
      local policy=${name#kvlb-} choices=${KVLB_CHOICES:-}
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
        echo "services:"
        echo "  - name: llm"
        echo "    vip: $(harness_vip 0):$port"
        echo "    policy: $policy"
        [ -n "$choices" ] && echo "    choices: $choices"
        echo "    backends:"
        _bal_backends "$n" "$port" | sed 's/^/      - address: /'
      } >"$HARNESS_DIR/kvlb.yaml"
      BAL_PID=$(harness_spawn "$c" "$HARNESS_DIR/kvlb-$policy.log" \
        "$KVLB_BUILD/userspace/kvlb-agent" -c "$HARNESS_DIR/kvlb.yaml" --log-scores 10s)
      "$KVLB_BUILD/userspace/cli/kvlbctl" --socket "$HARNESS_DIR/kvlb.sock" wait-ready --timeout 20 ||
        { cat "$HARNESS_DIR/kvlb-$policy.log" >&2; return 1; }
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
    oracle) ;;
    *) [ -n "${BAL_PID:-}" ] && harness_stop_pid "$BAL_PID" ;;
  esac
  BAL_PID=""
}
