//! What each process's resource says about it beyond its name: the language
//! its program is written in (`telemetry.sdk.language`, as OBI reports it)
//! and the host (`host.id`), with `traces_host_info` beside the span
//! metrics. One agent instruments a Python, a Node.js, a Go and a Java
//! server and nginx; the resources are decoded from OTLP with opentelemetry-proto, and
//! the Prometheus endpoint is read as a scraper reads it.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use zerotrace_integration_tests::go_build::{go_binary, Build};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

const HOST_ID: &str = "zt-test-host-7";

/// A child killed when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn go_server() -> (Killed, u16) {
    let binary = go_binary("go_plain", Build::Stripped);
    for _ in 0..5 {
        let port = free_port();
        let mut command = Command::new(&binary);
        command
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(Some(child)) = spawn_listening(&mut command, port) {
            return (Killed(child), port);
        }
    }
    panic!("go_plain could not listen in 5 tries");
}

/// `tests/servers/HttpApp.java`, run from source by the JDK's launcher.
fn java_server() -> (Killed, u16) {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/servers/HttpApp.java");
    for _ in 0..5 {
        let port = free_port();
        let mut command = Command::new("java");
        command
            .arg(source)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(Some(child)) = spawn_listening(&mut command, port) {
            return (Killed(child), port);
        }
    }
    panic!("the Java server could not listen in 5 tries (scripts/install-deps.sh test installs the JRE)");
}

/// A Python, a Node.js and a Go server (the last with its port).
fn three_servers() -> (Server, Server, Killed, u16) {
    let python = Server::python_app();
    let Some(node) = Server::node("http_chain.js") else {
        panic!("node is not installed (scripts/install-deps.sh test installs it)");
    };
    let (go, go_port) = go_server();
    (python, node, go, go_port)
}

