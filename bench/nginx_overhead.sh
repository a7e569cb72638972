#!/usr/bin/env bash
# Overhead of zerotrace on a real server: nginx (Debian) serving a small
# response, wrk keep-alive at saturation on loopback, runs interleaved
# (off, on, off, on, ...) and reported as medians and ratios instrumented/not.
#
#   sudo bench/nginx_overhead.sh [pairs] [seconds-per-run]
#   sudo PROFILE=small bench/nginx_overhead.sh [pairs] [seconds-per-run]
#
# Profiles: default (nginx 2 workers, wrk -t2 -c50) and small (nginx 1 worker,
# wrk -t1 -c16): issue 17's two configurations; single (nginx 1 worker, one wrk
# connection): not a throughput figure, but the BPF ns per call that moves least
# between runs on a busy host (bench/ab.sh). The variables below override them.
# Env: NGINX_WORKERS (default 2), AGENT_ARGS (extra `zerotrace run` args, default: --trace-printer disabled),
#      SKIP_BUILD (set: do not rebuild target/release), WRK_CONNECTIONS (default 50), WRK_THREADS (default 2),
#      WRK_HEADER (one header line added to every request, e.g. a long
#      "Authorization: Bearer ..."), AGENT_ENV (environment for the agent, e.g.
#      ZEROTRACE_HEAD_CAPTURE=0), BPF_STATS_RUN (default 1; 0 skips the third run),
#      OTLP (set: the agent exports traces and metrics over OTLP/HTTP protobuf to
#      bench/otlp_sink.py, which takes them and keeps nothing; its own CPU is
#      printed apart and is not in the agent's).
# Also prints nginx's own CPU per request (its workers' run time), off and on:
# what the hooks cost the instrumented process, steadier than throughput on a shared host.
# Each pair is an uninstrumented and an instrumented run, both with
# kernel.bpf_stats_enabled off (it times every program run, which costs the
# instrumented process time users do not pay: ~3-5 points of ratio here),
# then a third run of the same agent with bpf_stats on, for the BPF programs'
# run time per request.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-5}"
seconds="${2:-5}"
port=18080
case "${PROFILE:-default}" in
  default) ;;
  small) : "${NGINX_WORKERS:=1}" "${WRK_THREADS:=1}" "${WRK_CONNECTIONS:=16}" ;;
  single) : "${NGINX_WORKERS:=1}" "${WRK_THREADS:=1}" "${WRK_CONNECTIONS:=1}" ;;
  *) echo "unknown PROFILE ${PROFILE}: default, small or single" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/zt-bench.XXXXXX)

command -v nginx >/dev/null && command -v wrk >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk >/dev/null
}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet   # SKIP_BUILD=1: use the binaries as built

# shellcheck source=bench/nginx_conf.sh
. bench/nginx_conf.sh
write_nginx_conf "$work" "$port" "${NGINX_WORKERS:-2}"
nginx -c "$work/nginx.conf" &
nginx_pid=$!
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
sink_pid=""
otlp_env=""
if [ -n "${OTLP:-}" ]; then
  sink_port=14318
  python3 bench/otlp_sink.py "$sink_port" 2> "$work/sink.err" &
  sink_pid=$!
  otlp_env="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
  trap 'kill "$sink_pid" 2>/dev/null || true; cleanup' EXIT
fi
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

run_wrk() {
  # prints: requests/s p99-latency-in-microseconds
  local header=()
  [ -n "${WRK_HEADER:-}" ] && header=(-H "$WRK_HEADER")
  wrk -t"${WRK_THREADS:-2}" -c"${WRK_CONNECTIONS:-50}" -d"${seconds}s" --latency "${header[@]}" "http://127.0.0.1:$port/" > "$work/wrk.txt"
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1000000}}' "$work/wrk.txt")
  echo "$rps $p99"
}

agent_progs=""
start_agent() {
  local before
  before=" $(zt_prog_ids) "
  # shellcheck disable=SC2086
  env ${otlp_env} ${AGENT_ENV:-} ./target/release/zerotrace run --open-port "$port" ${AGENT_ARGS:---trace-printer disabled} > /dev/null 2> "$work/agent.err" &
  agent_pid=$!
  for _ in $(seq 100); do grep -q "ready: instrumenting" "$work/agent.err" 2>/dev/null && break; sleep 0.1; done
  grep -q "(1 process(es)\|(2 process(es)\|(3 process(es)" "$work/agent.err" || { echo "agent did not find nginx:"; cat "$work/agent.err"; exit 1; }
  agent_progs=""
  for id in $(zt_prog_ids); do
    [[ "$before" == *" $id "* ]] || agent_progs+="$id "
  done
}
stop_agent() {
  kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
}

