#!/usr/bin/env bash
# Makes sure a Python with opentelemetry-semantic-conventions (the version the
# agent's names are checked against) exists, installing it from PyPI into a
# venv when missing, and prints that interpreter's path. Used by
# scripts/install-deps.sh (test) and by the semconv e2e test.
# Debian's python3 refuses system-wide pip installs (PEP 668): hence a venv.
set -euo pipefail

version="0.66b2"
venv="${ZEROTRACE_SEMCONV_VENV:-/var/tmp/zerotrace-semconv-$version}"
python="$venv/bin/python3"

installed() {
  "$python" -c "from importlib import metadata; import sys; sys.exit(metadata.version('opentelemetry-semantic-conventions') != '$version')" 2>/dev/null
}

if ! installed; then
  echo "installing opentelemetry-semantic-conventions==$version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check \
    "opentelemetry-semantic-conventions==$version" >&2
  installed || { echo "opentelemetry-semantic-conventions==$version did not install" >&2; exit 1; }
fi
echo "$python"
