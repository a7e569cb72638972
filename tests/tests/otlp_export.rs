//! The real agent exporting to a real OTLP receiver that decodes with the
//! official OpenTelemetry protobuf definitions (opentelemetry-proto).

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, HistogramDataPoint};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn agent_exporting_to(
    server: &Server,
    receiver: &OtlpReceiver,
    protocol: &str,
    extra: &[(&str, &str)],
) -> Agent {
    let mut env = vec![("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)];
    env.extend_from_slice(extra);
    Agent::start_exporting_to(&["--open-port", &server.port.to_string()], receiver, &env)
}

fn server_spans(receiver: &OtlpReceiver, count: usize) -> Vec<(BTreeMap<String, String>, Span)> {
    receiver
        .wait_for_traces(Duration::from_secs(15), |traces| {
            let spans: Vec<_> = spans_of(traces)
                .into_iter()
                .filter(|(_, s)| s.kind == span::SpanKind::Server as i32)
                .collect();
            (spans.len() >= count).then_some(spans)
        })
        .unwrap_or_else(|| {
            panic!(
                "fewer than {count} server spans arrived: {:#?}",
                receiver.spans()
            )
        })
}

fn path_of(span: &Span) -> String {
    attr_str(&span.attributes, "url.path").unwrap_or_default()
}

/// Latest cumulative data points of `http.server.request.duration`.
fn duration_points(receiver: &OtlpReceiver, total: u64) -> Vec<HistogramDataPoint> {
    receiver
        .wait_for_metrics(Duration::from_secs(15), |exports| {
            let latest = exports.iter().rev().find_map(|export| {
                let points: Vec<HistogramDataPoint> = export
                    .request
                    .resource_metrics
                    .iter()
                    .flat_map(|r| &r.scope_metrics)
                    .flat_map(|s| &s.metrics)
                    .filter(|m| m.name == "http.server.request.duration")
                    .filter_map(|m| match &m.data {
                        Some(metric::Data::Histogram(h)) => Some(h.data_points.clone()),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                (!points.is_empty()).then_some(points)
            })?;
            (latest.iter().map(|p| p.count).sum::<u64>() >= total).then_some(latest)
        })
        .unwrap_or_else(|| {
            panic!(
                "no duration histogram counting {total} requests: {:#?}",
                receiver.metrics()
            )
        })
}

/// The agent's own metric `name` (resource service.name=zerotrace) in the
/// latest export that has it: (attributes, integer value) per data point,
/// and whether it is a monotonic sum (else a gauge).
fn own_metric(receiver: &OtlpReceiver, name: &str) -> Option<(bool, Vec<(String, i64)>)> {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    let metric = metrics_of(&receiver.metrics())
        .into_iter()
        .rev()
        .find(|(resource, m)| {
            m.name == name && resource.get("service.name").map(String::as_str) == Some("zerotrace")
        })?
        .1;
    let (monotonic, points) = match metric.data? {
        metric::Data::Sum(sum) => (
            sum.is_monotonic && sum.aggregation_temporality == 2,
            sum.data_points,
        ),
        metric::Data::Gauge(gauge) => (false, gauge.data_points),
        _ => return None,
    };
    Some((
        monotonic,
        points
            .into_iter()
            .map(|p| {
                let label = p
                    .attributes
                    .iter()
                    .map(|kv| {
                        format!(
                            "{}={}",
                            kv.key,
                            kv.value.as_ref().map(display_value).unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let value = match p.value {
                    Some(Value::AsInt(v)) => v,
                    _ => -1,
                };
                (label, value)
            })
            .collect(),
    ))
}

/// Waits until the agent's own metric `name` has a point with `label` whose value satisfies `ok`.
fn wait_for_own_metric(
    receiver: &OtlpReceiver,
    name: &str,
    label: &str,
    ok: impl Fn(i64) -> bool,
) -> (bool, i64) {
    wait_for(Duration::from_secs(20), || {
        let (monotonic, points) = own_metric(receiver, name)?;
        points
            .into_iter()
            .find(|(l, v)| l == label && ok(*v))
            .map(|(_, v)| (monotonic, v))
    })
    .unwrap_or_else(|| {
        panic!(
            "{name}{{{label}}} never reached the expected value; last: {:?}",
            own_metric(receiver, name)
        )
    })
}

fn exercise(server: &Server) {
    curl(&[&server.url("/hello")]);
    curl(&[&server.url("/missing")]);
    curl(&[&server.url("/status/503")]);
    curl(&[
        "-H",
        &format!("traceparent: {TRACEPARENT}"),
        &server.url("/hello?traced=1"),
    ]);
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        "0123456789",
        &server.url("/echo"),
    ]);
}

fn check_spans_and_metrics(server: &Server, receiver: &OtlpReceiver) {
    let spans = server_spans(receiver, 5);
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let user_agent = curl_user_agent();
    for (resource, span) in &spans {
        assert_eq!(
            resource.get("service.name").map(String::as_str),
            Some("python3")
        );
        assert_eq!(resource.get("process.pid"), Some(&server.pid().to_string()));
        assert_eq!(
            resource.get("process.executable.name").map(String::as_str),
            Some("python3")
        );
        assert_eq!(
            resource.get("telemetry.distro.name").map(String::as_str),
            Some("zerotrace")
        );
        assert!(resource.contains_key("host.name") && resource.contains_key("service.instance.id"));
        assert!(
            !resource.contains_key("process.command_line"),
            "command line is opt-in"
        );
        let a = &span.attributes;
        // Default routes (OBI's): unmatched paths get a heuristic route, ids become "*".
        let route = attr_str(a, "http.route").unwrap_or_else(|| panic!("no http.route: {span:?}"));
        assert_eq!(
            span.name,
            format!(
                "{} {route}",
                attr_str(a, "http.request.method").unwrap_or_default()
            )
        );
        assert_eq!(attr_str(a, "url.scheme").as_deref(), Some("http"));
        assert_eq!(
            attr_str(a, "network.protocol.version").as_deref(),
            Some("1.1")
        );
        assert_eq!(attr_str(a, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr_int(a, "server.port"), Some(i64::from(server.port)));
        assert_eq!(attr_str(a, "client.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr_str(a, "user_agent.original"), Some(user_agent.clone()));
        assert!(span.end_time_unix_nano > span.start_time_unix_nano);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        assert!(
            now.abs_diff(span.start_time_unix_nano) < 60_000_000_000,
            "wall-clock start time"
        );
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
    }
    let by_path = |path: &str| {
        spans
            .iter()
            .filter(|(_, s)| path_of(s) == path)
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>()
    };
    let missing = &by_path("/missing")[0];
    assert_eq!(
        attr_int(&missing.attributes, "http.response.status_code"),
        Some(404)
    );
    assert_eq!(
        missing.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Unset as i32)
    );
    let failed = &by_path("/status/503")[0];
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
    assert_eq!(
        failed.name, "GET /status/*",
        "the heuristic collapses the number"
    );
    let echo = &by_path("/echo")[0];
    assert_eq!(echo.name, "POST /echo");
    assert_eq!(
        attr_int(&echo.attributes, "http.request.body.size"),
        Some(10)
    );
    assert_eq!(
        attr_int(&echo.attributes, "http.response.body.size"),
        Some(10)
    );
    let hello = by_path("/hello");
    assert_eq!(hello.len(), 2);
    let traced = hello
        .iter()
        .find(|s| attr_str(&s.attributes, "url.query").as_deref() == Some("traced=1"))
        .unwrap_or_else(|| panic!("no traced span"));
    assert_eq!(hex(&traced.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&traced.parent_span_id), "00f067aa0ba902b7");
    let untraced = hello
        .iter()
        .find(|s| s.span_id != traced.span_id)
        .unwrap_or_else(|| panic!("second /hello"));
    assert_ne!(hex(&untraced.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(untraced.parent_span_id.is_empty());

    let points = duration_points(receiver, 5);
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 5);
    for point in &points {
        assert_eq!(
            point.explicit_bounds,
            vec![0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
        );
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
        assert_eq!(
            attr_str(&point.attributes, "url.scheme").as_deref(),
            Some("http")
        );
        assert!(attr_str(&point.attributes, "http.request.method").is_some());
    }
    let not_found = points
        .iter()
        .find(|p| attr_int(&p.attributes, "http.response.status_code") == Some(404))
        .unwrap_or_else(|| panic!("no 404 series"));
    assert_eq!(not_found.count, 1);
    let ok_get = points
        .iter()
        .find(|p| {
            attr_int(&p.attributes, "http.response.status_code") == Some(200)
                && attr_str(&p.attributes, "http.request.method").as_deref() == Some("GET")
        })
        .unwrap_or_else(|| panic!("no GET 200 series"));
    assert_eq!(ok_get.count, 2);
    let metric_names: Vec<String> = metrics_of(&receiver.metrics())
        .into_iter()
        .map(|(_, m)| m.name)
        .collect();
    for name in [
        "http.server.request.body.size",
        "http.server.response.body.size",
    ] {
        assert!(
            metric_names.iter().any(|n| n == name),
            "{name} missing: {metric_names:?}"
        );
    }
}

#[test]
fn traces_and_metrics_over_grpc_with_headers_and_gzip() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_grpc();
    let _agent = agent_exporting_to(
        &server,
        &receiver,
        "grpc",
        &[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20test-token-42",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    );
    exercise(&server);
    check_spans_and_metrics(&server, &receiver);
    let traces = receiver.traces();
    assert!(traces.iter().all(
        |t| t.headers.get("authorization").map(String::as_str) == Some("Bearer test-token-42")
    ));
    assert!(traces.iter().all(|t| t.gzip()));
    assert!(receiver
        .metrics()
        .iter()
        .all(|m| m.headers.contains_key("authorization")));
}

#[test]
fn traces_and_metrics_over_http_protobuf() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let _agent = agent_exporting_to(
        &server,
        &receiver,
        "http/protobuf",
        &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key=k1")],
    );
    exercise(&server);
    check_spans_and_metrics(&server, &receiver);
    let traces = receiver.traces();
    assert!(traces
        .iter()
        .all(|t| !t.json && t.headers.get("x-api-key").map(String::as_str) == Some("k1")));
    assert!(
        receiver
            .metrics()
            .iter()
            .all(|m| !m.headers.contains_key("x-api-key")),
        "trace-only header"
    );
}

#[test]
fn traces_over_http_json_and_delta_metrics() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let _agent = agent_exporting_to(
        &server,
        &receiver,
        "http/json",
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
            ("OTEL_SERVICE_NAME", "checkout"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("ZEROTRACE_RESOURCE_COMMAND_LINE", "true"),
        ],
    );
    exercise(&server);
    let spans = server_spans(&receiver, 5);
    assert!(receiver.traces().iter().all(|t| t.json));
    let (resource, _) = &spans[0];
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("checkout")
    );
    assert_eq!(
        resource.get("deployment.environment").map(String::as_str),
        Some("test")
    );
    assert!(resource
        .get("process.command_line")
        .is_some_and(|c| c.contains("http_app.py")));
    // Delta: the counts of all exports add up to the requests, each export only new ones.
    let total = receiver
        .wait_for_metrics(Duration::from_secs(15), |exports| {
            let sum: u64 = exports
                .iter()
                .flat_map(|e| &e.request.resource_metrics)
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == "http.server.request.duration")
                .filter_map(|m| match &m.data {
                    Some(metric::Data::Histogram(h)) => {
                        assert_eq!(h.aggregation_temporality, 1, "delta");
                        Some(h.data_points.iter().map(|p| p.count).sum::<u64>())
                    }
                    _ => None,
                })
                .sum();
            (sum >= 5).then_some(sum)
        })
        .unwrap_or_else(|| panic!("delta metrics never added up"));
    std::thread::sleep(Duration::from_millis(1200));
    let after: u64 = metrics_of(&receiver.metrics())
        .into_iter()
        .filter(|(_, m)| m.name == "http.server.request.duration")
        .filter_map(|(_, m)| match m.data {
            Some(metric::Data::Histogram(h)) => {
                Some(h.data_points.iter().map(|p| p.count).sum::<u64>())
            }
            _ => None,
        })
        .sum();
    assert_eq!(total, 5);
    assert_eq!(after, 5, "idle intervals export nothing new");
}

#[test]
fn trace_sampling_keeps_the_ratio_and_metrics_count_everything() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_grpc();
    let mut agent = agent_exporting_to(
        &server,
        &receiver,
        "grpc",
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ],
    );
    let request = "GET /hello HTTP/1.1\r\nHost: sampled\r\n\r\n";
    for _ in 0..20 {
        let (_, responses) = raw_keepalive_requests(server.port, &[request; 100]);
        assert_eq!(responses.len(), 100);
    }
    let points = duration_points(&receiver, 2000);
    assert_eq!(
        points.iter().map(|p| p.count).sum::<u64>(),
        2000,
        "metrics see every request"
    );
    assert_eq!(agent.stop(), Some(0));
    let kept = spans_of(&receiver.traces()).len();
    // Binomial(2000, 0.1): mean 200, standard deviation 13.4; ±5 sd.
    assert!((133..=267).contains(&kept), "kept {kept} of 2000 spans");
}

#[test]
fn a_backend_outage_is_survived_counted_and_recovered_from() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let port = receiver.port();
    let agent = agent_exporting_to(&server, &receiver, "http/protobuf", &[]);
    curl(&[&server.url("/hello?before")]);
    server_spans(&receiver, 1);
    receiver.stop();

    let worker = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    let rss = |pid: u32| {
        status_field(pid, "VmRSS:")
            .and_then(|v| {
                v.split_whitespace()
                    .next()
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let rss_before = rss(worker);
    // 60 s of traffic against a dead backend (issue #7: "backend down 60 s under load").
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while std::time::Instant::now() < deadline {
        let (_, responses) = raw_keepalive_requests(
            server.port,
            &["GET /hello?during HTTP/1.1\r\nHost: x\r\n\r\n"; 50],
        );
        sent += responses.len();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent > 1000);
    assert_eq!(agent.worker_pid(), Some(worker), "the worker survived");
    let rss_during = rss(worker);
    assert!(
        rss_during < rss_before + 30 * 1024,
        "worker RSS grew from {rss_before} to {rss_during} KiB"
    );

    let receiver = OtlpReceiver::start_http_on(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let resumed = loop {
        curl(&[&server.url("/hello?after")]);
        let after = receiver
            .spans()
            .into_iter()
            .any(|(_, s)| attr_str(&s.attributes, "url.query").as_deref() == Some("after"));
        if after || std::time::Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        resumed,
        "export did not resume; agent stderr:\n{}",
        agent.stderr.text()
    );
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains("OTLP export to") && stderr.contains("failing"),
        "{stderr}"
    );
    assert!(stderr.contains("dropped"), "{stderr}");
    // The agent's own metrics, delivered once the backend is back, count the outage.
    let (monotonic, _) = wait_for_own_metric(
        &receiver,
        "zerotrace.export.dropped",
        "signal=traces",
        |v| v > 0,
    );
    assert!(monotonic, "a counter is a monotonic cumulative sum");
    wait_for_own_metric(&receiver, "zerotrace.export.errors", "", |v| v > 0);
}

#[test]
fn the_agent_exports_its_own_metrics_on_its_own_resource() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_grpc();
    let _agent = agent_exporting_to(&server, &receiver, "grpc", &[]);
    exercise(&server);
    let (monotonic, spans) = wait_for_own_metric(&receiver, "zerotrace.spans", "", |v| v >= 5);
    assert!(monotonic);
    assert!(spans >= 5);
    let (_, read) = wait_for_own_metric(&receiver, "zerotrace.events.read", "", |v| v > 0);
    let (_, decoded) = wait_for_own_metric(&receiver, "zerotrace.events.decoded", "", |v| v > 0);
    assert!(decoded <= read);
    wait_for_own_metric(
        &receiver,
        "zerotrace.events.dropped",
        "reason=undecodable",
        |v| v == 0,
    );
    wait_for_own_metric(&receiver, "zerotrace.events.lost", "", |v| v == 0);
    wait_for_own_metric(&receiver, "zerotrace.kernel.events", "", |v| v > 0);
    // Levels are gauges.
    let (monotonic, _) =
        wait_for_own_metric(&receiver, "zerotrace.processes.instrumented", "", |v| {
            v == 1
        });
    assert!(!monotonic, "a level is a gauge");
    wait_for_own_metric(&receiver, "zerotrace.export.queue.depth", "", |v| v >= 0);
    wait_for_own_metric(&receiver, "zerotrace.probes.attached", "", |v| v >= 0);
    wait_for_own_metric(
        &receiver,
        "zerotrace.export.exported",
        "signal=traces",
        |v| v >= 5,
    );
    let resource = metrics_of(&receiver.metrics())
        .into_iter()
        .find(|(r, _)| r.get("service.name").map(String::as_str) == Some("zerotrace"))
        .map(|(r, _)| r)
        .unwrap_or_default();
    assert!(resource.contains_key("host.name") && resource.contains_key("process.pid"));
    // The instrumented process keeps its own resource: no self metric there.
    assert!(metrics_of(&receiver.metrics())
        .into_iter()
        .filter(|(r, _)| r.get("service.name").map(String::as_str) == Some("python3"))
        .all(|(_, m)| !m.name.starts_with("zerotrace.")));
}

#[test]
fn one_agent_fans_out_to_several_destinations_from_yaml() {
    require_root();
    let server = Server::python_app();
    let grpc = OtlpReceiver::start_grpc();
    let http = OtlpReceiver::start_http();
    let dir = std::env::temp_dir().join(format!("zt-fanout-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("fanout.yaml");
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {}\notel_traces_export:\n  batch_timeout: 200ms\n  endpoints:\n    - endpoint: {}\n      protocol: grpc\n      headers: {{x-team: a}}\n    - endpoint: {}\n      protocol: http/protobuf\n      headers: {{x-team: b}}\n",
        server.port,
        grpc.endpoint(),
        http.endpoint()
    );
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    let _agent = Agent::start(&["--config", &path.to_string_lossy()], &[]);
    curl(&[&server.url("/hello?fanout")]);
    for (receiver, team) in [(&grpc, "a"), (&http, "b")] {
        let spans = server_spans(receiver, 1);
        assert_eq!(
            attr_str(&spans[0].1.attributes, "url.query").as_deref(),
            Some("fanout")
        );
        assert!(receiver
            .traces()
            .iter()
            .all(|t| t.headers.get("x-team").map(String::as_str) == Some(team)));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=zerotrace test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

#[test]
fn https_endpoints_are_verified_against_the_trusted_ca_store() {
    use prost::Message;
    require_root();
    let dir = std::env::temp_dir().join(format!("zt-tls-{}", std::process::id()));
    let received = dir.join("received");
    std::fs::create_dir_all(&received).unwrap_or_else(|e| panic!("{e}"));
    make_certificates(&dir);
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/tls_otlp_sink.py");
    let sink = std::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .arg(&received)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let sink = Server { child: sink, port };
    sink.wait_listening();
    let server = Server::python_app();
    let endpoint = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem").to_string_lossy().into_owned();
    let common = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];

    // Not trusted: the system store does not know this CA, so nothing is sent.
    let untrusted = Agent::start(&["--open-port", &server.port.to_string()], &common);
    curl(&[&server.url("/hello?untrusted")]);
    let failing = wait_for(Duration::from_secs(10), || {
        untrusted.stderr.text().contains("failing").then_some(())
    });
    drop(untrusted);
    assert!(failing.is_some(), "an unknown CA was accepted");
    assert_eq!(
        std::fs::read_dir(&received).map(|d| d.count()).unwrap_or(0),
        0
    );

    // Trusted through the CA bundle the process is told to use.
    let mut env = common.to_vec();
    env.push(("SSL_CERT_FILE", ca.as_str()));
    let trusted = Agent::start(&["--open-port", &server.port.to_string()], &env);
    curl(&[&server.url("/hello?trusted")]);
    let request = wait_for(Duration::from_secs(15), || {
        let entries = std::fs::read_dir(&received).ok()?;
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
            .find_map(|e| {
                let body = std::fs::read(e.path()).ok()?;
                opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                    body.as_slice(),
                )
                .ok()
            })
    });
    drop(trusted);
    let _ = std::fs::remove_dir_all(&dir);
    let request = request.unwrap_or_else(|| panic!("nothing arrived over https"));
    let spans: Vec<_> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert!(spans
        .iter()
        .any(|s| attr_str(&s.attributes, "url.query").as_deref() == Some("trusted")));
}

/// OTLP's exemplars (`OTEL_METRICS_EXEMPLAR_FILTER`, `trace_based` unless
/// set, as in the SDKs): each bucket of the RED duration histogram and of
/// the span metrics' latency holds the last span it counted whose trace the
/// trace export keeps. Requests whose context says "not sampled" (the
/// default sampler, `parentbased_always_on`, drops them) leave none; the
/// others' exemplars carry the exported server spans' ids and durations.
#[test]
fn otlp_histograms_carry_exemplars_of_the_spans_the_trace_export_keeps() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let _agent = agent_exporting_to(
        &server,
        &receiver,
        "http/protobuf",
        &[("OTEL_EBPF_METRICS_FEATURES", "application,application_span")],
    );
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // CPU burnt per request, milliseconds: far apart, so mostly in distinct buckets.
    let sampled = [
        (0, "5a0000000000000000000000000000a1"),
        (120, "5a0000000000000000000000000000a2"),
        (600, "5a0000000000000000000000000000a3"),
    ];
    let unsampled = [
        (40, "5a0000000000000000000000000000b1"),
        (300, "5a0000000000000000000000000000b2"),
    ];
    for ((ms, trace), flags) in sampled
        .iter()
        .map(|s| (s, "01"))
        .chain(unsampled.iter().map(|s| (s, "00")))
    {
        let header = format!("traceparent: 00-{trace}-00f067aa0ba902b7-{flags}");
        curl(&[&server.url(&format!("/burn/{ms}")), "-H", &header]);
    }
    // The sampled requests' server spans, as the trace export sent them.
    let spans: Vec<(String, String, f64)> = server_spans(&receiver, sampled.len())
        .iter()
        .map(|(_, s)| {
            let seconds = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e9;
            (hex(&s.trace_id), hex(&s.span_id), seconds)
        })
        .collect();
    let exported_traces: Vec<&str> = spans.iter().map(|(t, _, _)| t.as_str()).collect();
    for (_, trace) in sampled {
        assert!(exported_traces.contains(&trace), "{spans:?}");
    }
    for (_, trace) in unsampled {
        assert!(!exported_traces.contains(&trace), "{spans:?}");
    }
    for name in ["http.server.request.duration", "traces_spanmetrics_latency"] {
        // The latest point counting all five requests.
        let point = receiver
            .wait_for_metrics(Duration::from_secs(15), |exports| {
                metrics_of(exports)
                    .iter()
                    .rev()
                    .filter(|(_, m)| m.name == name)
                    .find_map(|(_, m)| match &m.data {
                        Some(metric::Data::Histogram(h)) => {
                            h.data_points.iter().find(|p| p.count == 5).cloned()
                        }
                        _ => None,
                    })
            })
            .unwrap_or_else(|| panic!("no {name} point counting 5 requests"));
        // One exemplar per bucket that a sampled span fell in.
        let bucket_of = |seconds: f64| {
            point
                .explicit_bounds
                .iter()
                .filter(|b| **b < seconds)
                .count()
        };
        let mut buckets: Vec<usize> = spans.iter().map(|(_, _, s)| bucket_of(*s)).collect();
        buckets.sort();
        buckets.dedup();
        assert_eq!(
            point.exemplars.len(),
            buckets.len(),
            "{name}: {point:#?}\n{spans:?}"
        );
        for exemplar in &point.exemplars {
            let (trace, span) = (hex(&exemplar.trace_id), hex(&exemplar.span_id));
            let Some((_, _, seconds)) = spans.iter().find(|(t, s, _)| *t == trace && *s == span)
            else {
                panic!("{name}: exemplar of {trace}/{span} names no exported span: {spans:?}")
            };
            let Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(value)) =
                exemplar.value
            else {
                panic!("{exemplar:?}")
            };
            assert!(
                (value - seconds).abs() < 1e-6,
                "{name}: {value} s, the span {seconds} s"
            );
            assert!(
                buckets.contains(&bucket_of(value)),
                "{name}: {value} in its bucket"
            );
            assert!(exemplar.time_unix_nano > 0);
        }
    }
}

/// OBI's trace attribute selection: `attributes.select.traces` excluding
/// `user_agent.original` keeps it out of the exported server spans (which
/// otherwise carry curl's, see `check_spans_and_metrics`).
#[test]
fn an_excluded_user_agent_stays_out_of_the_spans() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let file = readable_config(
        "user-agent-excluded",
        "zerotrace.yaml",
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {}\nattributes:\n  select:\n    traces:\n      exclude: [user_agent.original]\n",
            server.port
        ),
    );
    let _agent = Agent::start_exporting_to(&["--config", &file.to_string_lossy()], &receiver, &[]);
    curl(&[&server.url("/hello")]);
    let spans = server_spans(&receiver, 1);
    let (_, span) = &spans[0];
    assert_eq!(path_of(span), "/hello");
    assert_eq!(
        attr_str(&span.attributes, "user_agent.original"),
        None,
        "{span:?}"
    );
    assert!(
        attr_str(&span.attributes, "url.scheme").is_some(),
        "{span:?}"
    );
}
