#!/usr/bin/env bash
# Memory of zerotrace under load (issue 7, benchmark 3): 100 instrumented
# processes (tiny forked HTTP responders on loopback ports 20000-20099) and
# 1,000 distinct routes (/r/<word>-<word>, real words so the route heuristic
# keeps every one). Prints the loader's and the worker's VmRSS (steady state)
# and VmHWM (peak, start-up included), the BPF map memory (memlock of the zt_*
# maps), and the verdict against the targets (worker <= 30 MiB, loader <= 10 MiB).
#
#   sudo bench/memory.sh [rounds]      # rounds over the 1,000 routes (default 10)
#
# Env: AGENT_ARGS (default: --trace-printer disabled), PROCESSES (default 100),
#      NO_BUILD=1 (measure the binaries already in target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
processes="${PROCESSES:-100}"
first_port=20000
last_port=$((first_port + processes - 1))
work=$(mktemp -d /tmp/zt-memory.XXXXXX)
python=/usr/bin/python3; [ -x "$python" ] || python=$(command -v python3)

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet   # NO_BUILD=1: use target/release as is

servers_pid=""
agent_pid=""
load_pid=""
cleanup() {
  if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; fi
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
  if [ -n "$servers_pid" ]; then  # the responders, then their parent
    pkill -TERM -P "$servers_pid" 2>/dev/null || true
    kill "$servers_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# One parent forks one child per port; each child binds its own port, so each
# is an instrumented process of its own (the parent listens on nothing).
cat > "$work/servers.py" <<'PY'
import os, signal, socket, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
children = []
def stop(*_):
    for pid in children:
        try: os.kill(pid, signal.SIGTERM)
        except ProcessLookupError: pass
    os._exit(0)
for port in range(first, first + count):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port)); s.listen(64)
        while True:
            c, _ = s.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk: break
                data += chunk
            body = b"ok " + data.split(b" ", 2)[1] + b"\n" if data else b""
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (len(body), body))
            c.close()
    children.append(pid)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while True: signal.pause()
PY
# The load: every route once per round, spread over the ports, bounded by count and time.
cat > "$work/load.py" <<'PY'
import itertools, socket, sys, time
first, count, rounds, deadline = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), time.time() + 120
words = ("apple amber anchor arrow autumn badge banana basket beacon berry blossom bridge "
         "butter cabin camera candle canyon carpet castle cedar cherry circle cloud copper "
         "coral cotton crystal dragon engine falcon feather forest garden ginger glacier "
         "harbor hazel island jacket lantern lemon marble meadow mirror").split()
routes = ["/r/%s-%s" % pair for pair in itertools.islice(itertools.permutations(words, 2), 1000)]
assert len(set(routes)) == 1000
sent = 0
for r in range(rounds):
    for i, route in enumerate(routes):
        if time.time() > deadline: break
        s = socket.create_connection(("127.0.0.1", first + (i + r) % count))
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: zt-memory-bench\r\n\r\n" % route).encode())
        while s.recv(4096): pass
        s.close(); sent += 1
print(sent)
PY

"$python" "$work/servers.py" "$first_port" "$processes" &
servers_pid=$!
for _ in $(seq 100); do
  [ "$(ss -Htln "sport >= :$first_port and sport <= :$last_port" | wc -l)" -ge "$processes" ] && break
  sleep 0.1
done
echo "servers: $(pgrep -c -P "$servers_pid") processes listening on $first_port-$last_port"

# shellcheck disable=SC2086
./target/release/zerotrace run --open-port "$first_port-$last_port" ${AGENT_ARGS:---trace-printer disabled} \
  > "$work/agent.out" 2> "$work/agent.err" &
agent_pid=$!
for _ in $(seq 100); do grep -q "ready: instrumenting" "$work/agent.err" 2>/dev/null && break; sleep 0.1; done
grep -E "probes attached|ready: instrumenting" "$work/agent.err" || { echo "agent did not start:"; cat "$work/agent.err"; exit 1; }
worker_pid=$(pgrep -P "$agent_pid" | head -1)
[ -n "$worker_pid" ] || { echo "no worker under the loader"; exit 1; }

status() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }  # kB
sample() {  # loader-rss loader-hwm worker-rss worker-hwm (kB)
  echo "$(status "$agent_pid" VmRSS) $(status "$agent_pid" VmHWM) $(status "$worker_pid" VmRSS) $(status "$worker_pid" VmHWM)"
}
read -r l_rss0 l_hwm0 w_rss0 w_hwm0 < <(sample)
echo "after start (kB): loader RSS $l_rss0 HWM $l_hwm0 | worker RSS $w_rss0 HWM $w_hwm0"

t0=$(date +%s.%N)
"$python" "$work/load.py" "$first_port" "$processes" "$rounds" > "$work/sent" &
load_pid=$!
max_l=0; max_w=0
while kill -0 "$load_pid" 2>/dev/null; do
  read -r l_rss _ w_rss _ < <(sample)
  [ "$l_rss" -gt "$max_l" ] && max_l=$l_rss
  [ "$w_rss" -gt "$max_w" ] && max_w=$w_rss
  sleep 0.2
done
wait "$load_pid"; load_pid=""
t1=$(date +%s.%N)
sent=$(cat "$work/sent")
echo "load: $sent requests over 1000 routes x $processes processes in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
sleep 3   # let the worker drain the ring (25 ms ticks) and settle
read -r l_rss l_hwm w_rss w_hwm < <(sample)
[ "$(pgrep -P "$agent_pid" | head -1)" = "$worker_pid" ] || echo "WARNING: the worker was restarted during the run"

maps=$(bpftool -j map show | "$python" -c '
import json, sys
maps = [m for m in json.load(sys.stdin) if m.get("name", "").startswith("zt_")]
print(sum(m.get("bytes_memlock", 0) for m in maps), len(maps))
for m in sorted(maps, key=lambda m: -m.get("bytes_memlock", 0)):
    print("  %-16s %-12s %10d bytes memlock" % (m["name"], m["type"], m.get("bytes_memlock", 0)), file=sys.stderr)
' 2> "$work/maps")
read -r map_bytes map_count <<< "$maps"

mib() { awk "BEGIN {printf \"%.1f\", $1 / 1024}"; }
echo "loader: steady VmRSS $(mib "$l_rss") MiB, max sampled VmRSS under load $(mib "$max_l") MiB, peak VmHWM $(mib "$l_hwm") MiB"
echo "worker: steady VmRSS $(mib "$w_rss") MiB, max sampled VmRSS under load $(mib "$max_w") MiB, peak VmHWM $(mib "$w_hwm") MiB"
echo "BPF maps zt_*: $map_count maps, $(mib $((map_bytes / 1024))) MiB memlock"
cat "$work/maps"
if [ -s "$work/agent.out" ]; then  # a printer was enabled through AGENT_ARGS: check the spans
  echo "spans printed: $(wc -l < "$work/agent.out"); distinct /r/ routes: $(grep -o '"route":"/r/[a-z-]*"' "$work/agent.out" | sort -u | wc -l)"
  grep -m1 '/r/' "$work/agent.out"
fi
verdict() {
  if [ "$(awk "BEGIN {print ($2 <= $3 * 1024)}")" = 1 ]; then echo "$1 PASS (peak $(mib "$2") <= $3 MiB)"
  else echo "$1 FAIL (peak $(mib "$2") > $3 MiB)"; fi
}
verdict "worker" "$w_hwm" 30
verdict "loader" "$l_hwm" 10
