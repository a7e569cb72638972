//! HTTP/1 exchanges whose heads are larger than the payload capture (bearer
//! tokens, cookies, many headers, big `Set-Cookie`s), with bodies from
//! nothing to 1 MB, several requests per connection, from curl and Python
//! clients to nginx and a Python server, in cleartext and over TLS: every
//! exchange must come out once, paired with its own response, with its
//! method, path, status and body sizes — exact, or marked partial where the
//! capture really did not show something.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use zerotrace_integration_tests::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What one exchange must come out as: method, path, status, request and
/// response body sizes, partial.
type Exchange = (String, String, u64, u64, u64, bool);

fn exchange(
    method: &str,
    path: &str,
    status: u64,
    request_body: u64,
    response_body: u64,
    partial: bool,
) -> Exchange {
    (
        method.into(),
        path.into(),
        status,
        request_body,
        response_body,
        partial,
    )
}

fn exchange_of(span: &Value) -> Exchange {
    exchange(
        span.str_of("method"),
        span.str_of("path"),
        span.u64_of("status"),
        span.u64_of("request_body_bytes"),
        span.u64_of("response_body_bytes"),
        span.get("partial").and_then(Value::as_bool).unwrap_or(true),
    )
}

/// Waits for `want.len()` server spans, then checks that exactly those came out.
fn expect_exchanges(agent: &mut Agent, mut want: Vec<Exchange>) -> Vec<Value> {
    wait_for(Duration::from_secs(10), || {
        (agent.spans().len() >= want.len()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    let mut got: Vec<Exchange> = spans.iter().map(exchange_of).collect();
    got.sort();
    want.sort();
    let mut missing = want.clone();
    let mut extra = Vec::new();
    for g in &got {
        match missing.iter().position(|w| w == g) {
            Some(i) => {
                missing.remove(i);
            }
            None => extra.push(g.clone()),
        }
    }
    if !(missing.is_empty() && extra.is_empty()) {
        agent.stop();
        panic!(
            "missing: {missing:#?}\nunexpected: {extra:#?}\nagent stderr:\n{}",
            agent.stderr.text()
        );
    }
    spans
}

/// The shapes of a big request head.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Bearer,
    Cookie,
    ManyHeaders,
}

const SHAPES: [Shape; 3] = [Shape::Bearer, Shape::Cookie, Shape::ManyHeaders];

/// curl `-H` arguments that make a request head of about `size` bytes
/// (curl's own request line and fields take about 90).
fn header_args(shape: Shape, size: usize) -> Vec<String> {
    let room = size.saturating_sub(100).max(20);
    let filler = |n: usize| -> String {
        (0..n)
            .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]))
            .collect()
    };
    let fields = match shape {
        Shape::Bearer => vec![format!("Authorization: Bearer {}", filler(room - 22))],
        Shape::Cookie => vec![format!("Cookie: session={}", filler(room - 17))],
        // 100 bytes each: Python's server takes at most 100 fields.
        Shape::ManyHeaders => (0..room / 100)
            .map(|i| format!("X-Header-{i:03}: {}", filler(84)))
            .collect(),
    };
    fields.into_iter().flat_map(|f| ["-H".into(), f]).collect()
}

fn curl_with(headers: &[String], args: &[&str]) -> String {
    let mut all: Vec<&str> = headers.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    curl(&all)
}

/// A scratch directory with request bodies of 1 KB and 1 MB, removed on drop.
struct Bodies {
    dir: PathBuf,
}

