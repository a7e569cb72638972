//! The HTTP RED histograms: `http.{server,client}.request.duration` (s) and
//! the request/response body sizes (By), per process and attribute set. The
//! series are looked up by a key borrowed from the span, so recording a known
//! series allocates nothing.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exemplars::{Exemplar, ExemplarPolicy};
use super::red::{overflow_attributes, HistogramState, MetricStore, Point, MAX_SERIES};
use crate::config::HistogramBuckets;
use crate::hashing::FastMap;
use crate::semconv::attribute::IpString;
use crate::semconv::http::{
    instruments, is_error_status, metric_attributes, normalized_method, server_address_and_port,
    INSTRUMENTS,
};
use crate::semconv::Instrument;
use crate::spans::{HttpExchange, Span, SpanKind};

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
#[derive(Debug, Eq)]
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
    fn of(span: &Span, http: &'a HttpExchange, server: &'a ServerAddress<'_>) -> Self {
        Self {
            pid: span.pid,
            kind: span.kind,
            method: normalized_method(&http.method).0,
            status: http.status,
            route: http.route.as_deref(),
            server_address: server.text(),
            server_port: server.port,
            protocol_version: http.protocol_version,
            scheme: HttpExchange::scheme(span.tls),
            error: is_error_status(span.kind, http.status),
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

/// Every span looks its series up, so both are cheap: pid, status and port
/// are packed into one word (hashed once, compared first), and the text is
/// compared only when everything else agrees. The kind, `protocol_version`,
/// `scheme`, `error` and `overflow` are compared but not hashed: each takes
/// one of a few values, mostly following from the others, and equal keys
/// still hash alike.
impl SeriesKeyRef<'_> {
    fn packed(&self) -> u64 {
        u64::from(self.pid) | u64::from(self.status) << 32 | u64::from(self.server_port) << 48
    }
}

impl Hash for SeriesKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.packed());
        self.method.hash(state);
        self.route.hash(state);
        self.server_address.hash(state);
    }
}

impl PartialEq for SeriesKeyRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.packed() == other.packed()
            && self.kind == other.kind
            && self.error == other.error
            && self.overflow == other.overflow
            && self.method == other.method
            && self.route == other.route
            && self.server_address == other.server_address
            && same_static(self.protocol_version, other.protocol_version)
            && same_static(self.scheme, other.scheme)
    }
}

/// Whether two constant texts are equal, by address first: a series' key and
/// a span's nearly always hold the very same constant (`"1.1"`, `"http"`),
/// which then needs no byte comparison.
fn same_static(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
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
/// written out once per address in a row, into a buffer that is kept.
struct ServerAddress<'a> {
    text: AddressText<'a>,
    port: u16,
}

enum AddressText<'a> {
    Ip(&'a str),
    Name(String),
}

impl<'a> ServerAddress<'a> {
    fn of(span: &Span, http: &HttpExchange, ips: &'a mut IpText) -> Self {
        if span.kind.is_outgoing() {
            let (name, port) = server_address_and_port(span, http);
            Self {
                text: AddressText::Name(name),
                port,
            }
        } else {
            Self {
                text: AddressText::Ip(ips.of(span.local.ip())),
                port: span.local.port(),
            }
        }
    }

    fn text(&self) -> &str {
        match &self.text {
            AddressText::Ip(text) => text,
            AddressText::Name(name) => name,
        }
    }
}

/// The text of the last listening address written out: a server's spans
/// all carry the same one, so it is written once, not per span.
#[derive(Default)]
struct IpText {
    ip: Option<IpAddr>,
    text: String,
}

impl IpText {
    fn of(&mut self, ip: IpAddr) -> &str {
        if self.ip != Some(ip) {
            self.text.clear();
            self.text.push_str(IpString::of(ip).as_str());
            self.ip = Some(ip);
        }
        &self.text
    }
}

impl SeriesKey {
    pub fn of(span: &Span, http: &HttpExchange) -> Self {
        let mut ips = IpText::default();
        SeriesKeyRef::of(span, http, &ServerAddress::of(span, http, &mut ips)).owned()
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
            return overflow_attributes();
        }
        metric_attributes(
            &self.method,
            self.status,
            self.scheme,
            self.protocol_version,
            (&self.server_address, self.server_port),
            self.route.as_deref(),
            self.error,
        )
    }
}

/// The three histograms of one series.
#[derive(Debug, Clone)]
pub struct Series {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    /// When a span last counted here (series not updated for OBI's `ttl` go).
    pub last_unix_ns: u64,
    pub duration: HistogramState,
    pub request_size: HistogramState,
    pub response_size: HistogramState,
}

