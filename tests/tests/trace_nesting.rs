//! In-process nesting: a client call a process makes while serving a
//! request is that request's server span's child, and with the links across
//! processes a chain of services is one trace — checked on what the agent
//! exports over OTLP, decoded with opentelemetry-proto. Where a runtime
//! serves many requests on one thread (Node's event loop, nginx) a call is
//! linked only when one request could hold it: never a wrong parent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use zerotrace_integration_tests::go_build::{go_binary, Build};
use zerotrace_integration_tests::otlp_receiver::{attr_int, attr_str, hex, OtlpReceiver};
use zerotrace_integration_tests::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One exported span, as the assertions need it.
#[derive(Debug, Clone)]
struct Exported {
    pid: i64,
    kind: i32,
    name: String,
    path: String,
    /// `db.query.text`, for database calls.
    query: String,
    trace: String,
    id: String,
    parent: Option<String>,
}

fn exported(receiver: &OtlpReceiver) -> Vec<Exported> {
    receiver
        .spans()
        .into_iter()
        .map(|(resource, span)| Exported {
            pid: resource
                .get("process.pid")
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
            kind: span.kind,
            name: span.name.clone(),
            path: attr_str(&span.attributes, "url.path").unwrap_or_default(),
            query: attr_str(&span.attributes, "db.query.text").unwrap_or_default(),
            trace: hex(&span.trace_id),
            id: hex(&span.span_id),
            parent: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        })
        .collect()
}

fn is(kind: SpanKind) -> impl Fn(&&Exported) -> bool {
    move |s| s.kind == kind as i32
}

/// The one span of `pid` and `kind` whose path is `path`.
fn one<'a>(spans: &'a [Exported], pid: u32, kind: SpanKind, path: &str) -> &'a Exported {
    let found: Vec<&Exported> = spans
        .iter()
        .filter(is(kind))
        .filter(|s| s.pid == i64::from(pid) && s.path == path)
        .collect();
    assert_eq!(found.len(), 1, "{kind:?} {path} of {pid}: {spans:#?}");
    found[0]
}

fn assert_child(child: &Exported, parent: &Exported) {
    assert_eq!(
        child.trace, parent.trace,
        "same trace:\n{child:#?}\n{parent:#?}"
    );
    assert_eq!(
        child.parent.as_deref(),
        Some(parent.id.as_str()),
        "parent:\n{child:#?}\n{parent:#?}"
    );
}

/// An agent instrumenting `ports`, exporting to `receiver`, with its
/// Prometheus endpoint on the returned port.
fn agent_for(ports: &[u16], receiver: &OtlpReceiver) -> (Agent, u16) {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let metrics_port = free_port();
    let endpoint = receiver.endpoint();
    let agent = Agent::start(
        &["--open-port", &ports.join(",")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
        ],
    );
    (agent, metrics_port)
}

/// Waits until `count` spans matching `predicate` were exported, then for
/// the held ones to follow.
fn wait_spans(
    receiver: &OtlpReceiver,
    count: usize,
    predicate: impl Fn(&Exported) -> bool,
) -> Vec<Exported> {
    let found = wait_for(Duration::from_secs(15), || {
        let spans = exported(receiver);
        (spans.iter().filter(|s| predicate(s)).count() >= count).then_some(())
    });
    // Spans held for a parent go out within the link wait (500 ms).
    std::thread::sleep(Duration::from_millis(1_200));
    let spans = exported(receiver);
    assert!(found.is_some(), "fewer than {count} spans: {spans:#?}");
    spans
}

