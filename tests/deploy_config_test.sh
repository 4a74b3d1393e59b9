#!/usr/bin/env bash
# The configurations deploy/ ships must be valid for the agent they ship with.
set -euo pipefail
BUILD=${1:?usage: deploy_config_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AGENT=$BUILD/userspace/kvlb-agent
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The ConfigMap's agent.yaml, extracted from the manifest.
awk '/^  agent.yaml: \|/ {on = 1; next} on && /^---/ {on = 0} on {sub(/^    /, ""); print}' \
  "$ROOT/deploy/kubernetes/kvlb.yaml" >"$tmp/agent.yaml"
[ -s "$tmp/agent.yaml" ] || { echo "no agent.yaml in the ConfigMap" >&2; exit 1; }
"$AGENT" --check-config -c "$tmp/agent.yaml"
"$AGENT" --check-config -c "$ROOT/deploy/agent.example.yaml"
"$AGENT" --check-config -c "$ROOT/deploy/gateway.example.yaml"
# The autoscaler's ConfigMap, checked by the autoscaler it ships with.
awk '/^  autoscaler.yaml: \|/ {on = 1; next} on && /^---/ {on = 0} on {sub(/^    /, ""); print}' \
  "$ROOT/deploy/kubernetes/autoscaler.yaml" >"$tmp/autoscaler.yaml"
[ -s "$tmp/autoscaler.yaml" ] || { echo "no autoscaler.yaml in the ConfigMap" >&2; exit 1; }
"$BUILD/userspace/kvlb-autoscaler" --check --config "$tmp/autoscaler.yaml"
echo "deploy configs: 4 passed, 0 failed"
