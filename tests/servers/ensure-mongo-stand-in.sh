#!/usr/bin/env bash
# Makes sure the Python that runs tests/servers/mongo_stand_in.py exists:
# a venv over Debian's /usr/bin/python3 (whose site-packages hold
# python3-pymongo, the `bson` MockupDB encodes with) with MockupDB and
# mongomock from PyPI. Prints that interpreter's path. Used by
# scripts/install-deps.sh (test) and by tests/src/mongo_stand_in.rs.
# Debian's python3 refuses system-wide pip installs (PEP 668): hence a venv.
set -euo pipefail

venv="${ZEROTRACE_MONGO_VENV:-/var/tmp/zerotrace-mongo-stand-in-1}"
python="$venv/bin/python3"

installed() {
  "$python" -c "import mockupdb, mongomock, bson" 2>/dev/null
}

if ! installed; then
  echo "installing mockupdb 1.8.1 and mongomock 4.3.0 into $venv" >&2
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check \
    "mockupdb==1.8.1" "mongomock==4.3.0" "sentinels==1.1.1" >&2
  installed || { echo "the MongoDB stand-in's packages did not install" >&2; exit 1; }
fi
echo "$python"
