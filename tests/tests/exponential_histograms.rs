//! OBI's `histogram_aggregation: base2_exponential_bucket_histogram`
//! (here through `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`):
//! the OTLP export's histograms become base-2 exponential ones. Checked
//! against the OpenTelemetry Python SDK (installed from PyPI by the test
//! when missing), the reference implementation: first the worker's buckets
//! alone on many values, then the agent's export (decoded with
//! opentelemetry-proto) of responses whose sizes the test chose. The
//! Prometheus endpoint keeps explicit buckets.

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{metric, ExponentialHistogramDataPoint};
use zerotrace_integration_tests::otel_sdk::{exponential_histogram, ExponentialShape};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;
use zerotrace_worker::metrics::exponential::ExponentialBuckets;

/// Deterministic values spread over `decades` powers of ten from `low`.
fn spread(seed: u64, count: usize, low: f64, decades: f64) -> Vec<f64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            low * 10f64.powf(unit * decades)
        })
        .collect()
}

fn shape(buckets: &ExponentialBuckets) -> ExponentialShape {
    let (offset, counts) = buckets.positive();
    ExponentialShape::new(buckets.scale(), buckets.zero_count(), offset, counts)
}

#[test]
fn the_worker_s_buckets_are_the_python_sdk_s() {
    let mut sets = vec![
        // Durations from 1 µs to 10 s: the scale comes down to fit.
        spread(1, 2_000, 1e-6, 7.0),
        // Close latencies: a fine scale.
        spread(2, 500, 0.020, 0.05),
        // Whole byte counts with zeros and powers of two (bucket bounds).
        spread(3, 1_000, 1.0, 6.0)
            .into_iter()
            .map(f64::round)
            .chain([0.0, 0.0, 1.0, 1024.0, 65_536.0, 0.5])
            .collect(),
        vec![0.25],
        vec![0.0, 0.0],
    ];
    // Values far apart first, then between: the order the scale changes in.
    sets.push([1e-3, 1e3, 1.0, 7.5e-2, 12.0].to_vec());
    for values in &sets {
        let mut buckets = ExponentialBuckets::new();
        for value in values {
            buckets.record(*value);
        }
        let reference = exponential_histogram(values);
        assert_eq!(shape(&buckets), reference, "{} values", values.len());
        assert!(buckets.positive().1.len() <= 160);

        // Two halves recorded apart and merged (as `attributes.select`
        // merges series) make the same histogram.
        let (left, right) = values.split_at(values.len() / 2);
        let (mut first, mut second) = (ExponentialBuckets::new(), ExponentialBuckets::new());
        left.iter().for_each(|v| first.record(*v));
        right.iter().for_each(|v| second.record(*v));
        first.merge(&second);
        assert_eq!(shape(&first), reference, "merged halves of {values:?}");
    }
}

/// The latest export's points of the exponential histogram `name`.
fn exponential_points(
    exports: &[ReceivedMetrics],
    name: &str,
) -> Option<Vec<ExponentialHistogramDataPoint>> {
    metrics_of(exports)
        .into_iter()
        .rev()
        .find(|(_, m)| m.name == name)
        .and_then(|(_, m)| match m.data {
            Some(metric::Data::ExponentialHistogram(h)) => Some(h.data_points),
            _ => None,
        })
}

fn point_shape(point: &ExponentialHistogramDataPoint) -> ExponentialShape {
    let (offset, counts) = point
        .positive
        .as_ref()
        .map_or((0, &[][..]), |b| (b.offset, &b.bucket_counts[..]));
    ExponentialShape::new(point.scale, point.zero_count, offset, counts)
}

