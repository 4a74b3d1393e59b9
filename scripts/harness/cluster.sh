#!/usr/bin/env bash
# cluster.sh - emulated nodes for the score-sharing tests and benchmark (sourced
# after lib.sh and nats.sh): agent I is "node I", with its own cgroup
# ($HARNESS_CGROUP/nodeI), pin directory ($HARNESS_BPFFS/nodeI) and admin
# socket, running in the client namespace; replica R runs on node R mod NODES.
#
#   cluster_start_agent I NODES REPLICAS [shared|alone]   start agent I; CLUSTER_PIDS[I]
#   cluster_sock I                                          its admin socket
#   cluster_metric I NAME                                   an unlabelled sample of its /metrics
#   cluster_scrapes REPLICAS                                each replica's scrape count
#   cluster_rates REPLICAS SECONDS                          scrapes/s per replica over SECONDS:
#                                                           RATES, RATE_MIN, RATE_MAX
CLUSTER_INTERVAL_MS=${CLUSTER_INTERVAL_MS:-50}
CLUSTER_FALLBACK_MS=${CLUSTER_FALLBACK_MS:-250}
CLUSTER_PIDS=()

cluster_sock() { echo "$HARNESS_DIR/agent$1.sock"; }

_cluster_config() {  # I NODES REPLICAS MODE
  local i=$1 nodes=$2 n=$3 mode=$4 r
  echo "cgroup: $HARNESS_CGROUP/node$i"
  echo "bpffs: $HARNESS_BPFFS"
  echo "pin_dir: $HARNESS_BPFFS/node$i"
  echo "admin: {socket: $(cluster_sock "$i")}"
  echo "scrape_interval: ${CLUSTER_INTERVAL_MS}ms"
  if [ "$mode" = shared ]; then
    echo "cluster: {nats_servers: \"$NATS_URLS\", ca_file: $NATS_CA, user: agent$i,"
    echo "          password_file: $NATS_PASSWORDS/agent$i,"
    echo "          fallback_scrape_interval: ${CLUSTER_FALLBACK_MS}ms}"
  fi
  echo "services:"
  echo "  - {name: llm, vip: \"$(harness_vip 0):${HARNESS_PORT:-8000}\", backends: ["
  for ((r = 0; r < n; r++)); do
    echo "      {address: \"$(harness_replica_ip "$r"):${HARNESS_PORT:-8000}\", node: node$((r % nodes))},"
  done
  echo "    ]}"
}

cluster_start_agent() {
  local i=$1
  mkdir -p "$HARNESS_CGROUP/node$i"
  rm -f "$(cluster_sock "$i")"
  _cluster_config "$i" "$2" "$3" "${4:-shared}" >"$HARNESS_DIR/agent$i.yaml"
  CLUSTER_PIDS[$i]=$(harness_spawn "$(harness_ns c)" "$HARNESS_DIR/agent$i.log" env NODE_NAME="node$i" \
    "$KVLB_BUILD/userspace/kvlb-agent" -c "$HARNESS_DIR/agent$i.yaml" --watch-config 0s)
}

cluster_metric() {
  "$KVLB_BUILD/userspace/cli/kvlbctl" --socket "$(cluster_sock "$1")" metrics |
    awk -v m="$2" '$1 == m {print $2}'
}

cluster_scrapes() {
  local r
  for ((r = 0; r < $1; r++)); do
    nsenter --net="/run/netns/$(harness_ns c)" \
      curl -s "http://$(harness_replica_ip "$r"):${HARNESS_PORT:-8000}/metrics" |
      awk '$1 == "kvlb_sim_metrics_requests_total" {printf "%s ", $2}'
  done
}

cluster_rates() {
  local n=$1 t0 t1 a b r
  t0=$(date +%s.%N)
  read -r -a a <<<"$(cluster_scrapes "$n")"
  sleep "$2"
  read -r -a b <<<"$(cluster_scrapes "$n")"
  t1=$(date +%s.%N)
  # Our own two reads are not the agents' scrapes.
  RATES=$(for ((r = 0; r < n; r++)); do echo "${a[r]} ${b[r]}"; done |
    awk -v dt="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" '{printf "%.1f ", ($2 - $1 - 1) / dt}')
  RATE_MAX=$(tr ' ' '\n' <<<"$RATES" | grep . | sort -g | tail -n 1)
  RATE_MIN=$(tr ' ' '\n' <<<"$RATES" | grep . | sort -g | head -n 1)
}

# cluster_propagation_p99 AGENT...: the p99 of kvlb_cluster_propagation_seconds
# over those agents' histograms (the bucket bound it falls in), in ms.
cluster_propagation_p99() {
  local a
  for a in "$@"; do "$KVLB_BUILD/userspace/cli/kvlbctl" --socket "$(cluster_sock "$a")" metrics; done |
    awk '/^kvlb_cluster_propagation_seconds_bucket/ {
           match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
           if (le == "+Inf") inf += $2; else n[le] += $2
         }
         /^kvlb_cluster_propagation_seconds_count/ {total += $2}
         END {
           if (total == 0) {print "n/a"; exit}
           m = 0; for (le in n) les[++m] = le + 0
           for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (les[i] > les[j]) {t = les[i]; les[i] = les[j]; les[j] = t}
           for (i = 1; i <= m; i++) if (n[les[i]] >= 0.99 * total) {print les[i] * 1000; exit}
           print "inf"
         }'
}
