//! RED metrics (rate, errors, duration) aggregated from every span — before
//! any trace sampling — as the histograms each protocol's semantic
//! conventions name (`semconv/`), per process (resource) and attribute set.
//! Each protocol keeps its series in a [`MetricStore`] of its own
//! (`metrics/http.rs`, `metrics/rpc.rs`, `metrics/db.rs`,
//! `metrics/messaging.rs`); the OTLP export here and the
//! Prometheus endpoint read every store the same way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Histogram,
    HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::attribute_select::AttributeSelector;
use super::db::DbMetrics;
use super::exemplars::{Exemplar, ExemplarPolicy};
use super::exponential::{ExponentialBuckets, Totals};
use super::http::HttpMetrics;
use super::messaging::MessagingMetrics;
use super::rpc::RpcMetrics;
use crate::config::{HistogramBuckets, Temporality};
use crate::semconv::attribute::bool_attribute;
pub use crate::semconv::{HistogramLayout, Instrument, DURATION_BOUNDS_SECONDS, SIZE_BOUNDS_BYTES};
use crate::spans::{Protocol, Span};

/// Attribute sets kept at once per protocol; beyond it, data points go to one
/// overflow series marked `otel.metric.overflow=true` (as the SDK
/// specification does).
pub const MAX_SERIES: usize = 10_000;

/// One histogram's running state: its buckets (explicit bounds' or base-2
/// exponential, as the exporter's `histogram_aggregation` says) and totals.
///
/// Two fields rather than an enum: an exponential histogram has no explicit
/// counts, so the explicit record's bounds check alone sends its values to
/// the exponential buckets, and the explicit path (every default
/// configuration's) pays nothing for the other (an enum's match cost 36
/// instructions per nginx exchange, callgrind; docs/benchmarks.md).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramState {
    /// One count per explicit bound and one above the last; empty when
    /// exponential.
    bucket_counts: Vec<u64>,
    exponential: Option<Box<ExponentialBuckets>>,
    /// Each explicit bucket's last exemplar; empty until one is kept
    /// (`prometheus_export.exemplar_filter`, `OTEL_METRICS_EXEMPLAR_FILTER`).
    exemplars: Vec<Option<Exemplar>>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// One histogram data point, as OTLP carries it.
pub enum HistogramPoint {
    Explicit(HistogramDataPoint),
    Exponential(ExponentialHistogramDataPoint),
}

