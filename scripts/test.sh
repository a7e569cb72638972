#!/usr/bin/env bash
# The whole test suite: style gates, unit and property tests, and the
# end-to-end tests that load the real BPF programs into this kernel (root).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh test
if [ "$(id -u)" -ne 0 ]; then
  echo "the end-to-end tests load BPF programs: run as root (sudo $0)" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== fuzz targets compile (cargo fuzz itself needs nightly; checking them does not)"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked --quiet
echo "== module cycles"
bash scripts/module-cycles.sh
echo "== cargo build"
cargo build --workspace --quiet
echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads=2