wrk -t"${WRK_THREADS:-2}" -c"${WRK_CONNECTIONS:-50}" -d2s "http://127.0.0.1:$port/" > /dev/null   # warm-up
off_rps=(); on_rps=(); off_p99=(); on_p99=(); agent_us=(); agent_tick_us=(); nginx_off_us=(); nginx_on_us=(); sink_us=()
# CPU time comes from the scheduler's own sum of each thread's run time
# (/proc/PID/task/TID/schedstat, to the nanosecond). utime+stime in
# /proc/PID/stat is the same quantity rounded to clock ticks (10 ms: 2-4 % of
# an agent's figure over a 4-5 s run); it is printed beside it, and it still
# counts threads that exited during the run, which the per-thread sum would
# miss (the two then disagree).
ticks_of() {  # utime+stime of these processes, in clock ticks
  local t=0 pid
  for pid in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$t"
}
cpu_ns_of() {  # run time of these processes' live threads so far, in ns
  local pid
  for pid in "$@"; do cat /proc/"$pid"/task/*/schedstat 2>/dev/null || true; done |
    awk '{t += $1} END {printf "%.0f\n", t}'
}
threads_ns() {  # "name=ns" for each live thread of this process
  local task
  for task in /proc/"$1"/task/*; do
    printf '%s=%s ' "$(tr ' ' '_' < "$task/comm")" "$(cut -d' ' -f1 "$task/schedstat")"
  done 2>/dev/null || true
}
nginx_cpu() { cpu_ns_of $(pgrep -P "$nginx_pid"); }   # nginx's worker processes
agent_cpu() { cpu_ns_of "$agent_pid" $(pgrep -P "$agent_pid"); }   # this run's loader and worker
agent_ticks() { ticks_of "$agent_pid" $(pgrep -P "$agent_pid"); }
requests_of_run() { awk '/requests in/ {print $1}' "$work/wrk.txt"; }
per_request_us() {  # ns_before ns_after: microseconds per request of the last wrk run
  awk -v t="$(($2 - $1))" -v r="$(requests_of_run)" 'BEGIN {printf "%.3f", t / 1000 / r}'
}
ticks_per_request_us() {  # ticks_before ticks_after, as per_request_us
  awk -v t="$(($2 - $1))" -v r="$(requests_of_run)" \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t * 1000000 / hz / r}'
}
thread_split() {  # two threads_ns snapshots: each thread's microseconds per request
  python3 - "$1" "$2" "$(requests_of_run)" <<'PY'
import sys
before = dict(kv.rsplit("=", 1) for kv in sys.argv[1].split())
after = dict(kv.rsplit("=", 1) for kv in sys.argv[2].split())
requests = float(sys.argv[3])
parts = {}
for name, value in after.items():
    parts[name] = parts.get(name, 0) + int(value) - int(before.get(name, 0))
print(", ".join(f"{n} {ns / 1000 / requests:.3f}" for n, ns in sorted(parts.items()) if ns > 0))
PY
}
zt_prog_ids() {  # ids of every loaded zt_ program (other agents on the box included)
  bpftool -j prog show 2>/dev/null | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if p.get("name","").startswith("zt_")))'
}
# This run's programs: those loaded by its agent (AGENT_PROGS), not another
# agent's that may be running on the box (their filtered runs would count).
bpf_ns() {  # run time of this agent's BPF programs so far, in ns
  bpftool -j prog show 2>/dev/null | AGENT_PROGS="$agent_progs" python3 -c 'import json,os,sys; ids=set(os.environ["AGENT_PROGS"].split()); print(sum(p.get("run_time_ns",0) for p in json.load(sys.stdin) if str(p["id"]) in ids))'
}
bpf_by_program() {  # name=run_time_ns:run_cnt for each of this agent's programs
  bpftool -j prog show 2>/dev/null | AGENT_PROGS="$agent_progs" python3 -c 'import json,os,sys; ids=set(os.environ["AGENT_PROGS"].split()); print(" ".join("%s=%d:%d" % (p["name"], p.get("run_time_ns",0), p.get("run_cnt",0)) for p in json.load(sys.stdin) if str(p["id"]) in ids))'
}
bpf_breakdown() {  # per program: ns and runs per request between two bpf_by_program snapshots
  python3 - "$1" "$2" "$3" <<'PY'
import sys
before = dict(kv.split("=") for kv in sys.argv[1].split())
after = dict(kv.split("=") for kv in sys.argv[2].split())
requests = float(sys.argv[3])
parts = []
for name, value in sorted(after.items()):
    t1, c1 = map(int, value.split(":"))
    t0, c0 = map(int, before.get(name, "0:0").split(":"))
    if c1 > c0:
        parts.append(f"{name} {(t1 - t0) / requests:.0f} ns, {(c1 - c0) / requests:.2f} runs")
print("; ".join(parts))
PY
}
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -q -w kernel.bpf_stats_enabled=0
trap 'sysctl -q -w kernel.bpf_stats_enabled="$stats_before"; [ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null || true; cleanup' EXIT
bpf_per_request=()
for i in $(seq "$pairs"); do
  n0=$(nginx_cpu)
  read -r rps p99 < <(run_wrk); off_rps+=("$rps"); off_p99+=("$p99")
  nginx_off_us+=("$(per_request_us "$n0" "$(nginx_cpu)")")
  start_agent
  worker_pid=$(pgrep -P "$agent_pid" | head -1)
  t0=$(agent_cpu); k0=$(agent_ticks); w0=$(threads_ns "$worker_pid"); n0=$(nginx_cpu)
  # The sink in ticks: its server starts a thread per connection, which may exit.
  [ -z "$sink_pid" ] || s0=$(ticks_of "$sink_pid")
  read -r rps p99 < <(run_wrk); on_rps+=("$rps"); on_p99+=("$p99")
  agent_us+=("$(per_request_us "$t0" "$(agent_cpu)")")
  agent_tick_us+=("$(ticks_per_request_us "$k0" "$(agent_ticks)")")
  split=$(thread_split "$w0" "$(threads_ns "$worker_pid")")
  [ -z "$sink_pid" ] || sink_us+=("$(ticks_per_request_us "$s0" "$(ticks_of "$sink_pid")")")
  nginx_on_us+=("$(per_request_us "$n0" "$(nginx_cpu)")")
  bpf_note=""
  if [ "${BPF_STATS_RUN:-1}" != 0 ]; then
    sysctl -q -w kernel.bpf_stats_enabled=1
    b0=$(bpf_ns); p0=$(bpf_by_program)
    run_wrk > /dev/null
    b1=$(bpf_ns); p1=$(bpf_by_program)
    sysctl -q -w kernel.bpf_stats_enabled=0
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    bpf_per_request+=("$(awk "BEGIN {printf \"%.0f\", ($b1 - $b0) / $requests}")")
    echo "  per request: $(bpf_breakdown "$p0" "$p1" "$requests")"
    bpf_note=", BPF ${bpf_per_request[-1]} ns/request (bpf_stats run)"
  fi
  stop_agent
  echo "pair $i: off ${off_rps[-1]} req/s p99 ${off_p99[-1]}us | on ${on_rps[-1]} req/s p99 ${on_p99[-1]}us, agent CPU ${agent_us[-1]}us/request (ticks: ${agent_tick_us[-1]}; worker threads: $split)$bpf_note; nginx CPU ${nginx_off_us[-1]} -> ${nginx_on_us[-1]}us/request"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
m_off=$(median "${off_rps[@]}"); m_on=$(median "${on_rps[@]}")
p_off=$(median "${off_p99[@]}"); p_on=$(median "${on_p99[@]}")
echo "median req/s: off $m_off, on $m_on; throughput ratio on/off = $(awk "BEGIN {printf \"%.3f\", $m_on/$m_off}")"
# Each pair's own ratio cancels the host's drift between pairs (the off and
# on runs of a pair are seconds apart); their median is the steadier figure.
pair_ratios=()
for i in "${!on_rps[@]}"; do
  pair_ratios+=("$(awk "BEGIN {printf \"%.3f\", ${on_rps[$i]}/${off_rps[$i]}}")")
done
echo "per-pair ratios: ${pair_ratios[*]}; median $(median "${pair_ratios[@]}")"
echo "median agent CPU (loader + worker) per instrumented request: $(median "${agent_us[@]}") us"
echo "  (from clock ticks: $(median "${agent_tick_us[@]}") us)"
[ ${#sink_us[@]} -eq 0 ] || echo "median OTLP sink CPU per instrumented request (not the agent's): $(median "${sink_us[@]}") us"
n_off=$(median "${nginx_off_us[@]}"); n_on=$(median "${nginx_on_us[@]}")
echo "median nginx CPU per request: off ${n_off} us, on ${n_on} us; ratio off/on = $(awk "BEGIN {printf \"%.3f\", $n_off/$n_on}")"
[ ${#bpf_per_request[@]} -eq 0 ] || echo "median BPF run time per instrumented request: $(median "${bpf_per_request[@]}") ns"
echo "median p99 latency: off ${p_off}us, on ${p_on}us; p99 ratio on/off = $(awk "BEGIN {printf \"%.3f\", $p_on/$p_off}")"