/// The HTTP series of every process.
#[derive(Default)]
pub struct HttpMetrics {
    series: FastMap<SeriesKey, Series>,
    pub overflowed_points: u64,
    /// The listening address of the last server span, as text.
    server_ip: IpText,
    /// Configured bounds that replace the instruments' defaults.
    pub(super) buckets: HistogramBuckets,
    /// Which spans leave exemplars.
    pub(super) exemplars: ExemplarPolicy,
}

impl HttpMetrics {
    pub fn series(&self) -> impl Iterator<Item = (&SeriesKey, &Series)> {
        self.series.iter()
    }

    pub fn record(
        &mut self,
        span: &Span,
        http: &HttpExchange,
        resource: &Arc<Resource>,
        now_unix_ns: u64,
    ) {
        let server = ServerAddress::of(span, http, &mut self.server_ip);
        let mut key = SeriesKeyRef::of(span, http, &server);
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            key = SeriesKeyRef::overflow_of(span.pid, span.kind);
            self.overflowed_points += 1;
        }
        let kinds = instruments(span.kind);
        let [duration, request_size, response_size] = kinds else {
            return;
        };
        let buckets = &self.buckets;
        let (duration, request_size, response_size) = (
            duration.bounds_in(buckets),
            request_size.bounds_in(buckets),
            response_size.bounds_in(buckets),
        );
        // One lookup by the borrowed key; an owned one only for a new series.
        let (_, series) = self
            .series
            .raw_entry_mut()
            .from_key(&key)
            .or_insert_with(|| {
                let series = Series {
                    resource: Arc::clone(resource),
                    start_unix_ns: now_unix_ns,
                    last_unix_ns: now_unix_ns,
                    duration: HistogramState::new(kinds[0].layout_in(buckets)),
                    request_size: HistogramState::new(kinds[1].layout_in(buckets)),
                    response_size: HistogramState::new(kinds[2].layout_in(buckets)),
                };
                (key.owned(), series)
            });
        series.last_unix_ns = series.last_unix_ns.max(now_unix_ns);
        let seconds = span.duration_ns() as f64 / 1e9;
        let (request_bytes, response_bytes) = (
            http.request_body_bytes as f64,
            http.response_body_bytes as f64,
        );
        series.duration.record(duration, seconds);
        series.request_size.record(request_size, request_bytes);
        series.response_size.record(response_size, response_bytes);
        // The span is kept or not once, for its three histograms.
        if let Some(exemplar) = self.exemplars.of(span, seconds, now_unix_ns) {
            let histograms = [
                (&mut series.duration, duration, seconds),
                (&mut series.request_size, request_size, request_bytes),
                (&mut series.response_size, response_size, response_bytes),
            ];
            for (histogram, bounds, value) in histograms {
                histogram.keep_exemplar(bounds, Exemplar { value, ..exemplar });
            }
        }
    }
}

