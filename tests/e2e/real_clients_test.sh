#!/usr/bin/env bash
# Real clients against the emulator (loopback, no root needed): kvlb-loadgen
# finds the model from /v1/models, sends the API key (flag or OPENAI_API_KEY,
# as the SDKs), honours a base path and both APIs; the official OpenAI Node SDK
# (npm openai), Python httpx and aiohttp, and curl stream the same requests and
# each gets every token it asked for, with usage, from an emulator that wants a
# key as vLLM's --api-key does.
set -euo pipefail
BUILD=${1:?usage: real_clients_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=$BUILD/userspace/loadgen/kvlb-loadgen
SIM=$BUILD/userspace/replica_sim/kvlb-replica-sim
CLIENTS=$ROOT/tests/clients
PY=/usr/bin/python3  # Debian's, with python3-httpx and python3-aiohttp
MODEL=test-org/model-a KEY=k-$RANDOM$RANDOM

missing=""
[ -f "$CLIENTS/node_modules/openai/package.json" ] || missing+=" the OpenAI SDK (npm ci in tests/clients)"
command -v node >/dev/null || missing+=" node"
"$PY" -c 'import httpx, aiohttp' 2>/dev/null || missing+=" python3-httpx/python3-aiohttp"
if [ -n "$missing" ]; then
  # make test installs them (scripts/install-deps.sh); elsewhere, say what is missing.
  echo "real_clients_test: missing$missing: run scripts/install-deps.sh as root" >&2
  [ "$(id -u)" -eq 0 ] && exit 1 || exit 77
fi

DIR=$(mktemp -d /tmp/kvlb-clients.XXXXXX)
SIM_PID=""
cleanup() {
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

"$SIM" --listen 127.0.0.1 --port 0 --name r0 --model "$MODEL" --api-key "$KEY" >"$DIR/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 100); do
  PORT=$(sed -n 's/.* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$DIR/sim.log" | head -1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$DIR/sim.log"; fail "the emulator did not start"; }
URL=http://127.0.0.1:$PORT
DATASET=$ROOT/tests/fixtures/datasets/short.jsonl

# JSON field reads without jq (d: the document).
field() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"json": json}, {"d": d}))' "$@"; }

echo "== kvlb-loadgen without the key: a clear error, no run"
if "$LOADGEN" --url "$URL" --requests 2 --rps 2 --dataset "$DATASET" -q 2>"$DIR/nokey.err"; then
  fail "loadgen ran without the API key"
fi
grep -q "HTTP 401" "$DIR/nokey.err" || { cat "$DIR/nokey.err"; fail "no 401 in the error"; }
cat "$DIR/nokey.err"

echo "== kvlb-loadgen: the model from /v1/models, the key from OPENAI_API_KEY"
OPENAI_API_KEY=$KEY "$LOADGEN" --url "$URL" --requests 6 --rps 3 --dataset "$DATASET" -q \
  -o "$DIR/completions.json" >/dev/null
[ "$(field "$DIR/completions.json" 'd["config"]["model"]')" = "$MODEL" ] || fail "model not discovered"
[ "$(field "$DIR/completions.json" 'd["summary"]["ok"]')" = 6 ] || fail "completions failed"
[ "$(field "$DIR/completions.json" 'all(r["output_tokens"] == r["expected_output"] for r in d["results"])')" = True ] ||
  fail "a completion missed tokens"

echo "== kvlb-loadgen: chat API, --api-key, a base path written loosely"
"$LOADGEN" --url "$URL" --api chat --api-key "$KEY" --base-path v1/ --requests 4 --rps 4 \
  --dataset "$DATASET" -q -o "$DIR/chat.json" >/dev/null
[ "$(field "$DIR/chat.json" 'd["summary"]["ok"]')" = 4 ] || fail "chat completions failed"
[ "$(field "$DIR/chat.json" 'd["config"]["base_path"]')" = /v1 ] || fail "base path not normalised"

echo "== kvlb-loadgen: a base path the server does not serve: every request an http_404"
"$LOADGEN" --url "$URL" --api-key "$KEY" --model "$MODEL" --base-path /openai/v1 --requests 3 \
  --rps 3 --dataset "$DATASET" -q -o "$DIR/wrongpath.json" >/dev/null
[ "$(field "$DIR/wrongpath.json" 'd["summary"]["errors"].get("http_404", 0)')" = 3 ] ||
  fail "a wrong base path did not give 404s"

# The same requests for every other client.
field "$DIR/completions.json" \
  'json.dumps([{"input_tokens": r["input_tokens"], "output_tokens": r["expected_output"]} for r in d["results"]])' \
  >"$DIR/requests.json"

check_lines() {  # FILE CLIENT: every line complete, with usage
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 6, f"{sys.argv[2]}: {len(lines)} of 6 requests reported"
for l in lines:
    assert not l.get("error"), f"{sys.argv[2]}: request {l['i']}: {l['error']}"
    assert l["chunks"] == l["expected"], f"{sys.argv[2]}: request {l['i']}: {l['chunks']} of {l['expected']} tokens"
    assert l["usage"] and l["usage"]["completion_tokens"] == l["expected"], f"{sys.argv[2]}: usage {l['usage']}"
    assert 0 <= l["ttft"] <= l["e2e"], f"{sys.argv[2]}: times {l['ttft']} {l['e2e']}"
print(f"{sys.argv[2]}: 6 of 6 streams complete, usage right")
PYEOF
}

echo "== the official OpenAI Node SDK (completions, then chat)"
OPENAI_API_KEY=$KEY node "$CLIENTS/openai_sdk_stream.mjs" "$URL/v1" "$MODEL" "$DIR/requests.json" \
  >"$DIR/sdk.jsonl"
check_lines "$DIR/sdk.jsonl" "openai-node"
OPENAI_API_KEY=$KEY node "$CLIENTS/openai_sdk_stream.mjs" "$URL/v1" "$MODEL" "$DIR/requests.json" chat \
  >"$DIR/sdk-chat.jsonl"
check_lines "$DIR/sdk-chat.jsonl" "openai-node chat"
OPENAI_API_KEY=wrong node "$CLIENTS/openai_sdk_stream.mjs" "$URL/v1" "$MODEL" "$DIR/requests.json" \
  >"$DIR/sdk-wrong.jsonl"
grep -q '"error":"401' "$DIR/sdk-wrong.jsonl" || fail "the SDK with a wrong key was not refused (401)"

echo "== Python httpx and aiohttp"
for lib in httpx aiohttp; do
  OPENAI_API_KEY=$KEY "$PY" "$CLIENTS/python_stream.py" "$lib" "$URL/v1" "$MODEL" "$DIR/requests.json" \
    >"$DIR/$lib.jsonl"
  check_lines "$DIR/$lib.jsonl" "$lib"
done

echo "== curl"
curl -sSN --max-time 60 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"model\":\"$MODEL\",\"prompt\":\"hello\",\"max_tokens\":12,\"min_tokens\":12,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
  "$URL/v1/completions" >"$DIR/curl.sse"
[ "$(grep -c '"text":"[^"]' "$DIR/curl.sse")" = 12 ] || { cat "$DIR/curl.sse"; fail "curl: not 12 token events"; }
grep -q '"completion_tokens":12' "$DIR/curl.sse" || fail "curl: no usage"
tail -n 2 "$DIR/curl.sse" | grep -q '^data: \[DONE\]' || fail "curl: no [DONE]"
echo "curl: 12 token events, usage, [DONE]"
echo "PASS real clients"
