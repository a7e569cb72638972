//! Span metrics (OBI's `application_span`, `application_span_otel` and
//! `application_span_sizes` features): every span counted by its name, kind
//! and status. One count per span feeds the families of the forms an
//! exporter asks for ([`FAMILIES`]): Tempo's names
//! (`traces_spanmetrics_latency`, `traces_spanmetrics_calls_total`, with
//! OBI's `service`), the OpenTelemetry Collector's span metrics connector's
//! (`traces.span.metrics.duration`, `traces.span.metrics.calls`, with
//! `service.name` and `telemetry.sdk.language`), and the request and
//! response body bytes (`traces_spanmetrics_size_total`,
//! `traces_spanmetrics_response_size_total`). Every form also carries
//! `service.namespace`, `service.instance.id`, `span.name`, `span.kind`,
//! `status.code` and `source`. Unlike the RED metrics they cover every
//! protocol alike, databases and messaging included, keyed by the span's
//! name.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exemplars::ExemplarPolicy;
use super::red::{histogram_data, scope, HistogramState, MAX_SERIES};
use crate::config::{HistogramBuckets, SpanMetricForms, Temporality};
use crate::hashing::FastMap;
use crate::semconv::attribute::string_attribute;
use crate::semconv::{duration_bounds, duration_layout, HistogramLayout};
use crate::spans::{Protocol, Span, SpanKind};

/// What a span metric family reads of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanValue {
    /// The spans' durations, a histogram in seconds.
    Latency,
    /// The spans.
    Calls,
    /// Request body bytes (HTTP and gRPC; 0 for the others).
    RequestBytes,
    /// Response body bytes (likewise).
    ResponseBytes,
}

/// Whose names a series' attributes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanLabels {
    /// Tempo's and OBI's `application_span`: `service`.
    Tempo,
    /// The Collector's span metrics connector and OBI's
    /// `application_span_otel`: `service.name`, and the program's language.
    Otel,
}

/// Which feature turns a family on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FamilyFeature {
    Tempo,
    Otel,
    Sizes,
}

/// One span metric family, in both exporters' names.
#[derive(Debug)]
pub struct SpanFamily {
    pub otlp_name: &'static str,
    /// The Prometheus name (a histogram's series get `_bucket`, `_sum`, `_count`).
    pub prometheus_name: &'static str,
    pub help: &'static str,
    /// The OTLP unit: none but the OpenTelemetry duration's, as in OBI, so that a
    /// Collector's Prometheus exporter adds no unit suffix to a name Tempo's
    /// dashboards match literally.
    pub otlp_unit: &'static str,
    pub value: SpanValue,
    feature: FamilyFeature,
}

impl SpanFamily {
    /// Whether `forms` sends this family.
    pub fn sent(&self, forms: SpanMetricForms) -> bool {
        match self.feature {
            FamilyFeature::Tempo => forms.tempo,
            FamilyFeature::Otel => forms.otel,
            FamilyFeature::Sizes => forms.sizes,
        }
    }

    /// The names of its attributes: the sizes follow the form in effect.
    pub fn labels(&self, forms: SpanMetricForms) -> SpanLabels {
        match self.feature {
            FamilyFeature::Tempo => SpanLabels::Tempo,
            FamilyFeature::Otel => SpanLabels::Otel,
            FamilyFeature::Sizes if forms.otel => SpanLabels::Otel,
            FamilyFeature::Sizes => SpanLabels::Tempo,
        }
    }
}

