//! OBI's per-service `exports`, `sampler` and `routes` (a
//! `discovery.instrument` entry's own signals, trace sampler and route
//! patterns): three instrumented Python servers, one exporting only traces
//! (with its own routes for its requests and its calls), one only metrics,
//! one sampling its traces by trace id at a ratio of 0.5 while the agent's
//! sampler keeps every trace. What each sends is decoded from OTLP with
//! opentelemetry-proto, and read from the agent's Prometheus endpoint.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// Trace ids (hex) whose last 8 bytes, read big-endian and shifted right
/// once, fall below half of 2^63 (the specification's `traceidratio` rule
/// at 0.5) when their first byte is below 0x80: the test's own reading of
/// the rule, not the agent's.
fn trace_ids() -> (Vec<String>, Vec<String>) {
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for i in 0..16u8 {
        let high_bit = if i % 2 == 0 { 0x10 } else { 0x90 } + i;
        let id = format!(
            "5e21ce0000000000{high_bit:02x}{:014x}",
            0x1234_5678u64 + u64::from(i)
        );
        let low = u64::from_str_radix(&id[16..], 16).unwrap_or_else(|e| panic!("{id}: {e}"));
        if (low >> 1) < (1u64 << 62) {
            kept.push(id);
        } else {
            dropped.push(id);
        }
    }
    (kept, dropped)
}

/// Requests a service's resource names in the RED duration histograms.
fn duration_count(receiver: &OtlpReceiver, service: &str) -> u64 {
    metrics_of(&receiver.metrics())
        .iter()
        .rev()
        .find(|(resource, m)| {
            m.name == "http.server.request.duration"
                && resource.get("service.name").map(String::as_str) == Some(service)
        })
        .and_then(|(_, m)| match &m.data {
            Some(metric::Data::Histogram(h)) => Some(h.data_points.iter().map(|p| p.count).sum()),
            _ => None,
        })
        .unwrap_or(0)
}

