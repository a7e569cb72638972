#!/usr/bin/env bash
# A/B of two builds of the agent on the same nginx + wrk load, alternated
# (A, B, A, B, ...) so that both see the same host: on a shared machine the
# absolute figures drift between runs minutes apart, their order within a
# round much less. Each directory holds a release `zerotrace` and
# `zerotrace-worker` (copy them from target/release after each build); each run
# is `bench/nginx_overhead.sh` with those binaries swapped into target/release.
#
#   sudo bench/ab.sh DIR_A DIR_B [rounds] [pairs] [seconds]
#   sudo PROFILE=single bench/ab.sh /tmp/before /tmp/after 3 2 4
#
# Prints per run: throughput ratio, nginx's CPU per request off/on (what the
# hooks cost it: the ratio's steadier cousin when nginx is the bottleneck),
# agent CPU and BPF ns per request, and each data program's ns per request.
# target/release keeps the last run's binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
a="$1"; b="$2"; rounds="${3:-3}"; pairs="${4:-2}"; seconds="${5:-4}"
for dir in "$a" "$b"; do
  for binary in zerotrace zerotrace-worker; do
    [ -x "$dir/$binary" ] || { echo "$dir/$binary: not an executable" >&2; exit 2; }
  done
done
for round in $(seq "$rounds"); do
  for dir in "$a" "$b"; do
    cp "$dir/zerotrace" "$dir/zerotrace-worker" target/release/
    out=$(SKIP_BUILD=1 bench/nginx_overhead.sh "$pairs" "$seconds")
    ratio=$(awk '/throughput ratio/ {print $NF}' <<<"$out")
    cpu=$(awk '/median agent CPU/ {print $(NF-1)}' <<<"$out")
    bpf=$(awk '/median BPF run time/ {print $(NF-1)}' <<<"$out")
    nginx=$(awk '/median nginx CPU/ {print $NF}' <<<"$out")
    programs=$(grep "^  per request:" <<<"$out" | tail -1 | grep -o "zt_sock_[a-z]* [0-9]* ns" | tr '\n' ' ' || true)
    echo "round $round $dir: ratio $ratio, nginx CPU off/on $nginx, agent CPU $cpu us, BPF $bpf ns per request; last pair: $programs"
  done
done