impl Bodies {
    fn new(name: &str) -> Bodies {
        let dir = std::env::temp_dir().join(format!("zt-bodies-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for (file, size) in [("1k", 1024), ("1m", 1_000_000)] {
            std::fs::write(dir.join(file), vec![b'b'; size]).unwrap_or_else(|e| panic!("{e}"));
        }
        Bodies { dir }
    }

    /// `--data-binary @file` of the body of that name.
    fn arg(&self, name: &str) -> String {
        format!("@{}", self.dir.join(name).display())
    }
}

impl Drop for Bodies {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Drives a Python server at `base` (`http://…` or `https://…`) with every
/// request-head size and shape: three GETs per connection (100 B, 1 KB with
/// a 900-byte Set-Cookie, 300 KB chunked), then POSTs of 1 KB, 1 MB and a
/// chunked 1 KB. Returns the exchanges each must become.
fn drive_python_server(base: &str, sizes: &[usize], bodies: &Bodies) -> Vec<Exchange> {
    let mut want = Vec::new();
    let tls: &[&str] = if base.starts_with("https") {
        &["-k"]
    } else {
        &[]
    };
    for &size in sizes {
        for shape in SHAPES {
            let headers = header_args(shape, size);
            let mut args = tls.to_vec();
            let urls = [
                format!("{base}/size/100"),
                format!("{base}/size/1024?cookie=900"),
                format!("{base}/size/300000?chunked"),
            ];
            args.extend(urls.iter().map(String::as_str));
            let out = curl_with(&headers, &args);
            assert_eq!(out.len(), 100 + 1024 + 300_000, "{out}");
            want.push(exchange("GET", "/size/100", 200, 0, 100, false));
            want.push(exchange("GET", "/size/1024", 200, 0, 1024, false));
            want.push(exchange("GET", "/size/300000", 200, 0, 300_000, false));
        }
        let headers = header_args(Shape::Bearer, size);
        for (body, chunked, length) in [
            ("1k", false, 1024),
            ("1m", false, 1_000_000),
            ("1k", true, 1024),
        ] {
            let mut args = tls.to_vec();
            let data = bodies.arg(body);
            let url = format!("{base}/size/10");
            if chunked {
                args.extend(["-H", "Transfer-Encoding: chunked"]);
            }
            args.extend(["--data-binary", &data, &url]);
            assert_eq!(curl_with(&headers, &args).len(), 10);
            want.push(exchange("POST", "/size/10", 200, length, 10, false));
        }
    }
    want
}

#[test]
fn python_server_request_heads_up_to_8_kb_from_curl_are_exact() {
    require_root();
    let server = Server::python_app();
    let mut agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    let bodies = Bodies::new("python");
    let base = format!("http://127.0.0.1:{}", server.port);
    let want = drive_python_server(&base, &[300, 600, 2000, 8000], &bodies);
    expect_exchanges(&mut agent, want);
}

/// Chunked bodies whose chunk size lines fall in bytes the capture does not
/// copy: a Node.js response of 50 chunks written in one tick (Node sends
/// them with one `writev`: 20 KB segments of size lines and pieces) and a
/// 1 MB chunked upload from curl, which Node reads 64 KB at a time across
/// chunk boundaries. The framing is lost in the first segment; every byte
/// after the loss counts as body, size lines included, so the sizes are the
/// bytes sent (they were 24,000 and 131,048).
#[test]
fn chunked_bodies_whose_framing_is_lost_count_the_bytes_sent() {
    require_root();
    let Some(server) = Server::node("chunked_node.js") else {
        eprintln!("node is not installed: skipping");
        return;
    };
    let agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    assert_eq!(curl(&[&server.url("/burst/50")]).len(), 200_004);
    let bodies = Bodies::new("node");
    let data = bodies.arg("1m");
    let upload = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &server.url("/upload"),
    ]);
    assert_eq!(upload, "1000000");
    wait_for(Duration::from_secs(10), || {
        (agent.spans().len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let spans = agent.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    // The bytes sent: the data, and at most a size line and CRLF per 4,000-
    // or 64 KB-chunk (under 0.5 %).
    let response = spans[0].u64_of("response_body_bytes");
    assert!((200_004..=201_000).contains(&response), "{}", spans[0]);
    let request = spans[1].u64_of("request_body_bytes");
    assert!((1_000_000..=1_005_000).contains(&request), "{}", spans[1]);
}

/// A Python client that listens too, so that `--open-port` instruments it;
/// told once, it GETs its paths on one keep-alive connection, then holds the
/// connection idle (a pool does) until told again.
struct HeldClient {
    child: std::process::Child,
    input: std::process::ChildStdin,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    paths: usize,
    /// The port it listens on.
    port: String,
}

impl HeldClient {
    fn start(server_port: u16, paths: &[&str]) -> HeldClient {
        use std::io::BufRead;
        let script = format!(
            "import http.client, socket, sys\n\
             l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
             print(l.getsockname()[1], flush=True)\n\
             sys.stdin.readline()\n\
             c = http.client.HTTPConnection('127.0.0.1', {server_port})\n\
             for p in {paths:?}:\n\
             \x20   c.request('GET', p); print(len(c.getresponse().read()), flush=True)\n\
             sys.stdin.readline()\n\
             c.close()\n"
        );
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("no pipes to the client");
        };
        let mut lines = std::io::BufReader::new(output).lines();
        let port = lines.next().and_then(Result::ok).unwrap_or_default();
        HeldClient {
            child,
            input,
            lines,
            paths: paths.len(),
            port,
        }
    }

    /// Makes its requests; returns the body lengths it read.
    fn call(&mut self) -> Vec<String> {
        use std::io::Write;
        let _ = writeln!(self.input);
        (0..self.paths)
            .map(|_| self.lines.next().and_then(Result::ok).unwrap_or_default())
            .collect()
    }
}

impl Drop for HeldClient {
    /// Closes the connection and waits for the client.
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.input);
        let _ = self.child.wait();
    }
}

