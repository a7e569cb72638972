#!/usr/bin/env bash
# HTTP/1 chunked responses streamed by Node.js and Go servers, read by a
# Python client on one keep-alive connection, both sides instrumented: how
# many of each side's spans a build makes whole, with the body size the
# client read. Fidelity counts, not timings (docs/benchmarks.md, "Streamed
# HTTP/1 responses").
#
#   sudo bench/http1_streams.sh [DIR...]        (default: target/release)
#   sudo SEEDS=100 bench/http1_streams.sh /tmp/before /tmp/after
#
# Each DIR holds a release `zerotrace`. A server whose runtime (node, go) is
# missing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
here=bench/http1_streams
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(target/release)
seeds="${SEEDS:-300}"
server_port="${SERVER_PORT:-38124}"
client_port="${CLIENT_PORT:-38199}"
work=$(mktemp -d)
server=""
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

streams=$(seq -f "/stream/%g" "$seeds")
declare -A commands paths
if command -v node >/dev/null; then
  commands[node]="node $here/stream_server.js"
  paths[node]="$streams"
fi
if command -v go >/dev/null &&
  (cd "$here" && GO111MODULE=off go build -o "$work/stream_server" stream_server.go); then
  commands[go]="$work/stream_server"
  paths[go]="$streams $(printf '/write/%s ' 100 1000 2000 3000 5000 10000 50000)\
 $(printf '/json/%s ' 5 50 500 5000) $(printf '/lines/%s ' 10 100 1000 10000)"
fi
[ ${#commands[@]} -gt 0 ] || { echo "neither node nor go is installed" >&2; exit 2; }

for name in "${!commands[@]}"; do
  ${commands[$name]} "$server_port" >"$work/server.out" 2>&1 &
  server=$!
  for _ in $(seq 50); do grep -q listening "$work/server.out" && break; sleep 0.1; done
  for dir in "${dirs[@]}"; do
    "$dir/zerotrace" run --open-port "$server_port,$client_port" --trace-printer json \
      >"$work/spans" 2>"$work/agent.err" &
    agent=$!
    # shellcheck disable=SC2086 # the paths are words
    /usr/bin/python3 "$here/streams_client.py" "$client_port" 3 "$server_port" ${paths[$name]} \
      >"$work/lengths"
    sleep 1
    kill -INT "$agent"
    wait "$agent" || true
    echo "$name, $dir:"
    /usr/bin/python3 "$here/compare.py" "$work/lengths" <"$work/spans"
  done
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
done
