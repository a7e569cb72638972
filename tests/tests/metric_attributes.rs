//! `attributes.select` for metrics: an instrumented Python server, a YAML
//! file that removes the route, the status code and the error type from the
//! server duration histogram. Its series then add up into one per method, as
//! OTLP (decoded with opentelemetry-proto) and the Prometheus endpoint show;
//! the other histograms keep every attribute.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric;
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The config file: the server duration without route, status and error type.
fn config(port: u16) -> PathBuf {
    readable_config(
        "select",
        "select.yaml",
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {port}\nattributes:\n  select:\n    http_server_request_duration_seconds:\n      exclude: [http.route, 'http_response_*', error.type]\n"
        ),
    )
}

#[test]
fn excluded_attributes_merge_their_series_over_otlp_and_prometheus() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let file = config(server.port);
    let agent = Agent::start_exporting_to(
        &["--config", &file.to_string_lossy()],
        &receiver,
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    for path in ["/hello", "/status/503", "/size/10", "/hello"] {
        curl(&[&server.url(path)]);
    }
    curl(&[&server.url("/echo"), "--data-binary", "abc"]);
    let found = receiver.wait_for_metrics(Duration::from_secs(20), |exports| {
        let metrics = metrics_of(exports);
        let (_, duration) = metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == "http.server.request.duration")?;
        let Some(metric::Data::Histogram(histogram)) = &duration.data else {
            return None;
        };
        let total: u64 = histogram.data_points.iter().map(|p| p.count).sum();
        (total == 5).then(|| (histogram.clone(), metrics.clone()))
    });
    let (histogram, metrics) = found.unwrap_or_else(|| {
        panic!(
            "no 5 requests: {:#?}\n{}",
            receiver.metrics().len(),
            agent.stderr.text()
        )
    });
    // One series per method: GET (4 requests, whatever their route and status) and POST.
    let mut series: Vec<(Option<String>, u64)> = histogram
        .data_points
        .iter()
        .map(|p| (attr_str(&p.attributes, "http.request.method"), p.count))
        .collect();
    series.sort();
    assert_eq!(
        series,
        vec![(Some("GET".into()), 4), (Some("POST".into()), 1)],
        "{histogram:#?}"
    );
    for point in &histogram.data_points {
        for gone in ["http.route", "http.response.status_code", "error.type"] {
            assert!(
                attr_str(&point.attributes, gone).is_none()
                    && attr_display(&point.attributes, gone).is_none(),
                "{gone}: {point:#?}"
            );
        }
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
    }
    // The response size histogram is not selected: it keeps the routes apart.
    let (_, sizes) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "http.server.response.body.size")
        .unwrap_or_else(|| panic!("no response sizes"));
    let Some(metric::Data::Histogram(sizes)) = &sizes.data else {
        panic!("{sizes:#?}")
    };
    assert!(sizes.data_points.len() >= 4, "{sizes:#?}");
    // The Prometheus endpoint applies the same selection.
    let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .collect();
    assert_eq!(counts.len(), 2, "{text}");
    assert!(
        counts
            .iter()
            .all(|l| !l.contains("http_route=") && !l.contains("http_response_status_code=")),
        "{counts:?}"
    );
    assert!(
        counts
            .iter()
            .any(|l| l.contains("http_request_method=\"GET\"") && l.ends_with(" 4")),
        "{counts:?}"
    );
}
