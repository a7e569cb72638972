//! Metrics of database and cache client operations: the
//! `db.client.operation.duration` histogram (seconds, the conventions'
//! buckets) per process and low-cardinality attribute set. Names and
//! attributes come from `semconv/db.rs`; see docs/configuration.md.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::red::{HistogramState, MetricStore, Point, MAX_SERIES};
use crate::hashing::FastMap;
use crate::semconv::attribute::bool_attribute;
use crate::semconv::db::{DbMetricLabels, INSTRUMENTS};
use crate::semconv::Instrument;
use crate::spans::{DbExchange, Span};

/// One series: the process, and its labels (None: the overflow series).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbSeriesKey {
    pub pid: u32,
    pub labels: Option<DbMetricLabels>,
}

impl DbSeriesKey {
    pub fn attributes(&self) -> Vec<KeyValue> {
        match &self.labels {
            Some(labels) => labels.attributes(),
            None => vec![bool_attribute("otel.metric.overflow", true)],
        }
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
        let mut key = DbSeriesKey {
            pid: span.pid,
            labels: Some(DbMetricLabels::of(span, db)),
        };
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
            key.labels = None;
            self.overflowed_points += 1;
        }
        let bounds = instrument().bounds;
        self.series
            .entry(key)
            .or_insert_with(|| DbSeries {
                resource: Arc::clone(resource),
                start_unix_ns: now_unix_ns,
                duration: HistogramState::new(bounds),
            })
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