/// Every span metric family, in the order they are written.
pub const FAMILIES: [SpanFamily; 6] = [
    SpanFamily {
        otlp_name: "traces_spanmetrics_latency",
        prometheus_name: "traces_spanmetrics_latency",
        help: "Duration of service calls (client and server), in seconds, in trace span metrics format.",
        otlp_unit: "",
        value: SpanValue::Latency,
        feature: FamilyFeature::Tempo,
    },
    SpanFamily {
        otlp_name: "traces_spanmetrics_calls_total",
        prometheus_name: "traces_spanmetrics_calls_total",
        help: "Number of service calls in trace span metrics format.",
        otlp_unit: "",
        value: SpanValue::Calls,
        feature: FamilyFeature::Tempo,
    },
    SpanFamily {
        otlp_name: "traces.span.metrics.duration",
        prometheus_name: "traces_span_metrics_duration_seconds",
        help: "Duration of service calls (client and server), in seconds, in OpenTelemetry span metrics format.",
        otlp_unit: "s",
        value: SpanValue::Latency,
        feature: FamilyFeature::Otel,
    },
    SpanFamily {
        otlp_name: "traces.span.metrics.calls",
        prometheus_name: "traces_span_metrics_calls_total",
        help: "Number of service calls in OpenTelemetry span metrics format.",
        otlp_unit: "",
        value: SpanValue::Calls,
        feature: FamilyFeature::Otel,
    },
    SpanFamily {
        otlp_name: "traces_spanmetrics_size_total",
        prometheus_name: "traces_spanmetrics_size_total",
        help: "Size of service calls' request bodies, in bytes, in trace span metrics format.",
        otlp_unit: "",
        value: SpanValue::RequestBytes,
        feature: FamilyFeature::Sizes,
    },
    SpanFamily {
        otlp_name: "traces_spanmetrics_response_size_total",
        prometheus_name: "traces_spanmetrics_response_size_total",
        help: "Size of service responses' bodies, in bytes, in trace span metrics format.",
        otlp_unit: "",
        value: SpanValue::ResponseBytes,
        feature: FamilyFeature::Sizes,
    },
];

/// The `source` attribute: which agent made the series (OBI writes its own name).
pub const SOURCE: &str = "zerotrace";

/// What tells a series apart. Hashed through [`SpanSeriesKeyRef`], so that
/// a span's name built in a reused buffer finds it without an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSeriesKey {
    pub pid: u32,
    pub name: String,
    pub kind: SpanKind,
    pub error: bool,
}

/// [`SpanSeriesKey`] borrowed: how both hash.
#[derive(Debug, PartialEq, Eq)]
struct SpanSeriesKeyRef<'a> {
    pid: u32,
    name: &'a str,
    kind: SpanKind,
    error: bool,
}

/// The pid, kind and status hashed as one word, then the name.
impl std::hash::Hash for SpanSeriesKeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let kind = self.kind as u64;
        state.write_u64(u64::from(self.pid) | kind << 32 | u64::from(self.error) << 40);
        self.name.hash(state);
    }
}

impl SpanSeriesKey {
    fn borrowed(&self) -> SpanSeriesKeyRef<'_> {
        SpanSeriesKeyRef {
            pid: self.pid,
            name: &self.name,
            kind: self.kind,
            error: self.error,
        }
    }
}

impl std::hash::Hash for SpanSeriesKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

impl hashbrown::Equivalent<SpanSeriesKey> for SpanSeriesKeyRef<'_> {
    fn equivalent(&self, key: &SpanSeriesKey) -> bool {
        *self == key.borrowed()
    }
}

