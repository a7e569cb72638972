//! OBI's attribute filters (`filter.application`): an instrumented Python
//! server, a YAML file that keeps only GET requests whose path is not
//! `/id/secret*`. What is filtered goes to neither the traces nor the RED
//! metrics, and is counted (`zerotrace.spans.filtered`); all decoded from
//! OTLP with opentelemetry-proto.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The config file: GET requests whose path is not `/id/secret*` pass.
fn config(port: u16) -> PathBuf {
    readable_config(
        "filters",
        "filters.yaml",
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {port}\nfilter:\n  application:\n    url.path: {{not_match: '/id/secret*'}}\n    http_request_method: {{match: GET}}\n  network:\n    dst_port: {{match: '80'}}\n"
        ),
    )
}

#[test]
fn filtered_spans_reach_neither_traces_nor_metrics_and_are_counted() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let file = config(server.port);
    let agent = Agent::start_exporting_to(&["--config", &file.to_string_lossy()], &receiver, &[]);
    // The network filter is accepted with a warning: there are no network metrics.
    assert!(
        agent.stderr.text().contains("filter.network"),
        "{}",
        agent.stderr.text()
    );
    for path in ["/id/1", "/id/secret-2", "/id/3", "/id/secret"] {
        curl(&[&server.url(path)]);
    }
    let echoed = curl(&[&server.url("/echo"), "--data-binary", "kept out"]);
    assert_eq!(echoed, "kept out");
    // Counted first: the spans went through the agent before the counter moved.
    let counted = wait_for(Duration::from_secs(20), || {
        let metrics = metrics_of(&receiver.metrics());
        let (_, filtered) = metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == "zerotrace.spans.filtered")?;
        let Some(metric::Data::Sum(sum)) = &filtered.data else {
            return None;
        };
        let value = match sum.data_points.first()?.value {
            Some(number_data_point::Value::AsInt(v)) => v,
            _ => return None,
        };
        (value >= 3).then_some(value)
    });
    assert_eq!(counted, Some(3), "{}", agent.stderr.text());
    // Let a span batch and a metric export go after the counter.
    std::thread::sleep(Duration::from_millis(1200));
    let paths: Vec<String> = receiver
        .spans()
        .iter()
        .filter_map(|(_, span)| attr_str(&span.attributes, "url.path"))
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["/id/1", "/id/3"], "{paths:?}");
    // The RED metrics count the two kept requests only.
    let metrics = metrics_of(&receiver.metrics());
    let (_, duration) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "http.server.request.duration")
        .unwrap_or_else(|| panic!("no http.server.request.duration"));
    let Some(metric::Data::Histogram(histogram)) = &duration.data else {
        panic!("{duration:#?}")
    };
    let count: u64 = histogram.data_points.iter().map(|p| p.count).sum();
    assert_eq!(count, 2, "{histogram:#?}");
    for point in &histogram.data_points {
        assert_eq!(
            attr_str(&point.attributes, "http.request.method").as_deref(),
            Some("GET")
        );
    }
}
