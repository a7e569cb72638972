//! The agent's own health: what the kernel, the ring reader, the decoders
//! and the exporters counted, as one snapshot the pipeline refreshes. It is
//! served three ways: on the Prometheus endpoint (`zerotrace_*`), over OTLP
//! with the other metrics (`zerotrace.*`, on the agent's own resource,
//! `service.name=zerotrace`), and as a line of the text trace printer when
//! events were lost or dropped (at most every [`LOSS_NOTICE_EVERY`]).

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::otel::resource::{string_attribute, ResourceCatalog};
use crate::protocols::http2::Http2Stats;

/// The text printer reports losses at most this often.
pub const LOSS_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// The agent's own counters (since the worker started, except the kernel's
/// and the loader's, which count since the loader started) and levels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfMetrics {
    pub kernel_events: u64,
    pub kernel_ringbuf_drops: u64,
    pub records_read: u64,
    pub undecodable_records: u64,
    pub spans: u64,
    pub garbage_segments: u64,
    /// Socket bytes of TLS connections, recognised as records and skipped.
    pub tls_record_segments: u64,
    /// TLS plaintext the kernel dropped: its socket was never found.
    pub tls_unassociated: u64,
    /// Socket reads and writes the kernel did not send: their socket had
    /// already closed, and its connection had ended with the close.
    pub segments_after_close: u64,
    /// HTTP/1 responses that found no request to pair with.
    pub unpaired_responses: u64,
    /// HTTP/1 requests whose connection ended before their response was seen.
    pub unanswered_requests: u64,
    /// HTTP/1 requests dropped beyond the per-connection pipelining limit.
    pub pipelined_requests_dropped: u64,
    /// Times a database or Kafka connection lost its message boundaries.
    pub framing_lost: u64,
    pub instrumented_processes: u64,
    pub tracked_connections: u64,
    pub otlp_spans_exported: u64,
    pub otlp_spans_dropped: u64,
    pub otlp_points_exported: u64,
    pub otlp_points_dropped: u64,
    pub otlp_failed_attempts: u64,
    /// Batches waiting in the OTLP queues, all destinations together.
    pub otlp_queue_depth: u64,
    /// From the loader's `Stats`: TLS library hooks attached now.
    pub uprobes_attached: u64,
    /// From the loader's `Stats`.
    pub worker_restarts: u64,
    pub loader_requests_refused: u64,
    /// What the HTTP/2 decoder could not follow, summed over connections.
    pub http2: Http2Stats,
    /// Server spans made the child of another process's client span.
    pub traces_linked: u64,
    /// Server spans that waited for an instrumented caller and went out as roots.
    pub traces_unlinked_no_match: u64,
    /// Server spans with two equally good callers, sent as roots.
    pub traces_unlinked_ambiguous: u64,
    /// Client spans made the child of the server span their process was serving.
    pub traces_nested: u64,
    /// Requests whose `traceparent` was malformed: ignored, their span a new trace.
    pub traces_invalid_context: u64,
    /// Client spans two server spans of their process could hold, sent as roots.
    pub traces_unlinked_ambiguous_parent: u64,
    /// Client spans of a serving process held by no server span on their thread.
    pub traces_unlinked_no_parent: u64,
    /// Client spans whose wait ended with an older request of their process unanswered.
    pub traces_unlinked_parent_still_open: u64,
    /// Spans sent before their link was known: the cap on held spans was reached.
    pub traces_unlinked_held_limit: u64,
    /// Spans the service graph counted unpaired early because its queue was full.
    pub service_graph_evictions: u64,
    /// Readings the process metrics could not take (procfs refused, or too many processes).
    pub process_readings_lost: u64,
    /// Spans `filter.application` did not pass.
    pub spans_filtered: u64,
}

