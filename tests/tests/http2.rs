//! HTTP/2 (h2c) from real servers: nginx with prior knowledge driven by curl
//! and h2load with many concurrent streams, and a server on the `h2` library
//! reached through the HTTP/1.1 Upgrade: every request appears once, right.
//! Several requests one after another on one connection, and request heads
//! from 300 B to 8 KB (tokens, cookies, many fields) against nginx and a
//! Python `h2` service, are each one exact span; a header block past the
//! kernel's head capture still gives its spans, with `*` for what was lost,
//! and is counted.
//!
//! Note: Debian's curl 7.88.1 cannot reuse a prior-knowledge connection
//! (`curl --http2-prior-knowledge URL1 URL2` sends URL2 nowhere and fails
//! with "Error in the HTTP2 framing layer", curl issue #10634, fixed in 8.0):
//! sequential requests on one connection come from h2load (`-c1 -m1`) and
//! the Python client here; curl makes one request per connection.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use zerotrace_integration_tests::*;

fn nginx_h2c(port: u16) -> Nginx {
    Nginx::start(
        "h2c",
        port,
        &format!(
            "    listen 127.0.0.1:{port} http2;\n    location /a {{ return 200 \"alpha\\n\"; }}\n    location /b {{ return 404; }}"
        ),
    )
}

#[test]
fn h2c_requests_from_curl_and_h2load_each_become_one_span() {
    require_root();
    let port = free_port();
    let _nginx = nginx_h2c(port);
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let base = format!("http://127.0.0.1:{port}");
    let body = curl(&["--http2-prior-knowledge", &format!("{base}/a")]);
    assert_eq!(body, "alpha\n");
    curl(&["--http2-prior-knowledge", &format!("{base}/b")]);
    let url = format!("{base}/a?load");
    h2load(
        &["-n", "300", "-c", "3", "-m", "20", &url],
        &["300 succeeded"],
    );

    let spans = agent.wait_for_spans(302, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(500));
    let spans_now = agent.spans();
    assert_eq!(spans_now.len(), 302, "each request exactly once");
    assert!(spans.len() >= 302);
    let loaded = spans_now
        .iter()
        .filter(|s| s.str_of("target") == "/a?load")
        .count();
    assert_eq!(loaded, 300);
    for span in &spans_now {
        assert_eq!(span.str_of("kind"), "server");
        assert_eq!(span.str_of("method"), "GET");
        assert_eq!(span.str_of("process"), "nginx");
        assert_eq!(span.u64_of("local_port"), u64::from(port));
        assert!(
            !span
                .get("partial")
                .and_then(|p| p.as_bool())
                .unwrap_or(true),
            "{span}"
        );
        let expected = if span.str_of("path") == "/b" {
            404
        } else {
            200
        };
        assert_eq!(span.u64_of("status"), expected, "{span}");
    }
    let alpha = spans_now
        .iter()
        .find(|s| s.str_of("target") == "/a")
        .unwrap_or_else(|| panic!("no /a span"));
    assert_eq!(alpha.u64_of("response_body_bytes"), 6);
    assert_eq!(alpha.str_of("host"), format!("127.0.0.1:{port}"));
    // The request's user-agent (HPACK-decoded): curl's, and h2load's on its 300.
    assert_eq!(alpha.str_of("user_agent"), curl_user_agent());
    for span in spans_now.iter().filter(|s| s.str_of("target") == "/a?load") {
        assert!(
            span.str_of("user_agent").starts_with("h2load nghttp2/"),
            "{span}"
        );
    }
}

#[test]
fn h2c_upgrade_requests_become_http2_spans_without_a_101() {
    require_root();
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/servers/h2c_upgrade.py");
    let mut server = Command::new("/usr/bin/python3")
        .args([script, &port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("h2c server: {e}"));
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "the h2c server did not listen");
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let base = format!("http://127.0.0.1:{port}");
    // curl --http2 on http:// asks for the upgrade (Upgrade: h2c).
    assert_eq!(
        curl(&["--http2", &format!("{base}/hello?up")]),
        "hello over h2c\n"
    );
    curl(&["--http2", &format!("{base}/missing")]);

    agent.wait_for_spans(2, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(300));
    let spans = agent.spans();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(spans.len(), 2, "no 101 span, each request once: {spans:?}");
    let hello = spans
        .iter()
        .find(|s| s.str_of("target") == "/hello?up")
        .unwrap_or_else(|| panic!("no /hello span: {spans:?}"));
    assert_eq!(hello.u64_of("status"), 200);
    assert_eq!(hello.str_of("method"), "GET");
    assert_eq!(hello.str_of("kind"), "server");
    assert_eq!(hello.u64_of("response_body_bytes"), 15);
    assert_eq!(hello.str_of("host"), format!("127.0.0.1:{port}"));
    let missing = spans
        .iter()
        .find(|s| s.str_of("target") == "/missing")
        .unwrap_or_else(|| panic!("no /missing span: {spans:?}"));
    assert_eq!(missing.u64_of("status"), 404);
}

