//! The real agent watching a real Python server driven by curl and by a
//! Rust client: every exchange must come out as one span with the right
//! fields.

use serde_json::Value;
use zerotrace_integration_tests::*;

fn server_span_for<'a>(spans: &'a [Value], method: &str, path: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| {
            s.str_of("kind") == "server" && s.str_of("method") == method && s.str_of("path") == path
        })
        .collect()
}

#[test]
fn http1_exchanges_become_spans() {
    http1_exchanges_become_spans_with("auto", "socket tracepoints");
}

/// The fallback for kernels before 6.3 (socket tracepoints missing), forced.
#[test]
fn http1_exchanges_become_spans_with_the_syscall_exit_backend() {
    http1_exchanges_become_spans_with("syscall-exit", "syscall exit");
}

fn http1_exchanges_become_spans_with(backend: &str, described: &str) {
    require_root();
    let server = Server::python_app();
    let port = server.port.to_string();
    let agent = Agent::start(&["--open-port", &port, "--capture-backend", backend], &[]);
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains(&format!("data from {described})")),
        "{stderr}"
    );

    // curl: 200 and 404 on one keep-alive connection, a chunked response, a request body.
    curl(&[
        &server.url("/hello"),
        &server.url("/hello"),
        &server.url("/missing"),
    ]);
    let chunked = curl(&[&server.url("/chunked")]);
    assert!(chunked.ends_with("end\n"));
    let echoed = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "ping-body-1234",
        &server.url("/echo"),
    ]);
    assert_eq!(echoed, "ping-body-1234");
    // A Rust client: three requests on one connection.
    let (client_port, responses) = raw_keepalive_requests(
        server.port,
        &[
            "GET /hello?from=rust HTTP/1.1\r\nHost: test\r\n\r\n",
            "GET /status/503 HTTP/1.1\r\nHost: test\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: other.test:8080\r\nContent-Length: 5\r\n\r\nabcde",
        ],
    );
    assert!(responses[1].starts_with("HTTP/1.1 503"));
    // The server calls itself: a client span from the instrumented process.
    curl(&[&server.url("/proxy")]);

    let spans = agent.wait_for_spans(10, |s| s.str_of("kind") == "server");
    let client = agent.wait_for_spans(1, |s| s.str_of("kind") == "client");

    let server_pid = u64::from(server.pid());
    for span in &spans {
        assert_eq!(span.u64_of("pid"), server_pid, "{span}");
        assert_eq!(span.u64_of("local_port"), u64::from(server.port), "{span}");
        assert!(span.u64_of("duration_nanos") > 0, "{span}");
        assert!(span.u64_of("duration_nanos") < 5_000_000_000, "{span}");
        assert_eq!(span.str_of("process"), "python3");
    }

    let hello = server_span_for(&spans, "GET", "/hello");
    // two from curl, one from the Rust client, one from the proxy's own call
    assert_eq!(hello.len(), 4, "{spans:#?}");
    let curl_hello: Vec<_> = hello
        .iter()
        .filter(|s| s.str_of("target") == "/hello")
        .collect();
    assert!(curl_hello
        .iter()
        .all(|s| s.u64_of("status") == 200 && s.u64_of("response_body_bytes") == 27));
    // curl reused its connection for both /hello and /missing
    let missing = server_span_for(&spans, "GET", "/missing");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].u64_of("status"), 404);
    assert_eq!(missing[0].u64_of("response_body_bytes"), 10);
    assert!(curl_hello
        .iter()
        .any(|s| s.u64_of("peer_port") == missing[0].u64_of("peer_port")));

    let chunked = server_span_for(&spans, "GET", "/chunked");
    assert_eq!(chunked.len(), 1);
    assert_eq!(chunked[0].u64_of("status"), 200);
    assert_eq!(
        chunked[0].u64_of("response_body_bytes"),
        43,
        "de-chunked body size"
    );

    let echo = server_span_for(&spans, "POST", "/echo");
    assert_eq!(echo.len(), 2);
    assert!(echo
        .iter()
        .any(|s| s.u64_of("request_body_bytes") == 14 && s.u64_of("response_body_bytes") == 14));
    assert!(echo.iter().any(|s| s.u64_of("request_body_bytes") == 5));

    // The Rust client's three requests share one connection (one peer port).
    let rust: Vec<_> = spans
        .iter()
        .filter(|s| s.u64_of("peer_port") == u64::from(client_port))
        .collect();
    assert_eq!(rust.len(), 3, "{rust:#?}");
    // Each request's own Host, the second one repeating the first's on the
    // same connection, the third another one.
    let host_of = |target: &str| {
        rust.iter()
            .find(|s| s.str_of("target") == target)
            .map(|s| s.str_of("host").to_owned())
    };
    assert_eq!(
        host_of("/hello?from=rust").as_deref(),
        Some("test"),
        "{rust:#?}"
    );
    assert_eq!(host_of("/status/503").as_deref(), Some("test"), "{rust:#?}");
    assert_eq!(
        host_of("/echo").as_deref(),
        Some("other.test:8080"),
        "{rust:#?}"
    );
    assert!(rust
        .iter()
        .any(|s| s.str_of("path") == "/status/503" && s.u64_of("status") == 503));
    // curl's keep-alive requests repeat their Host too.
    let curl_host = format!("127.0.0.1:{port}");
    assert!(
        curl_hello
            .iter()
            .map(|s| **s)
            .chain(missing.iter().copied())
            .all(|s| s.str_of("host") == curl_host),
        "{spans:#?}"
    );

    let proxy = server_span_for(&spans, "GET", "/proxy");
    assert_eq!(proxy.len(), 1);
    let call = &client[0];
    assert_eq!(call.u64_of("pid"), server_pid);
    assert_eq!(call.str_of("method"), "GET");
    assert_eq!(call.str_of("path"), "/hello");
    assert_eq!(call.u64_of("status"), 200);
    assert_eq!(
        call.u64_of("peer_port"),
        u64::from(server.port),
        "client span points at the server"
    );
    // Its own end: the ephemeral port connect() picked, which the matching
    // server span sees as its peer.
    let local_port = call.u64_of("local_port");
    assert!(local_port > 0 && local_port < 65536, "{call}");
    assert!(
        hello.iter().any(|s| s.u64_of("peer_port") == local_port),
        "no server span from the client's port {local_port}: {hello:#?}"
    );
    // The client call happened inside the proxy request.
    assert!(call.u64_of("start_unix_nanos") >= proxy[0].u64_of("start_unix_nanos"));
    assert!(call.u64_of("duration_nanos") <= proxy[0].u64_of("duration_nanos"));
}

