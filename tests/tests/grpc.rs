//! gRPC end to end: real gRPC servers and clients (Python grpcio, Rust
//! tonic) in separate processes, both instrumented (the server by its port,
//! the client by its pid), exporting to the OTLP receiver: one span per
//! call on each side named `package.Service/Method` with `rpc.*`
//! attributes and the RPC conventions' status rules, and the RPC duration
//! histograms (not the HTTP ones) in OTLP and on the Prometheus endpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, HistogramDataPoint};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

const SERVICE: &str = "zerotrace.test.Echo";

/// What one call must look like: its method, its gRPC status code, and
/// whether each side's span is an error.
struct Expected {
    method: &'static str,
    code: i64,
    server_error: bool,
    client_error: bool,
}

const PYTHON_CALLS: [Expected; 7] = [
    // The connection's first call: grpc's C core writes this flight (preface,
    // SETTINGS, headers, trailers) with one sendmsg of 12 to 30 iovecs.
    Expected {
        method: "Ping",
        code: 0,
        server_error: false,
        client_error: false,
    },
    Expected {
        method: "Say",
        code: 0,
        server_error: false,
        client_error: false,
    },
    Expected {
        method: "Count",
        code: 0,
        server_error: false,
        client_error: false,
    },
    // The client gives up at its deadline (RST_STREAM after grpc-timeout).
    Expected {
        method: "Slow",
        code: 4,
        server_error: true,
        client_error: true,
    },
    // NOT_FOUND describes the request: an error for the caller only.
    Expected {
        method: "Find",
        code: 5,
        server_error: false,
        client_error: true,
    },
    // A handler that raised: UNKNOWN.
    Expected {
        method: "Crash",
        code: 2,
        server_error: true,
        client_error: true,
    },
    // Not served at all: UNIMPLEMENTED, from the framework.
    Expected {
        method: "Missing",
        code: 12,
        server_error: true,
        client_error: true,
    },
];

const TONIC_CALLS: [Expected; 4] = [
    Expected {
        method: "Say",
        code: 0,
        server_error: false,
        client_error: false,
    },
    Expected {
        method: "Count",
        code: 0,
        server_error: false,
        client_error: false,
    },
    // Answered with a trailers-only response.
    Expected {
        method: "Find",
        code: 5,
        server_error: false,
        client_error: true,
    },
    Expected {
        method: "Fail",
        code: 14,
        server_error: true,
        client_error: true,
    },
];

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/grpc_app.py")
}

fn spawn(mut command: Command) -> Process {
    let child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    Process(child)
}

/// Debian's python3 (the one python3-grpcio is installed for), running grpc_app.py.
fn python(mode: &str, port: u16) -> Command {
    let mut command = Command::new("/usr/bin/python3");
    command.arg(python_app()).arg(mode).arg(port.to_string());
    command
}

fn tonic(mode: &str, port: u16) -> Command {
    let mut command = Command::new(bin_dir().join("zerotrace-test-grpc"));
    command.arg(mode).arg(port.to_string());
    command
}

fn wait_listening(port: u16) {
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "the gRPC server never listened on {port}");
}

fn config_file(name: &str, server_port: u16, client_pid: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zt-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {server_port}\n    - target_pids: [{client_pid}]\n"
    );
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Lets the waiting client go; returns its report lines once it exited.
fn run_client(client: &mut Process) -> Vec<String> {
    let stdin = client.0.stdin.as_mut().unwrap_or_else(|| panic!("stdin"));
    stdin
        .write_all(b"go\n")
        .unwrap_or_else(|e| panic!("client stdin: {e}"));
    let exited = wait_for(Duration::from_secs(30), || {
        client.0.try_wait().ok().flatten()
    });
    assert!(exited.is_some(), "the gRPC client did not finish");
    let mut out = String::new();
    if let Some(mut stdout) = client.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    out.lines().map(str::to_owned).collect()
}

/// `rpc.method` of a span: fully qualified, `package.Service/Method`.
fn method_of(span: &Span) -> String {
    attr_str(&span.attributes, "rpc.method").unwrap_or_default()
}

/// The fully qualified `rpc.method` of one of our service's methods.
fn qualified(method: &str) -> String {
    format!("{SERVICE}/{method}")
}