/// A client that reads a chunked response whose framing the capture loses,
/// then keeps its connection idle (a pool does): its span is made at the
/// read that ends with the last chunk (in the copy of the read's last
/// bytes), not when the connection is next used or closed.
#[test]
fn a_client_span_of_a_lost_chunked_response_is_made_while_its_connection_idles() {
    require_root();
    let Some(server) = Server::node("chunked_node.js") else {
        eprintln!("node is not installed: skipping");
        return;
    };
    let mut client = HeldClient::start(server.port, &["/burst/50"]);
    let agent = Agent::start(
        &["--open-port", &format!("{},{}", server.port, client.port)],
        &[],
    );
    assert_eq!(client.call(), ["200004"]);
    let spans = wait_for(Duration::from_secs(10), || {
        let spans: Vec<Value> = agent
            .spans()
            .into_iter()
            .filter(|s| s.str_of("kind") == "client")
            .collect();
        (!spans.is_empty()).then_some(spans)
    });
    // Let the client go before asserting, so that it never outlives a failure.
    drop(client);
    let Some(spans) = spans else {
        panic!("no client span while the connection was idle");
    };
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].str_of("path"), "/burst/50", "{}", spans[0]);
    let response = spans[0].u64_of("response_body_bytes");
    assert!((200_004..=201_000).contains(&response), "{}", spans[0]);
}

/// Node.js streams a chunked response: a chunk at once, and 20 ms later the
/// next chunk, the last piece and the last chunk in one writev longer than
/// the copy. The kernel copies that writev's end apart, as it does a
/// contiguous segment's, and the framing, known where the copy stopped (in
/// the chunk's data), is read on into it: every response is whole on both
/// sides, and made while the client's connection idles (without the end, the
/// server's spans waited for the connection's next use or its close).
#[test]
fn a_streamed_chunked_response_is_whole_while_its_connection_idles() {
    require_root();
    let Some(server) = Server::node("chunked_node.js") else {
        eprintln!("node is not installed: skipping");
        return;
    };
    let mut client = HeldClient::start(server.port, &["/late"; 5]);
    let agent = Agent::start(
        &["--open-port", &format!("{},{}", server.port, client.port)],
        &[],
    );
    assert_eq!(client.call(), ["8004"; 5]);
    let spans = wait_for(Duration::from_secs(10), || {
        let spans = agent.spans();
        (spans.len() >= 10).then_some(spans)
    });
    // Let the client go before asserting, so that it never outlives a failure.
    drop(client);
    let Some(spans) = spans else {
        panic!(
            "not every span while the connection was idle; at its close: {:#?}",
            agent.spans()
        );
    };
    assert_eq!(spans.len(), 10, "{spans:#?}");
    for kind in ["server", "client"] {
        let of_kind: Vec<Exchange> = spans
            .iter()
            .filter(|s| s.str_of("kind") == kind)
            .map(exchange_of)
            .collect();
        assert_eq!(
            of_kind,
            vec![exchange("GET", "/late", 200, 0, 8004, false); 5],
            "{kind}: {spans:#?}"
        );
    }
}

