//! TLS plaintext through the library hooks (uprobes on SSL_read/SSL_write):
//! real HTTPS servers (Python's ssl module, nginx with HTTP/1.1 and HTTP/2,
//! Node.js with its own OpenSSL) driven by curl and h2load; and the loader's
//! checks of AttachUprobe requests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric;
use serde_json::Value;
use zerotrace_integration_tests::otlp_receiver::{attr_str, metrics_of, spans_of, OtlpReceiver};
use zerotrace_integration_tests::stand_in;
use zerotrace_integration_tests::*;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[&str], port: u16) -> Process {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let process = Process(child);
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "{program} never listened on {port}");
    process
}

/// `tests/servers/http_app.py` over TLS (Python's `ssl` module on the
/// system libssl) on a free port, as root.
struct PythonTls {
    process: Process,
    port: u16,
    _certificate: Certificate,
}

impl PythonTls {
    fn start(name: &str) -> PythonTls {
        Self::start_with(name, &[])
    }

    /// With `http_app.py`'s options after `--tls CERT KEY`.
    fn start_with(name: &str, options: &[&str]) -> PythonTls {
        let certificate = Certificate::new(name);
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/servers/http_app.py");
        let port_text = port.to_string();
        let mut args = vec![
            script,
            &port_text,
            "--tls",
            &certificate.cert,
            &certificate.key,
        ];
        args.extend_from_slice(options);
        let process = start("/usr/bin/python3", &args, port);
        PythonTls {
            process,
            port,
            _certificate: certificate,
        }
    }
}

fn https(args: &[&str]) -> String {
    let mut all = vec!["-k"];
    all.extend_from_slice(args);
    curl(&all)
}

fn is_https(span: &Value) -> bool {
    span.str_of("scheme") == "https"
}

#[test]
fn python_ssl_server_spans_carry_method_path_status_and_https() {
    require_root();
    let server = PythonTls::start("python");
    let port = server.port;
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(server.process.0.id());

    let base = format!("https://127.0.0.1:{port}");
    assert_eq!(
        https(&[&format!("{base}/hello?secret=1")]),
        "hello from the test server\n"
    );
    https(&[&format!("{base}/status/503")]);
    https(&["-d", "ping", &format!("{base}/echo")]);
    let spans = agent.wait_for_spans(3, is_https);
    std::thread::sleep(Duration::from_millis(300));
    let all = agent.spans();
    assert_eq!(all.len(), 3, "only the three exchanges: {all:?}");
    let find = |target: &str| {
        spans
            .iter()
            .find(|s| s.str_of("target") == target)
            .unwrap_or_else(|| panic!("no span for {target}: {spans:?}"))
    };
    let hello = find("/hello?secret=1");
    assert_eq!(hello.str_of("method"), "GET");
    assert_eq!(hello.u64_of("status"), 200);
    assert_eq!(hello.str_of("kind"), "server");
    assert_eq!(hello.u64_of("local_port"), u64::from(port));
    assert_eq!(hello.str_of("peer_address"), "127.0.0.1");
    assert_eq!(hello.u64_of("response_body_bytes"), 27);
    assert_eq!(find("/status/503").u64_of("status"), 503);
    let echo = find("/echo");
    assert_eq!(echo.str_of("method"), "POST");
    assert_eq!(echo.u64_of("request_body_bytes"), 4);
}

/// An HTTPS client that first sends nine bytes shaped like an HTTP/2
/// SETTINGS frame header, then two requests over one TLS connection.
const SNIFFED_CLIENT: &str = r#"
import http.client, socket, ssl, sys

class Sniffed(http.client.HTTPConnection):
    def connect(self):
        raw = socket.create_connection((self.host, self.port))
        raw.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(raw)

connection = Sniffed("127.0.0.1", int(sys.argv[1]))
for path in ["/hello", "/status/503"]:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    print(response.status)
"#;