/// `rpc.response.status_code`: the status code's name (`NOT_FOUND`).
fn code_name(code: i64) -> String {
    zerotrace_worker::protocols::grpc::status_name(u32::try_from(code).unwrap_or(u32::MAX))
        .into_owned()
}

/// (resource attributes, span)
type Spans = Vec<(BTreeMap<String, String>, Span)>;

/// Waits for one span per expected call on each side, then a little longer
/// to see that no call was reported twice. Spans of other calls (there
/// should be none) are returned apart.
fn rpc_spans(receiver: &OtlpReceiver, expected: &[Expected]) -> (Spans, Spans) {
    let calls = expected.len();
    let is_rpc = |s: &Span| {
        attr_str(&s.attributes, "rpc.system.name").as_deref() == Some("grpc")
            && expected.iter().any(|c| method_of(s) == qualified(c.method))
    };
    let found = receiver.wait_for_traces(Duration::from_secs(20), |traces| {
        let spans: Vec<_> = spans_of(traces)
            .into_iter()
            .filter(|(_, s)| is_rpc(s))
            .collect();
        (spans.len() >= 2 * calls).then_some(())
    });
    assert!(
        found.is_some(),
        "fewer than {} gRPC spans arrived: {:#?}",
        2 * calls,
        receiver.spans()
    );
    std::thread::sleep(Duration::from_millis(800));
    receiver.spans().into_iter().partition(|(_, s)| is_rpc(s))
}

fn check_spans(
    spans: &[(BTreeMap<String, String>, Span)],
    expected: &[Expected],
    server_pid: u32,
    client_pid: u32,
    port: u16,
) {
    assert_eq!(
        spans.len(),
        2 * expected.len(),
        "one span per call and side: {spans:#?}"
    );
    for (kind, pid) in [
        (span::SpanKind::Server, server_pid),
        (span::SpanKind::Client, client_pid),
    ] {
        for call in expected {
            let matching: Vec<&Span> = spans
                .iter()
                .filter(|(_, s)| s.kind == kind as i32 && method_of(s) == qualified(call.method))
                .map(|(resource, s)| {
                    assert_eq!(
                        resource.get("process.pid"),
                        Some(&pid.to_string()),
                        "{kind:?} span of {} from the wrong process",
                        call.method
                    );
                    s
                })
                .collect();
            assert_eq!(matching.len(), 1, "{kind:?} {}: {spans:#?}", call.method);
            let span = matching[0];
            let a = &span.attributes;
            assert_eq!(span.name, format!("{SERVICE}/{}", call.method));
            for deprecated in ["rpc.system", "rpc.service", "rpc.grpc.status_code"] {
                assert_eq!(attr_str(a, deprecated), None, "{deprecated}: {span:#?}");
                assert_eq!(attr_int(a, deprecated), None, "{deprecated}: {span:#?}");
            }
            assert_eq!(
                attr_str(a, "rpc.response.status_code"),
                Some(code_name(call.code)),
                "{kind:?} {}: {span:#?}",
                call.method
            );
            // The HTTP attributes that still apply.
            assert_eq!(attr_str(a, "http.request.method").as_deref(), Some("POST"));
            assert_eq!(
                attr_str(a, "url.path"),
                Some(format!("/{SERVICE}/{}", call.method))
            );
            assert_eq!(
                attr_str(a, "network.protocol.version").as_deref(),
                Some("2")
            );
            assert_eq!(attr_int(a, "server.port"), Some(i64::from(port)));
            let error = match kind {
                span::SpanKind::Server => call.server_error,
                _ => call.client_error,
            };
            let code = span.status.as_ref().map(|s| s.code);
            if error {
                assert_eq!(
                    code,
                    Some(status::StatusCode::Error as i32),
                    "{kind:?} {}",
                    call.method
                );
                assert!(attr_str(a, "error.type").is_some(), "{span:#?}");
            } else {
                assert_eq!(
                    code,
                    Some(status::StatusCode::Unset as i32),
                    "{kind:?} {}",
                    call.method
                );
            }
            let duration = span.end_time_unix_nano - span.start_time_unix_nano;
            if call.method == "Count" {
                // Three messages 100 ms apart: the span covers the whole stream.
                assert!(
                    duration >= 290_000_000,
                    "{kind:?} streaming span lasted {duration} ns"
                );
            }
            if call.method == "Slow" {
                // Cut at the 250 ms deadline, before its 500 ms of messages.
                assert!(
                    (200_000_000..480_000_000).contains(&duration),
                    "{kind:?} span past the deadline lasted {duration} ns"
                );
            }
            assert!(
                duration < 5_000_000_000,
                "{kind:?} {}: {duration} ns",
                call.method
            );
        }
    }
}

