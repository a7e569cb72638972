#!/usr/bin/env bash
# Start-up of zerotrace (issue 7, benchmark 4): `zerotrace run` until the
# loader prints "probes attached in N ms" (its own measure, from process start
# to every program attached), and the wall time from launch until that line
# and until the worker's "ready", over N runs; medians against the 1 s target.
#
#   sudo bench/startup.sh [runs]        # default 10
#
# Env: NO_BUILD=1 (measure the binaries already in target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
work=$(mktemp -d /tmp/zt-startup.XXXXXX)
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
attached=(); wall=(); ready=()
for i in $(seq "$runs"); do
  : > "$work/agent.err"
  t0=$(now_ms)
  ./target/release/zerotrace run --open-port 29999 --trace-printer disabled > /dev/null 2> "$work/agent.err" &
  agent_pid=$!
  t_att=""; t_ready=""
  for _ in $(seq 1000); do   # polls every 5 ms, 5 s at most
    [ -z "$t_att" ] && grep -q "probes attached in" "$work/agent.err" && t_att=$(now_ms)
    [ -z "$t_ready" ] && grep -q "ready: instrumenting" "$work/agent.err" && t_ready=$(now_ms)
    [ -n "$t_att" ] && [ -n "$t_ready" ] && break
    sleep 0.005
  done
  kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
  n=$(sed -n 's/.*probes attached in \([0-9]*\) ms.*/\1/p' "$work/agent.err")
  if [ -z "$n" ] || [ -z "$t_att" ] || [ -z "$t_ready" ]; then
    echo "run $i: agent did not start:"; cat "$work/agent.err"; exit 1
  fi
  attached+=("$n"); wall+=($((t_att - t0))); ready+=($((t_ready - t0)))
  echo "run $i: probes attached in $n ms (loader's figure); seen after ${wall[-1]} ms wall; worker ready after ${ready[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
m=$(median "${attached[@]}"); mw=$(median "${wall[@]}"); mr=$(median "${ready[@]}")
echo "median over $runs runs: probes attached in $m ms (loader), $mw ms wall (launch to line, 5 ms polling), worker ready $mr ms"
if [ "$(awk "BEGIN {print ($mw <= 1000)}")" = 1 ]; then echo "start-up PASS (median $mw ms <= 1000 ms)"
else echo "start-up FAIL (median $mw ms > 1000 ms)"; fi
