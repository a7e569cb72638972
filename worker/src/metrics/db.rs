//! Metrics of database and cache client operations: the
//! `db.client.operation.duration` histogram (seconds, the conventions'
//! buckets) per process and low-cardinality attribute set. Names and
//! attributes come from `semconv/db.rs`; see docs/configuration.md.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::red::{HistogramState, MetricStore, Point, MAX_SERIES};
use crate::hashing::FastMap;
use crate::semconv::attribute::bool_attribute;
use crate::semconv::db::{DbMetricLabels, INSTRUMENTS};
use crate::semconv::Instrument;
use crate::spans::{DbExchange, DbSystem, Span};

/// One series: the process, and its labels (None: the overflow series).
/// Hashed as its borrowed form, [`DbSeriesKeyRef`], so that a known series
/// is found without building an owned key (strings are copied only when a
/// series is created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSeriesKey {
    pub pid: u32,
    pub labels: Option<DbMetricLabels>,
}

/// [`DbSeriesKey`] borrowed from a span and its operation.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DbSeriesKeyRef<'a> {
    pid: u32,
    labels: Option<DbLabelsRef<'a>>,
}

/// [`DbMetricLabels`] borrowed: every field, so the two cannot drift apart.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DbLabelsRef<'a> {
    system: DbSystem,
    operation: &'a str,
    collection: Option<&'a str>,
    namespace: Option<&'a str>,
    server_address: IpAddr,
    server_port: u16,
    error_type: Option<&'a str>,
}

impl<'a> DbLabelsRef<'a> {
    fn of(span: &Span, db: &'a DbExchange) -> Self {
        Self {
            system: db.system,
            operation: &db.operation,
            collection: db.collection.as_deref(),
            namespace: db.namespace.as_deref(),
            server_address: span.peer.ip(),
            server_port: span.peer.port(),
            error_type: db.error_type.as_deref(),
        }
    }

    fn owned(&self) -> DbMetricLabels {
        DbMetricLabels {
            system: self.system,
            operation: self.operation.to_owned(),
            collection: self.collection.map(str::to_owned),
            namespace: self.namespace.map(str::to_owned),
            server_address: self.server_address,
            server_port: self.server_port,
            error_type: self.error_type.map(str::to_owned),
        }
    }
}

impl DbSeriesKey {
    fn borrowed(&self) -> DbSeriesKeyRef<'_> {
        DbSeriesKeyRef {
            pid: self.pid,
            labels: self.labels.as_ref().map(|l| DbLabelsRef {
                system: l.system,
                operation: &l.operation,
                collection: l.collection.as_deref(),
                namespace: l.namespace.as_deref(),
                server_address: l.server_address,
                server_port: l.server_port,
                error_type: l.error_type.as_deref(),
            }),
        }
    }

    pub fn attributes(&self) -> Vec<KeyValue> {
        match &self.labels {
            Some(labels) => labels.attributes(),
            None => vec![bool_attribute("otel.metric.overflow", true)],
        }
    }
}

impl Hash for DbSeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

impl hashbrown::Equivalent<DbSeriesKey> for DbSeriesKeyRef<'_> {
    fn equivalent(&self, key: &DbSeriesKey) -> bool {
        *self == key.borrowed()
    }
}

#[derive(Debug, Clone)]
pub struct DbSeries {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    pub duration: HistogramState,
}

/// The operation duration histograms of every process.
#[derive(Debug, Default)]
pub struct DbMetrics {
    series: FastMap<DbSeriesKey, DbSeries>,
    pub overflowed_points: u64,
}

fn instrument() -> &'static Instrument {
    let [duration] = &INSTRUMENTS;
    duration
}

impl DbMetrics {
    pub fn series(&self) -> impl Iterator<Item = (&DbSeriesKey, &DbSeries)> {
        self.series.iter()
    }

    pub fn record(
        &mut self,
        span: &Span,
        db: &DbExchange,
        resource: &Arc<Resource>,
        now_unix_ns: u64,
    ) {
        let mut key = DbSeriesKeyRef {
            pid: span.pid,
            labels: Some(DbLabelsRef::of(span, db)),
        };
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            key.labels = None;
            self.overflowed_points += 1;
        }
        let bounds = instrument().bounds;
        // One lookup by the borrowed key; an owned one only for a new series.
        let (_, series) = self
            .series
            .raw_entry_mut()
            .from_key(&key)
            .or_insert_with(|| {
                let owned = DbSeriesKey {
                    pid: key.pid,
                    labels: key.labels.as_ref().map(DbLabelsRef::owned),
                };
                let series = DbSeries {
                    resource: Arc::clone(resource),
                    start_unix_ns: now_unix_ns,
                    duration: HistogramState::new(bounds),
                };
                (owned, series)
            });
        series
            .duration
            .record(bounds, span.duration_ns() as f64 / 1e9);
    }
}

impl MetricStore for DbMetrics {
    fn instruments(&self) -> &'static [Instrument] {
        &INSTRUMENTS
    }

    fn points(&self) -> Vec<Point<'_>> {
        self.series
            .iter()
            .map(|(key, series)| Point {
                pid: key.pid,
                resource: &series.resource,
                instrument: instrument(),
                attributes: key.attributes(),
                start_unix_ns: series.start_unix_ns,
                state: &series.duration,
            })
            .collect()
    }

    fn after_export(&mut self, reset: bool, exited: &[u32], now_unix_ns: u64) {
        if reset {
            for series in self.series.values_mut() {
                series.start_unix_ns = now_unix_ns;
                series.duration = HistogramState::new(instrument().bounds);
            }
        }
        self.series.retain(|key, _| !exited.contains(&key.pid));
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}
