//! RED metrics (rate, errors, duration) aggregated from every exchange —
//! before any trace sampling — as the HTTP semantic-convention histograms:
//! `http.{server,client}.request.duration` (s) and the request/response
//! body sizes (By), per process (resource) and attribute set. gRPC calls go
//! to the RPC histograms of `metrics/rpc.rs` instead.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::rpc::RpcMetrics;
use crate::config::Temporality;
use crate::hashing::FastMap;
use crate::otel::resource::{bool_attribute, int_attribute, string_attribute};
use crate::otel::span_encoding::{is_error, normalized_method, server_address_and_port};
use crate::spans::{HttpSpan, SpanKind};

/// Semantic-convention buckets for `http.*.request.duration`, in seconds.
pub const DURATION_BOUNDS_SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The SDK's default explicit buckets, used for body sizes (bytes).
pub const SIZE_BOUNDS_BYTES: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];
/// Attribute sets kept at once; beyond it, data points go to one overflow
/// series marked `otel.metric.overflow=true` (as the SDK specification does).
pub const MAX_SERIES: usize = 10_000;

/// The attributes that identify one series. Hashed through
/// [`SeriesKeyRef`], so that a borrowed key finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesKey {
    pub pid: u32,
    pub kind: SpanKind,
    pub method: String,
    pub status: u16,
    pub route: Option<String>,
    pub server_address: String,
    pub server_port: u16,
    pub protocol_version: &'static str,
    /// `url.scheme`: https for exchanges captured from a TLS library.
    pub scheme: &'static str,
    pub error: bool,
    pub overflow: bool,
}

/// A [`SeriesKey`] borrowed from a span and its route: finds the series of
/// an exchange without building an owned key (strings are copied only when
/// a series is created). [`SeriesKey`] hashes as its borrowed form, and
/// [`SeriesKey::borrowed`] names every field, so the two cannot drift apart.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKeyRef<'a> {
    pid: u32,
    kind: SpanKind,
    method: &'a str,
    status: u16,
    route: Option<&'a str>,
    server_address: &'a str,
    server_port: u16,
    protocol_version: &'static str,
    scheme: &'static str,
    error: bool,
    overflow: bool,
}

impl<'a> SeriesKeyRef<'a> {
    fn of(span: &'a HttpSpan, route: Option<&'a str>, server: &'a ServerAddress) -> Self {
        Self {
            pid: span.pid,
            kind: span.kind,
            method: normalized_method(&span.method).0,
            status: span.status,
            route,
            server_address: server.text(),
            server_port: server.port,
            protocol_version: span.protocol_version,
            scheme: span.scheme(),
            error: is_error(span),
            overflow: false,
        }
    }

    fn overflow_of(pid: u32, kind: SpanKind) -> Self {
        Self {
            pid,
            kind,
            method: "",
            status: 0,
            route: None,
            server_address: "",
            server_port: 0,
            protocol_version: "",
            scheme: "",
            error: false,
            overflow: true,
        }
    }

    fn owned(&self) -> SeriesKey {
        SeriesKey {
            pid: self.pid,
            kind: self.kind,
            method: self.method.to_owned(),
            status: self.status,
            route: self.route.map(str::to_owned),
            server_address: self.server_address.to_owned(),
            server_port: self.server_port,
            protocol_version: self.protocol_version,
            scheme: self.scheme,
            error: self.error,
            overflow: self.overflow,
        }
    }
}

impl hashbrown::Equivalent<SeriesKey> for SeriesKeyRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        *self == key.borrowed()
    }
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

/// `server.address` and `server.port` of a span. For servers the listening
/// socket keeps cardinality bounded (Host headers need not); its address is
/// written out without allocating.
struct ServerAddress {
    text: AddressText,
    port: u16,
}

enum AddressText {
    Ip { bytes: [u8; 48], len: usize },
    Name(String),
}