/// One series' running state.
#[derive(Debug, Clone)]
pub struct SpanSeries {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    /// When a span last counted here (series not updated for OBI's `ttl` go).
    pub last_unix_ns: u64,
    pub latency: HistogramState,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl SpanSeries {
    fn new(resource: &Arc<Resource>, now_unix_ns: u64, layout: HistogramLayout<'_>) -> Self {
        Self {
            resource: Arc::clone(resource),
            start_unix_ns: now_unix_ns,
            last_unix_ns: now_unix_ns,
            latency: HistogramState::new(layout),
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    /// What a family reads of this series (a histogram's count for its calls).
    pub fn value(&self, value: SpanValue) -> u64 {
        match value {
            SpanValue::Latency | SpanValue::Calls => self.latency.count,
            SpanValue::RequestBytes => self.request_bytes,
            SpanValue::ResponseBytes => self.response_bytes,
        }
    }
}

/// OTLP's name of a span kind, as the span metrics write it.
pub fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

/// OTLP's name of a span status, as the span metrics write it (the spans
/// themselves are `ERROR` or unset, never `OK`).
pub fn status_name(error: bool) -> &'static str {
    if error {
        "STATUS_CODE_ERROR"
    } else {
        "STATUS_CODE_UNSET"
    }
}

/// The resource attribute `key`, as text (empty when absent).
fn resource_text(resource: &Resource, key: &str) -> String {
    crate::otel::resource::attribute_text(resource, key).unwrap_or_default()
}

/// A series' attributes, in OBI's order; `None` is the overflow series.
pub fn labels(
    key: Option<&SpanSeriesKey>,
    resource: &Resource,
    names: SpanLabels,
) -> Vec<(&'static str, String)> {
    let service = match names {
        SpanLabels::Tempo => "service",
        SpanLabels::Otel => "service.name",
    };
    let mut labels = vec![
        (service, resource_text(resource, "service.name")),
        (
            "service.namespace",
            resource_text(resource, "service.namespace"),
        ),
        (
            "service.instance.id",
            resource_text(resource, "service.instance.id"),
        ),
    ];
    match key {
        Some(key) => labels.extend([
            ("span.name", key.name.clone()),
            ("span.kind", kind_name(key.kind).to_owned()),
            ("status.code", status_name(key.error).to_owned()),
        ]),
        None => labels.push(("otel.metric.overflow", "true".to_owned())),
    }
    labels.push(("source", SOURCE.to_owned()));
    if names == SpanLabels::Otel {
        labels.push((
            "telemetry.sdk.language",
            resource_text(resource, "telemetry.sdk.language"),
        ));
    }
    labels
}

/// Body bytes of the span's request and response (HTTP and gRPC; 0 for the rest).
fn body_bytes(span: &Span) -> (u64, u64) {
    match &span.protocol {
        Protocol::Http(http) => (http.request_body_bytes, http.response_body_bytes),
        Protocol::Grpc(grpc) => (grpc.http.request_body_bytes, grpc.http.response_body_bytes),
        _ => (0, 0),
    }
}

/// Every series; past [`MAX_SERIES`], new ones share one overflow series per
/// process (`otel.metric.overflow=true`).
pub struct SpanMetrics {
    temporality: Temporality,
    forms: SpanMetricForms,
    /// The latency histograms' buckets (OBI's `buckets.duration_histogram`,
    /// else the default; or exponential, OBI's `histogram_aggregation`).
    buckets: HistogramBuckets,
    /// Resource attributes carried beside the service (OBI's
    /// `extra_span_resource_attributes`), as configured.
    resource_attributes: Arc<[String]>,
    /// Which spans leave exemplars on the latency buckets (Prometheus's `exemplar_filter`).
    exemplars: ExemplarPolicy,
    series: FastMap<SpanSeriesKey, SpanSeries>,
    overflow: FastMap<u32, SpanSeries>,
    exited: Vec<u32>,
    /// The span's name, built here for each lookup (grown once, then reused).
    name: String,
}

impl SpanMetrics {
    pub fn new(temporality: Temporality, forms: SpanMetricForms) -> Self {
        Self {
            temporality,
            forms,
            buckets: HistogramBuckets::default(),
            resource_attributes: Arc::default(),
            exemplars: ExemplarPolicy::Off,
            series: FastMap::default(),
            overflow: FastMap::default(),
            exited: Vec::new(),
            name: String::new(),
        }
    }

    pub fn record(&mut self, span: &Span, resource: &Arc<Resource>, now_unix_ns: u64) {
        self.name.clear();
        for part in crate::semconv::span_name_parts(span) {
            self.name.push_str(part);
        }
        let key = SpanSeriesKeyRef {
            pid: span.pid,
            name: &self.name,
            kind: span.kind,
            error: crate::semconv::is_error(span),
        };
        let series = if let Some(series) = self.series.get_mut(&key) {
            series
        } else if self.series.len() < MAX_SERIES {
            let owned = SpanSeriesKey {
                pid: key.pid,
                name: key.name.to_owned(),
                kind: key.kind,
                error: key.error,
            };
            self.series.entry(owned).or_insert_with(|| {
                SpanSeries::new(resource, now_unix_ns, duration_layout(&self.buckets))
            })
        } else {
            self.overflow.entry(span.pid).or_insert_with(|| {
                SpanSeries::new(resource, now_unix_ns, duration_layout(&self.buckets))
            })
        };
        series.last_unix_ns = series.last_unix_ns.max(now_unix_ns);
        let (bounds, seconds) = (
            duration_bounds(&self.buckets.duration),
            span.duration_ns() as f64 / 1e9,
        );
        series.latency.record(bounds, seconds);
        if let Some(exemplar) = self.exemplars.of(span, seconds, now_unix_ns) {
            series.latency.keep_exemplar(bounds, exemplar);
        }
        let (request, response) = body_bytes(span);
        series.request_bytes += request;
        series.response_bytes += response;
    }

    /// The latency histograms' buckets, configured (set before anything is recorded).
    pub fn with_buckets(mut self, buckets: &HistogramBuckets) -> Self {
        self.buckets = buckets.clone();
        self
    }

    /// Which spans leave exemplars on the latency histograms' buckets.
    pub fn with_exemplars(mut self, policy: ExemplarPolicy) -> Self {
        self.exemplars = policy;
        self
    }

    /// Resource attributes to carry beside the service (OBI's
    /// `extra_span_resource_attributes`): dotted names, or a Prometheus
    /// label's underscores read as dots.
    pub fn with_resource_attributes(mut self, names: &Arc<[String]>) -> Self {
        self.resource_attributes = Arc::clone(names);
        self
    }

    /// The configured resource attributes `resource` has, in the order
    /// configured; none the series' own labels already say (the service,
    /// its namespace and instance, the SDK language).
    pub fn resource_attributes<'r>(&self, resource: &'r Resource) -> Vec<&'r KeyValue> {
        let mut found: Vec<&'r KeyValue> = Vec::new();
        for name in self.resource_attributes.iter() {
            let dotted = name.replace('_', ".");
            let attribute = resource
                .attributes
                .iter()
                .find(|kv| kv.key == *name)
                .or_else(|| resource.attributes.iter().find(|kv| kv.key == dotted));
            let Some(attribute) = attribute else {
                continue;
            };
            let labelled = matches!(
                attribute.key.as_str(),
                "service.name"
                    | "service.namespace"
                    | "service.instance.id"
                    | "telemetry.sdk.language"
            );
            if !labelled && !found.iter().any(|kv| kv.key == attribute.key) {
                found.push(attribute);
            }
        }
        found
    }

