#!/usr/bin/env bash
# nats.sh - a NATS cluster for the harness (sourced after lib.sh): real
# nats-server processes in one namespace, clustered by routes, TLS with a CA
# made for the run, one user per agent allowed only the kvlb subjects.
#
#   harness_nats_cluster NS SERVERS USERS   starts them; sets NATS_URLS (tls://...,
#                                           comma-separated), NATS_CA, NATS_PIDS
#                                           (array), NATS_PASSWORDS dir (USER file each)
#   harness_nats_start NS K                 (re)starts server K with its config
#   harness_nats_varz K                     the server's /varz (JSON) from NS
#
# NATS_HOST (default 127.0.0.1): the address the servers listen on (and their
# certificate names), for clients in other namespaces that reach NS by a link.
NATS_CLIENT_PORT=14222 NATS_ROUTE_PORT=16222 NATS_HTTP_PORT=18222
NATS_HOST=${NATS_HOST:-127.0.0.1}

_nats_certs() {
  local d=$HARNESS_DIR/nats
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=kvlb-test-ca" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null || harness_die "openssl: CA"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$NATS_HOST" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null || harness_die "openssl: csr"
  printf 'subjectAltName=IP:%s\n' "$NATS_HOST" >"$d/san.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 1 -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null || harness_die "openssl: cert"
  chmod 0600 "$d"/*.key
  NATS_CA=$d/ca.pem
}

harness_nats_cluster() {
  local ns=$1 n=$2 users=$3 k u routes d=$HARNESS_DIR/nats
  _nats_certs
  NATS_PASSWORDS=$d/passwords
  mkdir -p "$NATS_PASSWORDS"
  chmod 0700 "$NATS_PASSWORDS"
  local userlist=""
  for u in $users; do
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$NATS_PASSWORDS/$u"
    userlist+="    {user: $u, password: \"$(cat "$NATS_PASSWORDS/$u")\", permissions: {publish: \"kvlb.v1.>\", subscribe: \"kvlb.v1.>\"}}"$'\n'
  done
  NATS_URLS=""
  NATS_PIDS=()
  for ((k = 0; k < n; k++)); do
    routes=""
    for ((u = 0; u < n; u++)); do
      [ "$u" = "$k" ] || routes+="nats-route://$NATS_HOST:$((NATS_ROUTE_PORT + u)), "
    done
    cat >"$d/n$k.conf" <<CONF
server_name: kvlb-nats-$k
listen: $NATS_HOST:$((NATS_CLIENT_PORT + k))
http: $NATS_HOST:$((NATS_HTTP_PORT + k))
tls {
  cert_file: "$d/server.pem"
  key_file: "$d/server.key"
  timeout: 2
}
authorization {
  users = [
$userlist  ]
}
cluster {
  name: kvlb
  listen: $NATS_HOST:$((NATS_ROUTE_PORT + k))
  routes: [ ${routes%, } ]
}
CONF
    NATS_URLS+="${NATS_URLS:+,}tls://$NATS_HOST:$((NATS_CLIENT_PORT + k))"
    harness_nats_start "$ns" "$k"
  done
  # Clustered: every server has a route to every other.
  for ((k = 0; k < n; k++)); do
    harness_wait_for "nats $k routes" 20 bash -c \
      "[ \"\$(nsenter --net=/run/netns/$ns curl -s http://$NATS_HOST:$((NATS_HTTP_PORT + k))/routez | jq '.num_routes')\" -ge $((n - 1)) ]" ||
      harness_die "nats server $k has no routes to the others: $(tail -n 5 "$d/n$k.log")"
  done
}

harness_nats_start() {
  local ns=$1 k=$2 d=$HARNESS_DIR/nats
  NATS_PIDS[$k]=$(harness_spawn "$ns" "$d/n$k.log" nats-server -c "$d/n$k.conf")
  harness_wait_for "nats $k" 20 nsenter --net="/run/netns/$ns" \
    curl -sf "http://$NATS_HOST:$((NATS_HTTP_PORT + k))/healthz" ||
    harness_die "nats server $k did not start: $(tail -n 5 "$d/n$k.log")"
}

harness_nats_varz() {
  nsenter --net="/run/netns/$1" curl -s "http://$NATS_HOST:$((NATS_HTTP_PORT + $2))/varz"
}