impl ServerAddress {
    fn of(span: &HttpSpan) -> Self {
        match span.kind {
            SpanKind::Server => Self {
                text: ip_text(span.local.ip()),
                port: span.local.port(),
            },
            SpanKind::Client => {
                let (name, port) = server_address_and_port(span);
                Self {
                    text: AddressText::Name(name),
                    port,
                }
            }
        }
    }

    fn text(&self) -> &str {
        match &self.text {
            AddressText::Ip { bytes, len } => bytes
                .get(..*len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
            AddressText::Name(name) => name,
        }
    }
}

/// An address as `IpAddr`'s `Display` writes it, into a stack buffer.
fn ip_text(ip: IpAddr) -> AddressText {
    let mut bytes = [0u8; 48];
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    push(&mut bytes, &mut len, b'.');
                }
                if octet >= 100 {
                    push(&mut bytes, &mut len, b'0' + octet / 100);
                }
                if octet >= 10 {
                    push(&mut bytes, &mut len, b'0' + octet / 10 % 10);
                }
                push(&mut bytes, &mut len, b'0' + octet % 10);
            }
            len
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut bytes[..]);
            // At most 45 bytes: the buffer cannot fill up.
            let _ = write!(cursor, "{v6}");
            usize::try_from(cursor.position()).unwrap_or(0)
        }
    };
    AddressText::Ip { bytes, len }
}

fn push(bytes: &mut [u8], len: &mut usize, b: u8) {
    if let Some(slot) = bytes.get_mut(*len) {
        *slot = b;
        *len += 1;
    }
}

impl SeriesKey {
    pub fn of(span: &HttpSpan, route: Option<&str>) -> Self {
        SeriesKeyRef::of(span, route, &ServerAddress::of(span)).owned()
    }