impl SelfMetrics {
    /// The HTTP/2 loss reasons (`reason` attribute values) and their counts;
    /// docs/protocols.md says what each means.
    pub fn http2_losses(&self) -> [(&'static str, u64); 7] {
        let h2 = &self.http2;
        [
            ("h2_headers_truncated", h2.headers_truncated),
            ("hpack_lost", h2.hpack_lost_blocks),
            ("h2_header_block_undecodable", h2.blocks_lost),
            ("h2_framing_lost", h2.framing_lost),
            ("h2_stream_unnamed", h2.streams_unnamed),
            ("h2_stream_without_headers", h2.streams_without_headers),
            ("h2_stream_evicted", h2.streams_evicted),
        ]
    }

    /// Events that never became spans input: lost in the kernel (ring buffer
    /// full) or dropped by the worker (undecodable).
    pub fn events_lost_or_dropped(&self) -> u64 {
        self.kernel_ringbuf_drops + self.undecodable_records
    }
}

enum Kind {
    /// A monotonic cumulative sum.
    Counter,
    Gauge,
}

struct Family {
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    kind: Kind,
    /// (attributes, value) per data point.
    points: Vec<(Vec<KeyValue>, u64)>,
}

fn single(
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    kind: Kind,
    value: u64,
) -> Family {
    Family {
        name,
        description,
        unit,
        kind,
        points: vec![(Vec::new(), value)],
    }
}

fn by(key: &str, values: &[(&str, u64)]) -> Vec<(Vec<KeyValue>, u64)> {
    values
        .iter()
        .map(|(v, n)| (vec![string_attribute(key, *v)], *n))
        .collect()
}

fn families(own: &SelfMetrics) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    vec![
        single(
            "zerotrace.kernel.events",
            "Events the kernel programs submitted to the ring buffer.",
            "{event}",
            Counter,
            own.kernel_events,
        ),
        single(
            "zerotrace.events.lost",
            "Events the kernel dropped because the ring buffer was full.",
            "{event}",
            Counter,
            own.kernel_ringbuf_drops,
        ),
        single(
            "zerotrace.events.read",
            "Ring buffer records the worker read.",
            "{event}",
            Counter,
            own.records_read,
        ),
        single(
            "zerotrace.events.decoded",
            "Ring buffer records the worker decoded.",
            "{event}",
            Counter,
            own.records_read.saturating_sub(own.undecodable_records),
        ),
        Family {
            name: "zerotrace.events.dropped",
            description: "Records the worker read but dropped, by reason.",
            unit: "{event}",
            kind: Counter,
            points: by("reason", &[("undecodable", own.undecodable_records)]),
        },
        single(
            "zerotrace.spans",
            "Spans built from captured exchanges.",
            "{span}",
            Counter,
            own.spans,
        ),
        single(
            "zerotrace.segments.unparsed",
            "Captured segments that were not parseable as a supported protocol.",
            "{segment}",
            Counter,
            own.garbage_segments,
        ),
        single(
            "zerotrace.segments.tls_records",
            "Socket segments of TLS connections, recognised as TLS records and skipped.",
            "{segment}",
            Counter,
            own.tls_record_segments,
        ),
        Family {
            name: "zerotrace.exchanges.lost",
            description: "Messages that could not be made part of a span, by reason.",
            unit: "{message}",
            kind: Counter,
            points: by("reason", &lost_exchanges(own)),
        },
        single(
            "zerotrace.framing.lost",
            "Times a database or Kafka connection lost its message boundaries in bytes the capture did not copy, and skipped to where messages could be read again.",
            "{loss}",
            Counter,
            own.framing_lost,
        ),
        single(
            "zerotrace.traces.linked",
            "Server spans made the child of another process's client span on this host.",
            "{span}",
            Counter,
            own.traces_linked,
        ),
        single(
            "zerotrace.traces.nested",
            "Client spans made the child of the server span their process was serving.",
            "{span}",
            Counter,
            own.traces_nested,
        ),
        single(
            "zerotrace.traces.invalid_context",
            "Requests whose traceparent header was malformed: ignored, their span started a trace.",
            "{span}",
            Counter,
            own.traces_invalid_context,
        ),
        single(
            "zerotrace.service_graph.evictions",
            "Spans the service graph counted without their other half because too many were waiting.",
            "{span}",
            Counter,
            own.service_graph_evictions,
        ),
        single(
            "zerotrace.spans.filtered",
            "Spans the attribute filters (filter.application) did not pass: sent nowhere.",
            "{span}",
            Counter,
            own.spans_filtered,
        ),
        single(
            "zerotrace.process_metrics.unread",
            "Readings of instrumented processes the process metrics could not take: procfs refused them, or more than 10,000 processes were followed.",
            "{process}",
            Counter,
            own.process_readings_lost,
        ),
        Family {
            name: "zerotrace.traces.unlinked",
            description: "Spans whose parent could not be told, sent as roots, by reason.",
            unit: "{span}",
            kind: Counter,
            points: by("reason", &unlinked_traces(own)),
        },
        Family {
            name: "zerotrace.http2.losses",
            description: "What the HTTP/2 decoder could not follow, by reason: header blocks cut by the capture or with HPACK state lost (spans emitted with what is known), streams emitted without method or path, streams not emitted.",
            unit: "{item}",
            kind: Counter,
            points: by("reason", &own.http2_losses()),
        },
        single(
            "zerotrace.tls.unassociated",
            "TLS plaintext the kernel dropped because its connection's socket was never found.",
            "{event}",
            Counter,
            own.tls_unassociated,
        ),
        single(
            "zerotrace.segments.after_close",
            "Socket reads and writes not sent because their socket had already closed (its connection had ended with the close): the last bytes of a reset connection, a peer's final TLS record.",
            "{event}",
            Counter,
            own.segments_after_close,
        ),
        Family {
            name: "zerotrace.export.exported",
            description: "Spans and metric data points accepted by OTLP backends.",
            unit: "{item}",
            kind: Counter,
            points: by(
                "signal",
                &[
                    ("traces", own.otlp_spans_exported),
                    ("metrics", own.otlp_points_exported),
                ],
            ),
        },
        Family {
            name: "zerotrace.export.dropped",
            description: "Spans and metric data points the OTLP exporter dropped.",
            unit: "{item}",
            kind: Counter,
            points: by(
                "signal",
                &[
                    ("traces", own.otlp_spans_dropped),
                    ("metrics", own.otlp_points_dropped),
                ],
            ),
        },
        single(
            "zerotrace.export.errors",
            "Failed OTLP export attempts (each retry counts).",
            "{attempt}",
            Counter,
            own.otlp_failed_attempts,
        ),
        single(
            "zerotrace.export.queue.depth",
            "Batches waiting in the OTLP export queues.",
            "{batch}",
            Gauge,
            own.otlp_queue_depth,
        ),
        single(
            "zerotrace.processes.instrumented",
            "Processes the kernel currently captures.",
            "{process}",
            Gauge,
            own.instrumented_processes,
        ),
        single(
            "zerotrace.connections.tracked",
            "Connections the worker currently tracks.",
            "{connection}",
            Gauge,
            own.tracked_connections,
        ),
        single(
            "zerotrace.probes.attached",
            "TLS library probes (uprobes) the loader holds attached.",
            "{probe}",
            Gauge,
            own.uprobes_attached,
        ),
        single(
            "zerotrace.worker.restarts",
            "Times the loader restarted the worker.",
            "{restart}",
            Counter,
            own.worker_restarts,
        ),
        single(
            "zerotrace.loader.requests.refused",
            "Worker requests the loader refused.",
            "{request}",
            Counter,
            own.loader_requests_refused,
        ),
    ]
}

