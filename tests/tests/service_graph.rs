//! Service graph metrics (OBI's `application_service_graph`): two instrumented
//! Python services, `front` calling `back`, an uninstrumented caller (curl)
//! and an uninstrumented callee. A request between the two services counts
//! once, with both durations; the others count against the peer's address.
//! Scraped by a real Prometheus, and decoded from OTLP with opentelemetry-proto.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::prometheus_server::{query, start_prometheus, PrometheusGuard};
use zerotrace_integration_tests::*;

/// A config file the worker can read: `front` and `back` named by their
/// ports, the metric features given.
fn config(name: &str, front: u16, back: u16, features: &str) -> PathBuf {
    readable_config(
        "graph",
        name,
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {front}\n      name: front\n    - open_ports: {back}\n      name: back\nmetrics:\n  features: [{features}]\n"
        ),
    )
}

#[test]
fn a_real_prometheus_sees_each_call_once_with_its_client_and_server() {
    require_root();
    let (front, back) = (Server::python_app(), Server::python_app());
    // Not instrumented: only front's client side sees these calls.
    let outside = Server::python_app();
    let metrics_port = free_port();
    let file = config(
        "prometheus.yaml",
        front.port,
        back.port,
        "application, application_service_graph",
    );
    let agent = Agent::start(
        &["--config", &file.to_string_lossy()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    for _ in 0..4 {
        let body = curl(&[&front.url(&format!("/call/{}/hello", back.port))]);
        assert!(body.starts_with("called: hello"), "{body}");
    }
    for _ in 0..2 {
        curl(&[&front.url(&format!("/call/{}/status/500", back.port))]);
    }
    for _ in 0..3 {
        curl(&[&back.url("/hello")]);
    }
    curl(&[&front.url(&format!("/call/{}/hello", outside.port))]);
    // front calling itself: left out, as OBI does.
    curl(&[&front.url("/proxy")]);

    let (prometheus, prometheus_port, work) = start_prometheus("graph", metrics_port);
    let _prometheus = PrometheusGuard(prometheus, work);
    let outside_name = format!("127.0.0.1:{}", outside.port);
    let total = |client: &str, server: &str| {
        query(
            prometheus_port,
            &format!(
                "sum(traces_service_graph_request_total{{client=\"{client}\",server=\"{server}\"}})"
            ),
        )
    };
    // The call to the uninstrumented callee is counted when its hold (2 s) is over: last.
    let seen = wait_for(Duration::from_secs(30), || {
        total("front", &outside_name).filter(|v| *v >= 1.0)
    });
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert_eq!(seen, Some(1.0), "{scrape}\n{}", agent.stderr.text());
    // Both instrumented: once per request, never also as calls to or from an address.
    assert_eq!(total("front", "back"), Some(6.0), "{scrape}");
    assert_eq!(
        query(
            prometheus_port,
            "sum(traces_service_graph_request_failed_total{client=\"front\",server=\"back\"})"
        ),
        Some(6.0 - 4.0),
        "{scrape}"
    );
    for side in ["client", "server"] {
        assert_eq!(
            query(
                prometheus_port,
                &format!("sum(traces_service_graph_request_{side}_seconds_count{{client=\"front\",server=\"back\",connection_type=\"\"}})")
            ),
            Some(6.0),
            "{side} durations: {scrape}"
        );
    }
    assert_eq!(
        total("front", &format!("127.0.0.1:{}", back.port)),
        None,
        "{scrape}"
    );
    // curl is not instrumented: it is its address, and only the server side is measured.
    assert_eq!(total("127.0.0.1", "front"), Some(8.0), "{scrape}");
    assert_eq!(total("front", "front"), None, "{scrape}");
    assert_eq!(total("127.0.0.1", "back"), Some(3.0), "{scrape}");
    assert_eq!(
        query(
            prometheus_port,
            "sum(traces_service_graph_request_client_seconds_count{client=\"127.0.0.1\"})"
        ),
        None,
        "{scrape}"
    );
    assert_eq!(
        query(
            prometheus_port,
            "count(traces_service_graph_request_total{connection_type=\"virtual_node\"})"
        ),
        Some(3.0),
        "{scrape}"
    );
    assert!(
        scrape.contains("zerotrace_service_graph_evictions_total 0"),
        "{scrape}"
    );
}

/// Also OBI's `allow_service_graph_self_references`, here by its variable:
/// front calling itself counts over OTLP (Prometheus, above, leaves it out).
#[test]
fn otlp_carries_the_service_graph_on_the_agents_resource() {
    require_root();
    let (front, back) = (Server::python_app(), Server::python_app());
    let receiver = OtlpReceiver::start_http();
    let file = config("otlp.yaml", front.port, back.port, "application");
    let endpoint = receiver.endpoint();
    let _agent = Agent::start(
        &["--config", &file.to_string_lossy()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            // The variable overrides the file's list.
            (
                "OTEL_EBPF_METRICS_FEATURES",
                "application,application_service_graph",
            ),
            ("OTEL_EBPF_ALLOW_SERVICE_GRAPH_SELF_REFERENCES", "true"),
        ],
    );
    for _ in 0..3 {
        curl(&[&front.url(&format!("/call/{}/hello", back.port))]);
    }
    for _ in 0..2 {
        curl(&[&front.url("/proxy")]);
    }
    let is_front_to_back = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
        attr_str(attrs, "client").as_deref() == Some("front")
            && attr_str(attrs, "server").as_deref() == Some("back")
            && attr_str(attrs, "connection_type").as_deref() == Some("")
    };
    let found = receiver.wait_for_metrics(Duration::from_secs(20), |exports| {
        let metrics = metrics_of(exports);
        // Cumulative: the last export has the total.
        let (resource, total) = metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == "traces_service_graph_request_total")?;
        let Some(metric::Data::Sum(sum)) = &total.data else {
            return None;
        };
        let point = sum
            .data_points
            .iter()
            .find(|p| is_front_to_back(&p.attributes))?;
        let itself = sum.data_points.iter().find(|p| {
            attr_str(&p.attributes, "client").as_deref() == Some("front")
                && attr_str(&p.attributes, "server").as_deref() == Some("front")
        })?;
        (point.value == Some(number_data_point::Value::AsInt(3))
            && itself.value == Some(number_data_point::Value::AsInt(2)))
        .then(|| (resource.clone(), metrics.clone()))
    });
    let (resource, metrics) = found.unwrap_or_else(|| {
        panic!(
            "no front->back total of 3 and front->front of 2: {:#?}",
            receiver.metrics()
        )
    });
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("zerotrace")
    );
    for name in [
        "traces_service_graph_request_client",
        "traces_service_graph_request_server",
    ] {
        let (_, histogram) = metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(histogram.unit, "s");
        let Some(metric::Data::Histogram(h)) = &histogram.data else {
            panic!("{name} is not a histogram");
        };
        let point = h
            .data_points
            .iter()
            .find(|p| is_front_to_back(&p.attributes))
            .unwrap_or_else(|| panic!("{name}: no front->back point"));
        assert_eq!(point.count, 3, "{name}");
    }
    assert!(metrics
        .iter()
        .any(|(_, m)| m.name == "traces_service_graph_request_failed_total"));
}

#[test]
fn service_graph_metrics_are_off_by_default() {
    require_root();
    let (front, back) = (Server::python_app(), Server::python_app());
    let metrics_port = free_port();
    let file = config("default.yaml", front.port, back.port, "application");
    let _agent = Agent::start(
        &["--config", &file.to_string_lossy()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    curl(&[&front.url(&format!("/call/{}/hello", back.port))]);
    let text = wait_for(Duration::from_secs(10), || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        text.contains("http_server_request_duration_seconds_count")
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("no RED metrics"));
    assert!(!text.contains("traces_service_graph"), "{text}");
    // Nor the process metrics (application_process).
    assert!(!text.contains("process_cpu_time"), "{text}");
}