/// Bytes read before a TLS handshake that look like an HTTP/2 frame header
/// (encrypted records do, about one in 15,000) must not mark the socket as
/// plain HTTP: its TLS records would then go out raw, and its plaintext
/// would find no socket.
#[test]
fn a_tls_socket_whose_first_bytes_look_like_an_http2_frame_keeps_its_plaintext() {
    require_root();
    let server = PythonTls::start_with("sniffed", &["--preamble", "9"]);
    let port = server.port;
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(server.process.0.id());
    let out = Command::new("/usr/bin/python3")
        .args(["-c", SNIFFED_CLIENT, &port.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200\n503\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = agent.wait_for_spans(2, is_https);
    assert_eq!(
        spans.len(),
        2,
        "{spans:?}\nagent stderr:\n{}",
        agent.stderr.text()
    );
    let statuses: Vec<(String, u64)> = spans
        .iter()
        .map(|s| (s.str_of("target").to_owned(), s.u64_of("status")))
        .collect();
    assert!(
        statuses.contains(&("/hello".to_owned(), 200)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("/status/503".to_owned(), 503)),
        "{statuses:?}"
    );
    assert_eq!(spans[0].u64_of("peer_port"), spans[1].u64_of("peer_port"));
}

#[test]
fn python_ssl_spans_reach_otlp_with_url_scheme_https() {
    require_root();
    let server = PythonTls::start("otlp");
    let port = server.port;
    let receiver = OtlpReceiver::start_grpc();
    let agent = Agent::start_exporting_to(&["--open-port", &port.to_string()], &receiver, &[]);
    agent.wait_for_tls_hooks(server.process.0.id());
    https(&[&format!("https://127.0.0.1:{port}/hello")]);
    let span = receiver
        .wait_for_traces(Duration::from_secs(15), |traces| {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .find(|s| attr_str(&s.attributes, "url.path").as_deref() == Some("/hello"))
        })
        .unwrap_or_else(|| panic!("no span exported; agent stderr:\n{}", agent.stderr.text()));
    assert_eq!(
        attr_str(&span.attributes, "url.scheme").as_deref(),
        Some("https")
    );
    assert_eq!(
        attr_str(&span.attributes, "http.request.method").as_deref(),
        Some("GET")
    );
    // The RED histogram's series says https too.
    let scheme = receiver.wait_for_metrics(Duration::from_secs(15), |exports| {
        metrics_of(exports)
            .into_iter()
            .filter(|(_, m)| m.name == "http.server.request.duration")
            .find_map(|(_, m)| match m.data {
                Some(metric::Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .find_map(|p| attr_str(&p.attributes, "url.scheme")),
                _ => None,
            })
    });
    assert_eq!(scheme.as_deref(), Some("https"));
}

fn nginx_tls(port: u16, certificate: &Certificate) -> Nginx {
    Nginx::start(
        "tls",
        port,
        &format!(
            "    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location /a {{ return 200 \"alpha\\n\"; }}\n    location /b {{ return 404; }}",
            certificate.cert, certificate.key
        ),
    )
}

#[test]
fn nginx_tls_http1_and_h2_requests_each_become_one_https_span() {
    require_root();
    let certificate = Certificate::new("nginx");
    let port = free_port();
    let nginx = nginx_tls(port, &certificate);
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(nginx.child.id());
    let base = format!("https://127.0.0.1:{port}");

    assert_eq!(https(&["--http1.1", &format!("{base}/a?one")]), "alpha\n");
    https(&["--http1.1", &format!("{base}/b?one")]);
    assert_eq!(https(&["--http2", &format!("{base}/a?two")]), "alpha\n");
    https(&["--http2", &format!("{base}/b?two")]);
    let url = format!("{base}/a?load");
    h2load(
        &["-n", "200", "-c", "2", "-m", "10", &url],
        &["200 succeeded"],
    );

    agent.wait_for_spans(204, is_https);
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert_eq!(spans.len(), 204, "each request exactly once");
    for span in &spans {
        assert!(is_https(span), "{span}");
        assert_eq!(span.str_of("method"), "GET");
        assert_eq!(span.str_of("process"), "nginx");
        assert_eq!(span.u64_of("local_port"), u64::from(port));
        let expected = if span.str_of("path") == "/b" {
            404
        } else {
            200
        };
        assert_eq!(span.u64_of("status"), expected, "{span}");
        let version = if span.str_of("target").ends_with("one") {
            "1.1"
        } else {
            "2"
        };
        assert_eq!(span.str_of("protocol_version"), version, "{span}");
    }
    let loaded = spans
        .iter()
        .filter(|s| s.str_of("target") == "/a?load")
        .count();
    assert_eq!(loaded, 200);
}

/// One nginx with TLS hooks serving plain HTTP and HTTPS: the kernel marks a
/// socket whose first bytes are a plain HTTP request outside any TLS call and
/// skips the TLS bookkeeping for its later segments; the HTTPS sockets of the
/// same process must still give their plaintext, once, and the plain ones
/// every request of the keep-alive connection.
#[test]
fn plain_and_tls_sockets_of_one_hooked_process_each_give_their_spans() {
    require_root();
    let certificate = Certificate::new("mixed");
    let (tls_port, plain_port) = (free_port(), free_port());
    let nginx = Nginx::start(
        "mixed",
        tls_port,
        &format!(
            "    listen 127.0.0.1:{tls_port} ssl;\n    listen 127.0.0.1:{plain_port};\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location /a {{ return 200 \"alpha\\n\"; }}",
            certificate.cert, certificate.key
        ),
    );
    let ports = format!("{tls_port},{plain_port}");
    let agent = Agent::start(&["--open-port", &ports], &[]);
    agent.wait_for_tls_hooks(nginx.child.id());

    // Three requests on one keep-alive connection each way, twice.
    for round in 0..2 {
        let plain: Vec<String> = (0..3)
            .map(|i| format!("http://127.0.0.1:{plain_port}/a?plain{round}{i}"))
            .collect();
        let secure: Vec<String> = (0..3)
            .map(|i| format!("https://127.0.0.1:{tls_port}/a?tls{round}{i}"))
            .collect();
        let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
        assert_eq!(curl(&plain), "alpha\n".repeat(3));
        let mut args = vec!["--http1.1"];
        args.extend(secure.iter().map(String::as_str));
        assert_eq!(https(&args), "alpha\n".repeat(3));
    }
    agent.wait_for_spans(12, |_| true);
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert_eq!(spans.len(), 12, "each request exactly once: {spans:?}");
    for span in &spans {
        let target = span.str_of("target");
        let (scheme, port) = if target.contains("tls") {
            ("https", tls_port)
        } else {
            ("http", plain_port)
        };
        assert_eq!(span.str_of("scheme"), scheme, "{span}");
        assert_eq!(span.u64_of("local_port"), u64::from(port), "{span}");
        assert_eq!(span.u64_of("status"), 200, "{span}");
        assert_eq!(span.str_of("process"), "nginx", "{span}");
    }
    let mut targets: Vec<&str> = spans.iter().map(|s| s.str_of("target")).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 12, "{targets:?}");
}

/// nginx over TLS with HTTP/2, room for large heads, /a answering "alpha"
/// and /b 404.
fn nginx_tls_h2_heads(port: u16, certificate: &Certificate) -> Nginx {
    Nginx::start(
        "tls-heads",
        port,
        &format!(
            "    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    large_client_header_buffers 8 64k;\n    location /a {{ return 200 \"alpha\\n\"; }}\n    location /b {{ return 404; }}",
            certificate.cert, certificate.key
        ),
    )
}

#[test]
fn nginx_tls_h2_sequential_requests_with_large_heads_are_each_one_span() {
    require_root();
    let certificate = Certificate::new("nginx-heads");
    let port = free_port();
    let nginx = nginx_tls_h2_heads(port, &certificate);
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(nginx.child.id());
    let base = format!("https://127.0.0.1:{port}");
    // curl over TLS (ALPN h2), one connection for the three URLs, with a
    // 2 KB bearer token in each head.
    let token = format!("authorization: Bearer {}", "t".repeat(2040));
    let out = https(&[
        "--http2",
        "-H",
        &token,
        "-w",
        "%{http_code} %{num_connects}\n",
        &format!("{base}/a?c1"),
        &format!("{base}/b?c2"),
        &format!("{base}/a?c3"),
    ]);
    // Status and connections opened, per URL: the connection is reused.
    let codes: Vec<&str> = out
        .lines()
        .filter(|l| l.len() == 5 && l.as_bytes().get(3) == Some(&b' '))
        .collect();
    assert_eq!(codes, ["200 1", "404 0", "200 0"], "curl: {out}");
    // h2load: one connection, one request after another, an 8 KB cookie.
    let cookie = format!("cookie: jar={}", "j".repeat(8 * 1024));
    let (h1, h2, h3) = (
        format!("{base}/a?h1"),
        format!("{base}/b?h2"),
        format!("{base}/a?h3"),
    );
    let args = [
        "-n", "3", "-c", "1", "-m", "1", "-H", &cookie, &h1, &h2, &h3,
    ];
    h2load(&args, &["3 done"]);

    agent.wait_for_spans(6, is_https);
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    let mut got: Vec<(&str, &str, u64, bool)> = spans
        .iter()
        .map(|s| {
            (
                s.str_of("method"),
                s.str_of("target"),
                s.u64_of("status"),
                s.get("partial").and_then(Value::as_bool).unwrap_or(true),
            )
        })
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            ("GET", "/a?c1", 200, false),
            ("GET", "/a?c3", 200, false),
            ("GET", "/a?h1", 200, false),
            ("GET", "/a?h3", 200, false),
            ("GET", "/b?c2", 404, false),
            ("GET", "/b?h2", 404, false)
        ],
        "{spans:#?}"
    );
    for span in &spans {
        assert!(is_https(span), "{span}");
        assert_eq!(span.str_of("protocol_version"), "2");
        assert_eq!(span.str_of("host"), format!("127.0.0.1:{port}"), "{span}");
        let size = if span.str_of("path") == "/a" { 6 } else { 153 };
        assert_eq!(span.u64_of("response_body_bytes"), size, "{span}");
    }
}

