#!/usr/bin/env bash
# Installs the Debian packages zerotrace builds with, when missing; with the
# argument `test`, also those the test suite drives (a Prometheus server...).
# Needs root (apt-get). Idempotent: does nothing when all are present.
set -euo pipefail

packages=(
  clang-19 llvm-19 libbpf-dev libelf-dev zlib1g-dev pkg-config   # BPF build (loader/build.rs)
  gcc linux-libc-dev                                            # layout probe (shared/build.rs)
  curl python3 util-linux procps                                # demo and tests: clients, servers, setpriv
)
if [ "${1:-}" = "test" ]; then
  packages+=(prometheus bpftool tmux openssl nginx-light nghttp2-client python3-h2)  # tests: scraper, map dumps, terminal, certificates, h2 servers and load
  packages+=(python3-grpcio)  # tests: gRPC server and client (tests/servers/grpc_app.py, run with /usr/bin/python3)
  packages+=(postgresql postgresql-client python3-psycopg2 python3-psycopg)  # tests: PostgreSQL server, psql, libpq and extended-protocol clients
  packages+=(redis-server redis-tools python3-redis)                        # tests: Redis server, redis-cli, redis-py
  packages+=(mariadb-server mariadb-client python3-pymysql libdbd-mariadb-perl)  # tests: MariaDB server, mysql client, PyMySQL, server-side prepared statements
  packages+=(memcached python3-pymemcache)                                  # tests: memcached server and client
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