#[test]
fn each_resource_names_its_program_s_language_and_the_host() {
    require_root();
    let (python, node, go, go_port) = three_servers();
    let (java, java_port) = java_server();
    let nginx_port = free_port();
    let nginx = Nginx::start(
        "languages",
        nginx_port,
        &format!("    listen 127.0.0.1:{nginx_port};\n    location / {{ return 200 \"n\\n\"; }}"),
    );
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let ports = format!(
        "{},{},{go_port},{java_port},{nginx_port}",
        python.port, node.port
    );
    let agent = Agent::start_exporting_to(
        &["--open-port", &ports],
        &receiver,
        &[
            ("OTEL_EBPF_METRICS_FEATURES", "application,application_span"),
            // Prometheus: traces_host_info alone, by OBI's application_host.
            (
                "OTEL_EBPF_PROMETHEUS_FEATURES",
                "application,application_host",
            ),
            ("OTEL_EBPF_HOST_ID", HOST_ID),
            // OBI's global namespace: every process's.
            ("OTEL_EBPF_SERVICE_NAMESPACE", "retail"),
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
        ],
    );
    let nginx_workers = children_of(nginx.child.id());
    let expected: BTreeMap<u32, &str> = [
        (python.pid(), "python"),
        (node.pid(), "nodejs"),
        (go.0.id(), "go"),
        (java.0.id(), "java"),
    ]
    .into_iter()
    .chain(nginx_workers.iter().map(|pid| (*pid, "generic")))
    .collect();
    for port in [python.port, node.port, go_port, java_port, nginx_port] {
        curl(&[
            "-s",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/x"),
        ]);
        curl(&[
            "-s",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/x"),
        ]);
    }
    // One server span at least from each server (nginx: from any worker).
    let languages = receiver
        .wait_for_traces(Duration::from_secs(20), |traces| {
            let mut by_pid = BTreeMap::new();
            for (resource, _) in spans_of(traces) {
                let pid: u32 = resource
                    .get("process.pid")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_default();
                by_pid.insert(pid, resource);
            }
            let nginx_seen = nginx_workers.iter().any(|pid| by_pid.contains_key(pid));
            let others_seen = [python.pid(), node.pid(), go.0.id(), java.0.id()]
                .iter()
                .all(|pid| by_pid.contains_key(pid));
            (nginx_seen && others_seen).then_some(by_pid)
        })
        .unwrap_or_else(|| panic!("spans of every server: {:#?}", receiver.spans()));
    for (pid, resource) in &languages {
        let Some(language) = expected.get(pid) else {
            panic!("a span of pid {pid}, no server of this test: {resource:?}");
        };
        assert_eq!(
            resource.get("telemetry.sdk.language").map(String::as_str),
            Some(*language),
            "pid {pid}: {resource:?}"
        );
        assert_eq!(
            resource.get("host.id").map(String::as_str),
            Some(HOST_ID),
            "{resource:?}"
        );
        assert_eq!(
            resource.get("service.namespace").map(String::as_str),
            Some("retail"),
            "{resource:?}"
        );
        assert_eq!(
            resource.get("telemetry.sdk.name").map(String::as_str),
            Some("zerotrace")
        );
    }

    // traces_host_info beside the span metrics, on the agent's own resource.
    let host_info = receiver
        .wait_for_metrics(Duration::from_secs(20), |exports| {
            metrics_of(exports)
                .into_iter()
                .find(|(_, m)| m.name == "traces_host_info")
        })
        .unwrap_or_else(|| panic!("no traces_host_info: {:#?}", receiver.metrics()));
    let (resource, metric) = host_info;
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("zerotrace")
    );
    assert_eq!(
        resource.get("telemetry.sdk.language").map(String::as_str),
        Some("rust"),
        "the agent's own resource is the agent's"
    );
    let Some(metric::Data::Gauge(gauge)) = &metric.data else {
        panic!("{metric:?}");
    };
    assert_eq!(gauge.data_points.len(), 1, "{gauge:?}");
    let point = &gauge.data_points[0];
    assert_eq!(
        attr_str(&point.attributes, "grafana.host.id").as_deref(),
        Some(HOST_ID)
    );
    assert_eq!(point.value, Some(number_data_point::Value::AsInt(1)));

    // The Prometheus endpoint: the same gauge (with no span metrics there:
    // application_host alone), and target_info's labels.
    let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert!(!text.contains("traces_spanmetrics"), "{text}");
    assert!(
        text.contains(&format!(
            "traces_host_info{{grafana_host_id=\"{HOST_ID}\"}} 1\n"
        )),
        "{text}"
    );
    let python_info = text
        .lines()
        .find(|l| l.starts_with("target_info") && l.contains(&format!("pid=\"{}\"", python.pid())))
        .unwrap_or_else(|| panic!("no target_info of the Python server: {text}"));
    assert!(
        python_info.contains("telemetry_sdk_language=\"python\"")
            && python_info.contains("job=\"retail/")
            && python_info.contains(&format!("host_id=\"{HOST_ID}\"")),
        "{python_info}"
    );
    drop(agent);
}

/// OBI's `languages` selector: an entry naming Python and Go (and the three
/// servers' ports) instruments the Python and the Go server, not the Node.js
/// one on a port it names; the Go server is told by the loader's look at its
/// executable, before anything of it is hooked.
#[test]
fn a_languages_selector_instruments_only_programs_of_those_languages() {
    require_root();
    let (python, node, go, go_port) = three_servers();
    let config = readable_config(
        "config",
        "languages.yaml",
        &format!(
            "discovery:\n  instrument:\n    - languages: '{{python,go}}'\n      open_ports: {},{},{go_port}\n",
            python.port, node.port
        ),
    );
    let agent = Agent::start(
        &["--config", &config.to_string_lossy()],
        &[("OTEL_EBPF_TRACE_PRINTER", "json")],
    );
    for port in [node.port, python.port, go_port] {
        curl(&[
            "-s",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/x"),
        ]);
    }
    let pid_of = |s: &serde_json::Value| u32::try_from(s.u64_of("pid")).unwrap_or_default();
    agent.wait_for_spans(1, |s| pid_of(s) == python.pid());
    agent.wait_for_spans(1, |s| pid_of(s) == go.0.id());
    // Node's request went first: its span would be out by now.
    std::thread::sleep(Duration::from_millis(500));
    let spans = agent.spans();
    assert!(
        spans.iter().all(|s| pid_of(s) != node.pid()),
        "the Node.js server was instrumented: {spans:#?}"
    );
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains(&format!("instrumenting pid {}", python.pid()))
            && stderr.contains(&format!("instrumenting pid {}", go.0.id()))
            && !stderr.contains(&format!("instrumenting pid {}", node.pid())),
        "{stderr}"
    );
}
