//! OpenTelemetry semantic conventions, one module per protocol: what a span
//! is called, its attributes, when it is an error, and the metrics it feeds.
//! Exporters ask through [`conventions`] and never name a protocol; a new
//! protocol adds its module here and one arm to [`conventions`].

pub mod attribute;
pub mod db;
pub mod http;
pub mod messaging;
pub mod rpc;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use attribute::AttributeSink;

use crate::config::{HistogramAggregation, HistogramBuckets};
use crate::spans::{Protocol, Span};

/// Semantic-convention buckets for `*.duration` histograms, in seconds.
/// Statics, not constants: a histogram tells its default bounds by address
/// (`metrics::red::HistogramState::record`).
pub static DURATION_BOUNDS_SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The SDK's default explicit buckets, used for body sizes (bytes).
pub static SIZE_BOUNDS_BYTES: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// One histogram a protocol's spans feed, named for OTLP and for Prometheus.
#[derive(Debug, PartialEq)]
pub struct Instrument {
    /// The OTLP metric name (`http.server.request.duration`).
    pub name: &'static str,
    /// The Prometheus family (`http_server_request_duration_seconds`).
    pub prometheus_name: &'static str,
    /// UCUM unit for OTLP (`s`, `By`).
    pub unit: &'static str,
    /// The unit word Prometheus/OpenMetrics use (`seconds`, `bytes`).
    pub prometheus_unit: &'static str,
    pub description: &'static str,
    /// The default bucket bounds.
    pub bounds: &'static [f64],
    /// Which of OBI's `buckets` lists replaces them when configured.
    pub buckets: BucketKind,
}

/// OBI's histogram bucket lists (`buckets.duration_histogram`,
/// `request_size_histogram`, `response_size_histogram`): which one an
/// instrument follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    Duration,
    RequestSize,
    ResponseSize,
}

/// How a histogram's buckets are laid out: explicit bounds, or base-2
/// exponential (OBI's `histogram_aggregation`, OTLP only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistogramLayout<'a> {
    Explicit(&'a [f64]),
    Exponential,
}

impl Instrument {
    /// Its buckets in an exporter with `buckets`: exponential when the
    /// exporter aggregates so, else its explicit bounds.
    pub fn layout_in<'a>(&'a self, buckets: &'a HistogramBuckets) -> HistogramLayout<'a> {
        match buckets.aggregation {
            HistogramAggregation::Explicit => HistogramLayout::Explicit(self.bounds_in(buckets)),
            HistogramAggregation::Base2Exponential => HistogramLayout::Exponential,
        }
    }

    /// Its bounds: the configured list of its kind, else the default.
    pub fn bounds_in<'a>(&'a self, buckets: &'a HistogramBuckets) -> &'a [f64] {
        let configured = match self.buckets {
            BucketKind::Duration => &buckets.duration,
            BucketKind::RequestSize => &buckets.request_size,
            BucketKind::ResponseSize => &buckets.response_size,
        };
        configured.as_deref().unwrap_or(self.bounds)
    }
}

/// The bounds of the duration histograms that are no convention's
/// instrument (span metrics, service graph): configured, else the default.
pub fn duration_bounds(configured: &Option<std::sync::Arc<[f64]>>) -> &[f64] {
    configured.as_deref().unwrap_or(&DURATION_BOUNDS_SECONDS)
}

/// The layout of the duration histograms that are no convention's
/// instrument, in an exporter with `buckets`.
pub fn duration_layout(buckets: &HistogramBuckets) -> HistogramLayout<'_> {
    match buckets.aggregation {
        HistogramAggregation::Explicit => {
            HistogramLayout::Explicit(duration_bounds(&buckets.duration))
        }
        HistogramAggregation::Base2Exponential => HistogramLayout::Exponential,
    }
}

/// Why a span failed, as the conventions put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanError {
    /// `error.type`.
    pub error_type: String,
    /// The status description (empty when the protocol has none).
    pub message: String,
}

/// What a client span's peer is: the service graph's `connection_type`
/// (a database or a broker has no server span of its own to pair with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Service,
    Database,
    MessagingSystem,
}

/// What every protocol's conventions say about one of its spans.
pub trait Conventions {
    /// The span's name (`GET /users/{id}`, `shop.Catalog/GetItem`) in up
    /// to three parts, which join with nothing between them: an exporter
    /// writes it without building it.
    fn span_name_parts<'a>(&'a self, span: &'a Span) -> [&'a str; 3];
    /// The span's attributes, `error.type` aside.
    fn span_attributes(&self, span: &Span, out: &mut dyn AttributeSink);
    /// Some when the span is an error by the protocol's rule.
    fn error(&self, span: &Span) -> Option<SpanError>;
    /// Whether [`Conventions::error`] is Some, without building it (hot path).
    fn is_error(&self, span: &Span) -> bool {
        self.error(span).is_some()
    }
    /// What the peer of a client span is (database protocols say `Database`).
    fn peer_kind(&self) -> PeerKind {
        PeerKind::Service
    }
}

/// The conventions of a span's protocol: the one place exporters dispatch.
pub fn conventions(span: &Span) -> &dyn Conventions {
    match &span.protocol {
        Protocol::Http(http) => http,
        Protocol::Grpc(grpc) => grpc,
        Protocol::Db(db) => db,
        Protocol::Messaging(messaging) => messaging,
    }
}

pub fn span_name(span: &Span) -> String {
    span_name_parts(span).concat()
}

/// [`Conventions::span_name_parts`] of the span's protocol.
pub fn span_name_parts(span: &Span) -> [&str; 3] {
    conventions(span).span_name_parts(span)
}

/// Every attribute of the span, `error.type` included when it failed.
pub fn span_attributes(span: &Span, error: Option<&SpanError>) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(20);
    write_span_attributes(span, error, &mut attributes);
    attributes
}

/// [`span_attributes`], written to `out`.
pub fn write_span_attributes(span: &Span, error: Option<&SpanError>, out: &mut dyn AttributeSink) {
    conventions(span).span_attributes(span, out);
    if let Some(error) = error {
        out.string("error.type", &error.error_type);
    }
}

pub fn error(span: &Span) -> Option<SpanError> {
    conventions(span).error(span)
}

pub fn is_error(span: &Span) -> bool {
    conventions(span).is_error(span)
}

pub fn peer_kind(span: &Span) -> PeerKind {
    conventions(span).peer_kind()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_follow_the_otlp_names() {
        for instrument in http::INSTRUMENTS
            .iter()
            .chain(&rpc::INSTRUMENTS)
            .chain(&db::INSTRUMENTS)
            .chain(&messaging::INSTRUMENTS)
        {
            let expected = format!(
                "{}_{}",
                instrument.name.replace('.', "_"),
                instrument.prometheus_unit
            );
            assert_eq!(instrument.prometheus_name, expected);
            let unit = match instrument.unit {
                "s" => "seconds",
                "By" => "bytes",
                other => panic!("unit {other} of {}", instrument.name),
            };
            assert_eq!(instrument.prometheus_unit, unit, "{}", instrument.name);
        }
    }
}
