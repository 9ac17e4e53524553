#!/usr/bin/env bash
# The property-based API test (issue 12): Schemathesis, driven by the
# server's own /api/openapi.json, against `countersign demo` (the reference
# workflow, an admin token, Slack interactivity configured), with a fixed
# seed and example count. Any failure fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/st-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi
cargo build -q -p countersign --locked

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SLACK_SIGNING_SECRET=schemathesis-signing-secret \
  target/debug/countersign demo --listen "127.0.0.1:$port" --data "$data" >"$data/out.txt" 2>"$data/err.txt" &
demo=$!
trap 'kill $demo 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
token=$(awk '/API token/ {print $NF}' "$data/out.txt")
[ -n "$token" ] || { cat "$data/err.txt"; echo "the demo printed no token"; exit 1; }
"$venv/bin/st" --config-file .ci/schemathesis.toml run "http://127.0.0.1:$port/api/openapi.json" \
  --checks all -H "Authorization: Bearer $token" \
  --max-examples 30 --seed 1 --request-timeout 10