#[test]
fn traceparent_after_a_2_kb_cookie_continues_the_trace() {
    require_root();
    let server = Server::python_app();
    let mut agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    let mut headers = header_args(Shape::Cookie, 2000);
    headers.extend([
        "-H".to_string(),
        "Host: shop.example".to_string(),
        "-H".to_string(),
        format!("traceparent: {TRACEPARENT}"),
        "-H".to_string(),
        "Content-Type: application/json".to_string(),
    ]);
    curl_with(
        &headers,
        &["--data-binary", "{\"a\":1}", &server.url("/size/10")],
    );
    let spans = expect_exchanges(
        &mut agent,
        vec![exchange("POST", "/size/10", 200, 7, 10, false)],
    );
    assert_eq!(spans[0].str_of("traceparent"), TRACEPARENT, "{}", spans[0]);
    assert_eq!(spans[0].str_of("host"), "shop.example");
}

/// The agent with the head capture turned down to the payload capture: heads
/// are cut at 512 bytes like any segment, and framing falls back on the
/// segments' lengths, the direction turning and the close.
#[test]
fn heads_cut_at_512_bytes_still_make_one_span_per_exchange() {
    require_root();
    let server = Server::python_app();
    let mut agent = Agent::start(
        &["--open-port", &server.port.to_string()],
        &[("ZEROTRACE_HEAD_CAPTURE", "512")],
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut want = Vec::new();
    for size in [600, 2000, 8000] {
        for shape in SHAPES {
            let urls = [
                format!("{base}/size/100"),
                format!("{base}/size/1024?cookie=900"),
                format!("{base}/size/300000?chunked"),
                format!("{base}/status/404"),
            ];
            let args: Vec<&str> = urls.iter().map(String::as_str).collect();
            curl_with(&header_args(shape, size), &args);
            // The requests' ends are never seen: their sizes are not known.
            // The response with its Content-Length past a 900-byte cookie
            // neither; the others are exact. A head of about 600 bytes is
            // within 128 bytes of the 512 copied, and a segment that close
            // to its copy is copied whole: those requests are whole.
            let cut = size > 600;
            want.push(exchange("GET", "/size/100", 200, 0, 100, cut));
            want.push(exchange("GET", "/size/1024", 200, 0, 0, true));
            want.push(exchange("GET", "/size/300000", 200, 0, 300_000, cut));
            want.push(exchange("GET", "/status/404", 404, 0, 11, cut));
        }
    }
    expect_exchanges(&mut agent, want);
    assert_eq!(agent.stop(), Some(0));
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains("exchanges lost: 0 responses without a request, 0 requests without a response, 0 requests over the pipelining limit"),
        "{stderr}"
    );
    assert!(stderr.contains(" 0 garbage segments"), "{stderr}");
}