/// `zerotrace_<name>_total` (with `labels`) from the Prometheus endpoint.
fn counter(metrics_port: u16, name: &str, labels: &str) -> u64 {
    let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let prefix = format!("zerotrace_{name}_total{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

/// `zerotrace_traces_unlinked_total` for each of `reasons`.
fn unlinked_counts(metrics_port: u16, reasons: &[&'static str]) -> Vec<(&'static str, u64)> {
    reasons
        .iter()
        .map(|&r| {
            let labels = format!("{{reason=\"{r}\"}}");
            (r, counter(metrics_port, "traces_unlinked", &labels))
        })
        .collect()
}

/// The linker counted each of `roots` calls it left without a parent.
fn assert_every_root_counted(metrics_port: u16, roots: usize) {
    let reasons = ["ambiguous_parent", "parent_still_open", "no_parent"];
    let unlinked: u64 = unlinked_counts(metrics_port, &reasons)
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(unlinked as usize, roots, "every root is counted");
}

/// A server process killed on drop, started when it said "listening" or
/// its port accepts.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[&str], port: u16) -> Started {
    start_with_env(program, args, &[], port)
}

fn start_with_env(program: &str, args: &[&str], env: &[(&str, &str)], port: u16) -> Started {
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let up = wait_for(Duration::from_secs(15), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "{program} {args:?} never listened on {port}");
    Started(child)
}

/// `n` requests to the URLs `url(i)` at once, each on its own connection.
fn concurrently(n: usize, url: impl Fn(usize) -> String + Sync) {
    std::thread::scope(|scope| {
        for i in 0..n {
            let url = &url;
            scope.spawn(move || curl(&[&url(i)]));
        }
    });
}

#[test]
fn python_chains_of_two_and_three_services_are_one_trace_each_with_every_parent_right() {
    require_root();
    let (a, b, c) = (
        Server::python_app(),
        Server::python_app(),
        Server::python_app(),
    );
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[a.port, b.port, c.port], &receiver);
    for i in 0..3 {
        curl(&[&a.url(&format!("/call/{}/id/two-{i}", b.port))]);
        let path = format!("/call/{}/call/{}/id/three-{i}", b.port, c.port);
        assert!(curl(&[&a.url(&path)]).starts_with("called: called: id"));
    }
    // Two-hop: 3 spans per request; three-hop: 5.
    let spans = wait_spans(&receiver, 24, |_| true);
    for i in 0..3 {
        let leaf = format!("/id/two-{i}");
        let at_a = one(
            &spans,
            a.pid(),
            SpanKind::Server,
            &format!("/call/{}{leaf}", b.port),
        );
        let to_b = one(&spans, a.pid(), SpanKind::Client, &leaf);
        let at_b = one(&spans, b.pid(), SpanKind::Server, &leaf);
        assert_eq!(at_a.parent, None, "curl is not instrumented: {at_a:#?}");
        assert_child(to_b, at_a);
        assert_child(at_b, to_b);

        let leaf = format!("/id/three-{i}");
        let middle = format!("/call/{}{leaf}", c.port);
        let at_a = one(
            &spans,
            a.pid(),
            SpanKind::Server,
            &format!("/call/{}{middle}", b.port),
        );
        let to_b = one(&spans, a.pid(), SpanKind::Client, &middle);
        let at_b = one(&spans, b.pid(), SpanKind::Server, &middle);
        let to_c = one(&spans, b.pid(), SpanKind::Client, &leaf);
        let at_c = one(&spans, c.pid(), SpanKind::Server, &leaf);
        assert_eq!(at_a.parent, None);
        assert_child(to_b, at_a);
        assert_child(at_b, to_b);
        assert_child(to_c, at_b);
        assert_child(at_c, to_c);
    }
    assert_eq!(counter(metrics_port, "traces_nested", ""), 9);
    assert_eq!(counter(metrics_port, "traces_linked", ""), 9);
    drop(agent);
}

#[test]
fn twenty_concurrent_chains_each_keep_their_own_parents() {
    require_root();
    let (a, b) = (Server::python_app(), Server::python_app());
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[a.port, b.port], &receiver);
    concurrently(20, |i| a.url(&format!("/call/{}/id/chain-{i}", b.port)));
    let spans = wait_spans(&receiver, 60, |_| true);
    let reasons = unlinked_counts(
        metrics_port,
        &["ambiguous_parent", "no_parent", "parent_still_open"],
    );
    eprintln!("20 chains: roots by reason: {reasons:?}");
    for i in 0..20 {
        let leaf = format!("/id/chain-{i}");
        let at_a = one(
            &spans,
            a.pid(),
            SpanKind::Server,
            &format!("/call/{}{leaf}", b.port),
        );
        let to_b = one(&spans, a.pid(), SpanKind::Client, &leaf);
        let at_b = one(&spans, b.pid(), SpanKind::Server, &leaf);
        assert_child(to_b, at_a);
        assert_child(at_b, to_b);
    }
    assert_eq!(counter(metrics_port, "traces_nested", ""), 20);
    drop(agent);
}