/// nginx h2c whose header buffers take 8 KB heads.
fn nginx_h2c_large_heads(port: u16) -> Nginx {
    Nginx::start(
        "h2c-heads",
        port,
        &format!(
            "    listen 127.0.0.1:{port} http2;\n    large_client_header_buffers 8 64k;\n    location /a {{ return 200 \"alpha\\n\"; }}\n    location /b {{ return 404; }}"
        ),
    )
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn h2_app() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/servers/h2_app.py").to_owned()
}

/// The Python `h2` service (prior knowledge) on a free port.
fn python_h2_service() -> (Process, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("/usr/bin/python3")
            .args([h2_app(), "server".into(), port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("h2 service: {e}"));
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let process = Process(child);
        if line.trim() == "listening" {
            return (process, port);
        }
    }
    panic!("the h2 service could not bind a port in 5 tries");
}

/// Makes `requests` on one connection with the Python `h2` client, one after
/// another (or all at once); returns "<status> <body bytes>" per request.
fn python_h2_client(port: u16, concurrent: bool, requests: &[Value]) -> Vec<String> {
    let spec = json!({ "concurrent": concurrent, "requests": requests });
    let output = Command::new("/usr/bin/python3")
        .args([
            h2_app(),
            "client".into(),
            port.to_string(),
            spec.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("h2 client: {e}"));
    assert!(output.status.success(), "h2 client failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn get(path: &str, headers: &[(&str, String)]) -> Value {
    json!({ "path": path, "headers": headers.iter().map(|(n, v)| [*n, v.as_str()]).collect::<Vec<_>>() })
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Request heads of about 300 B, 600 B, 2 KB and 8 KB (a bearer token, a
/// cookie, many fields, a long token) and a traceparent after a 2 KB cookie.
fn large_heads() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let many: Vec<(&str, String)> = (0..40)
        .map(|i| {
            (
                FIELD_NAMES[i % FIELD_NAMES.len()],
                format!("{i:02}-{}", "v".repeat(40)),
            )
        })
        .collect();
    vec![
        (
            "300",
            vec![("authorization", format!("Bearer {}", "a".repeat(290)))],
        ),
        (
            "600",
            vec![("cookie", format!("session={}", "c".repeat(590)))],
        ),
        ("2k", many),
        (
            "8k",
            vec![("authorization", format!("Bearer {}", "t".repeat(8190)))],
        ),
        (
            "traceparent",
            vec![
                ("cookie", format!("big={}", "k".repeat(2040))),
                ("traceparent", TRACEPARENT.to_owned()),
            ],
        ),
    ]
}

const FIELD_NAMES: [&str; 8] = [
    "x-a", "x-bb", "x-ccc", "x-dddd", "x-e", "x-ff", "x-ggg", "x-hhhh",
];

fn is_partial(span: &Value) -> bool {
    span.get("partial").and_then(Value::as_bool).unwrap_or(true)
}

/// The spans whose peer port is `peer_port`'s connection... or all spans of
/// one connection: grouped by peer port.
fn by_connection(spans: &[Value]) -> std::collections::BTreeMap<u64, Vec<Value>> {
    let mut out: std::collections::BTreeMap<u64, Vec<Value>> = Default::default();
    for span in spans {
        out.entry(span.u64_of("peer_port"))
            .or_default()
            .push(span.clone());
    }
    out
}

#[test]
fn sequential_requests_on_one_h2c_connection_each_become_one_span() {
    require_root();
    let nginx_port = free_port();
    let _nginx = nginx_h2c(nginx_port);
    let (_service, service_port) = python_h2_service();
    let agent = Agent::start(
        &["--open-port", &format!("{nginx_port},{service_port}")],
        &[],
    );
    let base = format!("http://127.0.0.1:{nginx_port}");
    // h2load -c1 -m1: one connection, each request after the previous
    // response; the URIs are taken in turn.
    let uris = ["a?1", "b?2", "a?3"].map(|p| format!("{base}/{p}"));
    let args = [
        "-n", "6", "-c", "1", "-m", "1", &uris[0], &uris[1], &uris[2],
    ];
    h2load(&args, &["6 done"]);
    // The Python client: the same path twice (a dynamic table reference the
    // second time), then a 404, one after another on one connection.
    let answers = python_h2_client(
        service_port,
        false,
        &[get("/one", &[]), get("/one", &[]), get("/status/404", &[])],
    );
    assert_eq!(answers, ["200 8", "200 8", "404 0"]);

    let spans = agent.wait_for_spans(9, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(500));
    let spans_now = agent.spans();
    assert_eq!(spans_now.len(), 9, "each request exactly once: {spans:#?}");
    for span in &spans_now {
        assert_eq!(span.str_of("method"), "GET", "{span}");
        assert!(!is_partial(span), "{span}");
        assert_eq!(span.str_of("kind"), "server");
    }
    let connections = by_connection(&spans_now);
    assert_eq!(connections.len(), 2, "two connections: {spans_now:#?}");
    let nginx: Vec<_> = spans_now
        .iter()
        .filter(|s| s.u64_of("local_port") == u64::from(nginx_port))
        .collect();
    let mut targets: Vec<(&str, u64, u64)> = nginx
        .iter()
        .map(|s| {
            (
                s.str_of("target"),
                s.u64_of("status"),
                s.u64_of("response_body_bytes"),
            )
        })
        .collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        [
            ("/a?1", 200, 6),
            ("/a?1", 200, 6),
            ("/a?3", 200, 6),
            ("/a?3", 200, 6),
            ("/b?2", 404, 153),
            ("/b?2", 404, 153)
        ]
    );
    let service: Vec<(&str, u64, u64, &str)> = spans_now
        .iter()
        .filter(|s| s.u64_of("local_port") == u64::from(service_port))
        .map(|s| {
            (
                s.str_of("target"),
                s.u64_of("status"),
                s.u64_of("response_body_bytes"),
                s.str_of("host"),
            )
        })
        .collect();
    let host = format!("127.0.0.1:{service_port}");
    assert_eq!(
        service,
        [
            ("/one", 200, 8, host.as_str()),
            ("/one", 200, 8, host.as_str()),
            ("/status/404", 404, 0, host.as_str())
        ]
    );
}

#[test]
fn large_request_heads_are_decoded_whole_on_nginx_and_a_python_h2_service() {
    require_root();
    let nginx_port = free_port();
    let _nginx = nginx_h2c_large_heads(nginx_port);
    let (_service, service_port) = python_h2_service();
    let agent = Agent::start(
        &["--open-port", &format!("{nginx_port},{service_port}")],
        &[],
    );
    let heads = large_heads();
    // curl: one request per connection.
    for (name, headers) in &heads {
        let mut args = vec!["--http2-prior-knowledge".to_owned()];
        for (field, value) in headers {
            args.push("-H".into());
            args.push(format!("{field}: {value}"));
        }
        args.push(format!("http://127.0.0.1:{nginx_port}/a?curl={name}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(curl(&args), "alpha\n");
    }
    // The Python client: all of them one after another on one connection,
    // to nginx and to the Python service (HPACK state carried across).
    let requests: Vec<Value> = heads
        .iter()
        .map(|(name, headers)| get(&format!("/a?py={name}"), headers))
        .collect();
    assert_eq!(python_h2_client(nginx_port, false, &requests), ["200 6"; 5]);
    assert_eq!(
        python_h2_client(service_port, false, &requests),
        ["200 6"; 5]
    );
    // And all at once: concurrent streams, one write per request head.
    let concurrent: Vec<Value> = heads
        .iter()
        .map(|(name, headers)| get(&format!("/a?all={name}"), headers))
        .collect();
    assert_eq!(
        python_h2_client(nginx_port, true, &concurrent),
        ["200 6"; 5]
    );

    let total = 4 * heads.len();
    agent.wait_for_spans(total, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert_eq!(spans.len(), total, "each request exactly once: {spans:#?}");
    for (port, client) in [
        (nginx_port, "curl"),
        (nginx_port, "py"),
        (service_port, "py"),
        (nginx_port, "all"),
    ] {
        for (name, _) in &heads {
            let target = format!("/a?{client}={name}");
            let matching: Vec<&Value> = spans
                .iter()
                .filter(|s| {
                    s.u64_of("local_port") == u64::from(port) && s.str_of("target") == target
                })
                .collect();
            assert_eq!(matching.len(), 1, "{port} {target}: {spans:#?}");
            let span = matching[0];
            assert_eq!(span.str_of("method"), "GET", "{span}");
            assert_eq!(span.str_of("path"), "/a");
            assert_eq!(span.u64_of("status"), 200, "{span}");
            assert_eq!(span.u64_of("response_body_bytes"), 6, "{span}");
            assert_eq!(span.str_of("host"), format!("127.0.0.1:{port}"), "{span}");
            assert!(!is_partial(span), "{span}");
            let traceparent = span.get("traceparent").and_then(Value::as_str);
            if *name == "traceparent" {
                assert_eq!(traceparent, Some(TRACEPARENT), "{span}");
            } else {
                assert_eq!(traceparent, None, "{span}");
            }
        }
    }
}

#[test]
fn a_header_block_past_the_head_capture_keeps_its_streams_and_is_counted() {
    require_root();
    let (_service, port) = python_h2_service();
    let metrics_port = free_port();
    let mut agent = Agent::start(
        &["--open-port", &port.to_string()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    // A 24 KB token: HEADERS (16 KiB, the server's frame size) and a
    // CONTINUATION in one write, past the kernel's 16 KiB head capture. The
    // `h2` library sends `authorization` never indexed, so the client's table
    // keeps the path it inserted before it. Then the same path again (a
    // reference into the table, which the lost part might have changed) and
    // a new path (a literal).
    let token = format!("Bearer {}", "j".repeat(24 * 1024));
    let answers = python_h2_client(
        port,
        false,
        &[
            get("/big", &[("authorization", token)]),
            get("/big", &[]),
            get("/status/404", &[]),
        ],
    );
    assert_eq!(answers, ["200 8", "200 8", "404 0"]);
    agent.wait_for_spans(3, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    let got: Vec<(&str, &str, u64, u64, bool)> = spans
        .iter()
        .map(|s| {
            (
                s.str_of("method"),
                s.str_of("target"),
                s.u64_of("status"),
                s.u64_of("response_body_bytes"),
                is_partial(s),
            )
        })
        .collect();
    // What the capture showed is exact, what it did not is `*`; nothing is
    // guessed and no stream is lost.
    assert_eq!(
        got,
        [
            ("GET", "/big", 200, 8, true),
            ("GET", "*", 200, 8, true),
            ("GET", "/status/404", 404, 0, true)
        ],
        "{spans:#?}"
    );
    // The authority after the cut is a table reference: left out.
    assert_eq!(spans[1].get("host"), Some(&Value::Null));

    let reason = |text: &str, reason: &str| {
        let prefix = format!("zerotrace_http2_losses_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let scrape = wait_for(Duration::from_secs(5), || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        (reason(&text, "h2_headers_truncated") == Some(1)).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "no h2_headers_truncated count; stderr:\n{}",
            agent.stderr.text()
        )
    });
    assert_eq!(reason(&scrape, "hpack_lost"), Some(2), "{scrape}");
    assert_eq!(reason(&scrape, "h2_stream_unnamed"), Some(1), "{scrape}");
    assert_eq!(
        reason(&scrape, "h2_stream_without_headers"),
        Some(0),
        "{scrape}"
    );
    agent.stop();
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains("HTTP/2: 1 header blocks cut by the capture, 2 with HPACK state lost"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 streams without method or path (*)"),
        "{stderr}"
    );
}

/// A server that batches a stream's DATA with the header block after it (its
/// trailers here; the next stream's HEADERS under concurrency) writes
/// segments that start with DATA: the kernel walks their frame headers and
/// copies up to the end of the header block, so HPACK stays in sync and
/// every later response decodes whole.
#[test]
fn header_blocks_after_data_in_one_write_are_decoded_whole() {
    require_root();
    let (_service, port) = python_h2_service();
    let metrics_port = free_port();
    let agent = Agent::start(
        &["--open-port", &port.to_string()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    let answers = python_h2_client(
        port,
        false,
        &[
            get("/trailers/2000", &[]),
            get("/trailers/2000", &[]),
            get("/trailers/9000", &[]),
            get("/status/404", &[]),
        ],
    );
    assert_eq!(answers, ["200 2000", "200 2000", "200 9000", "404 0"]);
    agent.wait_for_spans(4, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    let got: Vec<(&str, &str, u64, u64, bool)> = spans
        .iter()
        .map(|s| {
            (
                s.str_of("method"),
                s.str_of("target"),
                s.u64_of("status"),
                s.u64_of("response_body_bytes"),
                is_partial(s),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("GET", "/trailers/2000", 200, 2000, false),
            ("GET", "/trailers/2000", 200, 2000, false),
            ("GET", "/trailers/9000", 200, 9000, false),
            ("GET", "/status/404", 404, 0, false)
        ],
        "{spans:#?}"
    );
    let reason = |text: &str, reason: &str| {
        let prefix = format!("zerotrace_http2_losses_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let scrape = wait_for(Duration::from_secs(5), || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        reason(&text, "hpack_lost").is_some().then_some(text)
    })
    .unwrap_or_else(|| panic!("no HTTP/2 loss counts; stderr:\n{}", agent.stderr.text()));
    for r in [
        "h2_headers_truncated",
        "hpack_lost",
        "h2_header_block_undecodable",
    ] {
        assert_eq!(reason(&scrape, r), Some(0), "{r}: {scrape}");
    }
}