#[test]
fn nginx_tls_h2_concurrent_requests_with_large_heads_keep_their_header_blocks() {
    // Ten streams at a time with a 3.5 KB cookie: the cookie goes in and out
    // of the encoder's table, so large header blocks keep coming, and TLS
    // records (16 KB of plaintext) cut some of them in two. Each cut block's
    // rest must be captured too, or the connection's HPACK state is lost.
    require_root();
    let certificate = Certificate::new("nginx-concurrent");
    let port = free_port();
    let nginx = nginx_tls_h2_heads(port, &certificate);
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(nginx.child.id());
    let base = format!("https://127.0.0.1:{port}");
    let cookie = format!("cookie: jar={}", "j".repeat(3500));
    let mut args: Vec<String> = ["-n", "400", "-c", "2", "-m", "10", "-H", &cookie]
        .map(String::from)
        .into();
    args.extend(["a?k1", "a?k2", "b?k3", "a?k4"].map(|p| format!("{base}/{p}")));
    h2load(&args, &["400 done"]);
    agent.wait_for_spans(400, is_https);
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert_eq!(spans.len(), 400, "agent stderr:\n{}", agent.stderr.text());
    let mut seen = std::collections::BTreeMap::new();
    for span in &spans {
        let key = (span.str_of("target").to_owned(), span.u64_of("status"));
        *seen.entry(key).or_insert(0) += 1;
        assert!(
            !span.get("partial").and_then(Value::as_bool).unwrap_or(true),
            "{span}\nagent stderr:\n{}",
            agent.stderr.text()
        );
        assert_eq!(span.str_of("method"), "GET", "{span}");
    }
    let want: std::collections::BTreeMap<(String, u64), i32> = [
        (("/a?k1".to_owned(), 200), 100),
        (("/a?k2".to_owned(), 200), 100),
        (("/a?k4".to_owned(), 200), 100),
        (("/b?k3".to_owned(), 404), 100),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, want);
}

