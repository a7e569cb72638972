#!/usr/bin/env bash
# Builds the release binaries and the Debian and RPM packages into
# target/packages/:
#   zerotrace_<version>-1_amd64.deb    (cargo-deb, [package.metadata.deb] in loader/Cargo.toml)
#   zerotrace-<version>-1.x86_64.rpm   (cargo-generate-rpm, [package.metadata.generate-rpm])
#
# Usage: scripts/package.sh [--deb-only | --rpm-only] [--no-build]
#   --no-build   package the release binaries already in the target directory
#
# cargo-deb and cargo-generate-rpm are installed with `cargo install --locked`
# when missing (about 1.5 and 4 minutes of compiling on a 2-core machine, once).
# The build needs the Debian packages of scripts/install-deps.sh; packaging
# needs dpkg-dev (dpkg-shlibdeps computes the .deb's library dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

want_deb=1
want_rpm=1
build=1
for arg in "$@"; do
  case "$arg" in
    --deb-only) want_rpm=0 ;;
    --rpm-only) want_deb=0 ;;
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "package.sh: unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

say() { echo "package.sh: $*" >&2; }

# A cargo subcommand at a pinned version, installed when missing or different.
ensure_tool() {
  local crate=$1 version=$2 binary=$3
  if command -v "$binary" >/dev/null && "$binary" --version 2>/dev/null | grep -qF "$version"; then
    return
  fi
  say "installing $crate $version with cargo install --locked (compiles from crates.io; once per machine)"
  local started=$SECONDS
  cargo install --locked --quiet "$crate" --version "$version"
  say "$crate installed in $((SECONDS - started)) s"
  command -v "$binary" >/dev/null || {
    say "$binary is not on PATH after cargo install: add ~/.cargo/bin to PATH"
    exit 1
  }
}

if [ "$want_deb" = 1 ] && ! command -v dpkg-shlibdeps >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing dpkg-dev (dpkg-shlibdeps: the .deb's library dependencies)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-dev >/dev/null
  else
    say "dpkg-dev is missing: sudo apt-get install dpkg-dev"
    exit 1
  fi
fi

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out="$target_dir/packages"
mkdir -p "$out"

if [ "$build" = 1 ]; then
  say "building release binaries"
  cargo build --release --locked -p zerotrace-loader -p zerotrace-worker -p zerotrace-top
fi
for binary in zerotrace zerotrace-worker zerotrace-top; do
  [ -x "$target_dir/release/$binary" ] || {
    say "$target_dir/release/$binary missing: run without --no-build"
    exit 1
  }
done

version=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "zerotrace-loader"))')
changelog_version=$(sed -n '1s/^zerotrace (\([^)-]*\)-[^)]*).*/\1/p' packaging/debian/changelog)
if [ "$changelog_version" != "$version" ]; then
  say "packaging/debian/changelog starts with version '$changelog_version', the workspace is $version: add a changelog entry"
  exit 1
fi

if [ "$want_deb" = 1 ]; then
  ensure_tool cargo-deb "$CARGO_DEB_VERSION" cargo-deb
  rm -f "$out"/zerotrace_*.deb
  # cargo-deb strips the binaries it packages.
  cargo deb -p zerotrace-loader --no-build --locked -o "$out/"
fi

if [ "$want_rpm" = 1 ]; then
  ensure_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" cargo-generate-rpm
  # cargo-generate-rpm packages files as they are: strip copies, in a staging
  # target directory (its `target/release/` asset paths point there).
  stage="$out/rpm-stage"
  rm -rf "$stage"
  mkdir -p "$stage/release"
  for binary in zerotrace zerotrace-worker zerotrace-top; do
    cp "$target_dir/release/$binary" "$stage/release/$binary"
    strip --strip-unneeded "$stage/release/$binary"
  done
  rm -f "$out"/zerotrace-*.rpm
  cargo generate-rpm -p loader --target-dir "$stage" -o "$out/"
  rm -rf "$stage"
fi

say "packages in $out:"
ls -1 "$out"/*.deb "$out"/*.rpm 2>/dev/null || true