/// (resource attributes, unit, point)
type Point = (BTreeMap<String, String>, String, HistogramDataPoint);

fn histogram_points(metrics: &[ReceivedMetrics], name: &str) -> Vec<Point> {
    // Cumulative: the latest export of each process has everything.
    let mut latest: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for export in metrics {
        for (resource, metric) in metrics_of(std::slice::from_ref(export)) {
            if metric.name != name {
                continue;
            }
            let Some(metric::Data::Histogram(h)) = &metric.data else {
                continue;
            };
            let pid = resource.get("process.pid").cloned().unwrap_or_default();
            latest.insert(
                pid,
                h.data_points
                    .iter()
                    .map(|p| (resource.clone(), metric.unit.clone(), p.clone()))
                    .collect(),
            );
        }
    }
    latest.into_values().flatten().collect()
}

/// The points of the expected calls' series.
fn expected_points(metrics: &[ReceivedMetrics], name: &str, expected: &[Expected]) -> Vec<Point> {
    histogram_points(metrics, name)
        .into_iter()
        .filter(|(_, _, p)| {
            let method = attr_str(&p.attributes, "rpc.method");
            expected
                .iter()
                .any(|c| method.as_deref() == Some(qualified(c.method).as_str()))
        })
        .collect()
}

fn check_metrics(receiver: &OtlpReceiver, expected: &[Expected], server_pid: u32, port: u16) {
    let total = expected.len() as u64;
    let counted = |metrics: &[ReceivedMetrics], name: &str| {
        expected_points(metrics, name, expected)
            .iter()
            .map(|(_, _, p)| p.count)
            .sum::<u64>()
    };
    let arrived = receiver.wait_for_metrics(Duration::from_secs(20), |metrics| {
        (counted(metrics, "rpc.server.call.duration") >= total
            && counted(metrics, "rpc.client.call.duration") >= total)
            .then_some(())
    });
    assert!(
        arrived.is_some(),
        "RPC duration histograms did not count {total} calls per side: {:#?}",
        receiver.metrics()
    );
    let metrics = receiver.metrics();
    for name in ["rpc.server.call.duration", "rpc.client.call.duration"] {
        let points = expected_points(&metrics, name, expected);
        assert_eq!(
            points.len(),
            expected.len(),
            "one series per method: {points:#?}"
        );
        for call in expected {
            let (resource, unit, point) = points
                .iter()
                .find(|(_, _, p)| {
                    attr_str(&p.attributes, "rpc.method") == Some(qualified(call.method))
                })
                .unwrap_or_else(|| panic!("{name}: no series for {}: {points:#?}", call.method));
            assert_eq!(unit, "s");
            assert_eq!(point.count, 1, "{name} {}", call.method);
            let a = &point.attributes;
            assert_eq!(attr_str(a, "rpc.system.name").as_deref(), Some("grpc"));
            assert_eq!(attr_str(a, "rpc.service"), None, "deprecated");
            assert_eq!(
                attr_str(a, "rpc.response.status_code"),
                Some(code_name(call.code)),
                "{name} {}: {point:?}",
                call.method
            );
            assert_eq!(attr_int(a, "server.port"), Some(i64::from(port)));
            if name == "rpc.server.call.duration" {
                assert_eq!(resource.get("process.pid"), Some(&server_pid.to_string()));
            }
            if call.method == "Count" {
                assert!(point.sum.unwrap_or(0.0) >= 0.29, "{point:?}");
            }
        }
    }
    // gRPC calls are RPCs, not also HTTP requests.
    let http: Vec<_> = metrics_of(&metrics)
        .into_iter()
        .filter(|(_, m)| m.name.starts_with("http."))
        .collect();
    assert!(http.is_empty(), "gRPC calls counted as HTTP: {http:#?}");
}

