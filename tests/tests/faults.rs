//! Fault tolerance: a killed loader, an overflowing ring buffer (counted,
//! reported over OTLP and by the text printer), ring settings refused or
//! passed on to the programs.

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

#[test]
fn a_killed_loader_takes_its_programs_and_worker_with_it() {
    require_root();
    let mut agent = Agent::start(&["--open-port", "1"], &[]);
    let programs = bpf_prog_ids_of(agent.child.id());
    assert!(!programs.is_empty());
    let worker = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGKILL) };
    let _ = agent.child.wait();
    let worker_gone = wait_for(Duration::from_secs(5), || {
        (!std::path::Path::new(&format!("/proc/{worker}")).exists()
            || status_field(worker, "State:").is_some_and(|s| s.starts_with('Z')))
        .then_some(())
    });
    assert!(worker_gone.is_some(), "the worker outlived its loader");
    // Nothing was pinned: the programs go with the loader's file descriptors.
    let unloaded = wait_for(Duration::from_secs(5), || {
        programs
            .iter()
            .all(|id| !bpf_prog_exists(*id))
            .then_some(())
    });
    assert!(unloaded.is_some(), "programs left behind: {programs:?}");
}

/// `servers/SCRIPT` on a free port (its first argument), with `args` after it.
fn python_server(script: &str, args: &[&str]) -> Server {
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join(script);
    let child = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start /usr/bin/python3: {e}"));
    let server = Server { child, port };
    server.wait_listening();
    server
}

/// `servers/event_flood.py`: a server whose every client gets `count` separate sends.
fn event_flood_server(count: u32) -> Server {
    python_server("event_flood.py", &[&count.to_string()])
}