/// nginx serving static files of 100 B, 1 KB and 1 MB (the 1 KB one with a
/// 900-byte Set-Cookie) and answering POSTs.
fn nginx_files(name: &str, port: u16, tls: Option<(&str, &str)>) -> Nginx {
    let cookie = "c".repeat(900);
    let listen = match tls {
        Some((cert, key)) => format!(
            "    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
        ),
        None => format!("    listen 127.0.0.1:{port};\n"),
    };
    let nginx = Nginx::start(
        name,
        port,
        &format!(
            "{listen}    root {{dir}}/www;\n    location /cookie/ {{ add_header Set-Cookie \"big={cookie}\"; }}\n    location = /post {{ return 201 \"created\\n\"; }}"
        ),
    );
    for (path, size) in [
        ("size/100", 100),
        ("size/1m", 1_000_000),
        ("cookie/1k", 1024),
    ] {
        let file = nginx.dir.join("www").join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&file, vec![b'n'; size]).unwrap_or_else(|e| panic!("{e}"));
    }
    nginx
}

/// Drives nginx at `base` with every head size and shape: three GETs per
/// connection, a POST of 1 KB. Returns the exchanges each must become.
fn drive_nginx(base: &str, sizes: &[usize], bodies: &Bodies) -> Vec<Exchange> {
    let tls: &[&str] = if base.starts_with("https") {
        &["-k"]
    } else {
        &[]
    };
    let mut want = Vec::new();
    for &size in sizes {
        for shape in SHAPES {
            let headers = header_args(shape, size);
            let urls = [
                format!("{base}/size/100"),
                format!("{base}/cookie/1k"),
                format!("{base}/size/1m"),
            ];
            let mut args = tls.to_vec();
            args.extend(urls.iter().map(String::as_str));
            assert_eq!(curl_with(&headers, &args).len(), 100 + 1024 + 1_000_000);
            want.push(exchange("GET", "/size/100", 200, 0, 100, false));
            want.push(exchange("GET", "/cookie/1k", 200, 0, 1024, false));
            want.push(exchange("GET", "/size/1m", 200, 0, 1_000_000, false));
            let data = bodies.arg("1k");
            let url = format!("{base}/post");
            let mut args = tls.to_vec();
            args.extend(["--data-binary", &data, &url]);
            assert_eq!(curl_with(&headers, &args), "created\n");
            want.push(exchange("POST", "/post", 201, 1024, 8, false));
        }
    }
    want
}

#[test]
fn nginx_request_heads_that_fit_its_first_read_are_exact() {
    require_root();
    let port = free_port();
    let _nginx = nginx_files("heads", port, None);
    let mut agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let bodies = Bodies::new("nginx");
    let want = drive_nginx(
        &format!("http://127.0.0.1:{port}"),
        &[300, 600, 900],
        &bodies,
    );
    expect_exchanges(&mut agent, want);
}

/// nginx reads a request's first 1 KB, then the rest of a bigger head in a
/// second read that does not start a head: the kernel copies that read as
/// part of the head too (the first read filled nginx's buffer), so the end of
/// the head and the Content-Length after the big field are seen and every
/// size is exact.
/// Both capture backends: the socket tracepoints and the syscall exit.
#[test]
fn nginx_request_heads_of_2_and_8_kb_are_exact() {
    require_root();
    for backend in ["socket", "syscall-exit"] {
        let port = free_port();
        let _nginx = nginx_files(&format!("bigheads-{backend}"), port, None);
        let mut agent = Agent::start(
            &[
                "--open-port",
                &port.to_string(),
                "--capture-backend",
                backend,
            ],
            &[],
        );
        let bodies = Bodies::new(&format!("nginx-big-{backend}"));
        let base = format!("http://127.0.0.1:{port}");
        let want = drive_nginx(&base, &[2000, 8000], &bodies);
        expect_exchanges(&mut agent, want);
    }
}

