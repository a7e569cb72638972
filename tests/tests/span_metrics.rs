//! Span metrics (OBI's `application_span`, `application_span_otel` and
//! `application_span_sizes`): two instrumented Python services, `front`
//! calling `back`. Every span the traces carry is counted once in
//! `traces_spanmetrics_calls_total` under its own name, kind and status,
//! with its latency and body sizes: checked against the spans themselves,
//! decoded from OTLP with opentelemetry-proto, and by a real Prometheus, in
//! Tempo's names and in the OpenTelemetry Collector's.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::prometheus_server::{query, start_prometheus, PrometheusGuard};
use zerotrace_integration_tests::*;

/// (pid, span name, kind, status) as the span metrics name them.
type SeriesKey = (String, String, String, String);

fn kind_name(kind: i32) -> String {
    SpanKind::try_from(kind)
        .map(|k| k.as_str_name().to_owned())
        .unwrap_or_default()
}

fn status_name(code: i32) -> String {
    // The spans are ERROR or unset.
    StatusCode::try_from(code)
        .map(|c| c.as_str_name().to_owned())
        .unwrap_or_default()
}

/// The latest cumulative value of each series of a counter, by key.
fn counter_values(
    metrics: &[(BTreeMap<String, String>, Metric)],
    name: &str,
) -> BTreeMap<SeriesKey, i64> {
    let mut values = BTreeMap::new();
    for (resource, metric) in metrics.iter().filter(|(_, m)| m.name == name) {
        let Some(metric::Data::Sum(sum)) = &metric.data else {
            continue;
        };
        let pid = resource.get("process.pid").cloned().unwrap_or_default();
        for point in &sum.data_points {
            let key = (
                pid.clone(),
                attr_str(&point.attributes, "span.name").unwrap_or_default(),
                attr_str(&point.attributes, "span.kind").unwrap_or_default(),
                attr_str(&point.attributes, "status.code").unwrap_or_default(),
            );
            if let Some(number_data_point::Value::AsInt(v)) = point.value {
                values.insert(key, v);
            }
        }
    }
    values
}

/// The server spans a real Prometheus counts in `selector` (a family and
/// its first labels, left open) that also match `filter`.
fn server_calls(prometheus_port: u16, selector: &str, filter: &str) -> Option<f64> {
    query(
        prometheus_port,
        &format!("sum({selector},span_kind=\"SPAN_KIND_SERVER\",{filter}}})"),
    )
}

#[test]
fn every_span_is_counted_once_under_its_name_kind_and_status() {
    require_root();
    let (front, back) = (Server::python_app(), Server::python_app());
    let receiver = OtlpReceiver::start_http();
    let ports = format!("{},{}", front.port, back.port);
    let agent = Agent::start_exporting_to(
        &["--open-port", &ports],
        &receiver,
        &[(
            "OTEL_EBPF_METRICS_FEATURES",
            "application,application_span,application_span_sizes",
        )],
    );
    for _ in 0..3 {
        curl(&[&front.url(&format!("/call/{}/hello", back.port))]);
    }
    for _ in 0..2 {
        curl(&[&front.url(&format!("/call/{}/status/500", back.port))]);
    }
    let echoed = curl(&[&back.url("/echo"), "--data-binary", "0123456789"]);
    assert_eq!(echoed, "0123456789");
    // 5 server spans of front, 5 client spans of front, 6 server spans of back.
    let spans = receiver
        .wait_for_traces(Duration::from_secs(20), |traces| {
            let spans = spans_of(traces);
            (spans.len() >= 16).then_some(spans)
        })
        .unwrap_or_else(|| panic!("spans: {:#?}\n{}", receiver.spans(), agent.stderr.text()));
    let mut expected: BTreeMap<SeriesKey, i64> = BTreeMap::new();
    for (resource, span) in &spans {
        let key = (
            resource.get("process.pid").cloned().unwrap_or_default(),
            span.name.clone(),
            kind_name(span.kind),
            status_name(span.status.as_ref().map_or(0, |s| s.code)),
        );
        *expected.entry(key).or_default() += 1;
    }
    assert_eq!(expected.values().sum::<i64>(), 16, "{expected:#?}");
    let calls = receiver
        .wait_for_metrics(Duration::from_secs(20), |exports| {
            let calls = counter_values(&metrics_of(exports), "traces_spanmetrics_calls_total");
            (calls == expected).then_some(calls)
        })
        .unwrap_or_else(|| {
            panic!(
                "span metrics {:#?}\nwanted {expected:#?}",
                counter_values(
                    &metrics_of(&receiver.metrics()),
                    "traces_spanmetrics_calls_total"
                )
            )
        });
    // Errors are their own series: back's two 500s, and front's two calls that got them.
    let errors: i64 = calls
        .iter()
        .filter(|(key, _)| key.3 == "STATUS_CODE_ERROR")
        .map(|(_, v)| v)
        .sum();
    assert!(errors >= 2, "{calls:#?}");
    let metrics = metrics_of(&receiver.metrics());
    // The request body of POST /echo, on back's series.
    let back_pid = back.pid().to_string();
    let sizes = counter_values(&metrics, "traces_spanmetrics_size_total");
    let echo: Vec<_> = sizes
        .iter()
        .filter(|(key, _)| key.0 == back_pid && key.1.starts_with("POST"))
        .collect();
    assert_eq!(echo.len(), 1, "{sizes:#?}");
    assert_eq!(*echo[0].1, 10, "{sizes:#?}");
    let responses = counter_values(&metrics, "traces_spanmetrics_response_size_total");
    assert!(responses.values().any(|v| *v > 0), "{responses:#?}");
    // Latency: a histogram in seconds whose counts are the calls; no unit
    // declared, as in OBI, so that a Collector's Prometheus exporter keeps
    // Tempo's name without a suffix.
    let (_, latency) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "traces_spanmetrics_latency")
        .unwrap_or_else(|| panic!("no latency"));
    assert_eq!(latency.unit, "");
    // Not the OpenTelemetry form, which was not asked for.
    assert!(!metrics
        .iter()
        .any(|(_, m)| m.name.starts_with("traces.span.metrics")));
    let Some(metric::Data::Histogram(histogram)) = &latency.data else {
        panic!("{latency:#?}")
    };
    for point in &histogram.data_points {
        assert!(
            point.count > 0 && point.sum.unwrap_or(0.0) > 0.0,
            "{point:#?}"
        );
        for key in [
            "service",
            "service.instance.id",
            "span.name",
            "span.kind",
            "status.code",
        ] {
            assert!(
                attr_str(&point.attributes, key).is_some(),
                "{key}: {point:#?}"
            );
        }
        assert_eq!(
            attr_str(&point.attributes, "source").as_deref(),
            Some("zerotrace")
        );
    }
}

