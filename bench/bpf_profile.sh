#!/usr/bin/env bash
# Where the data programs' time goes, on the nginx load of bench/nginx_overhead.sh:
# `perf record -a -g` while wrk runs, then bench/bpf_lines.py's two tables over
# the samples that hold zt_sock_send or zt_sock_recv in their call chain: the
# leaf function (the program's own code, the helpers, what the helpers call)
# and the programs' own samples by source line.
#
#   sudo bench/bpf_profile.sh [seconds]        # perf's window, default 6
#   sudo PROFILE=default bench/bpf_profile.sh  # nginx 2 workers, wrk -t2 -c50
#
# PROFILE small (default here: nginx 1 worker, wrk -t1 -c16, the steadier one)
# or default; SKIP_BUILD=1 uses target/release as built; AGENT_ENV and WRK_HEADER
# as in nginx_overhead.sh (WRK_HEADER="Connection: close": a connection per
# request); PROGRAMS: the programs whose samples are counted (default
# "zt_sock_send zt_sock_recv"; add zt_sock_state for connection churn);
# KEEP=DIR keeps perf.data, the script and the line tables.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-6}"
port=18081
case "${PROFILE:-small}" in
  small) workers=1 threads=1 connections=16 ;;
  default) workers=2 threads=2 connections=50 ;;
  *) echo "unknown PROFILE ${PROFILE}: small or default" >&2; exit 2 ;;
esac
command -v perf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-perf >/dev/null
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk >/dev/null
}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
read -r -a programs <<< "${PROGRAMS:-zt_sock_send zt_sock_recv}"
header=()
[ -n "${WRK_HEADER:-}" ] && header=(-H "$WRK_HEADER")
work="${KEEP:-$(mktemp -d /tmp/zt-bpf-profile.XXXXXX)}"
mkdir -p "$work"

# shellcheck source=bench/nginx_conf.sh
. bench/nginx_conf.sh
write_nginx_conf "$work" "$port" "$workers"
nginx -c "$work/nginx.conf" &
nginx_pid=$!
agent_pid=""
wrk_pid=""
cleanup() {
  for pid in "$wrk_pid" "$agent_pid" "$nginx_pid"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

# shellcheck disable=SC2086
env ${AGENT_ENV:-} ./target/release/zerotrace run --open-port "$port" --trace-printer disabled > /dev/null 2> "$work/agent.err" &
agent_pid=$!
for _ in $(seq 100); do grep -q "ready: instrumenting" "$work/agent.err" 2>/dev/null && break; sleep 0.1; done
grep -q "ready: instrumenting" "$work/agent.err" || { echo "the agent did not start:"; cat "$work/agent.err"; exit 1; }

wrk -t"$threads" -c"$connections" -d"$((seconds + 5))s" "${header[@]}" "http://127.0.0.1:$port/" > "$work/wrk.txt" &
wrk_pid=$!
sleep 3   # past the first connections and the agent's first records
perf record -q -a -g -F 4999 -o "$work/perf.data" -- sleep "$seconds" 2> "$work/perf.err"
python3 bench/bpf_lines.py dump "$work" "${programs[@]}"
wait "$wrk_pid"; wrk_pid=""
perf script -i "$work/perf.data" -F ip,sym,symoff > "$work/script.txt" 2> /dev/null
echo "wrk: $(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt") req/s (PROFILE=${PROFILE:-small}, agent env: ${AGENT_ENV:-none}, header: ${WRK_HEADER:-none})"
python3 bench/bpf_lines.py report "$work" "$work/script.txt" "${programs[@]}"