impl HistogramState {
    pub(crate) fn new(layout: HistogramLayout<'_>) -> Self {
        let (bucket_counts, exponential) = match layout {
            HistogramLayout::Explicit(bounds) => (vec![0; bounds.len() + 1], None),
            HistogramLayout::Exponential => (Vec::new(), Some(Box::default())),
        };
        Self {
            bucket_counts,
            exponential,
            exemplars: Vec::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Counts `value`; `bounds` are the explicit bounds (an exponential
    /// histogram has no explicit counts and ignores them).
    pub(crate) fn record(&mut self, bounds: &[f64], value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if let Some(slot) = self.bucket_counts.get_mut(bucket_of(bounds, value)) {
            *slot += 1;
            return;
        }
        // Last, so that the explicit path above returns before any call.
        if let Some(buckets) = self.exponential.as_mut() {
            buckets.record(value);
        }
    }

    /// Keeps `exemplar` as the last of the explicit bucket its value falls in.
    pub(crate) fn keep_exemplar(&mut self, bounds: &[f64], exemplar: Exemplar) {
        if self.bucket_counts.is_empty() {
            return;
        }
        if self.exemplars.is_empty() {
            self.exemplars = vec![None; self.bucket_counts.len()];
        }
        if let Some(slot) = self.exemplars.get_mut(bucket_of(bounds, exemplar.value)) {
            *slot = Some(exemplar);
        }
    }

    /// The last exemplar of explicit bucket `index`, if one was kept.
    pub fn exemplar(&self, index: usize) -> Option<&Exemplar> {
        self.exemplars.get(index)?.as_ref()
    }

    /// The explicit buckets' counts (none for an exponential histogram).
    pub fn explicit_counts(&self) -> &[u64] {
        &self.bucket_counts
    }

    /// Adds `other`'s counts (same instrument, same layout).
    pub(crate) fn merge(&mut self, other: &HistogramState) {
        for (count, more) in self.bucket_counts.iter_mut().zip(&other.bucket_counts) {
            *count += more;
        }
        if let (Some(buckets), Some(more)) = (self.exponential.as_mut(), &other.exponential) {
            buckets.merge(more);
        }
        // Each bucket keeps the later of the two exemplars.
        if self.exemplars.is_empty() {
            self.exemplars.clone_from(&other.exemplars);
        } else {
            for (mine, theirs) in self.exemplars.iter_mut().zip(&other.exemplars) {
                if let Some(theirs) = theirs {
                    if mine.is_none_or(|m| m.unix_ns < theirs.unix_ns) {
                        *mine = Some(*theirs);
                    }
                }
            }
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub(crate) fn data_point(
        &self,
        layout: HistogramLayout<'_>,
        attributes: Vec<KeyValue>,
        start: u64,
        now: u64,
    ) -> HistogramPoint {
        let (min, max) = if self.count > 0 {
            (Some(self.min), Some(self.max))
        } else {
            (None, None)
        };
        if let Some(buckets) = &self.exponential {
            let totals = Totals {
                start_unix_ns: start,
                now_unix_ns: now,
                count: self.count,
                sum: self.sum,
                min,
                max,
            };
            return HistogramPoint::Exponential(buckets.data_point(totals, attributes));
        }
        let bounds = match layout {
            HistogramLayout::Explicit(bounds) => bounds,
            HistogramLayout::Exponential => &[],
        };
        HistogramPoint::Explicit(HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.bucket_counts.clone(),
            explicit_bounds: bounds.to_vec(),
            exemplars: self.exemplars.iter().flatten().map(otlp_exemplar).collect(),
            flags: 0,
            min,
            max,
        })
    }
}

/// An exemplar as OTLP carries it: the span's ids, its value and when.
fn otlp_exemplar(exemplar: &Exemplar) -> opentelemetry_proto::tonic::metrics::v1::Exemplar {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
    opentelemetry_proto::tonic::metrics::v1::Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: exemplar.unix_ns,
        value: Some(Value::AsDouble(exemplar.value)),
        span_id: exemplar.span_id.to_vec(),
        trace_id: exemplar.trace_id.to_vec(),
    }
}

/// One metric's histogram data: explicit or exponential, as its points are
/// (one store's points share a layout).
pub fn histogram_data(points: Vec<HistogramPoint>, temporality: i32) -> metric::Data {
    let (mut explicit, mut exponential) = (Vec::new(), Vec::new());
    for point in points {
        match point {
            HistogramPoint::Explicit(point) => explicit.push(point),
            HistogramPoint::Exponential(point) => exponential.push(point),
        }
    }
    if exponential.is_empty() {
        metric::Data::Histogram(Histogram {
            data_points: explicit,
            aggregation_temporality: temporality,
        })
    } else {
        metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: exponential,
            aggregation_temporality: temporality,
        })
    }
}

/// The bucket `value` falls in; buckets are upper-inclusive: (previous
/// bound, bound]. The conventions' default bounds, told by their address,
/// are searched as arrays of a known length, which the compiler unrolls
/// (measured: 128 instructions fewer per nginx exchange than a search of the
/// same bounds as a slice); configured bounds as a slice.
fn bucket_of(bounds: &[f64], value: f64) -> usize {
    let below = |bound: &f64| *bound < value;
    if std::ptr::eq(bounds, DURATION_BOUNDS_SECONDS.as_slice()) {
        DURATION_BOUNDS_SECONDS.partition_point(below)
    } else if std::ptr::eq(bounds, SIZE_BOUNDS_BYTES.as_slice()) {
        SIZE_BOUNDS_BYTES.partition_point(below)
    } else {
        bounds.partition_point(below)
    }
}

/// One histogram of one series, as exporters read it (owned when
/// `attributes.select` merged series into it).
pub struct Point<'a> {
    pub pid: u32,
    pub resource: &'a Arc<Resource>,
    pub instrument: &'static Instrument,
    pub attributes: Vec<KeyValue>,
    pub start_unix_ns: u64,
    pub state: Cow<'a, HistogramState>,
}