/// `tests/servers/<script>` run by Node.js (its own statically linked
/// OpenSSL) with a fresh certificate on a free port, and an agent whose TLS
/// hooks are in it; None (the test skipped) when node is not installed.
fn node_tls_server(script: &str) -> Option<(Process, u16, Agent)> {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node is not installed: skipping the Node.js test of {script}");
        return None;
    }
    let certificate = Certificate::new(script);
    let port = free_port();
    let path = format!("{}/servers/{script}", env!("CARGO_MANIFEST_DIR"));
    let server = start(
        "node",
        &[
            &path,
            &port.to_string(),
            &certificate.cert,
            &certificate.key,
        ],
        port,
    );
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(server.0.id());
    Some((server, port, agent))
}

#[test]
fn node_https_server_with_its_own_openssl() {
    require_root();
    let Some((_server, port, agent)) = node_tls_server("https_app.js") else {
        return;
    };
    let base = format!("https://127.0.0.1:{port}");
    assert_eq!(https(&[&format!("{base}/hello")]), "hello from node\n");
    https(&[&format!("{base}/missing")]);
    agent.wait_for_spans(2, is_https);
    std::thread::sleep(Duration::from_millis(300));
    let spans = agent.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let status_of = |path: &str| {
        spans
            .iter()
            .find(|s| s.str_of("path") == path)
            .map(|s| s.u64_of("status"))
    };
    assert_eq!(status_of("/hello"), Some(200), "{spans:?}");
    assert_eq!(status_of("/missing"), Some(404), "{spans:?}");
    assert!(spans.iter().all(|s| s.str_of("method") == "GET"));
}