/// Starts the server, the waiting client and the agent; runs the calls.
fn traced_calls(
    server: Command,
    client: Command,
    port: u16,
    prometheus_port: Option<u16>,
) -> (OtlpReceiver, Agent, Process, u32, Vec<String>) {
    let server = spawn(server);
    wait_listening(port);
    let mut client = spawn(client);
    let client_pid = client.0.id();
    let receiver = OtlpReceiver::start_grpc();
    let config = config_file(&format!("grpc-{port}.yaml"), port, client_pid);
    let prometheus = prometheus_port.map(|p| p.to_string()).unwrap_or_default();
    let mut env = Vec::new();
    if prometheus_port.is_some() {
        env.push(("OTEL_EBPF_PROMETHEUS_PORT", prometheus.as_str()));
    }
    let agent =
        Agent::start_exporting_to(&["--config", &config.to_string_lossy()], &receiver, &env);
    let report = run_client(&mut client);
    (receiver, agent, server, client_pid, report)
}

#[test]
fn python_grpcio_calls_become_rpc_spans_and_metrics_on_both_sides() {
    require_root();
    let port = free_port();
    let (receiver, _agent, server, client_pid, report) =
        traced_calls(python("server", port), python("client", port), port, None);
    assert_eq!(
        report,
        [
            "Ping OK pong",
            "Say OK hello python",
            "Count OK 3",
            "Slow DEADLINE_EXCEEDED Deadline Exceeded",
            "Find NOT_FOUND no such item: 42",
            "Crash UNKNOWN Exception calling application: the handler failed",
            "Missing UNIMPLEMENTED Method not found!",
            "done",
        ]
    );
    let (spans, others) = rpc_spans(&receiver, &PYTHON_CALLS);
    assert!(others.is_empty(), "{others:#?}");
    check_spans(&spans, &PYTHON_CALLS, server.0.id(), client_pid, port);
    // grpc-message reaches the failed client span's status, decoded.
    let find = spans
        .iter()
        .find(|(_, s)| s.kind == span::SpanKind::Client as i32 && method_of(s) == qualified("Find"))
        .map(|(_, s)| s.status.clone().unwrap_or_default().message);
    assert_eq!(find.as_deref(), Some("no such item: 42"));
    check_metrics(&receiver, &PYTHON_CALLS, server.0.id(), port);
}

