# zerotrace container image: the loader (zerotrace) and the worker
# (zerotrace-worker) on a distroless Debian 12 base: no shell, no package
# manager. How to run it and with which privileges: docs/deployment.md.
#
#   docker build -t zerotrace .
#   docker run --rm --pid=host --cap-drop=ALL \
#     --cap-add=BPF --cap-add=PERFMON --cap-add=SETUID --cap-add=SETGID \
#     --security-opt=no-new-privileges --read-only \
#     -e OTEL_EBPF_OPEN_PORT=8080 zerotrace
#
# The base images are build arguments so a mirror or a pinned digest can be
# used: --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=...

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:latest

# --- build ------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
# The BPF programs are compiled by clang-19 in loader/build.rs; libbpf is
# built from source by libbpf-sys and needs libelf and zlib. Versions are not
# pinned: Debian 12's point releases replace them, and the builder stage does
# not ship.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang-19 llvm-19 libbpf-dev libelf-dev zlib1g-dev pkg-config gcc linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Besides the binaries: the two shared libraries the loader needs beyond the C
# runtime of the distroless cc image (check with: ldd target/release/zerotrace).
RUN cargo build --release --locked -p zerotrace-loader -p zerotrace-worker \
 && mkdir -p /out/usr/bin /out/usr/lib/x86_64-linux-gnu \
 && cp target/release/zerotrace target/release/zerotrace-worker /out/usr/bin/ \
 && strip --strip-unneeded /out/usr/bin/zerotrace /out/usr/bin/zerotrace-worker \
 && cp -L /usr/lib/x86_64-linux-gnu/libelf.so.1 /lib/x86_64-linux-gnu/libz.so.1 \
      /out/usr/lib/x86_64-linux-gnu/

# --- run --------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=builder /out/ /
# The loader runs as uid 0 *in the host's user namespace*, holding only the
# capabilities the container is given (BPF, PERFMON, SETUID, SETGID: cap_add
# in docker-compose.yml, capabilities.add in the Kubernetes DaemonSet); it
# starts the worker as uid/gid 60999, a uid of its own, with no capabilities
# and no_new_privs. Not distroless's "nonroot" (65532) nor nobody (65534):
# other images' processes run as those, and with --pid=host any process of
# the worker's uid could otherwise read its memory (docs/deployment.md says
# why this number). A non-root loader would get no capabilities at all:
# container runtimes put cap_add into the bounding set, and only uid 0
# receives them.
# hadolint ignore=DL3002
USER 0:0
# --live-socket none: the loader would chown /run/zerotrace to the worker's
# user, which needs CAP_CHOWN and CAP_FOWNER (see docs/deployment.md).
ENTRYPOINT ["/usr/bin/zerotrace", "run", "--worker-user", "60999", "--live-socket", "none"]
