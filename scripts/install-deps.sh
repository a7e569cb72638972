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
  packages+=(python3-websockets)  # tests: a real WebSocket server and client (tests/servers/ws_echo.py)
  packages+=(python3-venv)    # tests: the venv tests/semconv/ensure-venv.sh installs semantic conventions into
  packages+=(golang-go)  # tests: Go programs built by gobin/tests (crypto/tls hook points, stripped and not)
  # tests/tests/databases.rs: servers it starts itself (tests/src/db_servers.rs) and their clients
  # (python3-psycopg is psycopg 3: the extended protocol with server-side parameters).
  packages+=(postgresql postgresql-client mariadb-server mariadb-client redis-server redis-tools memcached)
  packages+=(python3-psycopg2 python3-psycopg python3-pymysql python3-redis python3-pymemcache)
  packages+=(libdbd-mariadb-perl)  # tests: MySQL server-side prepared statements (tests/servers/db_prepare.pl)
  packages+=(python3-kafka)  # tests/tests/kafka.rs: kafka-python, the client of tests/servers/kafka_app.py
  packages+=(python3-pymongo)  # tests/tests/mongodb.rs: pymongo, the client of tests/servers/mongo_app.py
  packages+=(mosquitto python3-paho-mqtt)  # tests/tests/mqtt.rs: the broker, and the client of tests/servers/mqtt_app.py
  packages+=(rabbitmq-server python3-pika)  # tests/tests/amqp.rs: RabbitMQ, and the client of tests/servers/amqp_app.py
  packages+=(nats-server)  # tests/tests/nats.rs: the server (its client, nats-py, comes from PyPI below)
  packages+=(g++)  # scripts/test.sh checks the fuzz targets: libfuzzer-sys builds libFuzzer (C++)
  packages+=(nodejs)  # tests: Node.js servers (tests/servers/*.js); the tests that need it skip without it
  packages+=(openjdk-17-jre-headless)  # tests/tests/resource_attributes.rs: a Java server (tests/servers/HttpApp.java)
  packages+=(libpostgresql-jdbc-java)  # tests/tests/databases.rs: pgjdbc, the driver of tests/servers/JdbcClient.java
  packages+=(libspymemcached-java)  # tests/tests/databases.rs: spymemcached, the client of tests/servers/SpyClient.java
  packages+=(libmariadb-java)  # tests/tests/databases.rs: MariaDB Connector/J, the driver of tests/servers/MariadbJdbcClient.java
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
  # The database packages would start system instances on the default ports (or fail to, without
  # systemd): the tests start their own, so installing starts no service (policy-rc.d 101).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT   # ours only, also when apt-get fails or is interrupted
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "test" ]; then
  # The OpenTelemetry semantic conventions every exported name is checked against (from PyPI).
  "$(dirname "$0")/../tests/semconv/ensure-venv.sh" >/dev/null
  # The MongoDB stand-in (MockupDB and mongomock from PyPI, over Debian's pymongo): no MongoDB
  # server is installable from the package registries (tests/servers/mongo_stand_in.py).
  "$(dirname "$0")/../tests/servers/ensure-mongo-stand-in.sh" >/dev/null
  # nats-py from PyPI, the client of tests/servers/nats_app.py: Debian 12 packages no NATS client.
  "$(dirname "$0")/../tests/servers/ensure-nats-client.sh" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
if [ "${1:-}" = "test" ]; then
  # tests/tests/kafka.rs: tansu, an Apache Kafka-compatible broker (crates.io; no Debian package).
  # Built once (~15 min); kcat is not used: librdkafka 2.0.2 fails against it.
  tansu_root=/usr/local/lib/zerotrace/tansu-0.6.0-dynostore
  if [ ! -x "$tansu_root/bin/tansu" ]; then
    echo "installing tansu 0.6.0 into $tansu_root"
    cargo install tansu --locked --version 0.6.0 --features dynostore --root "$tansu_root"
  fi
fi
