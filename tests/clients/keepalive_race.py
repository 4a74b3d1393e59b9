#!/usr/bin/python3
"""The race of keep-alive rebalancing with a request being sent (docs/keepalive.md).

One keep-alive connection at a time, raw sockets (so every outcome is seen, no
library retries): send a streaming completion, read its chunked response to the
end, wait a random 0-MAX_THINK_MS ms (default 3), send the next on the same connection. Meanwhile the
agent closes idle pooled connections as fast as it can. Each request ends as:

  ok          answered completely
  refused     the connection was closed before the request went out: send()
              failed (or the connection was already gone), nothing reached the
              replica; it is sent again on a new connection, as clients do
  lost        the request was sent and the connection then broke before its
              response ended: the failure the idle rule must make impossible

Prints one JSON object: the counts, and the replicas that answered.

  keepalive_race.py HOST PORT MODEL REQUESTS [MAX_THINK_MS]
"""

import json
import random
import socket
import sys
import time


def request(host, port, model):
    body = json.dumps({"model": model, "prompt": "hi", "max_tokens": 1, "min_tokens": 1,
                       "stream": True}).encode()
    return (f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def read_response(sock):
    """Reads one chunked response; returns (replica, complete)."""
    data = b""
    while b"\r\n0\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, False
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    replica = None
    for line in head.split("\r\n"):
        if line.lower().startswith("x-kvlb-replica:"):
            replica = line.split(":", 1)[1].strip()
    return replica, head.startswith("HTTP/1.1 200")


def main():
    host, port, model, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    think = (float(sys.argv[5]) if len(sys.argv) > 5 else 3.0) / 1000
    rng = random.Random(7)
    req = request(host, port, model)
    counts = {"ok": 0, "refused": 0, "lost": 0, "connections": 0}
    replicas = {}
    sock = None
    done = 0
    while done < n:
        if sock is None:
            sock = socket.create_connection((host, port), timeout=30)
            counts["connections"] += 1
        try:
            sock.sendall(req)
        except OSError:
            counts["refused"] += 1  # closed before the request went out: send it again
            sock.close()
            sock = None
            continue
        try:
            replica, ok = read_response(sock)
        except OSError:
            replica, ok = None, False
        done += 1
        if ok:
            counts["ok"] += 1
            replicas[replica] = replicas.get(replica, 0) + 1
        else:
            counts["lost"] += 1
            sock.close()
            sock = None
            continue
        # Think time: the connection is idle, and the next send may meet the close.
        time.sleep(rng.uniform(0, think))
    if sock:
        sock.close()
    counts["replicas"] = replicas
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