#[test]
fn the_loader_checks_every_attach_uprobe_request() {
    require_root();
    let requester = bin_dir().join("zerotrace-uprobe-requester");
    assert!(requester.is_file(), "build the workspace first");
    let (results, agent) =
        stand_in::report_of(&requester.to_string_lossy(), Duration::from_secs(30));
    let answer = |label: &str| results.str_of(label).to_owned();
    let libssl = answer("libssl");
    assert!(libssl.contains("libssl.so"), "{libssl}");

    for (label, field) in [
        ("not_instrumented", "AttachUprobe.pid"),
        ("not_mapped", "AttachUprobe.library"),
        ("off_allow_list", "AttachUprobe.symbol"),
        ("libc_system", "AttachUprobe.symbol"),
        ("relative_path", "AttachUprobe.library"),
        ("agent_itself", "AttachUprobe.pid"),
    ] {
        let got = answer(label);
        assert!(
            got.starts_with("Refused(InvalidField") && got.contains(field),
            "{label}: {got}"
        );
    }
    assert!(
        answer("describe_python").contains(&libssl),
        "{}",
        answer("describe_python")
    );
    assert_eq!(answer("absent_symbol"), "SymbolAbsent");
    assert_eq!(
        answer("granted"),
        "UprobeAttached { new: true }",
        "{}",
        agent.stderr.text()
    );
    assert_eq!(answer("granted_again"), "UprobeAttached { new: false }");
    assert!(
        answer("stats_attached").contains("uprobes_attached: 1"),
        "{}",
        answer("stats_attached")
    );
    assert!(
        answer("stats_after_exit").contains("uprobes_attached: 0"),
        "the hook outlived its process: {}",
        answer("stats_after_exit")
    );
    let stderr = agent.stderr.text();
    assert!(stderr.contains("detached the SSL_read hook"), "{stderr}");
}

/// Links of any kind that run one of `programs`, from `bpftool link list`.
fn links_running(programs: &[u32]) -> Vec<Value> {
    let output = Command::new("bpftool")
        .args(["-j", "link", "list"])
        .output()
        .unwrap_or_else(|e| panic!("bpftool: {e}"));
    let links: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    links
        .into_iter()
        .filter(|l| {
            l.get("prog_id")
                .and_then(Value::as_u64)
                .is_some_and(|id| programs.iter().any(|p| u64::from(*p) == id))
        })
        .collect()
}

/// uprobe_multi links (older bpftool prints the link type's number, 12).
fn uprobe_links(links: &[Value]) -> usize {
    links
        .iter()
        .filter(|l| l.str_of("type") == "uprobe_multi" || l.u64_of("type") == 12)
        .count()
}