#[test]
fn a_traceparent_from_curl_continues_through_two_hops() {
    require_root();
    let (a, b, c) = (
        Server::python_app(),
        Server::python_app(),
        Server::python_app(),
    );
    let receiver = OtlpReceiver::start_grpc();
    let (agent, _) = agent_for(&[a.port, b.port, c.port], &receiver);
    let path = format!("/call/{}/call/{}/id/context", b.port, c.port);
    curl(&["-H", &format!("traceparent: {TRACEPARENT}"), &a.url(&path)]);
    let spans = wait_spans(&receiver, 5, |_| true);
    let middle = format!("/call/{}/id/context", c.port);
    let at_a = one(&spans, a.pid(), SpanKind::Server, &path);
    assert_eq!(at_a.trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(at_a.parent.as_deref(), Some("00f067aa0ba902b7"));
    let to_b = one(&spans, a.pid(), SpanKind::Client, &middle);
    let at_b = one(&spans, b.pid(), SpanKind::Server, &middle);
    let to_c = one(&spans, b.pid(), SpanKind::Client, "/id/context");
    let at_c = one(&spans, c.pid(), SpanKind::Server, "/id/context");
    assert_child(to_b, at_a);
    assert_child(at_b, to_b);
    assert_child(to_c, at_b);
    assert_child(at_c, to_c);
    drop(agent);
}

/// Every call `caller` made is a root or the child of the one server span
/// whose path names the same request: (linked, roots).
fn never_a_wrong_parent(
    spans: &[Exported],
    caller: u32,
    leaf_of: impl Fn(&str) -> Option<String>,
) -> (usize, usize) {
    let servers: BTreeMap<&str, &Exported> = spans
        .iter()
        .filter(is(SpanKind::Server))
        .filter(|s| s.pid == i64::from(caller))
        .map(|s| (s.id.as_str(), s))
        .collect();
    let (mut linked, mut roots) = (0, 0);
    for call in spans
        .iter()
        .filter(is(SpanKind::Client))
        .filter(|s| s.pid == i64::from(caller))
    {
        let Some(parent) = &call.parent else {
            roots += 1;
            continue;
        };
        let server = servers
            .get(parent.as_str())
            .unwrap_or_else(|| panic!("parent of {call:#?} is no server span of its process"));
        assert_eq!(
            leaf_of(&server.path).as_deref(),
            Some(call.path.as_str()),
            "wrong parent:\n{call:#?}\n{server:#?}"
        );
        assert_eq!(call.trace, server.trace);
        linked += 1;
    }
    (linked, roots)
}

#[test]
fn a_grpcio_server_calling_http_while_serving_nests_the_call_or_leaves_it_a_root() {
    require_root();
    let b = Server::python_app();
    let grpc_port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/grpc_app.py");
    let script = script.to_string_lossy();
    let _grpc = start(
        "/usr/bin/python3",
        &[&script, "server", &grpc_port.to_string()],
        grpc_port,
    );
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[grpc_port, b.port], &receiver);
    let mut client = Command::new("/usr/bin/python3")
        .args([&script, "client-fetch", &grpc_port.to_string()])
        .arg(format!("{}/id/grpc", b.port))
        .arg("4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("grpc client: {e}"));
    if let Some(stdin) = client.stdin.as_mut() {
        let _ = writeln!(stdin, "go");
    }
    let mut out = String::new();
    if let Some(stdout) = client.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    let _ = client.wait();
    assert_eq!(out.matches("Fetch OK id grpc/").count(), 4, "{out}");
    let spans = wait_spans(&receiver, 4, |s| {
        s.kind == SpanKind::Server as i32 && s.name.ends_with("Fetch")
    });
    let grpc_pid = spans
        .iter()
        .find(|s| s.name.ends_with("Fetch"))
        .map(|s| s.pid)
        .unwrap_or(-1);
    let fetches: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.pid == grpc_pid && s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(fetches.len(), 4, "{spans:#?}");
    let calls: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.pid == grpc_pid && s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(calls.len(), 4, "{spans:#?}");
    // A call's parent, if any, is a Fetch span, and no two calls share one.
    let mut parents: Vec<&str> = calls.iter().filter_map(|c| c.parent.as_deref()).collect();
    for parent in &parents {
        let fetch = fetches
            .iter()
            .find(|f| f.id == *parent)
            .unwrap_or_else(|| panic!("parent {parent} is no Fetch span: {spans:#?}"));
        assert!(calls
            .iter()
            .any(|c| c.parent.as_deref() == Some(parent) && c.trace == fetch.trace));
    }
    let linked = parents.len();
    parents.sort_unstable();
    parents.dedup();
    assert_eq!(
        parents.len(),
        linked,
        "two calls under one Fetch: {spans:#?}"
    );
    let nested = counter(metrics_port, "traces_nested", "");
    let reasons = unlinked_counts(
        metrics_port,
        &["ambiguous_parent", "no_parent", "parent_still_open"],
    );
    eprintln!("grpcio: {linked} of 4 calls nested; roots by reason: {reasons:?}");
    assert_eq!(nested as usize, linked);
    // The server spans of B follow their caller's trace.
    for call in &calls {
        let at_b = one(&spans, b.pid(), SpanKind::Server, &call.path);
        assert_child(at_b, call);
    }
    let _ = attr_int;
    drop(agent);
}

#[test]
fn a_node_event_loop_under_concurrent_load_is_never_given_a_wrong_parent() {
    require_root();
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node is not installed: skipping");
        return;
    }
    let b = Server::python_app();
    let node_port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/servers/http_chain.js");
    let node = start("node", &[script, &node_port.to_string()], node_port);
    let node_pid = node.0.id();
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[node_port, b.port], &receiver);
    // One request alone, then 20 at once.
    curl(&[&format!(
        "http://127.0.0.1:{node_port}/call/{}/id/node-alone",
        b.port
    )]);
    concurrently(20, |i| {
        format!("http://127.0.0.1:{node_port}/call/{}/id/node-{i}", b.port)
    });
    let spans = wait_spans(&receiver, 63, |_| true);
    let prefix = format!("/call/{}", b.port);
    let (linked, roots) = never_a_wrong_parent(&spans, node_pid, |path| {
        path.strip_prefix(&prefix).map(str::to_owned)
    });
    eprintln!("node: {linked} calls nested, {roots} left roots");
    assert_eq!(linked + roots, 21);
    assert!(
        linked >= 1,
        "a request alone on the loop is nested: {spans:#?}"
    );
    assert_every_root_counted(metrics_port, roots);
    drop(agent);
}