/// A Python client (http.client): requests on one keep-alive connection
/// with big heads, bodies of 0 B, 1 KB and 1 MB.
fn python_client(port: u16, tls: bool, requests: &[(&str, &str, usize, usize)]) {
    let script = r#"
import http.client, json, ssl, sys
port, tls, requests = int(sys.argv[1]), sys.argv[2] == "tls", json.loads(sys.argv[3])
if tls:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
else:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for method, path, head, body in requests:
    headers = {"Cookie": "k=" + "c" * head, "Authorization": "Bearer " + "t" * (head // 2)}
    conn.request(method, path, body=b"p" * body if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    response.read()
    assert response.status < 500, response.status
conn.close()
"#;
    let spec = serde_json::to_string(requests).unwrap_or_default();
    let status = Command::new("/usr/bin/python3")
        .args([
            "-c",
            script,
            &port.to_string(),
            if tls { "tls" } else { "plain" },
            &spec,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(status.success(), "python client failed");
}

#[test]
fn python_client_keep_alive_with_big_heads_to_python_and_nginx() {
    require_root();
    let server = Server::python_app();
    let port = free_port();
    let _nginx = nginx_files("pyclient", port, None);
    let mut agent = Agent::start(&["--open-port", &format!("{},{port}", server.port)], &[]);
    let requests = [
        ("GET", "/size/100", 1500, 0),
        ("POST", "/size/1024?cookie=900", 3000, 1024),
        ("POST", "/size/10", 600, 1_000_000),
        ("GET", "/size/300000?chunked", 5000, 0),
    ];
    python_client(server.port, false, &requests);
    let mut want = vec![
        exchange("GET", "/size/100", 200, 0, 100, false),
        exchange("POST", "/size/1024", 200, 1024, 1024, false),
        exchange("POST", "/size/10", 200, 1_000_000, 10, false),
        exchange("GET", "/size/300000", 200, 0, 300_000, false),
    ];
    // nginx: heads that fit its first 1 KB read.
    python_client(
        port,
        false,
        &[
            ("GET", "/size/100", 300, 0),
            ("GET", "/cookie/1k", 400, 0),
            ("POST", "/post", 200, 100),
        ],
    );
    want.extend([
        exchange("GET", "/size/100", 200, 0, 100, false),
        exchange("GET", "/cookie/1k", 200, 0, 1024, false),
        exchange("POST", "/post", 201, 100, 8, false),
    ]);
    expect_exchanges(&mut agent, want);
}

struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_tls_server(port: u16, certificate: &Certificate) -> Process {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/http_app.py");
    let child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .args(["--tls", &certificate.cert, &certificate.key])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let process = Process(child);
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "the TLS server never listened on {port}");
    process
}

#[test]
fn tls_python_server_request_heads_up_to_8_kb_are_exact() {
    require_root();
    let certificate = Certificate::new("python");
    let port = free_port();
    let server = python_tls_server(port, &certificate);
    let mut agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(server.0.id());
    let bodies = Bodies::new("tls-python");
    let want = drive_python_server(&format!("https://127.0.0.1:{port}"), &[600, 8000], &bodies);
    let spans = expect_exchanges(&mut agent, want);
    assert!(spans.iter().all(|s| s.str_of("scheme") == "https"));
}

#[test]
fn tls_nginx_and_python_client_with_big_heads() {
    require_root();
    let certificate = Certificate::new("nginx");
    let port = free_port();
    let nginx = nginx_files(
        "tls-heads",
        port,
        Some((&certificate.cert, &certificate.key)),
    );
    let mut agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(nginx.child.id());
    let bodies = Bodies::new("tls-nginx");
    let mut want = drive_nginx(&format!("https://127.0.0.1:{port}"), &[300, 900], &bodies);
    python_client(
        port,
        true,
        &[("GET", "/size/100", 300, 0), ("POST", "/post", 200, 100)],
    );
    want.extend([
        exchange("GET", "/size/100", 200, 0, 100, false),
        exchange("POST", "/post", 201, 100, 8, false),
    ]);
    let spans = expect_exchanges(&mut agent, want);
    assert!(spans.iter().all(|s| s.str_of("scheme") == "https"));
}