#[test]
fn tls_hooks_survive_a_worker_restart_once_and_die_with_the_loader() {
    require_root();
    let server = PythonTls::start("faults");
    let port = server.port;
    let mut agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks(server.process.0.id());
    let programs = bpf_prog_ids_of(agent.child.id());
    let links = links_running(&programs);
    // Entry and return for each of the four functions of libssl.
    assert_eq!(uprobe_links(&links), 8, "{links:#?}");

    let worker = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    // SAFETY: signalling a process we started (through the loader).
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    let restarted = wait_for(Duration::from_secs(5), || {
        agent.worker_pid().filter(|pid| *pid != worker)
    });
    assert!(restarted.is_some(), "{}", agent.stderr.text());
    // The new worker asks again and gets the same hooks: nothing leaked or doubled.
    let asked_again = wait_for(Duration::from_secs(10), || {
        let needle = format!("TLS plaintext of pid {} captured", server.process.0.id());
        (agent.stderr.text().matches(&needle).count() >= 2).then_some(())
    });
    assert!(asked_again.is_some(), "{}", agent.stderr.text());
    assert_eq!(links_running(&programs).len(), links.len());
    https(&[&format!("https://127.0.0.1:{port}/hello?after-restart")]);
    agent.wait_for_spans(1, |s| {
        s.str_of("target") == "/hello?after-restart" && is_https(s)
    });

    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGKILL) };
    let _ = agent.child.wait();
    let gone = wait_for(Duration::from_secs(5), || {
        links_running(&programs).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "links left behind: {:#?}",
        links_running(&programs)
    );
}

#[test]
fn tls_capture_can_be_turned_off() {
    require_root();
    let _server = PythonTls::start("off");
    let port = _server.port;
    let metrics_port = free_port().to_string();
    let agent = Agent::start(
        &["--open-port", &port.to_string()],
        &[
            ("ZEROTRACE_TLS_CAPTURE", "false"),
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port),
        ],
    );
    assert_eq!(
        https(&[&format!("https://127.0.0.1:{port}/hello")]),
        "hello from the test server\n"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let stderr = agent.stderr.text();
    assert!(stderr.contains("TLS plaintext capture off"), "{stderr}");
    assert!(!stderr.contains("TLS plaintext of pid"), "{stderr}");
    // The records were recognised and skipped, and counted: no span, no garbage.
    assert!(agent.spans().is_empty(), "{:?}", agent.spans());
    let metrics = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("zerotrace_tls_record_segments_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(skipped.is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(
        metrics.contains("\nzerotrace_garbage_segments_total 0\n"),
        "{metrics}"
    );
    let programs = bpf_prog_ids_of(agent.child.id());
    assert_eq!(uprobe_links(&links_running(&programs)), 0);
}

/// The agent under `setpriv` with the service unit's capabilities, plus `extra`.
fn agent_with_caps(port: u16, extra: &str) -> Agent {
    let caps = format!("-all,+bpf,+perfmon,+setuid,+setgid{extra}");
    let agent = Agent::spawn_with_setpriv(
        &[
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &format!("--bounding-set={caps}"),
        ],
        &["--open-port", &port.to_string()],
        &[],
    );
    let ready = wait_for(Duration::from_secs(10), || {
        agent
            .stderr
            .text()
            .contains("ready: instrumenting")
            .then_some(())
    });
    assert!(ready.is_some(), "{}", agent.stderr.text());
    agent
}