/// The JDK's HttpServer with a pool of 8 threads, each request served on
/// one thread, calling out with `HttpURLConnection` on that thread (its
/// keep-alive connections shared by every thread of the pool): every call is
/// its own request's child, one alone and 20 at once.
#[test]
fn java_calls_on_the_serving_thread_under_concurrent_load_are_each_their_own_request_s_children() {
    require_root();
    let b = Server::python_app();
    let java_port = free_port();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/servers/HttpApp.java");
    let java = start("java", &[source, &java_port.to_string()], java_port);
    let java_pid = java.0.id();
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[java_port, b.port], &receiver);
    let alone = curl(&[&format!(
        "http://127.0.0.1:{java_port}/call/{}/id/java-alone",
        b.port
    )]);
    assert!(alone.starts_with("called: id"), "{alone}");
    concurrently(20, |i| {
        format!("http://127.0.0.1:{java_port}/call/{}/id/java-{i}", b.port)
    });
    let spans = wait_spans(&receiver, 63, |_| true);
    let prefix = format!("/call/{}", b.port);
    let (linked, roots) = never_a_wrong_parent(&spans, java_pid, |path| {
        path.strip_prefix(&prefix).map(str::to_owned)
    });
    assert_eq!(
        (linked, roots),
        (21, 0),
        "a thread per request: every call nested: {spans:#?}"
    );
    // Across processes too: each call's server span at b is its child.
    for call in spans
        .iter()
        .filter(is(SpanKind::Client))
        .filter(|s| s.pid == i64::from(java_pid))
    {
        let at_b = one(&spans, b.pid(), SpanKind::Server, &call.path);
        assert_child(at_b, call);
    }
    assert_every_root_counted(metrics_port, 0);
    drop(agent);
}

