#!/usr/bin/env bash
# Makes sure a Python with opentelemetry-semantic-conventions (the version the
# agent's names are checked against) and the opentelemetry-sdk of the same
# release (the reference the exponential histograms are checked against)
# exists, installing them from PyPI into a venv when missing, and prints that
# interpreter's path. Used by scripts/install-deps.sh (test) and by the e2e
# tests that read them (tests/src/semconv.rs, tests/src/otel_sdk.rs).
# Debian's python3 refuses system-wide pip installs (PEP 668): hence a venv.
set -euo pipefail

version="0.66b2"
sdk_version="1.45.2"   # the SDK release that pins semantic conventions $version
venv="${ZEROTRACE_SEMCONV_VENV:-/var/tmp/zerotrace-semconv-$version-sdk-$sdk_version}"
python="$venv/bin/python3"

installed() {
  "$python" -c "from importlib import metadata; import sys; sys.exit(metadata.version('opentelemetry-semantic-conventions') != '$version' or metadata.version('opentelemetry-sdk') != '$sdk_version')" 2>/dev/null
}

if ! installed; then
  echo "installing opentelemetry-semantic-conventions==$version and opentelemetry-sdk==$sdk_version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check \
    "opentelemetry-semantic-conventions==$version" "opentelemetry-sdk==$sdk_version" >&2
  installed || { echo "opentelemetry-semantic-conventions==$version or opentelemetry-sdk==$sdk_version did not install" >&2; exit 1; }
fi
echo "$python"