#[test]
fn with_the_units_capabilities_tls_needs_cap_sys_ptrace_and_says_so() {
    require_root();
    // A root server with every capability: more than the loader holds.
    let _server = PythonTls::start("caps");
    let port = _server.port;
    let url = format!("https://127.0.0.1:{port}/hello?caps");
    for (extra, captured) in [("", false), (",+sys_ptrace", true)] {
        let mut agent = agent_with_caps(port, extra);
        let (stdout, stderr) = (agent.stdout.clone(), agent.stderr.clone());
        if captured {
            let hooked = wait_for(Duration::from_secs(10), || {
                stderr.text().contains("TLS plaintext of pid").then_some(())
            });
            assert!(hooked.is_some(), "{}", stderr.text());
        } else {
            let said = wait_for(Duration::from_secs(10), || {
                stderr
                    .text()
                    .contains("Grant the loader CAP_SYS_PTRACE")
                    .then_some(())
            });
            assert!(said.is_some(), "{}", stderr.text());
        }
        https(&[&url]);
        let span = wait_for(Duration::from_secs(if captured { 10 } else { 2 }), || {
            stdout
                .snapshot()
                .into_iter()
                .find(|l| l.contains("/hello?caps"))
        });
        agent.stop();
        assert_eq!(span.is_some(), captured, "{extra}: {}", stderr.text());
        if let Some(span) = span {
            assert!(span.contains("\"scheme\":\"https\""), "{span}");
        }
    }
}

#[test]
fn tls_plaintext_is_tied_to_its_socket_with_the_syscall_exit_backend_too() {
    require_root();
    let server = PythonTls::start("sysexit");
    let port = server.port;
    let agent = Agent::start(
        &[
            "--open-port",
            &port.to_string(),
            "--capture-backend",
            "syscall-exit",
        ],
        &[],
    );
    agent.wait_for_tls_hooks(server.process.0.id());
    https(&[&format!("https://127.0.0.1:{port}/status/201")]);
    let spans = agent.wait_for_spans(1, is_https);
    assert_eq!(spans[0].u64_of("status"), 201);
    assert_eq!(spans[0].u64_of("local_port"), u64::from(port));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent.spans().len(), 1, "{:?}", agent.spans());
}