#[test]
fn a_real_prometheus_reads_the_span_metrics_in_tempo_s_names() {
    require_root();
    let server = Server::python_app();
    let metrics_port = free_port();
    let port = server.port.to_string();
    let _agent = Agent::start(
        &["--open-port", &port],
        &[
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
            (
                "OTEL_EBPF_PROMETHEUS_FEATURES",
                "application,application_span",
            ),
        ],
    );
    for _ in 0..4 {
        curl(&[&server.url("/hello")]);
    }
    curl(&[&server.url("/status/503")]);
    let (prometheus, prometheus_port, work) = start_prometheus("spans", metrics_port);
    let _prometheus = PrometheusGuard(prometheus, work);
    let calls = |filter: &str| {
        server_calls(
            prometheus_port,
            "traces_spanmetrics_calls_total{service=\"python3\"",
            filter,
        )
    };
    let all = wait_for(Duration::from_secs(30), || calls("").filter(|v| *v >= 5.0));
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert_eq!(all, Some(5.0), "{scrape}");
    assert_eq!(
        calls("status_code=\"STATUS_CODE_ERROR\""),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        calls("span_name=\"GET /hello\",status_code=\"STATUS_CODE_UNSET\""),
        Some(4.0),
        "{scrape}"
    );
    // The histogram as Tempo's dashboards read it.
    let quantile = query(
        prometheus_port,
        "histogram_quantile(0.5, sum by (le) (traces_spanmetrics_latency_bucket{service=\"python3\"}))",
    );
    assert!(
        quantile.is_some_and(|q| q > 0.0 && q < 1.0),
        "{quantile:?}\n{scrape}"
    );
    assert_eq!(
        query(
            prometheus_port,
            "sum(traces_spanmetrics_latency_count{service=\"python3\"})"
        ),
        Some(5.0),
        "{scrape}"
    );
    let pid = server.pid();
    assert_eq!(
        query(
            prometheus_port,
            &format!("count(target_info{{process_pid=\"{pid}\"}})")
        ),
        Some(1.0),
        "{scrape}"
    );
}