#[test]
fn tonic_calls_become_rpc_spans_and_metrics_and_prometheus_series() {
    require_root();
    let port = free_port();
    let prometheus_port = free_port();
    let (receiver, _agent, server, client_pid, report) = traced_calls(
        tonic("server", port),
        tonic("client", port),
        port,
        Some(prometheus_port),
    );
    assert_eq!(
        report,
        [
            "Say OK hello tonic",
            "Count OK 3",
            "Find NotFound no such item: 42",
            "Fail Unavailable backend down",
            "done",
        ]
    );
    let (spans, others) = rpc_spans(&receiver, &TONIC_CALLS);
    assert!(others.is_empty(), "{others:#?}");
    check_spans(&spans, &TONIC_CALLS, server.0.id(), client_pid, port);
    check_metrics(&receiver, &TONIC_CALLS, server.0.id(), port);

    let scrape = curl(&[&format!("http://127.0.0.1:{prometheus_port}/metrics")]);
    let count_line = |family: &str, method: &str| {
        scrape
            .lines()
            .find(|l| {
                l.starts_with(&format!("{family}_count{{"))
                    && l.contains(&format!("rpc_method=\"{}\"", qualified(method)))
            })
            .map(str::to_owned)
    };
    for call in &TONIC_CALLS {
        for family in [
            "rpc_server_call_duration_seconds",
            "rpc_client_call_duration_seconds",
        ] {
            let line = count_line(family, call.method)
                .unwrap_or_else(|| panic!("no {family} series for {}:\n{scrape}", call.method));
            assert!(line.ends_with(" 1"), "{line}");
            assert!(
                line.contains(&format!(
                    "rpc_response_status_code=\"{}\"",
                    code_name(call.code)
                )) && line.contains("rpc_system_name=\"grpc\"")
                    && !line.contains("rpc_service="),
                "{line}"
            );
        }
    }
    assert!(
        !scrape.contains("http_server_request_duration_seconds_count{"),
        "gRPC calls counted as HTTP requests:\n{scrape}"
    );
    // The server writes its SETTINGS before it reads the client's preface:
    // HTTP/2 too, not bytes no protocol claims.
    let garbage = scrape
        .lines()
        .find_map(|l| l.strip_prefix("zerotrace_garbage_segments_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(garbage, Some(0.0), "{scrape}");
}

#[test]
fn grpc_calls_with_2kb_of_metadata_are_each_one_named_call_on_both_sides() {
    require_root();
    let port = free_port();
    let server = spawn(python("server", port));
    wait_listening(port);
    let mut client = spawn(python("client-metadata", port));
    let client_pid = client.0.id();
    let config = config_file(&format!("grpc-metadata-{port}.yaml"), port, client_pid);
    let agent = Agent::start(&["--config", &config.to_string_lossy()], &[]);
    let report = run_client(&mut client);
    assert_eq!(
        report,
        [
            "Say OK hello 0",
            "Say OK hello 1",
            "Say OK hello 2",
            "Say OK hello 3",
            "Say OK hello 4",
            "done"
        ]
    );
    // 5 calls, each seen by the server and by the client.
    agent.wait_for_spans(10, |s| s.get("grpc").is_some_and(|g| !g.is_null()));
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert_eq!(spans.len(), 10, "one span per call and side: {spans:#?}");
    for (kind, pid) in [("server", server.0.id()), ("client", client_pid)] {
        let side: Vec<_> = spans.iter().filter(|s| s.str_of("kind") == kind).collect();
        assert_eq!(side.len(), 5, "{kind}: {spans:#?}");
        for span in side {
            assert_eq!(span.u64_of("pid"), u64::from(pid), "{span}");
            assert_eq!(span.str_of("method"), "POST", "{span}");
            assert_eq!(span.str_of("path"), format!("/{SERVICE}/Say"), "{span}");
            assert_eq!(span.u64_of("status"), 200, "{span}");
            let grpc = span.get("grpc").unwrap_or_else(|| panic!("{span}"));
            assert_eq!(grpc.str_of("service"), SERVICE, "{span}");
            assert_eq!(grpc.str_of("method"), "Say", "{span}");
            assert_eq!(grpc.u64_of("status_code"), 0, "{span}");
            // "hello N" in a 5-byte-prefixed message; "N" likewise.
            assert_eq!(span.u64_of("response_body_bytes"), 12, "{span}");
            assert_eq!(span.u64_of("request_body_bytes"), 6, "{span}");
            assert_eq!(
                span.get("partial").and_then(|p| p.as_bool()),
                Some(false),
                "{span}"
            );
        }
    }
}

/// Messages larger than the capture, both ways, on one channel: requests of
/// 10 B to 100 KB one after another, then 20 of 8 KB at once, then a small
/// one. grpc's C core writes each with one vectored `sendmsg` (headers, the
/// message, the trailers): every call is one named, whole span on each side,
/// its status and message sizes exact.
#[test]
fn grpc_messages_larger_than_the_capture_keep_every_call_whole() {
    require_root();
    let port = free_port();
    let server = spawn(python("server", port));
    wait_listening(port);
    let mut client = spawn(python("client-large", port));
    let client_pid = client.0.id();
    let config = config_file(&format!("grpc-large-{port}.yaml"), port, client_pid);
    let agent = Agent::start(&["--config", &config.to_string_lossy()], &[]);
    let report = run_client(&mut client);
    let sizes: Vec<usize> = [20_000, 10, 3_000, 100_000, 10, 1_000, 60_000, 10]
        .into_iter()
        .chain([8_000; 20])
        .chain([4])
        .collect();
    let expected: Vec<String> = sizes
        .iter()
        .map(|n| format!("Say OK {}", n + 6))
        .chain(["done".to_string()])
        .collect();
    assert_eq!(report, expected);
    let calls = sizes.len();
    agent.wait_for_spans(2 * calls, |s| s.get("grpc").is_some_and(|g| !g.is_null()));
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert_eq!(
        spans.len(),
        2 * calls,
        "one span per call and side: {spans:#?}"
    );
    for (kind, pid) in [("server", server.0.id()), ("client", client_pid)] {
        let side: Vec<_> = spans.iter().filter(|s| s.str_of("kind") == kind).collect();
        assert_eq!(side.len(), calls, "{kind}: {spans:#?}");
        let mut request_sizes = Vec::new();
        for span in side {
            assert_eq!(span.u64_of("pid"), u64::from(pid), "{span}");
            assert_eq!(span.str_of("path"), format!("/{SERVICE}/Say"), "{span}");
            let grpc = span.get("grpc").unwrap_or_else(|| panic!("{span}"));
            assert_eq!(grpc.str_of("method"), "Say", "{span}");
            assert_eq!(grpc.u64_of("status_code"), 0, "{span}");
            assert_eq!(
                span.get("partial").and_then(|p| p.as_bool()),
                Some(false),
                "{span}"
            );
            // Each message has its 5-byte prefix.
            let request = span.u64_of("request_body_bytes");
            assert_eq!(span.u64_of("response_body_bytes"), request + 6, "{span}");
            request_sizes.push(request as usize - 5);
        }
        let mut want = sizes.clone();
        want.sort_unstable();
        request_sizes.sort_unstable();
        assert_eq!(request_sizes, want, "{kind}");
    }
}

/// A grpcio client starting 100 unary calls at once on one channel, three
/// times: its
/// first flight is one `sendmsg` of hundreds of iovecs (each call's header
/// block and message in pieces), and the server answers as many at once.
/// Every call is one named, whole span with its status on each side. Before
/// the kernel copied across more than 32 iovecs, the header blocks past the
/// 32nd were lost, and with them the client's HPACK state: whole runs of
/// calls came out `POST *` (194 of 300 in three runs).
#[test]
fn a_hundred_grpc_calls_started_at_once_are_each_one_named_call_on_both_sides() {
    require_root();
    let http = Server::python_app();
    let port = free_port();
    let server = spawn(python("server", port));
    wait_listening(port);
    // Three clients, one after another, each its own channel and first flight.
    let mut clients: Vec<Process> = (0..3)
        .map(|_| {
            let mut command = python("client-fetch", port);
            command.arg(format!("{}/id/grpc", http.port)).arg("100");
            spawn(command)
        })
        .collect();
    let pids: Vec<String> = clients.iter().map(|c| c.0.id().to_string()).collect();
    let dir = std::env::temp_dir().join(format!("zt-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join(format!("grpc-fetch-{port}.yaml"));
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {port}\n    - target_pids: [{}]\n",
        pids.join(", ")
    );
    std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("{e}"));
    let agent = Agent::start(&["--config", &config.to_string_lossy()], &[]);
    for client in &mut clients {
        let report = run_client(client);
        assert_eq!(report.len(), 101, "{report:?}");
        assert_eq!(report.last().map(String::as_str), Some("done"));
    }
    let is_call = |s: &serde_json::Value| s.str_of("protocol_version") == "2";
    agent.wait_for_spans(600, is_call);
    std::thread::sleep(Duration::from_millis(500));
    let spans: Vec<_> = agent.spans().into_iter().filter(is_call).collect();
    assert_eq!(spans.len(), 600, "{}", agent.stderr.text());
    let server_pid = server.0.id().to_string();
    for pid in pids.iter().chain([&server_pid]) {
        let side: Vec<_> = spans
            .iter()
            .filter(|s| s.u64_of("pid").to_string() == *pid)
            .collect();
        assert_eq!(side.len(), if *pid == server_pid { 300 } else { 100 });
        for span in side {
            assert_eq!(span.str_of("path"), format!("/{SERVICE}/Fetch"), "{span}");
            let grpc = span.get("grpc").unwrap_or_else(|| panic!("{span}"));
            assert_eq!(grpc.u64_of("status_code"), 0, "{span}");
            assert_eq!(
                span.get("partial").and_then(|p| p.as_bool()),
                Some(false),
                "{span}"
            );
        }
    }
}
