#!/usr/bin/env bash
# Builds zerotrace and runs it on its embedded default — the text trace
# printer on stdout — instrumenting a demo HTTP server on port 8080 that gets
# a request every second. Ctrl-C stops everything.
#   scripts/demo.sh          spans on stdout
#   scripts/demo.sh --top    the live terminal view (zerotrace top) instead; q quits
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --quiet
port="${DEMO_PORT:-8080}"

python3 tests/servers/http_app.py "$port" >/dev/null &
server=$!
(
  paths=(/hello /chunked /missing /status/500 /proxy)
  i=0
  while kill -0 "$server" 2>/dev/null; do
    sleep 1
    curl -s -o /dev/null "http://127.0.0.1:$port${paths[$((i % ${#paths[@]}))]}" || true
    i=$((i + 1))
  done
) &
traffic=$!
trap 'kill $traffic $server 2>/dev/null || true' EXIT

if [ "${1:-}" = "--top" ]; then
  ./target/release/zerotrace top --open-port "$port"
else
  echo "demo server on http://127.0.0.1:$port (pid $server); spans below. Ctrl-C to stop." >&2
  ./target/release/zerotrace run --open-port "$port"
fi