#[test]
fn nginx_proxying_to_python_is_never_given_a_wrong_parent() {
    require_root();
    let upstream = Server::python_app();
    let port = free_port();
    let nginx = Nginx::start(
        "nesting",
        port,
        &format!(
            "listen 127.0.0.1:{port};\nlocation / {{ proxy_pass http://127.0.0.1:{}; }}",
            upstream.port
        ),
    );
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[port, upstream.port], &receiver);
    curl(&[&format!("http://127.0.0.1:{port}/id/nginx-alone")]);
    concurrently(20, |i| format!("http://127.0.0.1:{port}/id/nginx-{i}"));
    let spans = wait_spans(&receiver, 63, |_| true);
    let workers = children_of(nginx.child.id());
    let (mut linked, mut roots) = (0, 0);
    for worker in workers {
        let (l, r) = never_a_wrong_parent(&spans, worker, |path| Some(path.to_owned()));
        linked += l;
        roots += r;
    }
    eprintln!("nginx: {linked} calls nested, {roots} left roots");
    assert_eq!(linked + roots, 21, "{spans:#?}");
    assert!(
        linked >= 1,
        "a request alone in its worker is nested: {spans:#?}"
    );
    assert_every_root_counted(metrics_port, roots);
    drop(agent);
}

/// A Redis server and `tests/servers/go_cache_caller` calling it, over
/// HTTPS when given a certificate; both killed on drop.
struct GoCacheCaller {
    server: Started,
    _backend: Started,
    /// The backend's certificate, which the Go program reads when it first
    /// verifies one.
    _trusted: Option<Certificate>,
    port: u16,
}

/// What go_cache_caller's handler calls.
enum GoBackend {
    Redis,
    /// A Python HTTP/1.1 server answering `/echo/KEY` with KEY, called with
    /// net/http's client.
    Http,
    /// The same over TLS (HTTP/1.1: the server offers no h2), with this
    /// certificate, which the Go program trusts through SSL_CERT_FILE.
    Https(Certificate),
}

/// Answers `GET /echo/KEY` with `KEY\n`, keep-alive, a thread per connection;
/// over TLS when given a certificate and key.
const ECHO_SERVER: &str = r#"
import http.server, sys
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = self.path.rsplit("/", 1)[-1].encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo)
if len(sys.argv) > 3:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

impl GoCacheCaller {
    fn start(certificate: Option<&Certificate>) -> GoCacheCaller {
        Self::start_with(GoBackend::Redis, certificate)
    }