#[test]
fn uninstrumented_ports_produce_no_spans() {
    require_root();
    let watched = Server::python_app();
    let ignored = Server::python_app();
    let port = watched.port.to_string();
    let agent = Agent::start(&["--open-port", &port], &[]);
    for _ in 0..3 {
        curl(&[&ignored.url("/hello")]);
    }
    curl(&[&watched.url("/hello")]);
    agent.wait_for_spans(1, |s| s.u64_of("local_port") == u64::from(watched.port));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let spans = agent.spans();
    assert!(
        spans
            .iter()
            .all(|s| s.u64_of("pid") == u64::from(watched.pid())),
        "spans from an uninstrumented process: {spans:#?}"
    );
    assert_eq!(spans.len(), 1, "{spans:#?}");
}

#[test]
fn a_server_started_after_the_agent_is_instrumented() {
    require_root();
    let port = free_port();
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    // Found through the kernel's listen event, not a rescan.
    let server = Server::python_app_on(port);
    let started = std::time::Instant::now();
    curl(&[&server.url("/hello")]);
    let spans = agent.wait_for_spans(1, |s| s.str_of("path") == "/hello");
    assert_eq!(spans[0].u64_of("pid"), u64::from(server.pid()));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn garbage_on_an_instrumented_socket_is_ignored_and_counted() {
    require_root();
    let server = Server::python_app();
    let mut agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port))
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = stream.write_all(b"\x00\xffgarbage that is not http\r\n\r\n");
    }
    {
        // What a TLS client sends first: recognised as TLS, skipped, counted apart.
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port))
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = stream.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    }
    curl(&[&server.url("/hello")]);
    let spans = agent.wait_for_spans(1, |s| s.str_of("path") == "/hello");
    assert_eq!(spans[0].u64_of("status"), 200);
    assert_eq!(agent.stop(), Some(0));
    let stderr = agent.stderr.text();
    let garbage_line = stderr
        .lines()
        .find(|l| l.contains("garbage segments"))
        .unwrap_or_else(|| panic!("no stop summary:\n{stderr}"));
    assert!(
        !garbage_line.contains(" 0 garbage segments"),
        "{garbage_line}"
    );
    assert!(
        garbage_line.contains(" 1 TLS record segments skipped"),
        "{garbage_line}"
    );
}

/// A WebSocket connection (python3-websockets, server and client): the
/// handshake is one span with status 101, and the frames both ways after it
/// (text that reads like an HTTP request, random binary) are neither spans nor
/// garbage.
#[test]
fn a_websocket_connection_is_its_handshake_and_nothing_else() {
    require_root();
    let server = Server::system_python("ws_echo.py");
    let mut agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/ws_echo.py");
    let talk = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args([&server.port.to_string(), "--talk", "40"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the WebSocket client: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&talk.stdout).trim(),
        "echoed 40",
        "{}",
        String::from_utf8_lossy(&talk.stderr)
    );
    let spans = agent.wait_for_spans(1, |s| s.str_of("path") == "/ws");
    assert_eq!(spans[0].u64_of("status"), 101, "{spans:#?}");
    assert_eq!(spans[0].str_of("kind"), "server");
    assert_eq!(agent.stop(), Some(0));
    let all = agent.spans();
    assert_eq!(all.len(), 1, "{all:#?}");
    let stderr = agent.stderr.text();
    let summary = stderr
        .lines()
        .find(|l| l.contains("garbage segments"))
        .unwrap_or_else(|| panic!("no stop summary:\n{stderr}"));
    assert!(summary.contains(" 0 garbage segments"), "{summary}");
    assert!(
        summary.contains(" 0 requests without a response"),
        "{summary}"
    );
}
