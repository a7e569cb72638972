#!/usr/bin/env bash
# Makes sure the Python that runs tests/servers/nats_app.py exists: a venv
# over Debian's /usr/bin/python3 with nats-py (pure Python, no
# dependencies) from PyPI; Debian 12 packages no NATS client. Prints that
# interpreter's path. Used by scripts/install-deps.sh (test) and by
# tests/src/nats_server.rs. Debian's python3 refuses system-wide pip
# installs (PEP 668): hence a venv.
set -euo pipefail

venv="${ZEROTRACE_NATS_VENV:-/var/tmp/zerotrace-nats-client-1}"
python="$venv/bin/python3"

installed() {
  "$python" -c "import nats, nats.js" 2>/dev/null
}

if ! installed; then
  echo "installing nats-py 2.9.0 into $venv" >&2
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "nats-py==2.9.0" >&2
  installed || { echo "nats-py did not install" >&2; exit 1; }
fi
echo "$python"