/// The series of one protocol's metrics.
/// The attributes of a process's overflow series: where its points go once
/// a store holds [`MAX_SERIES`] series.
pub fn overflow_attributes() -> Vec<KeyValue> {
    vec![bool_attribute("otel.metric.overflow", true)]
}

pub trait MetricStore {
    /// Every instrument the store feeds, in export order.
    fn instruments(&self) -> &'static [Instrument];
    /// Every histogram of every series.
    fn points(&self) -> Vec<Point<'_>>;
    /// After an export: delta series start over (`reset`); exited processes go.
    fn after_export(&mut self, reset: bool, exited: &[u32], now_unix_ns: u64);
    /// Drops the series last recorded before `cutoff_unix_ns` (OBI's `ttl`).
    fn expire(&mut self, cutoff_unix_ns: u64);
    fn is_empty(&self) -> bool;
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "zerotrace".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

pub struct RedMetrics {
    temporality: Temporality,
    /// Configured bounds that replace the instruments' defaults (OBI's `buckets`).
    buckets: HistogramBuckets,
    /// `attributes.select`: which attributes each instrument keeps.
    selector: Option<Arc<AttributeSelector>>,
    /// Processes that exited: their series go out once more, then are dropped.
    exited: Vec<u32>,
    pub http: HttpMetrics,
    /// gRPC calls: counted as RPCs only, not also as HTTP requests.
    pub rpc: RpcMetrics,
    /// Database and cache client operations.
    pub db: DbMetrics,
    /// Messaging client operations (Kafka send and poll).
    pub messaging: MessagingMetrics,
}

impl RedMetrics {
    pub fn new(temporality: Temporality) -> Self {
        Self {
            temporality,
            buckets: HistogramBuckets::default(),
            selector: None,
            exited: Vec::new(),
            http: HttpMetrics::default(),
            rpc: RpcMetrics::default(),
            db: DbMetrics::default(),
            messaging: MessagingMetrics::default(),
        }
    }

    /// Bucket bounds that replace the instruments' defaults, in every store
    /// (set before anything is recorded).
    pub fn with_buckets(mut self, buckets: &HistogramBuckets) -> Self {
        self.buckets = buckets.clone();
        self.http.buckets = buckets.clone();
        self.rpc.buckets = buckets.clone();
        self.db.buckets = buckets.clone();
        self.messaging.buckets = buckets.clone();
        self
    }

    /// Which spans leave exemplars on the explicit buckets (Prometheus's
    /// `exemplar_filter`; set before anything is recorded).
    pub fn with_exemplars(mut self, policy: ExemplarPolicy) -> Self {
        self.http.exemplars = policy;
        self.rpc.exemplars = policy;
        self.db.exemplars = policy;
        self.messaging.exemplars = policy;
        self
    }

    /// An instrument's bucket bounds here.
    pub fn bounds<'a>(&'a self, instrument: &'a Instrument) -> &'a [f64] {
        instrument.bounds_in(&self.buckets)
    }

    /// Applies `attributes.select` to what the exporters read.
    pub fn with_selector(mut self, selector: Option<Arc<AttributeSelector>>) -> Self {
        self.selector = selector;
        self
    }

    /// Every instrument of every store.
    pub fn instruments() -> impl Iterator<Item = &'static Instrument> {
        crate::semconv::http::INSTRUMENTS
            .iter()
            .chain(&crate::semconv::rpc::INSTRUMENTS)
            .chain(&crate::semconv::db::INSTRUMENTS)
            .chain(&crate::semconv::messaging::INSTRUMENTS)
    }