/// A point of values the test cannot know (durations): its counts add up,
/// and its first and last buckets are those of its min and max, as the SDK
/// places them (at scale 20, then shifted to the point's scale).
fn assert_consistent(name: &str, point: &ExponentialHistogramDataPoint, count: u64) {
    let shape = point_shape(point);
    assert_eq!(point.count, count, "{name}: {point:?}");
    assert_eq!(
        shape.zero_count + shape.bucket_counts.iter().sum::<u64>(),
        count,
        "{name}: {point:?}"
    );
    assert!(
        shape.bucket_counts.len() <= 160 && point.scale <= 20,
        "{name}: {point:?}"
    );
    let (Some(min), Some(max)) = (point.min, point.max) else {
        panic!("{name}: no min or max: {point:?}");
    };
    let index = |value: f64| {
        let alone = exponential_histogram(&[value]);
        assert_eq!(alone.scale, Some(20));
        alone.offset >> (20 - point.scale)
    };
    let last = shape.offset + shape.bucket_counts.len() as i32 - 1;
    assert_eq!(index(min), shape.offset, "{name}: min {min} in {point:?}");
    assert_eq!(index(max), last, "{name}: max {max} in {point:?}");
}

#[test]
fn the_otlp_export_sends_exponential_histograms_the_sdk_would() {
    require_root();
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let agent = Agent::start_exporting_to(
        &[],
        &receiver,
        &[
            ("OTEL_EBPF_OPEN_PORT", &server.port.to_string()),
            (
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "base2_exponential_bucket_histogram",
            ),
            (
                "OTEL_EBPF_METRICS_FEATURES",
                "application,application_span_otel",
            ),
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
        ],
    );
    // Sizes over six powers of ten, an empty body and repeats.
    let sizes: [u32; 10] = [0, 1, 3, 17, 100, 1000, 4096, 65_536, 1_000_000, 1_000_000];
    for size in sizes {
        curl(&["-o", "/dev/null", &server.url(&format!("/size/{size}"))]);
    }
    let count = sizes.len() as u64;
    let total =
        |points: &[ExponentialHistogramDataPoint]| points.iter().map(|p| p.count).sum::<u64>();
    let (responses, requests, durations, spans) = receiver
        .wait_for_metrics(Duration::from_secs(20), |exports| {
            let responses = exponential_points(exports, "http.server.response.body.size")?;
            let requests = exponential_points(exports, "http.server.request.body.size")?;
            let durations = exponential_points(exports, "http.server.request.duration")?;
            let spans = exponential_points(exports, "traces.span.metrics.duration")?;
            let complete = [&responses, &requests, &durations]
                .iter()
                .all(|points| total(points) == count)
                && total(&spans) >= count;
            complete.then_some((responses, requests, durations, spans))
        })
        .unwrap_or_else(|| {
            panic!(
                "no exponential histograms of {count} requests\n{:#?}\n{}",
                metrics_of(&receiver.metrics())
                    .iter()
                    .map(|(_, m)| &m.name)
                    .collect::<Vec<_>>(),
                agent.stderr.text()
            )
        });

    // Sizes are known: the buckets are exactly the SDK's for them.
    let [response] = &responses[..] else {
        panic!("one response size series expected: {responses:#?}");
    };
    let values: Vec<f64> = sizes.iter().map(|s| f64::from(*s)).collect();
    assert_eq!(point_shape(response), exponential_histogram(&values));
    assert_eq!(response.sum, Some(values.iter().sum()));
    assert_eq!((response.min, response.max), (Some(0.0), Some(1e6)));
    // GETs have no body: every request in the zero count.
    let [request] = &requests[..] else {
        panic!("one request size series expected: {requests:#?}");
    };
    assert_eq!(point_shape(request), exponential_histogram(&[0.0; 10]));

    // Durations are the kernel's: consistent with their min and max.
    for point in &durations {
        assert_consistent("http.server.request.duration", point, point.count);
    }
    for point in &spans {
        assert_consistent("traces.span.metrics.duration", point, point.count);
    }

    // Prometheus keeps explicit buckets.
    let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_response_body_size_bytes_bucket{")
                && l.contains("le=\"+Inf\"")
                && l.ends_with(&format!(" {count}"))
        ),
        "{text}"
    );
}