    /// The key as borrowed fields: what it hashes as and is compared by.
    fn borrowed(&self) -> SeriesKeyRef<'_> {
        // Naming every field: a new one must be added to SeriesKeyRef too.
        let SeriesKey {
            pid,
            kind,
            method,
            status,
            route,
            server_address,
            server_port,
            protocol_version,
            scheme,
            error,
            overflow,
        } = self;
        SeriesKeyRef {
            pid: *pid,
            kind: *kind,
            method,
            status: *status,
            route: route.as_deref(),
            server_address,
            server_port: *server_port,
            protocol_version,
            scheme,
            error: *error,
            overflow: *overflow,
        }
    }

    pub fn attributes(&self) -> Vec<KeyValue> {
        if self.overflow {
            return vec![bool_attribute("otel.metric.overflow", true)];
        }
        let mut attributes = vec![
            string_attribute("http.request.method", self.method.clone()),
            int_attribute("http.response.status_code", i64::from(self.status)),
            string_attribute("url.scheme", self.scheme),
            string_attribute("network.protocol.name", "http"),
            string_attribute("network.protocol.version", self.protocol_version),
            string_attribute("server.address", self.server_address.clone()),
            int_attribute("server.port", i64::from(self.server_port)),
        ];
        if let Some(route) = &self.route {
            attributes.push(string_attribute("http.route", route.clone()));
        }
        if self.error {
            attributes.push(string_attribute("error.type", self.status.to_string()));
        }
        attributes
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "zerotrace".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// One explicit-bucket histogram's running state.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramState {
    pub bucket_counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl HistogramState {
    pub(crate) fn new(bounds: &[f64]) -> Self {
        Self {
            bucket_counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub(crate) fn record(&mut self, bounds: &[f64], value: f64) {
        // Buckets are upper-inclusive: (previous bound, bound].
        let index = bounds.partition_point(|bound| *bound < value);
        if let Some(slot) = self.bucket_counts.get_mut(index) {
            *slot += 1;
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub(crate) fn data_point(
        &self,
        bounds: &[f64],
        attributes: Vec<KeyValue>,
        start: u64,
        now: u64,
    ) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.bucket_counts.clone(),
            explicit_bounds: bounds.to_vec(),
            exemplars: Vec::new(),
            flags: 0,
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
        }
    }
}

/// The three histograms of one series.
#[derive(Debug, Clone)]
pub struct Series {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    pub duration: HistogramState,
    pub request_size: HistogramState,
    pub response_size: HistogramState,
}

pub struct RedMetrics {
    temporality: Temporality,
    series: FastMap<SeriesKey, Series>,
    /// Processes that exited: their series go out once more, then are dropped.
    exited: Vec<u32>,
    pub overflowed_points: u64,
    /// gRPC calls: counted as RPCs only, not also as HTTP requests.
    pub rpc: RpcMetrics,
}

impl RedMetrics {
    pub fn new(temporality: Temporality) -> Self {
        Self {
            temporality,
            series: FastMap::default(),
            exited: Vec::new(),
            overflowed_points: 0,
            rpc: RpcMetrics::default(),
        }
    }

    pub fn series(&self) -> impl Iterator<Item = (&SeriesKey, &Series)> {
        self.series.iter()
    }

    pub fn record(
        &mut self,
        span: &HttpSpan,
        route: Option<&str>,
        resource: &Arc<Resource>,
        now_unix_ns: u64,
    ) {
        if let Some(call) = &span.grpc {
            self.rpc.record(span, call, resource, now_unix_ns);
            return;
        }
        let server = ServerAddress::of(span);
        let mut key = SeriesKeyRef::of(span, route, &server);
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            key = SeriesKeyRef::overflow_of(span.pid, span.kind);
            self.overflowed_points += 1;
        }
        // One lookup by the borrowed key; an owned one only for a new series.
        let (_, series) = self
            .series
            .raw_entry_mut()
            .from_key(&key)
            .or_insert_with(|| {
                let series = Series {
                    resource: Arc::clone(resource),
                    start_unix_ns: now_unix_ns,
                    duration: HistogramState::new(&DURATION_BOUNDS_SECONDS),
                    request_size: HistogramState::new(&SIZE_BOUNDS_BYTES),
                    response_size: HistogramState::new(&SIZE_BOUNDS_BYTES),
                };
                (key.owned(), series)
            });
        series
            .duration
            .record(&DURATION_BOUNDS_SECONDS, span.duration_ns() as f64 / 1e9);
        series
            .request_size
            .record(&SIZE_BOUNDS_BYTES, span.request_body_bytes as f64);
        series
            .response_size
            .record(&SIZE_BOUNDS_BYTES, span.response_body_bytes as f64);
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.exited.push(pid);
    }

    /// Builds the export request for everything recorded (cumulative: since
    /// the series started; delta: since the last export, then resets).
    pub fn export(&mut self, now_unix_ns: u64) -> Option<ExportMetricsServiceRequest> {
        if self.series.is_empty() && self.rpc.is_empty() {
            return None;
        }
        let temporality = match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        // pid -> (resource, [server duration, server req, server resp, client ...] points)
        let mut by_process: HashMap<u32, (Arc<Resource>, [Vec<HistogramDataPoint>; 6])> =
            HashMap::new();
        for (key, series) in &self.series {
            if self.temporality == Temporality::Delta && series.duration.count == 0 {
                continue;
            }
            let entry = by_process
                .entry(key.pid)
                .or_insert_with(|| (Arc::clone(&series.resource), Default::default()));
            let base = match key.kind {
                SpanKind::Server => 0,
                SpanKind::Client => 3,
            };
            let attributes = key.attributes();
            let start = series.start_unix_ns;
            entry.1[base].push(series.duration.data_point(
                &DURATION_BOUNDS_SECONDS,
                attributes.clone(),
                start,
                now_unix_ns,
            ));
            entry.1[base + 1].push(series.request_size.data_point(
                &SIZE_BOUNDS_BYTES,
                attributes.clone(),
                start,
                now_unix_ns,
            ));
            entry.1[base + 2].push(series.response_size.data_point(
                &SIZE_BOUNDS_BYTES,
                attributes,
                start,
                now_unix_ns,
            ));
        }
        const NAMES: [(&str, &str, &str); 6] = [
            (
                "http.server.request.duration",
                "s",
                "Duration of HTTP server requests.",
            ),
            (
                "http.server.request.body.size",
                "By",
                "Size of HTTP server request bodies.",
            ),
            (
                "http.server.response.body.size",
                "By",
                "Size of HTTP server response bodies.",
            ),
            (
                "http.client.request.duration",
                "s",
                "Duration of HTTP client requests.",
            ),
            (
                "http.client.request.body.size",
                "By",
                "Size of HTTP client request bodies.",
            ),
            (
                "http.client.response.body.size",
                "By",
                "Size of HTTP client response bodies.",
            ),
        ];
        let mut rpc = self.rpc.metrics_by_process(
            temporality,
            self.temporality == Temporality::Delta,
            now_unix_ns,
        );
        let mut resource_metrics: Vec<ResourceMetrics> = by_process
            .into_iter()
            .map(|(pid, (resource, points))| ResourceMetrics {
                resource: Some((*resource).clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics: points
                        .into_iter()
                        .zip(NAMES)
                        .filter(|(points, _)| !points.is_empty())
                        .map(|(data_points, (name, unit, description))| Metric {
                            name: name.into(),
                            description: description.into(),
                            unit: unit.into(),
                            metadata: Vec::new(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points,
                                aggregation_temporality: temporality,
                            })),
                        })
                        .chain(rpc.remove(&pid).map(|(_, m)| m).unwrap_or_default())
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        resource_metrics.extend(rpc_only_processes(rpc));

        if self.temporality == Temporality::Delta {
            for series in self.series.values_mut() {
                series.start_unix_ns = now_unix_ns;
                series.duration = HistogramState::new(&DURATION_BOUNDS_SECONDS);
                series.request_size = HistogramState::new(&SIZE_BOUNDS_BYTES);
                series.response_size = HistogramState::new(&SIZE_BOUNDS_BYTES);
            }
        }
        let exited = std::mem::take(&mut self.exited);
        self.series.retain(|key, _| !exited.contains(&key.pid));
        self.rpc
            .after_export(self.temporality == Temporality::Delta, &exited, now_unix_ns);
        if resource_metrics.is_empty() {
            return None;
        }
        Some(ExportMetricsServiceRequest { resource_metrics })
    }
}

/// Processes that made or served only gRPC calls: their own resource entries.
fn rpc_only_processes(
    rpc: HashMap<u32, (Arc<Resource>, Vec<Metric>)>,
) -> impl Iterator<Item = ResourceMetrics> {
    rpc.into_values()
        .map(|(resource, metrics)| ResourceMetrics {
            resource: Some((*resource).clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn span(status: u16, duration_ms: u64, path: &str) -> HttpSpan {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap_or_else(|e| panic!("{e}"));
        HttpSpan {
            kind: SpanKind::Server,
            pid: 7,
            process_name: "app".into(),
            local,
            peer,
            method: "GET".into(),
            target: path.into(),
            status,
            protocol_version: "1.1",
            start_monotonic_ns: 0,
            end_monotonic_ns: duration_ms * 1_000_000,
            request_body_bytes: 0,
            response_body_bytes: 30,
            host: None,
            traceparent: None,
            truncated: false,
            route: None,
            grpc: None,
            tls: false,
        }
    }

    fn duration_points(request: &ExportMetricsServiceRequest) -> Vec<HistogramDataPoint> {
        request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "http.server.request.duration")
            .filter_map(|m| match &m.data {
                Some(metric::Data::Histogram(h)) => Some(h.data_points.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn buckets_counts_and_series_follow_the_conventions() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        red.record(&span(200, 3, "/a"), None, &resource, 1);
        red.record(&span(200, 5, "/a"), None, &resource, 1); // 0.005 s: upper-inclusive bucket 0
        red.record(&span(200, 40, "/a"), None, &resource, 1);
        red.record(&span(500, 2_000, "/a"), None, &resource, 1);
        let request = red.export(10).unwrap_or_default();
        let points = duration_points(&request);
        assert_eq!(points.len(), 2, "one series per status code");
        let ok = points
            .iter()
            .find(|p| p.attributes.iter().all(|a| a.key != "error.type"))
            .unwrap_or_else(|| panic!("no 200 series"));
        assert_eq!(ok.count, 3);
        assert_eq!(ok.bucket_counts[0], 2);
        assert_eq!(ok.bucket_counts[3], 1); // 0.04 s in (0.025, 0.05]
        assert_eq!(ok.explicit_bounds, DURATION_BOUNDS_SECONDS.to_vec());
        assert_eq!(ok.min, Some(0.003));
        let failed = points
            .iter()
            .find(|p| p.count == 1)
            .unwrap_or_else(|| panic!("no 500 series"));
        assert!(failed.attributes.iter().any(|a| a.key == "error.type"));
        assert_eq!(failed.bucket_counts[10], 1); // 2 s in (1, 2.5]

        // Cumulative: counts keep growing; start time stays.
        red.record(&span(200, 3, "/a"), None, &resource, 20);
        let again = duration_points(&red.export(30).unwrap_or_default());
        let ok = again
            .iter()
            .find(|p| p.count == 4)
            .map(|p| p.start_time_unix_nano);
        assert_eq!(ok, Some(1));
    }

    #[test]
    fn delta_temporality_resets_after_each_export() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Delta);
        red.record(&span(200, 3, "/a"), None, &resource, 1);
        red.record(&span(200, 3, "/a"), None, &resource, 1);
        assert_eq!(
            duration_points(&red.export(10).unwrap_or_default())[0].count,
            2
        );
        assert!(red.export(20).is_none(), "nothing new, nothing sent");
        red.record(&span(200, 3, "/a"), None, &resource, 25);
        let points = duration_points(&red.export(30).unwrap_or_default());
        assert_eq!(points[0].count, 1);
        assert_eq!(points[0].start_time_unix_nano, 20);
    }

    #[test]
    fn cardinality_is_capped_with_an_overflow_series() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        for i in 0..(MAX_SERIES + 50) {
            let route = format!("/r{i}");
            red.record(&span(200, 1, &route), Some(&route), &resource, 1);
        }
        assert_eq!(red.series().count(), MAX_SERIES + 1);
        assert_eq!(red.overflowed_points, 50);
    }

    #[test]
    fn server_addresses_are_written_as_display_does() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "192.168.9.10",
            "::",
            "::1",
            "fe80::1:2",
            "2001:db8::ff00:42:8329",
            "::ffff:10.0.0.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            let server = ServerAddress {
                text: ip_text(ip),
                port: 1,
            };
            assert_eq!(server.text(), ip.to_string());
        }
    }

    #[test]
    fn a_borrowed_key_finds_its_series() {
        use std::hash::BuildHasher;
        let state = crate::hashing::FastState::default();
        for (kind, route) in [(SpanKind::Server, Some("/a")), (SpanKind::Client, None)] {
            let mut span = span(503, 1, "/a");
            span.kind = kind;
            span.host = Some("api.example:8443".into());
            let server = ServerAddress::of(&span);
            let borrowed = SeriesKeyRef::of(&span, route, &server);
            let owned = SeriesKey::of(&span, route);
            assert_eq!(state.hash_one(&borrowed), state.hash_one(&owned));
            assert!(hashbrown::Equivalent::equivalent(&borrowed, &owned));
            assert_eq!(borrowed.owned(), owned);
        }
        let overflow = SeriesKeyRef::overflow_of(7, SpanKind::Server);
        assert_eq!(state.hash_one(&overflow), state.hash_one(overflow.owned()));

        // Recording twice the same exchange keeps one series.
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        red.record(&span(200, 1, "/a"), Some("/a"), &resource, 1);
        red.record(&span(200, 2, "/a"), Some("/a"), &resource, 1);
        red.record(&span(200, 2, "/a"), Some("/b"), &resource, 1);
        let counts: Vec<u64> = red.series().map(|(_, s)| s.duration.count).collect();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }
}