/// The `reason` values of `zerotrace.exchanges.lost` (and of
/// `zerotrace_exchanges_lost_total` on the Prometheus endpoint).
pub fn lost_exchanges(own: &SelfMetrics) -> [(&'static str, u64); 3] {
    [
        ("response_without_request", own.unpaired_responses),
        ("request_without_response", own.unanswered_requests),
        ("pipelining_limit", own.pipelined_requests_dropped),
    ]
}

/// The `reason` values of `zerotrace.traces.unlinked`.
pub fn unlinked_traces(own: &SelfMetrics) -> [(&'static str, u64); 6] {
    [
        ("no_caller_matched", own.traces_unlinked_no_match),
        ("ambiguous", own.traces_unlinked_ambiguous),
        ("ambiguous_parent", own.traces_unlinked_ambiguous_parent),
        ("no_parent", own.traces_unlinked_no_parent),
        ("parent_still_open", own.traces_unlinked_parent_still_open),
        ("held_limit", own.traces_unlinked_held_limit),
    ]
}

/// The agent's own resource: `service.name=zerotrace`, with the host and the
/// worker process like any other resource of ours (its language is Rust).
pub fn agent_resource(resources: &ResourceCatalog) -> Resource {
    let identity =
        crate::otel::resource::ProcessIdentity::read(std::process::id(), "zerotrace-worker");
    let mut resource = resources.build(&identity, "rust");
    resource
        .attributes
        .retain(|a| a.key != "service.name" && a.key != "process.command_line");
    resource
        .attributes
        .insert(0, string_attribute("service.name", "zerotrace"));
    resource
}

/// The snapshot as OTLP metrics: counters as cumulative monotonic sums since
/// `start_unix_ns`, levels as gauges.
pub fn to_otlp(
    own: &SelfMetrics,
    resource: &Resource,
    start_unix_ns: u64,
    now_unix_ns: u64,
) -> ResourceMetrics {
    let metrics = families(own)
        .into_iter()
        .map(|family| {
            let data_points = family
                .points
                .into_iter()
                .map(|(attributes, value)| NumberDataPoint {
                    attributes,
                    start_time_unix_nano: match family.kind {
                        Kind::Counter => start_unix_ns,
                        Kind::Gauge => 0,
                    },
                    time_unix_nano: now_unix_ns,
                    exemplars: Vec::new(),
                    flags: 0,
                    value: Some(number_data_point::Value::AsInt(
                        i64::try_from(value).unwrap_or(i64::MAX),
                    )),
                })
                .collect();
            let data = match family.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Kind::Gauge => metric::Data::Gauge(Gauge { data_points }),
            };
            Metric {
                name: family.name.to_owned(),
                description: family.description.to_owned(),
                unit: family.unit.to_owned(),
                metadata: Vec::new(),
                data: Some(data),
            }
        })
        .collect();
    ResourceMetrics {
        resource: Some(resource.clone()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(
                opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                    name: "zerotrace.self".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                },
            ),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// Data points in [`to_otlp`]'s output, for the exporter's counters.
pub fn point_count(own: &SelfMetrics) -> u64 {
    families(own).iter().map(|f| f.points.len() as u64).sum()
}

/// Decides when the text printer shows a loss line: only when something
/// was lost or dropped since the last line, and at most every
/// [`LOSS_NOTICE_EVERY`].
#[derive(Debug, Default)]
pub struct LossNotice {
    last_line: Option<Instant>,
    reported: SelfMetrics,
}

impl LossNotice {
    pub fn line(&mut self, own: &SelfMetrics, now: Instant) -> Option<String> {
        if own.events_lost_or_dropped() <= self.reported.events_lost_or_dropped() {
            return None;
        }
        if self
            .last_line
            .is_some_and(|at| now.duration_since(at) < LOSS_NOTICE_EVERY)
        {
            return None;
        }
        let since = |now: u64, then: u64| now.saturating_sub(then);
        let previous = &self.reported;
        let line = format!(
            "zerotrace: {} event(s) lost or dropped since the last report: {} lost in the kernel (ring buffer full), {} undecodable; {} in total",
            since(own.events_lost_or_dropped(), previous.events_lost_or_dropped()),
            since(own.kernel_ringbuf_drops, previous.kernel_ringbuf_drops),
            since(own.undecodable_records, previous.undecodable_records),
            own.events_lost_or_dropped(),
        );
        self.last_line = Some(now);
        self.reported = own.clone();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(resource_metrics: &ResourceMetrics, name: &str) -> Vec<(Vec<KeyValue>, i64)> {
        let metric = resource_metrics.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let points = match &metric.data {
            Some(metric::Data::Sum(sum)) => {
                assert!(sum.is_monotonic, "{name}");
                assert_eq!(
                    sum.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
                &sum.data_points
            }
            Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
            other => panic!("{name}: {other:?}"),
        };
        points
            .iter()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => (p.attributes.clone(), v),
                _ => panic!("{name}: not an integer"),
            })
            .collect()
    }

    #[test]
    fn counters_are_monotonic_sums_and_levels_are_gauges() {
        let own = SelfMetrics {
            kernel_ringbuf_drops: 5,
            records_read: 100,
            undecodable_records: 2,
            otlp_queue_depth: 4,
            tls_record_segments: 6,
            tls_unassociated: 1,
            unpaired_responses: 7,
            unanswered_requests: 8,
            pipelined_requests_dropped: 9,
            http2: Http2Stats {
                headers_truncated: 3,
                hpack_lost_blocks: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let out = to_otlp(&own, &Resource::default(), 10, 20);
        let lost = value_of(&out, "zerotrace.exchanges.lost");
        let reasons: Vec<_> = lost
            .iter()
            .map(|(a, v)| (a[0].key.as_str(), a[0].value.clone(), *v))
            .map(|(k, v, n)| (k.to_owned(), format!("{v:?}"), n))
            .collect();
        assert_eq!(reasons.len(), 3);
        for (reason, n) in [
            ("response_without_request", 7),
            ("request_without_response", 8),
            ("pipelining_limit", 9),
        ] {
            assert!(
                reasons
                    .iter()
                    .any(|(k, v, got)| k == "reason" && v.contains(reason) && *got == n),
                "{reason}: {reasons:?}"
            );
        }
        assert_eq!(value_of(&out, "zerotrace.segments.tls_records")[0].1, 6);
        assert_eq!(value_of(&out, "zerotrace.tls.unassociated")[0].1, 1);
        assert_eq!(value_of(&out, "zerotrace.events.lost")[0].1, 5);
        let h2 = value_of(&out, "zerotrace.http2.losses");
        assert_eq!(h2.len(), 7);
        let reason = |name: &str| {
            h2.iter()
                .find(|(a, _)| a[0].key == "reason" && format!("{:?}", a[0].value).contains(name))
                .map(|(_, v)| *v)
        };
        assert_eq!(reason("\"h2_headers_truncated\""), Some(3));
        assert_eq!(reason("\"hpack_lost\""), Some(2));
        assert_eq!(value_of(&out, "zerotrace.events.decoded")[0].1, 98);
        let dropped = value_of(&out, "zerotrace.events.dropped");
        assert_eq!(dropped.len(), 1);
        assert!(dropped.iter().any(|(a, v)| a[0].key == "reason" && *v == 2));
        let queue = out.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == "zerotrace.export.queue.depth")
            .and_then(|m| m.data.as_ref());
        assert!(matches!(queue, Some(metric::Data::Gauge(_))));
        assert_eq!(value_of(&out, "zerotrace.export.queue.depth")[0].1, 4);
        let points: usize = out.scope_metrics[0]
            .metrics
            .iter()
            .map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(points as u64, point_count(&own));
        assert!(out.scope_metrics[0]
            .metrics
            .iter()
            .all(|m| m.name.starts_with("zerotrace.")));
    }

    #[test]
    fn losses_are_reported_at_most_every_ten_seconds_and_only_when_new() {
        let mut notice = LossNotice::default();
        let start = Instant::now();
        let mut own = SelfMetrics::default();
        assert_eq!(notice.line(&own, start), None, "nothing lost");
        own.kernel_ringbuf_drops = 7;
        let first = notice.line(&own, start).unwrap_or_default();
        assert!(first.contains("7 lost in the kernel"), "{first}");
        own.undecodable_records = 1;
        assert_eq!(notice.line(&own, start + Duration::from_secs(3)), None);
        let second = notice
            .line(&own, start + Duration::from_secs(11))
            .unwrap_or_default();
        assert!(
            second.contains("1 event(s)") && second.contains("8 in total"),
            "{second}"
        );
        assert_eq!(notice.line(&own, start + Duration::from_secs(30)), None);
    }
}