#[test]
fn each_discovery_entry_exports_its_own_signals_and_samples_its_own_traces() {
    require_root();
    let traces_only = Server::python_app();
    let metrics_only = Server::python_app();
    let sampled = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port().to_string();
    let file = readable_config(
        "service-exports",
        "zerotrace.yaml",
        &format!(
            "discovery:
  instrument:
    - open_ports: {}
      name: traces-only
      exports: [traces]
      routes: {{incoming: ['/t/{{n}}'], outgoing: ['/m/{{n}}']}}
    - open_ports: {}
      name: metrics-only
      exports: [metrics]
    - open_ports: {}
      name: sampled
      sampler: {{name: traceidratio, arg: '0.5'}}
",
            traces_only.port, metrics_only.port, sampled.port
        ),
    );
    let agent = Agent::start_exporting_to(
        &["--config", &file.to_string_lossy()],
        &receiver,
        &[
            (
                "OTEL_EBPF_METRICS_FEATURES",
                "application,application_process",
            ),
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port),
        ],
    );
    for i in 0..4 {
        curl(&[&traces_only.url(&format!("/t/{i}"))]);
        curl(&[&metrics_only.url(&format!("/m/{i}"))]);
    }
    // traces-only calls metrics-only: a call its outgoing routes name.
    let call = format!("/call/{}/m/7", metrics_only.port);
    curl(&[&traces_only.url(&call)]);
    // Every request carries a sampled parent: the agent's own sampler
    // (parentbased_always_on) would keep them all; the entry's decides.
    let (kept, dropped) = trace_ids();
    assert_eq!((kept.len(), dropped.len()), (8, 8));
    for id in kept.iter().chain(&dropped) {
        let header = format!("traceparent: 00-{id}-00f067aa0ba902b7-01");
        curl(&[&sampled.url("/s"), "-H", &header]);
    }

    // Metrics are recorded for every request, whatever the sampler says.
    let counted = wait_for(Duration::from_secs(20), || {
        let counts = (
            duration_count(&receiver, "metrics-only"),
            duration_count(&receiver, "sampled"),
        );
        (counts == (5, 16)).then_some(counts)
    });
    assert_eq!(
        counted,
        Some((5, 16)),
        "{:?}\n{}",
        (
            duration_count(&receiver, "metrics-only"),
            duration_count(&receiver, "sampled")
        ),
        agent.stderr.text()
    );
    let traced = receiver.wait_for_traces(Duration::from_secs(15), |traces| {
        let spans = spans_of(traces);
        let of = |service: &str| {
            spans
                .iter()
                .filter(|(resource, _)| {
                    resource.get("service.name").map(String::as_str) == Some(service)
                })
                .count()
        };
        (of("traces-only") >= 6 && of("sampled") >= kept.len()).then_some(())
    });
    assert!(traced.is_some(), "{:#?}", receiver.spans());
    // Let another span batch and metric export go.
    std::thread::sleep(Duration::from_millis(1200));

    let spans = receiver.spans();
    let services: BTreeSet<&str> = spans
        .iter()
        .filter_map(|(resource, _)| resource.get("service.name").map(String::as_str))
        .collect();
    assert!(!services.contains("metrics-only"), "{services:?}");
    // The entry's routes: its server requests' incoming, its call's outgoing;
    // a request neither names keeps the heuristic's route.
    let mut routes: Vec<(i32, String, String)> = spans
        .iter()
        .filter(|(resource, _)| {
            resource.get("service.name").map(String::as_str) == Some("traces-only")
        })
        .map(|(_, span)| {
            (
                span.kind,
                attr_str(&span.attributes, "url.path").unwrap_or_default(),
                attr_str(&span.attributes, "http.route").unwrap_or_default(),
            )
        })
        .collect();
    routes.sort();
    routes.dedup();
    let server = SpanKind::Server as i32;
    let client = SpanKind::Client as i32;
    let expected: Vec<(i32, String, String)> = vec![
        (server, "/t/0".into(), "/t/{n}".into()),
        (server, "/t/1".into(), "/t/{n}".into()),
        (server, "/t/2".into(), "/t/{n}".into()),
        (server, "/t/3".into(), "/t/{n}".into()),
        (server, call.clone(), "/call/*/m/*".into()),
        (client, "/m/7".into(), "/m/{n}".into()),
    ];
    let mut expected = expected;
    expected.sort();
    assert_eq!(routes, expected);
    let sampled_ids: BTreeSet<String> = spans
        .iter()
        .filter(|(resource, _)| resource.get("service.name").map(String::as_str) == Some("sampled"))
        .map(|(_, span)| hex(&span.trace_id))
        .collect();
    assert_eq!(
        sampled_ids,
        kept.iter().cloned().collect(),
        "dropped: {dropped:?}"
    );

    // Neither RED nor process metrics of the service that exports traces only.
    let metrics = metrics_of(&receiver.metrics());
    let of_traces_only: Vec<&str> = metrics
        .iter()
        .filter(|(resource, _)| {
            resource.get("service.name").map(String::as_str) == Some("traces-only")
        })
        .map(|(_, m)| m.name.as_str())
        .collect();
    assert!(of_traces_only.is_empty(), "{of_traces_only:?}");
    let process_metrics_of = |service: &str| {
        metrics.iter().any(|(resource, m)| {
            resource.get("service.name").map(String::as_str) == Some(service)
                && m.name == "process.cpu.time"
        })
    };
    assert!(process_metrics_of("metrics-only"), "no process metrics");

    // The Prometheus endpoint leaves it out too.
    let scraped = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let series = |service: &str| {
        scraped
            .lines()
            .filter(|line| line.starts_with("http_server_request_duration_seconds_count"))
            .any(|line| line.contains(&format!("service_name=\"{service}\"")))
    };
    assert!(series("metrics-only") && series("sampled"), "{scraped}");
    assert!(!series("traces-only"), "{scraped}");
}

/// A process's last exchange, which only its exit ends (the body runs to
/// the connection's close, and the connection closes with the process),
/// still goes out under its entry's name and with its entry's exports: the
/// worker forgets an exited process only after the spans its exit closed.
#[test]
fn the_exchange_a_process_s_exit_ends_keeps_its_entry_s_name_and_exports() {
    require_root();
    let doomed = Server::python_app();
    let pid = doomed.child.id().to_string();
    let receiver = OtlpReceiver::start_http();
    let file = readable_config(
        "service-exports-exit",
        "zerotrace.yaml",
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {}\n      name: doomed\n      exports: [traces]\n",
            doomed.port
        ),
    );
    let agent = Agent::start_exporting_to(&["--config", &file.to_string_lossy()], &receiver, &[]);
    curl(&[&doomed.url("/hello")]);
    assert_eq!(curl(&[&doomed.url("/exit")]), "bye\n");
    let last = receiver.wait_for_traces(Duration::from_secs(15), |traces| {
        spans_of(traces)
            .into_iter()
            .find(|(_, span)| attr_str(&span.attributes, "url.path").as_deref() == Some("/exit"))
    });
    let Some((resource, span)) = last else {
        panic!(
            "no /exit span: {:#?}\n{}",
            receiver.spans(),
            agent.stderr.text()
        )
    };
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("doomed"),
        "{resource:?}"
    );
    assert_eq!(
        attr_int(&span.attributes, "http.response.status_code"),
        Some(200)
    );
    // A metric export after the span: still none of the process's.
    std::thread::sleep(Duration::from_millis(1200));
    let of_process: Vec<String> = metrics_of(&receiver.metrics())
        .iter()
        .filter(|(resource, _)| resource.get("process.pid") == Some(&pid))
        .map(|(resource, m)| format!("{} {resource:?}", m.name))
        .collect();
    assert!(of_process.is_empty(), "{of_process:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