/// OBI's `application_span_otel`, the names the OpenTelemetry Collector's
/// span metrics connector writes: over OTLP (`traces.span.metrics.calls`,
/// `traces.span.metrics.duration` in seconds, `service.name`, the program's
/// language) and on Prometheus, read by a real Prometheus
/// (`traces_span_metrics_calls_total`, `traces_span_metrics_duration_seconds`).
/// `all` chooses this form, with the sizes, and not Tempo's. OBI's
/// `extra_span_resource_attributes` (here its variables, one spelled as a
/// Prometheus label) adds `deployment.environment` from
/// `OTEL_RESOURCE_ATTRIBUTES` to both.
#[test]
fn the_opentelemetry_form_goes_over_otlp_and_to_a_real_prometheus() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let port = server.port.to_string();
    let agent = Agent::start_exporting_to(
        &["--open-port", &port],
        &receiver,
        &[
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
            ("OTEL_EBPF_METRICS_FEATURES", "all"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging"),
            (
                "OTEL_EBPF_EXTRA_SPAN_RESOURCE_ATTRIBUTES",
                "deployment.environment",
            ),
            (
                "OTEL_EBPF_PROMETHEUS_EXTRA_SPAN_RESOURCE_ATTRIBUTES",
                "deployment_environment",
            ),
        ],
    );
    for _ in 0..3 {
        curl(&[&server.url("/hello")]);
    }
    curl(&[&server.url("/status/503")]);
    let echoed = curl(&[&server.url("/echo"), "--data-binary", "0123456789"]);
    assert_eq!(echoed, "0123456789");
    let pid = server.pid().to_string();
    let expected: BTreeMap<SeriesKey, i64> = [
        ("GET /hello", "STATUS_CODE_UNSET", 3),
        ("GET /status/*", "STATUS_CODE_ERROR", 1),
        ("POST /echo", "STATUS_CODE_UNSET", 1),
    ]
    .into_iter()
    .map(|(name, status, n)| {
        let key = (
            pid.clone(),
            name.to_owned(),
            "SPAN_KIND_SERVER".to_owned(),
            status.to_owned(),
        );
        (key, n)
    })
    .collect();
    receiver
        .wait_for_metrics(Duration::from_secs(20), |exports| {
            let calls = counter_values(&metrics_of(exports), "traces.span.metrics.calls");
            (calls == expected).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "span metrics {:#?}\nwanted {expected:#?}\n{}",
                counter_values(
                    &metrics_of(&receiver.metrics()),
                    "traces.span.metrics.calls"
                ),
                agent.stderr.text()
            )
        });
    let metrics = metrics_of(&receiver.metrics());
    assert!(
        !metrics
            .iter()
            .any(|(_, m)| m.name.starts_with("traces_spanmetrics_latency")
                || m.name == "traces_spanmetrics_calls_total"),
        "all chooses the OpenTelemetry form only"
    );
    let (resource, duration) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "traces.span.metrics.duration")
        .unwrap_or_else(|| panic!("no duration"));
    assert_eq!(resource.get("process.pid"), Some(&pid));
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(histogram)) = &duration.data else {
        panic!("{duration:#?}")
    };
    let counted: u64 = histogram.data_points.iter().map(|p| p.count).sum();
    assert_eq!(counted, 5, "{histogram:#?}");
    for point in &histogram.data_points {
        assert_eq!(
            attr_str(&point.attributes, "service.name").as_deref(),
            Some("python3")
        );
        assert_eq!(
            attr_str(&point.attributes, "telemetry.sdk.language").as_deref(),
            Some("python")
        );
        assert_eq!(attr_str(&point.attributes, "service"), None);
        assert_eq!(
            attr_str(&point.attributes, "deployment.environment").as_deref(),
            Some("staging")
        );
    }
    // The sizes come with `all`, in this form's attribute names.
    let sizes: Vec<i64> = counter_values(&metrics, "traces_spanmetrics_size_total")
        .into_iter()
        .filter(|(key, _)| key.1 == "POST /echo")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(sizes, vec![10]);

    let (prometheus, prometheus_port, work) = start_prometheus("spans-otel", metrics_port);
    let _prometheus = PrometheusGuard(prometheus, work);
    let calls = |filter: &str| {
        server_calls(
            prometheus_port,
            "traces_span_metrics_calls_total{service_name=\"python3\",telemetry_sdk_language=\"python\"",
            filter,
        )
    };
    let all = wait_for(Duration::from_secs(30), || calls("").filter(|v| *v >= 5.0));
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert_eq!(all, Some(5.0), "{scrape}");
    assert_eq!(
        calls("status_code=\"STATUS_CODE_ERROR\""),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        calls("deployment_environment=\"staging\""),
        Some(5.0),
        "{scrape}"
    );
    let quantile = query(
        prometheus_port,
        "histogram_quantile(0.5, sum by (le) (traces_span_metrics_duration_seconds_bucket{service_name=\"python3\"}))",
    );
    assert!(
        quantile.is_some_and(|q| q > 0.0 && q < 1.0),
        "{quantile:?}\n{scrape}"
    );
    assert!(!scrape.contains("traces_spanmetrics_latency"), "{scrape}");
}