    /// A store's points as the exporters send them: with the attributes
    /// `attributes.select` keeps, series merged where they then coincide.
    pub fn selected_points<'a>(&self, store: &'a dyn MetricStore) -> Vec<Point<'a>> {
        match self.selector.as_ref() {
            Some(selector) => selector.apply(store.points()),
            None => store.points(),
        }
    }

    /// Every protocol's store, in export order.
    pub fn stores(&self) -> [&dyn MetricStore; 4] {
        [&self.http, &self.rpc, &self.db, &self.messaging]
    }

    fn stores_mut(&mut self) -> [&mut dyn MetricStore; 4] {
        [
            &mut self.http,
            &mut self.rpc,
            &mut self.db,
            &mut self.messaging,
        ]
    }

    /// Records one span in its protocol's store.
    pub fn record(&mut self, span: &Span, resource: &Arc<Resource>, now_unix_ns: u64) {
        match &span.protocol {
            Protocol::Http(http) => self.http.record(span, http, resource, now_unix_ns),
            Protocol::Grpc(grpc) => {
                self.rpc
                    .record(span, &grpc.call, &grpc.http, resource, now_unix_ns)
            }
            Protocol::Db(db) => self.db.record(span, db, resource, now_unix_ns),
            Protocol::Messaging(messaging) => {
                self.messaging
                    .record(span, messaging, resource, now_unix_ns)
            }
        }
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.exited.push(pid);
    }

    /// Drops the series of these processes now (the Prometheus endpoint's
    /// state, which is never exported: it forgets exited processes later).
    pub fn drop_processes(&mut self, pids: &[u32]) {
        for store in self.stores_mut() {
            store.after_export(false, pids, 0);
        }
    }

    /// Drops the series last recorded before `cutoff_unix_ns` (OBI's `ttl`).
    pub fn expire(&mut self, cutoff_unix_ns: u64) {
        for store in self.stores_mut() {
            store.expire(cutoff_unix_ns);
        }
    }

    /// Builds the export request for everything recorded (cumulative: since
    /// the series started; delta: since the last export, then resets).
    pub fn export(&mut self, now_unix_ns: u64) -> Option<ExportMetricsServiceRequest> {
        if self.stores().iter().all(|store| store.is_empty()) {
            return None;
        }
        let delta = self.temporality == Temporality::Delta;
        let temporality = match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        // pid -> (resource, metrics in instrument order)
        let mut by_process: HashMap<u32, (Arc<Resource>, Vec<Metric>)> = HashMap::new();
        for store in self.stores() {
            let instruments = store.instruments();
            // (pid, instrument index) -> points
            let mut points: HashMap<(u32, usize), Vec<HistogramPoint>> = HashMap::new();
            for point in self.selected_points(store) {
                if delta && point.state.count == 0 {
                    continue;
                }
                let Some(index) = instruments
                    .iter()
                    .position(|i| i.name == point.instrument.name)
                else {
                    continue;
                };
                by_process
                    .entry(point.pid)
                    .or_insert_with(|| (Arc::clone(point.resource), Vec::new()));
                points
                    .entry((point.pid, index))
                    .or_default()
                    .push(point.state.data_point(
                        point.instrument.layout_in(&self.buckets),
                        point.attributes,
                        point.start_unix_ns,
                        now_unix_ns,
                    ));
            }
            let mut keys: Vec<(u32, usize)> = points.keys().copied().collect();
            keys.sort_unstable();
            for key in keys {
                let (Some(data_points), Some(instrument), Some((_, metrics))) = (
                    points.remove(&key),
                    instruments.get(key.1),
                    by_process.get_mut(&key.0),
                ) else {
                    continue;
                };
                metrics.push(Metric {
                    name: instrument.name.into(),
                    description: instrument.description.into(),
                    unit: instrument.unit.into(),
                    metadata: Vec::new(),
                    data: Some(histogram_data(data_points, temporality)),
                });
            }
        }
        let resource_metrics: Vec<ResourceMetrics> = by_process
            .into_values()
            .map(|(resource, metrics)| ResourceMetrics {
                resource: Some((*resource).clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        let exited = std::mem::take(&mut self.exited);
        for store in self.stores_mut() {
            store.after_export(delta, &exited, now_unix_ns);
        }
        if resource_metrics.is_empty() {
            return None;
        }
        Some(ExportMetricsServiceRequest { resource_metrics })
    }
}