    fn start_with(backend_kind: GoBackend, certificate: Option<&Certificate>) -> GoCacheCaller {
        let backend_port = free_port();
        let backend_port_arg = backend_port.to_string();
        let trusted = match &backend_kind {
            GoBackend::Https(certificate) => Some(certificate.cert.clone()),
            _ => None,
        };
        let (backend, backend_address) = match &backend_kind {
            GoBackend::Redis => (
                start(
                    "redis-server",
                    &[
                        "--port",
                        &backend_port_arg,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    backend_port,
                ),
                format!("127.0.0.1:{backend_port}"),
            ),
            GoBackend::Http => (
                start(
                    "/usr/bin/python3",
                    &["-c", ECHO_SERVER, &backend_port_arg],
                    backend_port,
                ),
                format!("http://127.0.0.1:{backend_port}"),
            ),
            GoBackend::Https(certificate) => (
                start(
                    "/usr/bin/python3",
                    &[
                        "-c",
                        ECHO_SERVER,
                        &backend_port_arg,
                        &certificate.cert,
                        &certificate.key,
                    ],
                    backend_port,
                ),
                format!("https://127.0.0.1:{backend_port}"),
            ),
        };
        let port = free_port();
        let binary = go_binary("go_cache_caller", Build::Plain);
        let mut args = vec![format!("127.0.0.1:{port}"), backend_address];
        if let Some(certificate) = certificate {
            args.extend([certificate.cert.clone(), certificate.key.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = trusted
            .as_deref()
            .map(|cert| ("SSL_CERT_FILE", cert))
            .into_iter()
            .collect();
        let server = start_with_env(&binary.to_string_lossy(), &args, &env, port);
        GoCacheCaller {
            server,
            _backend: backend,
            _trusted: match backend_kind {
                GoBackend::Https(certificate) => Some(certificate),
                _ => None,
            },
            port,
        }
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }
}

/// `pid`'s server spans by id, and its client spans.
fn servers_and_calls(spans: &[Exported], pid: u32) -> (BTreeMap<&str, &Exported>, Vec<&Exported>) {
    let of_pid = |kind| {
        spans
            .iter()
            .filter(is(kind))
            .filter(move |s| s.pid == i64::from(pid))
    };
    let servers = of_pid(SpanKind::Server)
        .map(|s| (s.id.as_str(), s))
        .collect();
    (servers, of_pid(SpanKind::Client).collect())
}

/// The key a cache call of go_cache_caller names (`SET k:<key> ?`, `GET k:<key>`).
fn cache_key(call: &Exported) -> Option<&str> {
    let rest = call
        .query
        .strip_prefix("SET k:")
        .or_else(|| call.query.strip_prefix("GET k:"))?;
    rest.split(' ').next()
}

/// 16 keep-alive clients, 25 requests each, to `/item/<client>-<request>`.
const GO_CLIENTS: usize = 16;
const GO_REQUESTS: usize = 25;
/// 8 clients opening a connection per request, 50 each, to `/item/c<client>-<request>`.
const GO_CHURN_CLIENTS: usize = 8;
const GO_CHURN_REQUESTS: usize = 50;

/// A Go server's handler calling Redis on its own goroutine, as database
/// drivers do, under concurrent keep-alive clients and clients opening a
/// connection per request: once the worker knows the program is Go the
/// kernel names its goroutines instead of its threads, so each of the 1,600
/// calls is its own request's child. (With threads, which goroutines move
/// between and share, a call inside several open requests could belong to
/// any: most were left roots, as ambiguous.) The new connections matter: Go
/// reads a keep-alive connection's next first byte on a short-lived
/// goroutine, whose address a new connection's goroutine soon takes while
/// that request is open; telling goroutines by that name made the process
/// look multiplexing, and most calls ambiguous (CI, 2026-12-06; by hand,
/// three runs of three before the fix).
#[test]
fn a_go_handler_s_cache_calls_under_concurrent_load_are_each_their_own_request_s_children() {
    go_calls_under_concurrent_load_are_each_their_own_request_s_children(GoBackend::Redis);
}

/// The handler calls another HTTP server with net/http's client instead,
/// which writes each request from its connection's `writeLoop` goroutine
/// and reads the answer on `readLoop`: the loader's hooks on the client
/// connection tell the kernel which goroutine called, and each of the 800
/// calls is its own request's child. (Without them every call was a root,
/// `no_parent`: 600 of 600 by hand.)
#[test]
fn a_go_handler_s_net_http_client_calls_under_concurrent_load_are_each_their_own_request_s_children(
) {
    go_calls_under_concurrent_load_are_each_their_own_request_s_children(GoBackend::Http);
}

/// The same calls over HTTPS: net/http's client writes through
/// `crypto/tls` on the connection's `writeLoop` goroutine, whose plaintext
/// (the Go TLS hooks) is named after the calling goroutine too.
#[test]
fn a_go_handler_s_https_client_calls_under_concurrent_load_are_each_their_own_request_s_children() {
    go_calls_under_concurrent_load_are_each_their_own_request_s_children(GoBackend::Https(
        Certificate::new("go-client"),
    ));
}

/// The key a call of go_cache_caller names: `SET k:<key> ?` and `GET
/// k:<key>` to Redis, `/echo/<key>` over HTTP.
fn call_key(call: &Exported) -> Option<&str> {
    cache_key(call).or_else(|| call.path.strip_prefix("/echo/"))
}

fn go_calls_under_concurrent_load_are_each_their_own_request_s_children(backend: GoBackend) {
    require_root();
    let calls_per_request = match backend {
        GoBackend::Redis => 2,
        GoBackend::Http | GoBackend::Https(_) => 1,
    };
    let http_client = !matches!(backend, GoBackend::Redis);
    let caller = GoCacheCaller::start_with(backend, None);
    let (port, pid) = (caller.port, caller.pid());
    let receiver = OtlpReceiver::start_grpc();
    let (agent, metrics_port) = agent_for(&[port], &receiver);
    // The Go TLS hooks' answer is what tells the worker the program is Go.
    agent.wait_for_tls_hooks_through(pid, "Go crypto/tls");
    if http_client {
        let needle = format!("net/http client calls of pid {pid} are named");
        assert!(
            agent.stderr.text().contains(&needle),
            "no client hooks: {}",
            agent.stderr.text()
        );
    }
    let script = r#"
import http.client, sys, threading
port, clients, requests, churners, churns = (int(a) for a in sys.argv[1:])
def get(c, key):
    c.request("GET", "/item/" + key)
    r = c.getresponse()
    assert r.status == 200 and r.read() == key.encode() + b"\n"
def run(t):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(requests):
        get(c, "%d-%d" % (t, i))
def churn(t):
    for i in range(churns):
        c = http.client.HTTPConnection("127.0.0.1", port)
        get(c, "c%d-%d" % (t, i))
        c.close()
threads = [threading.Thread(target=run, args=(t,)) for t in range(clients)]
threads += [threading.Thread(target=churn, args=(t,)) for t in range(churners)]
[t.start() for t in threads]
[t.join() for t in threads]
"#;
    let client = Command::new("/usr/bin/python3")
        .args(["-c", script, &port.to_string()])
        .args([GO_CLIENTS, GO_REQUESTS, GO_CHURN_CLIENTS, GO_CHURN_REQUESTS].map(|n| n.to_string()))
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(client.status.success(), "client: {client:?}");
    let requests = GO_CLIENTS * GO_REQUESTS + GO_CHURN_CLIENTS * GO_CHURN_REQUESTS;
    let spans = wait_spans(&receiver, (1 + calls_per_request) * requests, |s| {
        s.pid == i64::from(pid)
    });
    let (servers, calls) = servers_and_calls(&spans, pid);
    assert_eq!(
        (servers.len(), calls.len()),
        (requests, calls_per_request * requests)
    );
    let roots: Vec<&str> = calls
        .iter()
        .filter(|call| {
            call.parent
                .as_deref()
                .is_none_or(|id| !servers.contains_key(id))
        })
        .map(|call| call_key(call).unwrap_or(&call.name))
        .collect();
    let unlinked = unlinked_counts(
        metrics_port,
        &[
            "ambiguous_parent",
            "parent_still_open",
            "no_parent",
            "held_limit",
        ],
    );
    // Every call nested, with a margin of one in 200 left a root: under busy
    // loops, 2 runs in about 27 had one call with no parent, decided before
    // its request was answered when Go had read that request's first byte
    // on another goroutine (fixed, and unit-tested in traces/tests.rs; 16
    // strict runs of 16 after). Never a process judged multiplexing (most
    // calls ambiguous, as before that fix). If not, what the linker said.
    let said: Vec<String> = agent
        .stderr
        .text()
        .lines()
        .filter(|l| l.contains(&format!("pid {pid} ")))
        .map(str::to_owned)
        .collect();
    let ambiguous = unlinked
        .iter()
        .find(|(reason, _)| *reason == "ambiguous_parent")
        .map_or(0, |(_, count)| *count);
    assert!(
        roots.len() <= calls.len() / 200 && ambiguous == 0,
        "{} roots, first {:?}; unlinked: {unlinked:?}; the agent on pid {pid}:\n{}",
        roots.len(),
        &roots[..roots.len().min(20)],
        said.join("\n")
    );
    for call in &calls {
        let Some(parent) = call.parent.as_deref().and_then(|id| servers.get(id)) else {
            continue;
        };
        assert_child(call, parent);
        // The calls of the request for /item/<key> name <key>.
        let key = parent.path.trim_start_matches("/item/");
        assert_eq!(
            call_key(call),
            Some(key),
            "another request's call: {call:#?}\n{parent:#?}"
        );
    }
    assert_eq!(
        counter(metrics_port, "traces_nested", ""),
        (calls_per_request * requests - roots.len()) as u64
    );
    drop(agent);
}

/// The same server over HTTPS and h2 (h2load: 8 connections of 8 streams,
/// 40 paths): net/http2 runs each handler on a goroutine of its own, so the
/// calls are left roots, never put under another request; and each is
/// exported. A GOAWAY net/http2 writes once its connection is closed had no
/// socket behind its `tls.Conn` and was tied to the thread's last socket, a
/// Redis connection of another goroutine, whose first exchange was then
/// lost (in about half the runs, before Go TLS writes stopped falling back).
#[test]
fn a_go_h2_server_s_cache_calls_are_each_exported_and_never_under_another_request() {
    require_root();
    let certificate = Certificate::new("go-cache-caller");
    let caller = GoCacheCaller::start(Some(&certificate));
    let (port, pid) = (caller.port, caller.pid());
    let receiver = OtlpReceiver::start_grpc();
    let (agent, _) = agent_for(&[port], &receiver);
    agent.wait_for_tls_hooks_through(pid, "Go crypto/tls");
    let mut args: Vec<String> = ["-n", "400", "-c", "8", "-m", "8"]
        .map(String::from)
        .to_vec();
    args.extend((0..40).map(|i| format!("https://127.0.0.1:{port}/item/h2-{i}")));
    h2load(&args, &["400 succeeded"]);
    let spans = wait_spans(&receiver, 1_200, |s| s.pid == i64::from(pid));
    let (servers, calls) = servers_and_calls(&spans, pid);
    assert_eq!((servers.len(), calls.len()), (400, 800), "{calls:#?}");
    // Each request's key in one SET and one GET.
    let mut keys: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for server in servers.values() {
        keys.entry(server.path.trim_start_matches("/item/"))
            .or_default()
            .0 += 2;
    }
    for call in &calls {
        let key = cache_key(call).unwrap_or_else(|| panic!("{call:#?}"));
        keys.entry(key).or_default().1 += 1;
        if let Some(parent) = call.parent.as_deref().and_then(|id| servers.get(id)) {
            assert_child(call, parent);
            assert_eq!(parent.path.trim_start_matches("/item/"), key, "{call:#?}");
        }
    }
    assert!(keys.values().all(|(asked, made)| asked == made), "{keys:?}");
    drop(agent);
}
