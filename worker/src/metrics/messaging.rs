//! Metrics of messaging client operations (Kafka send and poll): the
//! `messaging.client.operation.duration` histogram (seconds) per process
//! and low-cardinality attribute set. Names and attributes come from
//! `semconv/messaging.rs`.

use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource;

use super::red::{HistogramState, MetricStore, Point, MAX_SERIES};
use crate::hashing::FastMap;
use crate::semconv::attribute::bool_attribute;
use crate::semconv::messaging::{MessagingMetricLabels, INSTRUMENTS};
use crate::semconv::Instrument;
use crate::spans::{MessagingExchange, Span};

/// One series: the process, and its labels (None: the overflow series).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessagingSeriesKey {
    pub pid: u32,
    pub labels: Option<MessagingMetricLabels>,
}

#[derive(Debug, Clone)]
pub struct MessagingSeries {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    pub duration: HistogramState,
}

/// The operation duration histograms of every process. Messaging
/// operations are far fewer than HTTP requests: the key is built owned.
#[derive(Debug, Default)]
pub struct MessagingMetrics {
    series: FastMap<MessagingSeriesKey, MessagingSeries>,
    pub overflowed_points: u64,
}

fn instrument() -> &'static Instrument {
    let [duration] = &INSTRUMENTS;
    duration
}

impl MessagingMetrics {
    /// Series kept (the overflow series included).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn record(
        &mut self,
        span: &Span,
        messaging: &MessagingExchange,
        resource: &Arc<Resource>,
        now_unix_ns: u64,
    ) {
        let mut key = MessagingSeriesKey {
            pid: span.pid,
            labels: Some(MessagingMetricLabels::of(span, messaging)),
        };
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            key.labels = None;
            self.overflowed_points += 1;
        }
        let bounds = instrument().bounds;
        let series = self.series.entry(key).or_insert_with(|| MessagingSeries {
            resource: Arc::clone(resource),
            start_unix_ns: now_unix_ns,
            duration: HistogramState::new(bounds),
        });
        series
            .duration
            .record(bounds, span.duration_ns() as f64 / 1e9);
    }
}

impl MetricStore for MessagingMetrics {
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
                attributes: match &key.labels {
                    Some(labels) => labels.attributes(),
                    None => vec![bool_attribute("otel.metric.overflow", true)],
                },
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
