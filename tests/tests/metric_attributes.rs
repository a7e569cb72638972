//! `attributes.select` for metrics: an instrumented Python server, a YAML
//! file that removes the route, the status code and the error type from the
//! server duration histogram. Its series then add up into one per method, as
//! OTLP (decoded with opentelemetry-proto) and the Prometheus endpoint show;
//! the other histograms keep every attribute. And OBI's `buckets`: bounds
//! from the file replace the defaults, per exporter.

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

/// OBI's `buckets`: `metrics.buckets.duration_histogram` for every exporter
/// and every duration histogram (the span metrics' too),
/// `prometheus_export.buckets.response_size_histogram` for Prometheus only.
#[test]
fn configured_buckets_replace_the_defaults_per_exporter() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let port = server.port;
    let file = readable_config(
        "buckets",
        "buckets.yaml",
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {port}\nmetrics:\n  features: [application, application_span_otel]\n  buckets:\n    duration_histogram: [0.05, 0.5, 5]\nprometheus_export:\n  port: {metrics_port}\n  buckets:\n    response_size_histogram: [16, 1024]\n"
        ),
    );
    let agent = Agent::start_exporting_to(&["--config", &file.to_string_lossy()], &receiver, &[]);
    for path in ["/hello", "/size/10", "/size/2000"] {
        curl(&[&server.url(path)]);
    }
    let bounds_of = |metrics: &[(
        std::collections::BTreeMap<String, String>,
        opentelemetry_proto::tonic::metrics::v1::Metric,
    )],
                     name: &str| {
        metrics
            .iter()
            .rev()
            .find(|(_, m)| m.name == name)
            .and_then(|(_, m)| match &m.data {
                Some(metric::Data::Histogram(h)) => {
                    Some(h.data_points.first()?.explicit_bounds.clone())
                }
                _ => None,
            })
    };
    let metrics = receiver
        .wait_for_metrics(Duration::from_secs(20), |exports| {
            let metrics = metrics_of(exports);
            let (_, duration) = metrics
                .iter()
                .rev()
                .find(|(_, m)| m.name == "http.server.request.duration")?;
            let Some(metric::Data::Histogram(histogram)) = &duration.data else {
                return None;
            };
            let total: u64 = histogram.data_points.iter().map(|p| p.count).sum();
            (total == 3).then_some(metrics)
        })
        .unwrap_or_else(|| panic!("no 3 requests\n{}", agent.stderr.text()));
    for name in [
        "http.server.request.duration",
        "traces.span.metrics.duration",
    ] {
        assert_eq!(
            bounds_of(&metrics, name),
            Some(vec![0.05, 0.5, 5.0]),
            "{name}"
        );
    }
    // The response sizes' list is Prometheus's only: OTLP keeps the default.
    let sizes = bounds_of(&metrics, "http.server.response.body.size").unwrap_or_default();
    assert_eq!(sizes.first(), Some(&0.0), "{sizes:?}");
    assert_eq!(sizes.len(), 15, "{sizes:?}");

    let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let les = |family: &str| -> Vec<String> {
        let mut les: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{family}_bucket{{")))
            .filter_map(|l| Some(l.split("le=\"").nth(1)?.split('"').next()?.to_owned()))
            .collect();
        les.dedup();
        les
    };
    let seconds = ["0.05", "0.5", "5.0", "+Inf"];
    assert_eq!(
        les("http_server_request_duration_seconds")[..4],
        seconds,
        "{text}"
    );
    assert_eq!(
        les("traces_span_metrics_duration_seconds")[..4],
        seconds,
        "{text}"
    );
    assert_eq!(
        les("http_server_response_body_size_bytes")[..3],
        ["16.0", "1024.0", "+Inf"],
        "{text}"
    );
    // The 2,000-byte response lies above the last bound, the 10-byte one in the first.
    let big = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_response_body_size_bytes_bucket{")
                && l.contains("le=\"1024.0\"")
                && l.contains("http_route=\"/size/*\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        big.ends_with(" 1"),
        "only the 10-byte response is at most 1024 bytes: {big}"
    );
}