    /// The latency histograms' bounds.
    pub fn bounds(&self) -> &[f64] {
        duration_bounds(&self.buckets.duration)
    }

    /// The families this store's exporter sends.
    pub fn forms(&self) -> SpanMetricForms {
        self.forms
    }

    /// Drops the series last recorded before `cutoff_unix_ns` (OBI's `ttl`).
    pub fn expire(&mut self, cutoff_unix_ns: u64) {
        self.series.retain(|_, s| s.last_unix_ns >= cutoff_unix_ns);
        self.overflow
            .retain(|_, s| s.last_unix_ns >= cutoff_unix_ns);
    }

    /// A process exited: its series go after their last export.
    pub fn forget_process(&mut self, pid: u32) {
        self.exited.push(pid);
    }

    /// Every series with its key (`None`: a process's overflow series).
    pub fn series(&self) -> impl Iterator<Item = (Option<&SpanSeriesKey>, &SpanSeries)> {
        self.series
            .iter()
            .map(|(key, series)| (Some(key), series))
            .chain(self.overflow.values().map(|series| (None, series)))
    }

    /// Drops the series of these processes now.
    pub fn drop_processes(&mut self, pids: &[u32]) {
        self.series.retain(|key, _| !pids.contains(&key.pid));
        self.overflow.retain(|pid, _| !pids.contains(pid));
    }

