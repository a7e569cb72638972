#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a bounded time (default
# 60 s each) on copies of the committed seeds, and prints the executions of
# each and the total. A crash fails, leaving its input in artifacts/<target>/.
#   fuzz/run.sh [seconds-per-target] [target...]
# Seeds of http2_frames, hpack and grpc are written by
#   cargo +nightly run --release --example make_seeds   (in fuzz/)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
# Build once up front and run the binaries directly: `cargo fuzz run` would
# rebuild whenever the workspace changed meanwhile, outside the time budget.
if [ $# -eq 0 ]; then
  cargo +nightly fuzz build >/dev/null
else
  for target in "${targets[@]}"; do cargo +nightly fuzz build "$target" >/dev/null; done
fi
bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
total=0
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  [ -d "seeds/$target" ] && cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  log=$(mktemp)
  mkdir -p "artifacts/$target"
  "$bin/$target" -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" \
    -print_final_stats=1 "$corpus" >"$log" 2>&1 || {
    tail -40 "$log"; echo "FAILED: $target"; exit 1; }
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  echo "$target: ${runs:-?} executions in ${seconds}s, no crash"
  total=$((total + ${runs:-0}))
  rm -f "$log"
done
echo "total: $total executions, no crash"
