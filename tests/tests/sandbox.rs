//! The worker's seccomp allow-list: forbidden calls are refused by the real
//! filter in the real kernel, and the running worker — under the filter —
//! still reconnects to OTLP backends (by host name), serves Prometheus, and
//! prints spans.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

#[test]
fn the_filter_refuses_what_the_worker_never_needs() {
    require_root();
    let probe = bin_dir().join("zerotrace-seccomp-probe");
    assert!(probe.is_file(), "build the workspace first");
    let output = Command::new(&probe)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let outcome = |key: &str| report.str_of(key).to_owned();
    // As root and without the filter, the kernel allows every one of these here...
    for key in [
        "before_prog_load",
        "before_map_create",
        "before_ptrace",
        "before_exec",
        "before_write_file",
    ] {
        assert_eq!(outcome(key), "ok", "{key}: {report}");
    }
    assert_eq!(outcome("install"), "ok", "{report}");
    assert_eq!(outcome("seccomp"), "2", "mode 2 is filter mode");
    // ...and the filter refuses them, on the thread that installed it, on a
    // thread that existed before (TSYNC) and on one started after.
    for key in [
        "prog_load",
        "map_create",
        "ptrace",
        "exec",
        "write_file",
        "kill",
        "clear_parent_death_signal",
        "early_thread_prog_load",
        "late_thread_prog_load",
    ] {
        assert_eq!(outcome(key), "EPERM", "{key}: {report}");
    }
    assert_eq!(outcome("early_thread_seccomp"), "2");
    // What the worker does after start-up still works.
    for key in ["map_update", "map_lookup", "read_proc", "tcp"] {
        assert_eq!(outcome(key), "ok", "{key}: {report}");
    }
    assert_eq!(report.u64_of("map_value"), 7);
}

#[test]
fn the_running_worker_works_under_the_filter() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let port = receiver.port();
    let metrics_port = free_port();
    // A host name, so reconnecting resolves it (getaddrinfo) under the filter.
    let endpoint = format!("http://localhost:{port}");
    let agent = Agent::start(
        &["--open-port", &server.port.to_string()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
        ],
    );
    let worker = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    assert_eq!(status_field(worker, "Seccomp:").as_deref(), Some("2"));
    assert_eq!(
        status_field(worker, "Seccomp_filters:").as_deref(),
        Some("1")
    );
    // Every thread, not only the main one.
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{worker}/task"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tasks.len() > 1);
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        assert!(status.contains("\nSeccomp:\t2\n"), "{}", task.display());
    }

    curl(&[&server.url("/hello?first")]);
    agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?first");
    let arrived = |query: &'static str| {
        move |traces: &[ReceivedTraces]| {
            spans_of(traces)
                .into_iter()
                .find(|(_, s)| attr_str(&s.attributes, "url.query").as_deref() == Some(query))
        }
    };
    receiver
        .wait_for_traces(Duration::from_secs(15), arrived("first"))
        .unwrap_or_else(|| panic!("no span over OTLP:\n{}", agent.stderr.text()));

    // The backend goes away and comes back: new connections, new lookups.
    receiver.stop();
    curl(&[&server.url("/hello?while-down")]);
    std::thread::sleep(Duration::from_secs(1));
    let receiver = OtlpReceiver::start_http_on(port);
    curl(&[&server.url("/hello?after")]);
    receiver
        .wait_for_traces(Duration::from_secs(20), arrived("after"))
        .unwrap_or_else(|| panic!("export did not resume:\n{}", agent.stderr.text()));

    let scrape = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert!(
        scrape.contains("http_server_request_duration_seconds_count"),
        "{scrape}"
    );
    assert_eq!(
        agent.worker_pid(),
        Some(worker),
        "the worker never restarted"
    );
    assert!(
        !agent.stderr.text().contains("seccomp"),
        "{}",
        agent.stderr.text()
    );
}

#[test]
fn zerotrace_seccomp_off_runs_without_the_filter() {
    require_root();
    let agent = Agent::start(&["--open-port", "1"], &[("ZEROTRACE_SECCOMP", "off")]);
    let worker = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    assert_eq!(status_field(worker, "Seccomp:").as_deref(), Some("0"));
    assert!(agent.stderr.text().contains("seccomp filter off"));
    drop(agent);
    let mut bad = Agent::spawn(&["--open-port", "1"], &[("ZEROTRACE_SECCOMP", "maybe")]);
    let status = wait_for(Duration::from_secs(10), || {
        bad.child.try_wait().ok().flatten()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(78));
    std::thread::sleep(Duration::from_millis(100));
    assert!(bad.stderr.text().contains("ZEROTRACE_SECCOMP=\"maybe\""));
}