    /// One resource's metrics per process, the families of this store's
    /// forms; delta temporality starts every series over.
    pub fn export(&mut self, now_unix_ns: u64) -> Vec<ResourceMetrics> {
        let delta = self.temporality == Temporality::Delta;
        let temporality = if delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let mut by_process: FastMap<u32, Vec<(Option<&SpanSeriesKey>, &SpanSeries)>> =
            FastMap::default();
        let keyed = self.series.iter().map(|(key, s)| (key.pid, Some(key), s));
        let overflow = self.overflow.iter().map(|(pid, s)| (*pid, None, s));
        for (pid, key, series) in keyed.chain(overflow) {
            if delta && series.latency.count == 0 {
                continue;
            }
            by_process.entry(pid).or_default().push((key, series));
        }
        let mut pids: Vec<u32> = by_process.keys().copied().collect();
        pids.sort_unstable();
        let families: Vec<&SpanFamily> = FAMILIES.iter().filter(|f| f.sent(self.forms)).collect();
        let mut out = Vec::with_capacity(pids.len());
        for pid in pids {
            let Some(members) = by_process.get(&pid) else {
                continue;
            };
            let Some((_, first)) = members.first() else {
                continue;
            };
            let attributes = |names: SpanLabels| -> Vec<Vec<KeyValue>> {
                if !families.iter().any(|f| f.labels(self.forms) == names) {
                    return Vec::new();
                }
                members
                    .iter()
                    .map(|(key, series)| {
                        let extra = self.resource_attributes(&series.resource);
                        labels(*key, &series.resource, names)
                            .into_iter()
                            .map(|(k, v)| string_attribute(k, v))
                            .chain(extra.into_iter().cloned())
                            .collect()
                    })
                    .collect()
            };
            let tempo = attributes(SpanLabels::Tempo);
            let otel = attributes(SpanLabels::Otel);
            let metrics = families
                .iter()
                .map(|family| {
                    let attributes = match family.labels(self.forms) {
                        SpanLabels::Tempo => &tempo,
                        SpanLabels::Otel => &otel,
                    };
                    let data = family_data(
                        family.value,
                        members,
                        attributes,
                        duration_layout(&self.buckets),
                        (temporality, now_unix_ns),
                    );
                    Metric {
                        name: family.otlp_name.into(),
                        description: family.help.into(),
                        unit: family.otlp_unit.into(),
                        metadata: Vec::new(),
                        data: Some(data),
                    }
                })
                .collect();
            out.push(ResourceMetrics {
                resource: Some((*first.resource).clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        drop(by_process);
        let exited = std::mem::take(&mut self.exited);
        self.drop_processes(&exited);
        if delta {
            for series in self.series.values_mut().chain(self.overflow.values_mut()) {
                let last = series.last_unix_ns;
                *series = SpanSeries::new(
                    &series.resource,
                    now_unix_ns,
                    duration_layout(&self.buckets),
                );
                series.last_unix_ns = last;
            }
        }
        out
    }
}

/// A family's points for one process's series, with their attributes (in the same order).
fn family_data(
    value: SpanValue,
    members: &[(Option<&SpanSeriesKey>, &SpanSeries)],
    attributes: &[Vec<KeyValue>],
    layout: HistogramLayout<'_>,
    (temporality, now_unix_ns): (i32, u64),
) -> metric::Data {
    let series = members.iter().map(|(_, s)| *s).zip(attributes);
    if value == SpanValue::Latency {
        let data_points = series
            .map(|(s, attributes)| {
                s.latency
                    .data_point(layout, attributes.clone(), s.start_unix_ns, now_unix_ns)
            })
            .collect();
        return histogram_data(data_points, temporality);
    }
    let data_points = series
        .map(|(s, attributes)| NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: s.start_unix_ns,
            time_unix_nano: now_unix_ns,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(s.value(value)).unwrap_or(i64::MAX),
            )),
        })
        .collect();
    metric::Data::Sum(Sum {
        data_points,
        aggregation_temporality: temporality,
        is_monotonic: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semconv::attribute::int_attribute;
    use crate::semconv::DURATION_BOUNDS_SECONDS;
    use crate::spans::{HttpExchange, SpanOrigin};

    fn span(kind: SpanKind, pid: u32, status: u16, duration_ms: u64, route: &str) -> Span {
        let http = HttpExchange {
            method: "POST".into(),
            target: route.into(),
            status,
            protocol_version: "1.1",
            request_body_bytes: 100,
            response_body_bytes: 30,
            route: Some(route.into()),
            ..HttpExchange::default()
        };
        Span::new(
            SpanOrigin::for_test(kind, pid, "127.0.0.1:50000"),
            (0, duration_ms * 1_000_000),
            false,
            Protocol::Http(http),
        )
    }

    const TEMPO: SpanMetricForms = SpanMetricForms {
        tempo: true,
        otel: false,
        sizes: false,
    };
    const TEMPO_AND_SIZES: SpanMetricForms = SpanMetricForms {
        sizes: true,
        ..TEMPO
    };
    const CALLS: &str = "traces_spanmetrics_calls_total";
    const LATENCY: &str = "traces_spanmetrics_latency";
    const REQUEST_SIZE: &str = "traces_spanmetrics_size_total";
    const RESPONSE_SIZE: &str = "traces_spanmetrics_response_size_total";

    fn names(export: &[ResourceMetrics]) -> Vec<(&str, &str)> {
        export
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| (m.name.as_str(), m.unit.as_str()))
            .collect()
    }

    fn resource(pid: u32) -> Arc<Resource> {
        Arc::new(Resource {
            attributes: vec![
                string_attribute("service.name", "shop"),
                string_attribute("service.instance.id", format!("host-{pid}")),
                int_attribute("process.pid", i64::from(pid)),
            ],
            ..Resource::default()
        })
    }

    fn metric<'a>(export: &'a [ResourceMetrics], name: &str) -> &'a Metric {
        export
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn attribute(attributes: &[KeyValue], key: &str) -> String {
        attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
    }

    fn sum_values(metric: &Metric) -> Vec<(String, i64)> {
        let Some(metric::Data::Sum(sum)) = &metric.data else {
            panic!("{metric:#?}")
        };
        let mut values: Vec<(String, i64)> = sum
            .data_points
            .iter()
            .map(|p| {
                let value = match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => -1,
                };
                (
                    format!(
                        "{} {} {}",
                        attribute(&p.attributes, "span.name"),
                        attribute(&p.attributes, "span.kind"),
                        attribute(&p.attributes, "status.code")
                    ),
                    value,
                )
            })
            .collect();
        values.sort();
        values
    }

