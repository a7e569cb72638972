#!/usr/bin/env bash
# Overhead of zerotrace's Go TLS hooks on a real Go HTTPS server: the
# net/http server of tests/servers/go_https (built stripped with Debian's Go)
# answering /hello, h2load over TLS on loopback at saturation, runs
# interleaved (off, on, off, on, ...) and reported as medians and ratios
# instrumented/not, with the agent's CPU and the BPF programs' run time per
# request. Throughput and CPU come from runs with kernel.bpf_stats_enabled off
# (timing every program run costs the server time users do not pay); the BPF
# run time from a third run of the same agent with it on.
#
#   sudo bench/go_tls_overhead.sh [pairs] [seconds-per-run]
#
# Env: H2LOAD_ARGS (default: -c 20 -m 10, i.e. h2 with 20 connections of 10
#      streams; "--h1 -c 50" for HTTP/1.1), AGENT_ARGS (default:
#      --trace-printer disabled), PROFILE (default release; "debug" uses the
#      debug build as it is, for BPF figures only: a debug worker is slow),
#      NO_BUILD=1 (use target/$PROFILE as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-5}"
seconds="${2:-5}"
port=18443
profile="${PROFILE:-release}"
work=$(mktemp -d /tmp/zt-go-bench.XXXXXX)

command -v go >/dev/null && command -v h2load >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go nghttp2-client >/dev/null
}
if [ "$profile" = release ] && [ -z "${NO_BUILD:-}" ]; then cargo build --release --quiet; fi
GOCACHE="$work/gocache" GO111MODULE=off CGO_ENABLED=0 \
  go build -ldflags='-s -w' -o "$work/go_https" tests/servers/go_https/main.go
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

"$work/go_https" "127.0.0.1:$port" "$work/cert.pem" "$work/key.pem" &
server_pid=$!
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/hello" && break; sleep 0.1; done

run_load() {
  # prints: requests/s requests-done
  # shellcheck disable=SC2086
  h2load ${H2LOAD_ARGS:--c 20 -m 10} -D "$seconds" "https://127.0.0.1:$port/hello" > "$work/h2load.txt"
  local rps done
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$work/h2load.txt")
  done=$(awk '/^requests:/ {print $8}' "$work/h2load.txt")
  echo "$rps $done"
}

start_agent() {
  # shellcheck disable=SC2086
  ./target/"$profile"/zerotrace run --open-port "$port" ${AGENT_ARGS:---trace-printer disabled} > /dev/null 2> "$work/agent.err" &
  agent_pid=$!
  for _ in $(seq 100); do grep -q "(Go crypto/tls)" "$work/agent.err" 2>/dev/null && break; sleep 0.1; done
  grep -q "(Go crypto/tls)" "$work/agent.err" || { echo "agent did not hook the Go server:"; cat "$work/agent.err"; exit 1; }
}
stop_agent() {
  kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
}
agent_ticks() {  # utime+stime of the loader and the worker, in clock ticks
  local t=0 pid
  for pid in $(pgrep -x zerotrace) $(pgrep -f zerotrace-worker); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$t"
}
bpf_ns() {  # run time of the agent's BPF programs named $1* so far, in ns
  bpftool -j prog show 2>/dev/null | python3 -c 'import json,sys; print(sum(p.get("run_time_ns",0) for p in json.load(sys.stdin) if p.get("name","").startswith(sys.argv[1])))' "$1"
}

run_load > /dev/null   # warm-up
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -q -w kernel.bpf_stats_enabled=0
trap 'sysctl -q -w kernel.bpf_stats_enabled="$stats_before"; cleanup' EXIT
off_rps=(); on_rps=(); agent_us=(); bpf_all=(); bpf_go=()
for i in $(seq "$pairs"); do
  read -r rps _ < <(run_load); off_rps+=("$rps")
  start_agent
  t0=$(agent_ticks)
  read -r rps requests < <(run_load); on_rps+=("$rps")
  t1=$(agent_ticks)
  agent_us+=("$(awk "BEGIN {printf \"%.2f\", ($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $requests}")")
  sysctl -q -w kernel.bpf_stats_enabled=1
  b0=$(bpf_ns zt_); g0=$(bpf_ns zt_go_tls)
  read -r _ requests < <(run_load)
  b1=$(bpf_ns zt_); g1=$(bpf_ns zt_go_tls)
  sysctl -q -w kernel.bpf_stats_enabled=0
  bpf_all+=("$(awk "BEGIN {printf \"%.0f\", ($b1 - $b0) / $requests}")")
  bpf_go+=("$(awk "BEGIN {printf \"%.0f\", ($g1 - $g0) / $requests}")")
  stop_agent
  echo "pair $i: off ${off_rps[-1]} req/s | on ${on_rps[-1]} req/s, agent CPU ${agent_us[-1]}us/request, BPF ${bpf_all[-1]} ns/request (zt_go_tls ${bpf_go[-1]})"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
m_off=$(median "${off_rps[@]}"); m_on=$(median "${on_rps[@]}")
echo "median req/s: off $m_off, on $m_on; throughput ratio on/off = $(awk "BEGIN {printf \"%.3f\", $m_on/$m_off}")"
echo "median agent CPU (loader + worker) per instrumented request: $(median "${agent_us[@]}") us"
echo "median BPF run time per instrumented request: $(median "${bpf_all[@]}") ns, of which the Go TLS hooks $(median "${bpf_go[@]}") ns"