/// Node.js's HTTP/2 over TLS: responses of 50 KB (DATA frames past the
/// capture, written with other streams' frames in one TLS write) among small
/// ones, one, five and fifty at a time (a TLS write of a hundred frames and
/// more). The kernel notes the headers of
/// the frames it does not copy, so that every stream keeps its frames and its
/// end: each request is one span, whole, with its path and status. Before,
/// the first large response lost the connection's framing and HPACK state,
/// and every span after it came out partial.
#[test]
fn node_http2_responses_past_the_capture_keep_the_connection_s_frames() {
    require_root();
    let Some((_server, port, agent)) = node_tls_server("h2_node.js") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/servers/h2_node.js");
    let mut seen = 0;
    for at_once in ["1", "5", "50"] {
        let client = Command::new("node")
            .args([script, &port.to_string(), "--client", "200", at_once])
            .output()
            .unwrap_or_else(|e| panic!("node client: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&client.stdout).trim(),
            "done 200",
            "{}",
            String::from_utf8_lossy(&client.stderr)
        );
        seen += 200;
        let spans = agent.wait_for_spans(seen, |s| s.str_of("protocol_version") == "2");
        assert_eq!(spans.len(), seen);
    }
    std::thread::sleep(Duration::from_millis(300));
    let spans = agent.spans();
    assert_eq!(spans.len(), 600, "{}", agent.stderr.text());
    for span in &spans {
        let path = span.str_of("path");
        let status = if path.starts_with("/404/") { 404 } else { 200 };
        assert_eq!(span.u64_of("status"), status, "{span:#}");
        assert_eq!(span.str_of("method"), "GET", "{span:#}");
        assert_eq!(
            span.get("partial"),
            Some(&serde_json::Value::Bool(false)),
            "{span:#}"
        );
        if path.starts_with("/big/") {
            assert_eq!(span.u64_of("response_body_bytes"), 50_000, "{span:#}");
        }
    }
    let big = spans
        .iter()
        .filter(|s| s.str_of("path").starts_with("/big/"))
        .count();
    assert_eq!(big, 60);
}

/// A program an `exe_path` selector names, started after the agent, is
/// instrumented at its exec: before the dynamic loader has mapped its TLS
/// library. Its library is looked for again shortly after (and later, until
/// found): before, it never was, and a Python HTTPS client started after the
/// agent made no span at all.
#[test]
fn a_program_instrumented_at_its_exec_gets_its_tls_library_hooked() {
    require_root();
    let certificate = Certificate::new("exec-tls");
    let port = free_port();
    let _nginx = nginx_tls(port, &certificate);
    let dir = std::env::temp_dir().join(format!("zt-exec-tls-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        "discovery:\n  instrument:\n    - exe_path: \"*/python3*\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let agent = Agent::start(&["--config", &config.to_string_lossy()], &[]);
    // Its first request a second after it starts: the test is about being
    // hooked at all, not about how soon.
    let client = format!(
        "import ssl, time, urllib.request\n\
         ctx = ssl.create_default_context()\n\
         ctx.check_hostname = False\n\
         ctx.verify_mode = ssl.CERT_NONE\n\
         time.sleep(1)\n\
         for i in range(5):\n\
         \x20   urllib.request.urlopen('https://127.0.0.1:{port}/a?exec%d' % i, context=ctx).read()\n\
         \x20   time.sleep(0.1)\n"
    );
    let status = Command::new("/usr/bin/python3")
        .args(["-c", &client])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let spans = agent.wait_for_spans(5, |s| {
        s.str_of("kind") == "client" && s.str_of("target").starts_with("/a?exec")
    });
    assert!(spans.iter().all(is_https), "{spans:?}");
    assert!(
        agent.stderr.text().contains("TLS plaintext of pid"),
        "{}",
        agent.stderr.text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An nginx as its service starts it: daemonised (its first process
/// listens, forks the master and exits; the master forks the workers), with
/// TLS on `port`; stopped, master and workers, on drop.
struct DaemonNginx {
    dir: std::path::PathBuf,
    master: u32,
}

impl DaemonNginx {
    fn start(port: u16, certificate: &Certificate) -> DaemonNginx {
        let dir = std::env::temp_dir().join(format!("zt-nginx-daemon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let d = dir.display();
        let config = format!(
            "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"daemon\\n\"; }}\n  }}\n}}\n",
            certificate.cert, certificate.key
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
        // Returns once the first process has forked the master and exited.
        let status = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .status()
            .unwrap_or_else(|e| panic!("nginx: {e}"));
        assert!(status.success(), "nginx did not start");
        let master = wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(dir.join("nginx.pid"))
                .ok()
                .and_then(|pid| pid.trim().parse::<u32>().ok())
        })
        .unwrap_or_else(|| panic!("nginx wrote no pid file"));
        DaemonNginx { dir, master }
    }
}

impl Drop for DaemonNginx {
    fn drop(&mut self) {
        // The master first: it would fork a worker again for each killed.
        let workers = children_of(self.master);
        for pid in std::iter::once(self.master).chain(workers) {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx started after the agent, daemonised as its service starts it: the
/// process the agent instruments at its listen is gone before its TLS hooks
/// are asked for, and the master forks its workers before anything is
/// hooked. The master asks for the hooks when that first process exits, and
/// the workers, which the kernel instrumented at their fork without the TLS
/// mark, are marked at their first TLS call. Every request is a span; before,
/// none was.
#[test]
fn a_daemonised_nginx_started_after_the_agent_has_its_https_requests_decoded() {
    require_root();
    let certificate = Certificate::new("daemon");
    let port = free_port();
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let nginx = DaemonNginx::start(port, &certificate);
    agent.wait_for_tls_hooks(nginx.master);
    let base = format!("https://127.0.0.1:{port}");
    let requests = 6;
    for i in 0..requests {
        let version = if i % 2 == 0 { "--http1.1" } else { "--http2" };
        assert_eq!(https(&[version, &format!("{base}/d{i}")]), "daemon\n");
    }
    agent.wait_for_spans(requests, is_https);
    std::thread::sleep(Duration::from_millis(500));
    let mut paths: Vec<String> = agent
        .spans()
        .iter()
        .filter(|s| is_https(s))
        .map(|s| s.str_of("path").to_owned())
        .collect();
    paths.sort();
    let expected: Vec<String> = (0..requests).map(|i| format!("/d{i}")).collect();
    assert_eq!(paths, expected, "{}", agent.stderr.text());
    let log = agent.stderr.text();
    assert!(!log.contains("cannot hook"), "{log}");
}