    #[test]
    fn each_name_kind_and_status_is_a_series_with_its_calls_latency_and_sizes() {
        let mut metrics = SpanMetrics::new(Temporality::Cumulative, TEMPO_AND_SIZES);
        let shop = resource(7);
        for (status, ms) in [(200, 5), (200, 15), (503, 40)] {
            metrics.record(&span(SpanKind::Server, 7, status, ms, "/cart"), &shop, 1);
        }
        metrics.record(&span(SpanKind::Client, 7, 200, 2, "/price"), &shop, 1);
        let export = metrics.export(10);
        assert_eq!(export.len(), 1);
        let calls = sum_values(metric(&export, CALLS));
        assert_eq!(
            calls,
            vec![
                (
                    "StringValue(\"POST /cart\") StringValue(\"SPAN_KIND_SERVER\") StringValue(\"STATUS_CODE_ERROR\")".into(),
                    1
                ),
                (
                    "StringValue(\"POST /cart\") StringValue(\"SPAN_KIND_SERVER\") StringValue(\"STATUS_CODE_UNSET\")".into(),
                    2
                ),
                (
                    "StringValue(\"POST /price\") StringValue(\"SPAN_KIND_CLIENT\") StringValue(\"STATUS_CODE_UNSET\")".into(),
                    1
                ),
            ]
        );
        let request: i64 = sum_values(metric(&export, REQUEST_SIZE))
            .iter()
            .map(|v| v.1)
            .sum();
        let response: i64 = sum_values(metric(&export, RESPONSE_SIZE))
            .iter()
            .map(|v| v.1)
            .sum();
        assert_eq!((request, response), (400, 120));
        let Some(metric::Data::Histogram(latency)) = &metric(&export, LATENCY).data else {
            panic!("latency is not a histogram")
        };
        let ok = latency
            .data_points
            .iter()
            .find(|p| {
                attribute(&p.attributes, "status.code").contains("UNSET")
                    && attribute(&p.attributes, "span.name").contains("/cart")
            })
            .unwrap_or_else(|| panic!("{latency:#?}"));
        assert_eq!(ok.count, 2);
        assert!((ok.sum.unwrap_or(0.0) - 0.020).abs() < 1e-9);
        // OBI's attributes, the service's from its resource.
        for key in [
            "service",
            "service.namespace",
            "service.instance.id",
            "source",
        ] {
            assert!(ok.attributes.iter().any(|a| a.key == key), "{key}");
        }
        assert_eq!(
            attribute(&ok.attributes, "service"),
            "StringValue(\"shop\")"
        );
        assert_eq!(
            attribute(&ok.attributes, "service.instance.id"),
            "StringValue(\"host-7\")"
        );
    }

