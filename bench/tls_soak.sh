#!/usr/bin/env bash
# Exchanges lost under load, over TLS: nginx (Debian, 2 workers) serving a
# 17-byte body over HTTPS/1.1, h2load --h1 sending REQUESTS requests on 16
# connections (nginx closes each after 1,000, so h2load reconnects), the
# agent printing spans as JSON. Each run prints the requests h2load
# completed, the spans printed, and the worker's loss counters that are not
# zero; the last line sums the runs. Not a timing benchmark: a count.
#
#   sudo bench/tls_soak.sh [runs] [requests]
#
# Env: NO_BUILD=1 (use target/release as it is), ZT_BIN (the agent binary;
#      default target/release/zerotrace).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
requests="${2:-30000}"
port=18444
work=$(mktemp -d /tmp/zt-tls-soak.XXXXXX)
agent="${ZT_BIN:-$PWD/target/release/zerotrace}"

if ! command -v nginx >/dev/null || ! command -v h2load >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light nghttp2-client >/dev/null
fi
if [ -z "${NO_BUILD:-}" ] && [ -z "${ZT_BIN:-}" ]; then cargo build --release --quiet; fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    location / { return 200 "hello from nginx\n"; }
  }
}
CONF
nginx -c "$work/nginx.conf" &
nginx_pid=$!
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
  kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
sleep 0.5

total_requests=0
total_spans=0
for run in $(seq 1 "$runs"); do
  # Emptied here, not by the redirection alone: that happens in the child,
  # and the wait below could still read the last run's "ready".
  rm -f "$work/spans.json" "$work/agent.err"
  : > "$work/agent.err"
  "$agent" run --trace-printer json --open-port "$port" > "$work/spans.json" 2>> "$work/agent.err" &
  agent_pid=$!
  for _ in $(seq 1 150); do grep -q "ready:" "$work/agent.err" && break; sleep 0.1; done
  done_requests=$(h2load --h1 -n "$requests" -c 16 "https://127.0.0.1:$port/" |
    sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
  sleep 2
  kill -INT "$agent_pid"
  wait "$agent_pid" || true
  agent_pid=""
  spans=$(grep -c . "$work/spans.json" || true)
  losses=$(grep -o "stopping: [0-9]* spans.*" "$work/agent.err" | tr ';,' '\n' |
    grep -E '[1-9][0-9]* (responses|requests|dropped|TLS plaintext|reads)' | tr -s ' \n' ' ' || true)
  echo "run $run: $done_requests requests, $spans spans${losses:+; lost:$losses}"
  total_requests=$((total_requests + done_requests))
  total_spans=$((total_spans + spans))
done
echo "all $runs runs: $total_requests requests, $total_spans spans, $((total_requests - total_spans)) missing"
