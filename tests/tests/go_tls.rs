//! HTTPS from Go programs: Go's `crypto/tls` lives in the executable, so the
//! loader hooks `(*Conn).Read` and `.Write` found in its function table. Real
//! programs built here with Debian's Go (`tests/servers/go_https`, a net/http
//! server that is also a client on `/call`; `tests/servers/go_plain`, without
//! crypto/tls), stripped and not, PIE too, driven by curl over HTTP/1.1 and h2 and by
//! h2load; and the loader's checks of AttachGoTls requests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use zerotrace_integration_tests::go_build::{go_binary, Build};
use zerotrace_integration_tests::stand_in;
use zerotrace_integration_tests::*;

/// A process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Starts `program args…` and waits until it listens on `port`.
fn start(program: &Path, args: &[&str], port: u16) -> Process {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let process = Process(child);
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(
        up.is_some(),
        "{} never listened on {port}",
        program.display()
    );
    process
}

/// The Go HTTPS server on a free port, with its certificate.
struct GoHttps {
    process: Process,
    port: u16,
    certificate: Certificate,
}

impl GoHttps {
    fn start(name: &str, build: Build) -> GoHttps {
        let binary = go_binary("go_https", build);
        let certificate = Certificate::new(name);
        let port = free_port();
        let process = start(
            &binary,
            &[
                &format!("127.0.0.1:{port}"),
                &certificate.cert,
                &certificate.key,
            ],
            port,
        );
        GoHttps {
            process,
            port,
            certificate,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
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

/// curl over HTTP/1.1 and h2: each request one server span with its method,
/// path, status, sizes and HTTP version.
fn server_spans_over_http1_and_h2(name: &str, build: Build) {
    let server = GoHttps::start(name, build);
    let agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    agent.wait_for_tls_hooks_through(server.process.pid(), "(Go crypto/tls)");

    for version in ["--http1.1", "--http2"] {
        assert_eq!(https(&[version, &server.url("/hello")]), "hello from go\n");
        https(&[version, &server.url("/status/503")]);
        assert_eq!(
            https(&[version, "-d", "ping!", &server.url("/echo")]),
            "ping!"
        );
    }
    agent.wait_for_spans(6, is_https);
    std::thread::sleep(Duration::from_millis(300));
    let spans = agent.spans();
    assert_eq!(spans.len(), 6, "each request exactly once: {spans:#?}");
    for version in ["1.1", "2"] {
        let find = |path: &str| {
            spans
                .iter()
                .find(|s| s.str_of("path") == path && s.str_of("protocol_version") == version)
                .unwrap_or_else(|| panic!("no HTTP/{version} span for {path}: {spans:#?}"))
        };
        let hello = find("/hello");
        assert_eq!(hello.str_of("method"), "GET");
        assert_eq!(hello.u64_of("status"), 200);
        assert_eq!(hello.str_of("kind"), "server");
        assert_eq!(hello.u64_of("local_port"), u64::from(server.port));
        assert_eq!(hello.u64_of("pid"), u64::from(server.process.pid()));
        assert_eq!(hello.u64_of("response_body_bytes"), 14);
        assert_eq!(find("/status/503").u64_of("status"), 503);
        let echo = find("/echo");
        assert_eq!(echo.str_of("method"), "POST");
        assert_eq!(echo.u64_of("status"), 200);
        assert_eq!(echo.u64_of("request_body_bytes"), 5);
        assert_eq!(echo.u64_of("response_body_bytes"), 5);
    }
}

#[test]
fn go_https_server_spans_over_http1_and_h2() {
    require_root();
    server_spans_over_http1_and_h2("go", Build::Plain);
}

#[test]
fn stripped_go_https_server_spans_over_http1_and_h2() {
    require_root();
    server_spans_over_http1_and_h2("go-stripped", Build::Stripped);
}

#[test]
fn stripped_pie_go_https_server_spans_over_http1_and_h2() {
    require_root();
    server_spans_over_http1_and_h2("go-pie", Build::StrippedPie);
}

#[test]
fn go_https_client_calls_are_client_spans() {
    require_root();
    let server = GoHttps::start("go-client", Build::Stripped);
    let port = server.port;
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    agent.wait_for_tls_hooks_through(server.process.pid(), "(Go crypto/tls)");

    // The server calls itself with Go's net/http client: a client span, and
    // the server span of the call it made; then the same over h2.
    assert_eq!(
        https(&["--http1.1", &server.url(&format!("/call?port={port}"))]),
        "hello from go\n"
    );
    let client = agent.wait_for_spans(1, |s| s.str_of("kind") == "client");
    agent.wait_for_spans(2, |s| s.str_of("kind") == "server");
    assert_eq!(
        https(&["--http1.1", &server.url(&format!("/call?port={port}&h2=1"))]),
        "hello from go\n"
    );
    let h2_client = agent.wait_for_spans(2, |s| s.str_of("kind") == "client");
    let h2_call = h2_client
        .iter()
        .find(|s| s.str_of("protocol_version") == "2")
        .unwrap_or_else(|| panic!("no h2 client span: {h2_client:#?}"));
    assert_eq!(h2_call.str_of("path"), "/hello");
    assert_eq!(h2_call.u64_of("status"), 200);
    assert_eq!(h2_call.u64_of("response_body_bytes"), 14);
    assert!(is_https(h2_call), "{h2_call}");
    let call = &client[0];
    assert_eq!(call.str_of("protocol_version"), "1.1");
    assert!(is_https(call), "{call}");
    assert_eq!(call.str_of("method"), "GET");
    assert_eq!(call.str_of("path"), "/hello");
    assert_eq!(call.u64_of("status"), 200);
    assert_eq!(call.u64_of("peer_port"), u64::from(port));
    assert_eq!(call.u64_of("response_body_bytes"), 14);
    let spans = agent.spans();
    let served = spans
        .iter()
        .find(|s| {
            s.str_of("kind") == "server"
                && s.str_of("path") == "/hello"
                && s.str_of("protocol_version") == "1.1"
        })
        .unwrap_or_else(|| panic!("no server span for the client's call: {spans:#?}"));
    assert_eq!(
        served.u64_of("peer_port"),
        call.u64_of("local_port"),
        "the server span is the client's call"
    );
    let outer = spans
        .iter()
        .find(|s| s.str_of("target") == format!("/call?port={port}"))
        .unwrap_or_else(|| panic!("no span for /call: {spans:#?}"));
    assert_eq!(outer.u64_of("status"), 200);

    // The hooks go with the last process that asked for them.
    drop(server);
    for function in ["Read", "Write"] {
        let needle = format!("detached the crypto/tls.(*Conn).{function} hook of");
        let detached = wait_for(Duration::from_secs(10), || {
            agent.stderr.text().contains(&needle).then_some(())
        });
        assert!(detached.is_some(), "{needle}: {}", agent.stderr.text());
    }
}

#[test]
fn go_tls_works_with_the_syscall_exit_backend_too() {
    require_root();
    let server = GoHttps::start("go-sysexit", Build::Stripped);
    let agent = Agent::start(
        &[
            "--open-port",
            &server.port.to_string(),
            "--capture-backend",
            "syscall-exit",
        ],
        &[],
    );
    agent.wait_for_tls_hooks_through(server.process.pid(), "(Go crypto/tls)");
    https(&["--http1.1", &server.url("/status/201")]);
    https(&["--http2", &server.url("/status/202")]);
    let spans = agent.wait_for_spans(2, is_https);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent.spans().len(), 2, "{:#?}", agent.spans());
    for (status, version) in [(201, "1.1"), (202, "2")] {
        let span = spans
            .iter()
            .find(|s| s.u64_of("status") == status)
            .unwrap_or_else(|| panic!("no {status} span: {spans:#?}"));
        assert_eq!(span.str_of("protocol_version"), version);
        assert_eq!(span.u64_of("local_port"), u64::from(server.port));
    }
}

#[test]
fn grpc_calls_answered_by_go_over_tls_are_grpc_spans() {
    require_root();
    let server = GoHttps::start("go-grpc", Build::Stripped);
    let agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    agent.wait_for_tls_hooks_through(server.process.pid(), "(Go crypto/tls)");

    // One length-prefixed gRPC message (uncompressed, 5 bytes).
    let message = server.certificate.dir.join("message.bin");
    std::fs::write(&message, b"\0\0\0\0\x05hello").unwrap_or_else(|e| panic!("{e}"));
    let data = format!("@{}", message.display());
    for method in ["Say", "Missing"] {
        https(&[
            "--http2",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            &data,
            &server.url(&format!("/zerotrace.test.Echo/{method}")),
        ]);
    }
    let spans = agent.wait_for_spans(2, |s| s.get("grpc").is_some_and(|g| !g.is_null()));
    for (method, status) in [("Say", 0), ("Missing", 5)] {
        let span = spans
            .iter()
            .find(|s| s.str_of("path") == format!("/zerotrace.test.Echo/{method}"))
            .unwrap_or_else(|| panic!("no span for {method}: {spans:#?}"));
        assert!(is_https(span), "{span}");
        let grpc = span.get("grpc").unwrap_or_else(|| panic!("{span}"));
        assert_eq!(grpc.str_of("service"), "zerotrace.test.Echo", "{span}");
        assert_eq!(grpc.str_of("method"), method, "{span}");
        assert_eq!(grpc.u64_of("status_code"), status, "{span}");
    }
}

#[test]
fn go_tls_needs_only_cap_bpf_and_cap_perfmon_in_the_loader() {
    require_root();
    // The server as root without capabilities (no more than the loader: its
    // /proc/PID/exe is then open to the loader without CAP_SYS_PTRACE).
    let binary = go_binary("go_https", Build::Stripped);
    let certificate = Certificate::new("go-caps");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let server = start(
        Path::new("setpriv"),
        &[
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            &binary.to_string_lossy(),
            &address,
            &certificate.cert,
            &certificate.key,
        ],
        port,
    );
    // CAP_SETUID and CAP_SETGID only start the worker under its own uid.
    let caps = "-all,+bpf,+perfmon,+setuid,+setgid";
    let agent = Agent::spawn_with_setpriv(
        &[
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &format!("--bounding-set={caps}"),
        ],
        &["--open-port", &port.to_string()],
        &[],
    );
    agent.wait_for_tls_hooks_through(server.pid(), "(Go crypto/tls)");
    assert!(
        agent
            .stderr
            .text()
            .contains("CAP_BPF CAP_PERFMON CAP_SETUID CAP_SETGID"),
        "{}",
        agent.stderr.text()
    );
    https(&["--http2", &format!("https://{address}/status/201")]);
    let spans = agent.wait_for_spans(1, is_https);
    assert_eq!(spans[0].u64_of("status"), 201);
    assert_eq!(spans[0].str_of("protocol_version"), "2");
}

#[test]
fn a_go_program_without_crypto_tls_gets_no_hook() {
    require_root();
    let binary = go_binary("go_plain", Build::Plain);
    let port = free_port();
    let server = start(&binary, &[&format!("127.0.0.1:{port}")], port);
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{port}/plain")]),
        "plain\n"
    );
    let spans = agent.wait_for_spans(1, |s| s.str_of("path") == "/plain");
    assert_eq!(spans[0].str_of("scheme"), "http");
    assert_eq!(spans[0].u64_of("pid"), u64::from(server.pid()));
    let stderr = agent.stderr.text();
    assert!(
        !stderr.contains(&format!("TLS plaintext of pid {}", server.pid())),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot hook"), "{stderr}");
    assert!(!stderr.contains("is not captured"), "{stderr}");
}

#[test]
fn tls_capture_false_turns_the_go_hooks_off() {
    require_root();
    let server = GoHttps::start("go-off", Build::Stripped);
    let agent = Agent::start(
        &["--open-port", &server.port.to_string()],
        &[("ZEROTRACE_TLS_CAPTURE", "false")],
    );
    assert_eq!(
        https(&["--http1.1", &server.url("/hello")]),
        "hello from go\n"
    );
    std::thread::sleep(Duration::from_millis(700));
    let stderr = agent.stderr.text();
    assert!(!stderr.contains("TLS plaintext of pid"), "{stderr}");
    assert!(agent.spans().is_empty(), "{:#?}", agent.spans());
}

#[test]
fn many_goroutines_under_h2load_give_one_span_per_request() {
    require_root();
    let server = GoHttps::start("go-load", Build::Stripped);
    let agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    agent.wait_for_tls_hooks_through(server.process.pid(), "(Go crypto/tls)");

    // h2: 20 connections, 10 streams each in flight (a goroutine per stream
    // and one reader per connection); then HTTP/1.1 through h2load --h1.
    let load = |args: &[&str], path: &str, statuses: &str| {
        let url = server.url(path);
        h2load(&[args, &[url.as_str()]].concat(), &["1000 done", statuses]);
    };
    load(
        &["-n", "1000", "-c", "20", "-m", "10"],
        "/hello?h2",
        "1000 2xx",
    );
    // (h2load counts 4xx answers as failed requests.)
    load(
        &["--h1", "-n", "1000", "-c", "10"],
        "/status/404?h1",
        "1000 4xx",
    );

    let expected = 2000;
    let found = wait_for(Duration::from_secs(20), || {
        (agent.spans().len() >= expected).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert!(
        found.is_some() && spans.len() == expected,
        "{} spans, {expected} expected; agent stderr:\n{}",
        spans.len(),
        agent.stderr.text()
    );
    let h2 = spans
        .iter()
        .filter(|s| {
            s.str_of("target") == "/hello?h2"
                && s.u64_of("status") == 200
                && s.str_of("protocol_version") == "2"
                && s.u64_of("response_body_bytes") == 14
        })
        .count();
    let h1 = spans
        .iter()
        .filter(|s| {
            s.str_of("target") == "/status/404?h1"
                && s.u64_of("status") == 404
                && s.str_of("protocol_version") == "1.1"
        })
        .count();
    assert_eq!((h2, h1), (1000, 1000));
}

#[test]
fn the_loader_checks_every_attach_go_tls_request() {
    require_root();
    let requester = bin_dir().join("zerotrace-uprobe-requester");
    assert!(requester.is_file(), "build the workspace first");
    let (results, agent) =
        stand_in::report_of(&requester.to_string_lossy(), Duration::from_secs(30));
    let answer = |label: &str| results.str_of(label).to_owned();
    for (label, field) in [
        ("go_not_instrumented", "AttachGoTls.pid"),
        ("go_off_allow_list", "AttachGoTls.symbol"),
        ("go_close_off_allow_list", "AttachGoTls.symbol"),
        ("go_main", "AttachGoTls.symbol"),
        ("go_http_transport_off_allow_list", "AttachGoTls.symbol"),
        ("go_library_path", "AttachGoTls.exe_path"),
        ("go_other_exe", "AttachGoTls.exe_path"),
        ("go_relative_path", "AttachGoTls.exe_path"),
        ("go_agent_itself", "AttachGoTls.pid"),
    ] {
        let got = answer(label);
        assert!(
            got.starts_with("Refused(InvalidField") && got.contains(field),
            "{label}: {got}\n{}",
            agent.stderr.text()
        );
    }
    // On the allow-list, the client connection's functions pass to the
    // executable's check.
    for label in ["go_not_go", "go_http_client_not_go"] {
        let not_go = answer(label);
        assert!(
            not_go.starts_with("GoTlsUnsupported { not_go: true"),
            "{label}: {not_go}"
        );
    }
}