    #[test]
    fn delta_starts_over_and_exited_processes_go_after_their_last_export() {
        let mut metrics = SpanMetrics::new(Temporality::Delta, TEMPO);
        metrics.record(&span(SpanKind::Server, 7, 200, 5, "/a"), &resource(7), 1);
        metrics.record(&span(SpanKind::Server, 8, 200, 5, "/a"), &resource(8), 1);
        metrics.forget_process(8);
        let first = metrics.export(10);
        assert_eq!(first.len(), 2);
        // Nothing new: nothing sent.
        let second = metrics.export(20);
        assert!(second.is_empty());
        metrics.record(&span(SpanKind::Server, 7, 200, 5, "/a"), &resource(7), 25);
        let third = metrics.export(30);
        assert_eq!(third.len(), 1);
        let Some(metric::Data::Sum(calls)) = &metric(&third, CALLS).data else {
            panic!("calls")
        };
        assert_eq!(calls.data_points[0].start_time_unix_nano, 20);
        assert_eq!(
            calls.data_points[0].value,
            Some(number_data_point::Value::AsInt(1))
        );
    }

    #[test]
    fn a_borrowed_key_finds_its_series() {
        use std::hash::BuildHasher;
        let owned = SpanSeriesKey {
            pid: 7,
            name: "GET /cart".into(),
            kind: SpanKind::Server,
            error: true,
        };
        let borrowed = SpanSeriesKeyRef {
            pid: 7,
            name: "GET /cart",
            kind: SpanKind::Server,
            error: true,
        };
        let state = crate::hashing::FastState::default();
        assert_eq!(state.hash_one(&owned), state.hash_one(&borrowed));
        assert!(hashbrown::Equivalent::equivalent(&borrowed, &owned));
        let other = SpanSeriesKeyRef {
            error: false,
            ..borrowed
        };
        assert!(!hashbrown::Equivalent::equivalent(&other, &owned));
    }

    #[test]
    fn dropped_processes_lose_every_series_overflow_included() {
        let mut metrics = SpanMetrics::new(Temporality::Cumulative, TEMPO);
        for pid in [7, 8] {
            metrics.record(
                &span(SpanKind::Server, pid, 200, 1, "/a"),
                &resource(pid),
                1,
            );
        }
        metrics.overflow.insert(
            7,
            SpanSeries::new(
                &resource(7),
                1,
                HistogramLayout::Explicit(&DURATION_BOUNDS_SECONDS),
            ),
        );
        metrics.drop_processes(&[7]);
        let left: Vec<(Option<u32>, u64)> = metrics
            .series()
            .map(|(key, s)| (key.map(|k| k.pid), s.latency.count))
            .collect();
        assert_eq!(left, vec![(Some(8), 1)]);
    }

