//! HTTP/2 (h2c) from real servers: nginx with prior knowledge driven by curl
//! and h2load with many concurrent streams, and a server on the `h2` library
//! reached through the HTTP/1.1 Upgrade: every request appears once, right.

use std::process::Command;
use std::time::Duration;

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
    let load = Command::new("h2load")
        .args([
            "-n",
            "300",
            "-c",
            "3",
            "-m",
            "20",
            &format!("{base}/a?load"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("h2load: {e}"));
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(report.contains("300 succeeded"), "{report}");

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