impl MetricStore for HttpMetrics {
    fn instruments(&self) -> &'static [Instrument] {
        &INSTRUMENTS
    }

    fn points(&self) -> Vec<Point<'_>> {
        let mut points = Vec::with_capacity(self.series.len() * 3);
        for (key, series) in &self.series {
            let attributes = key.attributes();
            let states = [
                &series.duration,
                &series.request_size,
                &series.response_size,
            ];
            for (instrument, state) in instruments(key.kind).iter().zip(states) {
                points.push(Point {
                    pid: key.pid,
                    resource: &series.resource,
                    instrument,
                    attributes: attributes.clone(),
                    start_unix_ns: series.start_unix_ns,
                    state: Cow::Borrowed(state),
                });
            }
        }
        points
    }

    fn expire(&mut self, cutoff_unix_ns: u64) {
        self.series
            .retain(|_, series| series.last_unix_ns >= cutoff_unix_ns);
    }

    fn after_export(&mut self, reset: bool, exited: &[u32], now_unix_ns: u64) {
        if reset {
            for (key, series) in self.series.iter_mut() {
                let [duration, request_size, response_size] = instruments(key.kind) else {
                    continue;
                };
                series.start_unix_ns = now_unix_ns;
                let buckets = &self.buckets;
                series.duration = HistogramState::new(duration.layout_in(buckets));
                series.request_size = HistogramState::new(request_size.layout_in(buckets));
                series.response_size = HistogramState::new(response_size.layout_in(buckets));
            }
        }
        self.series.retain(|key, _| !exited.contains(&key.pid));
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Temporality;
    use crate::metrics::red::{RedMetrics, DURATION_BOUNDS_SECONDS, SIZE_BOUNDS_BYTES};
    use crate::spans::{Protocol, SpanOrigin};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric, HistogramDataPoint};

    #[test]
    fn constant_texts_are_equal_by_content_wherever_they_are() {
        let elsewhere: &'static str = Box::leak(String::from("1.1").into_boxed_str());
        assert!(same_static("1.1", "1.1"));
        assert!(same_static("1.1", elsewhere));
        assert!(!same_static("1.1", "1.0"));
        assert!(!same_static("http", "https"));
    }

    fn span_with_route(status: u16, duration_ms: u64, path: &str, route: Option<&str>) -> Span {
        let http = HttpExchange {
            method: "GET".into(),
            target: path.into(),
            status,
            protocol_version: "1.1",
            response_body_bytes: 30,
            route: route.map(Into::into),
            ..HttpExchange::default()
        };
        Span::new(
            SpanOrigin::for_test(SpanKind::Server, 7, "127.0.0.1:50000"),
            (0, duration_ms * 1_000_000),
            false,
            Protocol::Http(http),
        )
    }

    fn span(status: u16, duration_ms: u64, path: &str) -> Span {
        span_with_route(status, duration_ms, path, None)
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

    /// A key differing from `base` in each field in turn is another series;
    /// the same key, owned or borrowed, is the same one and hashes alike.
    #[test]
    fn every_field_of_a_series_key_tells_series_apart() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let base = SeriesKey {
            pid: 7,
            kind: SpanKind::Server,
            method: "GET".into(),
            status: 200,
            route: Some("/a".into()),
            server_address: "127.0.0.1".into(),
            server_port: 8080,
            protocol_version: "1.1",
            scheme: "http",
            error: false,
            overflow: false,
        };
        let same = base.clone();
        assert!(same.borrowed() == base.borrowed());
        assert_eq!(hasher.hash_one(&same), hasher.hash_one(base.borrowed()));
        let variants: Vec<SeriesKey> = vec![
            SeriesKey {
                pid: 8,
                ..base.clone()
            },
            SeriesKey {
                kind: SpanKind::Client,
                ..base.clone()
            },
            SeriesKey {
                method: "POST".into(),
                ..base.clone()
            },
            SeriesKey {
                status: 201,
                ..base.clone()
            },
            SeriesKey {
                route: None,
                ..base.clone()
            },
            SeriesKey {
                route: Some("/b".into()),
                ..base.clone()
            },
            SeriesKey {
                server_address: "::1".into(),
                ..base.clone()
            },
            SeriesKey {
                server_port: 8081,
                ..base.clone()
            },
            SeriesKey {
                protocol_version: "1.0",
                ..base.clone()
            },
            SeriesKey {
                scheme: "https",
                ..base.clone()
            },
            SeriesKey {
                error: true,
                ..base.clone()
            },
            SeriesKey {
                overflow: true,
                ..base.clone()
            },
        ];
        for other in &variants {
            assert!(other.borrowed() != base.borrowed(), "{other:?}");
            assert!(other != &base, "{other:?}");
        }
    }

    #[test]
    fn configured_buckets_replace_the_defaults_over_otlp_and_after_a_delta_reset() {
        let resource = Arc::new(Resource::default());
        let buckets = crate::config::HistogramBuckets {
            aggregation: Default::default(),
            duration: Some([0.01, 0.1].as_slice().into()),
            request_size: Some([1.0].as_slice().into()),
            response_size: None,
        };
        let mut red = RedMetrics::new(Temporality::Delta).with_buckets(&buckets);
        for round in 0..2 {
            red.record(&span(200, 40, "/a"), &resource, 1);
            let request = red.export(10 + round).unwrap_or_default();
            let points = duration_points(&request);
            assert_eq!(points.len(), 1, "round {round}");
            assert_eq!(points[0].explicit_bounds, [0.01, 0.1]);
            assert_eq!(points[0].bucket_counts, [0, 1, 0]);
            let sizes: Vec<Vec<f64>> = request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name.ends_with("body.size"))
                .filter_map(|m| match &m.data {
                    Some(metric::Data::Histogram(h)) => {
                        Some(h.data_points[0].explicit_bounds.clone())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                sizes,
                [vec![1.0], SIZE_BOUNDS_BYTES.to_vec()],
                "round {round}"
            );
        }
    }

    #[test]
    fn exponential_aggregation_sends_every_histogram_exponential_and_resets_on_delta() {
        let resource = Arc::new(Resource::default());
        let buckets = crate::config::HistogramBuckets {
            aggregation: crate::config::HistogramAggregation::Base2Exponential,
            ..Default::default()
        };
        let mut red = RedMetrics::new(Temporality::Delta).with_buckets(&buckets);
        for round in 0..2u64 {
            // 40 ms twice in round 0, once in round 1: the delta resets.
            for _ in 0..(2 - round) {
                red.record(&span(200, 40, "/a"), &resource, 1);
            }
            let request = red.export(10 + round).unwrap_or_default();
            let metrics: Vec<_> = request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .collect();
            assert_eq!(metrics.len(), 3, "round {round}");
            for metric in metrics {
                let Some(metric::Data::ExponentialHistogram(h)) = &metric.data else {
                    panic!("{} is not exponential: {metric:?}", metric.name);
                };
                let point = &h.data_points[0];
                assert_eq!(point.count, 2 - round, "{}", metric.name);
                if metric.name.ends_with("duration") {
                    let positive = point.positive.clone().unwrap_or_default();
                    assert_eq!(point.scale, crate::metrics::exponential::MAX_SCALE);
                    assert_eq!(positive.bucket_counts, [2 - round]);
                    assert_eq!(
                        positive.offset,
                        crate::metrics::exponential::index_of(0.04, point.scale)
                    );
                }
            }
        }
    }

    #[test]
    fn buckets_counts_and_series_follow_the_conventions() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        red.record(&span(200, 3, "/a"), &resource, 1);
        red.record(&span(200, 5, "/a"), &resource, 1); // 0.005 s: upper-inclusive bucket 0
        red.record(&span(200, 40, "/a"), &resource, 1);
        red.record(&span(500, 2_000, "/a"), &resource, 1);
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
        red.record(&span(200, 3, "/a"), &resource, 20);
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
        red.record(&span(200, 3, "/a"), &resource, 1);
        red.record(&span(200, 3, "/a"), &resource, 1);
        assert_eq!(
            duration_points(&red.export(10).unwrap_or_default())[0].count,
            2
        );
        assert!(red.export(20).is_none(), "nothing new, nothing sent");
        red.record(&span(200, 3, "/a"), &resource, 25);
        let points = duration_points(&red.export(30).unwrap_or_default());
        assert_eq!(points[0].count, 1);
        assert_eq!(points[0].start_time_unix_nano, 20);
    }

    #[test]
    fn dropped_processes_lose_their_series_at_once_and_only_theirs() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        red.record(&span(200, 3, "/a"), &resource, 1);
        let mut other = span(200, 3, "/a");
        other.pid = 8;
        red.record(&other, &resource, 1);
        red.drop_processes(&[7]);
        let pids: Vec<u32> = red.http.series().map(|(key, _)| key.pid).collect();
        assert_eq!(pids, vec![8]);
    }

    #[test]
    fn cardinality_is_capped_with_an_overflow_series() {
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        for i in 0..(MAX_SERIES + 50) {
            let route = format!("/r{i}");
            red.record(&span_with_route(200, 1, &route, Some(&route)), &resource, 1);
        }
        assert_eq!(red.http.series().count(), MAX_SERIES + 1);
        assert_eq!(red.http.overflowed_points, 50);
    }

    #[test]
    fn server_addresses_are_written_as_display_does() {
        // One memory for all: each address replaces the one before it.
        let mut ips = IpText::default();
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
            assert_eq!(ips.of(ip), ip.to_string());
            // Again, from the memory of the last one.
            assert_eq!(ips.of(ip), ip.to_string());
        }
    }

    #[test]
    fn a_borrowed_key_finds_its_series() {
        use std::hash::BuildHasher;
        let state = crate::hashing::FastState::default();
        for (kind, route) in [(SpanKind::Server, Some("/a")), (SpanKind::Client, None)] {
            let mut span = span_with_route(503, 1, "/a", route);
            span.kind = kind;
            let Some(http) = span.http_mut() else {
                panic!("not HTTP")
            };
            http.host = Some("api.example:8443".into());
            let http = http.clone();
            let mut ips = IpText::default();
            let server = ServerAddress::of(&span, &http, &mut ips);
            let borrowed = SeriesKeyRef::of(&span, &http, &server);
            let owned = SeriesKey::of(&span, &http);
            assert_eq!(state.hash_one(&borrowed), state.hash_one(&owned));
            assert!(hashbrown::Equivalent::equivalent(&borrowed, &owned));
            assert_eq!(borrowed.owned(), owned);
        }
        let overflow = SeriesKeyRef::overflow_of(7, SpanKind::Server);
        assert_eq!(state.hash_one(&overflow), state.hash_one(overflow.owned()));

        // Recording twice the same exchange keeps one series.
        let resource = Arc::new(Resource::default());
        let mut red = RedMetrics::new(Temporality::Cumulative);
        red.record(&span_with_route(200, 1, "/a", Some("/a")), &resource, 1);
        red.record(&span_with_route(200, 2, "/a", Some("/a")), &resource, 1);
        red.record(&span_with_route(200, 2, "/a", Some("/b")), &resource, 1);
        let counts: Vec<u64> = red.http.series().map(|(_, s)| s.duration.count).collect();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }
}