    #[test]
    fn past_the_limit_new_series_share_their_process_s_overflow_series() {
        let mut metrics = SpanMetrics::new(Temporality::Cumulative, TEMPO);
        let shop = resource(7);
        for i in 0..MAX_SERIES + 5 {
            let route = format!("/r{i}");
            metrics.record(&span(SpanKind::Server, 7, 200, 1, &route), &shop, 1);
        }
        let overflow: Vec<_> = metrics.series().filter(|(key, _)| key.is_none()).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].1.latency.count, 5);
        let labels = labels(None, &shop, SpanLabels::Tempo);
        assert!(labels.contains(&("otel.metric.overflow", "true".to_owned())));
    }

    #[test]
    fn configured_resource_attributes_follow_the_series_own_attributes() {
        let mut shop = (*resource(7)).clone();
        shop.attributes
            .push(string_attribute("deployment.environment", "staging"));
        let shop = Arc::new(shop);
        // A Prometheus-style name, a name the series already says, a missing
        // one and a repeat: one attribute, with the resource's own type.
        let names: Arc<[String]> = [
            "deployment_environment",
            "service.name",
            "k8s.pod.name",
            "process.pid",
            "deployment.environment",
        ]
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
        let mut metrics =
            SpanMetrics::new(Temporality::Cumulative, TEMPO).with_resource_attributes(&names);
        metrics.record(&span(SpanKind::Server, 7, 200, 5, "/cart"), &shop, 1);
        let export = metrics.export(10);
        let Some(metric::Data::Sum(calls)) = &metric(&export, CALLS).data else {
            panic!("{export:#?}")
        };
        let keys: Vec<&str> = calls.data_points[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "service",
                "service.namespace",
                "service.instance.id",
                "span.name",
                "span.kind",
                "status.code",
                "source",
                "deployment.environment",
                "process.pid"
            ]
        );
        let attributes = &calls.data_points[0].attributes;
        assert_eq!(
            attribute(attributes, "deployment.environment"),
            "StringValue(\"staging\")"
        );
        assert_eq!(attribute(attributes, "process.pid"), "IntValue(7)");
    }

    #[test]
    fn each_form_sends_its_own_families_in_its_own_names() {
        let mut shop = (*resource(7)).clone();
        shop.attributes
            .push(string_attribute("telemetry.sdk.language", "python"));
        let shop = Arc::new(shop);
        let record = |forms| {
            let mut metrics = SpanMetrics::new(Temporality::Cumulative, forms);
            metrics.record(&span(SpanKind::Server, 7, 200, 5, "/cart"), &shop, 1);
            metrics.export(10)
        };
        // Tempo's names, no unit (a Collector would add a suffix), no sizes unless asked.
        assert_eq!(names(&record(TEMPO)), vec![(LATENCY, ""), (CALLS, "")]);
        let otel = SpanMetricForms {
            tempo: false,
            otel: true,
            sizes: false,
        };
        assert_eq!(
            names(&record(otel)),
            vec![
                ("traces.span.metrics.duration", "s"),
                ("traces.span.metrics.calls", "")
            ]
        );
        // The sizes alone, and with the OpenTelemetry form: its attribute names.
        let sizes = SpanMetricForms {
            tempo: false,
            otel: false,
            sizes: true,
        };
        assert_eq!(
            names(&record(sizes)),
            vec![(REQUEST_SIZE, ""), (RESPONSE_SIZE, "")]
        );
        let export = record(SpanMetricForms {
            sizes: true,
            ..otel
        });
        assert_eq!(names(&export).len(), 4);
        for name in ["traces.span.metrics.calls", REQUEST_SIZE] {
            let Some(metric::Data::Sum(sum)) = &metric(&export, name).data else {
                panic!("{name}")
            };
            let point = &sum.data_points[0];
            assert_eq!(
                attribute(&point.attributes, "service.name"),
                "StringValue(\"shop\")"
            );
            assert_eq!(
                attribute(&point.attributes, "telemetry.sdk.language"),
                "StringValue(\"python\")"
            );
            assert_eq!(attribute(&point.attributes, "service"), "");
        }
        let Some(metric::Data::Sum(sum)) = &metric(&export, REQUEST_SIZE).data else {
            panic!("sizes")
        };
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(100))
        );
        // The same store counts once, whichever families it sends.
        let Some(metric::Data::Histogram(latency)) =
            &metric(&export, "traces.span.metrics.duration").data
        else {
            panic!("duration")
        };
        assert_eq!(latency.data_points[0].count, 1);
    }
}