/// Reads everything the flood server sends on a few connections.
fn flood(server: &Server, connections: usize) {
    use std::io::Read;
    for _ in 0..connections {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
}

#[test]
fn ring_buffer_overflow_is_counted_and_the_rest_is_right() {
    require_root();
    let server = Server::python_app();
    let flooder = event_flood_server(20_000);
    let ports = format!("{},{}", server.port, flooder.port);
    let mut agent = Agent::start(&["--open-port", &ports, "--ring-buffer-bytes", "4096"], &[]);
    // A burst much larger than 4 KiB of events between two drains.
    let request = "POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 400\r\n\r\n".to_owned()
        + &"x".repeat(400);
    let burst: Vec<&str> = std::iter::repeat_n(request.as_str(), 300).collect();
    for _ in 0..3 {
        raw_keepalive_requests(server.port, &burst);
    }
    // Thousands of events within milliseconds: more than any drain keeps up with.
    flood(&flooder, 3);
    std::thread::sleep(Duration::from_millis(500));
    curl(&[&server.url("/hello?after-flood")]);
    let after = agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?after-flood");
    assert_eq!(after[0].u64_of("status"), 200);
    // Whatever made it through is well-formed.
    for span in agent.spans() {
        let path = span.str_of("path").to_owned();
        assert!(path == "/echo" || path == "/hello", "garbled span {span}");
    }
    assert_eq!(agent.stop(), Some(0), "{}", agent.stderr.text());
    let stderr = agent.stderr.text();
    let summary = stderr
        .lines()
        .find(|l| l.contains("dropped with the ring buffer full"))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    assert!(
        !summary.contains(" 0 dropped with the ring buffer full"),
        "no drop counted: {summary}"
    );
}

/// The agent's own `zerotrace.events.lost` in the latest export that has it.
fn events_lost(receiver: &OtlpReceiver) -> Option<i64> {
    let (_, metric) = metrics_of(&receiver.metrics())
        .into_iter()
        .rev()
        .find(|(resource, m)| {
            m.name == "zerotrace.events.lost"
                && resource.get("service.name").map(String::as_str) == Some("zerotrace")
        })?;
    match metric.data? {
        metric::Data::Sum(sum) if sum.is_monotonic => match sum.data_points.first()?.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn a_provoked_loss_shows_in_the_self_metrics_and_the_text_printer() {
    require_root();
    let server = Server::python_app();
    let flooder = event_flood_server(20_000);
    let ports = format!("{},{}", server.port, flooder.port);
    let receiver = OtlpReceiver::start_grpc();
    let endpoint = receiver.endpoint();
    let mut agent = Agent::start(
        &[
            "--open-port",
            &ports,
            "--ring-buffer-bytes",
            "4096",
            "--trace-printer",
            "text",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
    );
    // Nothing lost yet, and the agent says so.
    let before = wait_for(Duration::from_secs(15), || events_lost(&receiver))
        .unwrap_or_else(|| panic!("no self metrics: {:#?}", receiver.metrics()));
    assert_eq!(before, 0);
    let flood_started = std::time::Instant::now();
    flood(&flooder, 3);
    let lost = wait_for(Duration::from_secs(15), || {
        events_lost(&receiver).filter(|lost| *lost > 0)
    })
    .unwrap_or_else(|| panic!("the loss never showed: {:?}", events_lost(&receiver)));
    assert!(lost > 0);
    let notice = wait_for(Duration::from_secs(5), || {
        agent
            .stdout
            .snapshot()
            .into_iter()
            .find(|l| l.contains("lost in the kernel (ring buffer full)"))
    })
    .unwrap_or_else(|| panic!("no loss line from the printer:\n{}", agent.stdout.text()));
    assert!(notice.starts_with("zerotrace: "), "{notice}");
    // At most one line per 10 s.
    let lines = agent
        .stdout
        .snapshot()
        .iter()
        .filter(|l| l.contains("lost or dropped since the last report"))
        .count() as u64;
    let allowed = 1 + flood_started.elapsed().as_secs() / 10;
    assert!(
        (1..=allowed).contains(&lines),
        "{lines} loss lines in {:?}",
        flood_started.elapsed()
    );
    // Spans are still text lines too. A request made while the tiny ring is
    // still full of the flood is itself lost (counted): a few are made, one
    // after another, until one comes out.
    let after = (1..=5).find(|attempt| {
        let target = format!("/hello?after-flood-{attempt}");
        curl(&[&server.url(&target)]);
        let line = format!("\"GET {target} HTTP/1.1\" 200");
        wait_for(Duration::from_secs(3), || {
            agent.stdout.text().contains(&line).then_some(())
        })
        .is_some()
    });
    assert!(after.is_some(), "{}", agent.stdout.text());
    assert_eq!(agent.stop(), Some(0), "{}", agent.stderr.text());
}

/// `servers/late_reader.py`: reads each request a moment after accepting it.
fn late_reader_server() -> Server {
    python_server("late_reader.py", &[])
}

/// Writes a request and resets the connection (SO_LINGER 0) before any answer.
fn request_then_reset(port: u16) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    stream
        .write_all(b"GET /reset HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a `linger` of the size given.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER");
    drop(stream);
}

/// Bytes read after their socket reached TCP_CLOSE (a request queued before
/// the client's reset) are counted and dropped, never made into a connection
/// whose state outlives the socket: the connections accepted after it, often
/// at the same socket address, keep their own addresses and ports.
#[test]
fn reads_after_a_reset_are_counted_and_later_connections_keep_their_addresses() {
    require_root();
    let server = late_reader_server();
    let mut agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    for round in 0..8 {
        request_then_reset(server.port);
        assert_eq!(curl(&[&server.url(&format!("/ok?round={round}"))]), "ok");
    }
    let spans = agent.wait_for_spans(8, |s| s.str_of("path") == "/ok");
    for span in &spans {
        assert_eq!(span.u64_of("local_port"), u64::from(server.port), "{span}");
        assert_eq!(span.u64_of("status"), 200, "{span}");
    }
    assert!(
        agent.spans().iter().all(|s| s.str_of("path") != "/reset"),
        "a reset request became a span"
    );
    assert_eq!(agent.stop(), Some(0), "{}", agent.stderr.text());
    let stderr = agent.stderr.text();
    let summary = stderr
        .lines()
        .find(|l| l.contains("after their socket closed not sent"))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    assert!(
        !summary.contains(" 0 reads and writes after their socket closed"),
        "no late read counted: {summary}"
    );
    // Read late, a reset request used to open a phantom connection that
    // ended as a request without a response.
    assert!(
        summary.contains(" 0 requests without a response"),
        "{summary}"
    );
}

/// `--ring-wakeup-bytes` reaches the data programs; a threshold under 1 KiB,
/// or over half the ring (which would fill before it woke anyone), stops the
/// agent before it loads anything, saying why.
#[test]
fn the_wakeup_threshold_reaches_the_programs_and_bad_ones_are_refused() {
    require_root();
    let refused = |args: &[&str]| {
        let output = std::process::Command::new(bin_dir().join("zerotrace"))
            .args(["run", "--open-port", "1"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("probes attached"), "{stderr}");
        stderr
    };
    let small = refused(&["--ring-wakeup-bytes", "100"]);
    assert!(
        small.ends_with("--ring-wakeup-bytes \"100\": must be a number of bytes of at least 1024"),
        "{small}"
    );
    let over_half = refused(&[
        "--ring-buffer-bytes",
        "65536",
        "--ring-wakeup-bytes",
        "32769",
    ]);
    assert!(
        over_half.ends_with("must be at most half of --ring-buffer-bytes (65536)"),
        "{over_half}"
    );

    // What the programs got, with these arguments.
    let wakeup_bytes = |args: &[&str]| {
        let agent = Agent::start(args, &[]);
        let settings = bpf_program_settings(agent.child.id())
            .unwrap_or_else(|| panic!("no zt_settings in the loader's maps"));
        settings.get("wakeup_bytes").and_then(|v| v.as_u64())
    };
    let asked = wakeup_bytes(&["--open-port", "1", "--ring-wakeup-bytes", "32768"]);
    assert_eq!(asked, Some(32768));
    // The default, on the default ring.
    assert_eq!(wakeup_bytes(&["--open-port", "1"]), Some(65536));
}
