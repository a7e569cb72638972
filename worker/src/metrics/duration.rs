//! The store shared by the protocols whose metric is one duration histogram
//! per process and attribute set (gRPC calls, database and messaging client
//! operations): the series, their bound, and what an export does to them.
//! Each protocol keeps its own key (what identifies a series) and lookup.

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exemplars::ExemplarPolicy;
use super::red::{HistogramLayout, HistogramState, MetricStore, Point, MAX_SERIES};
use crate::config::HistogramBuckets;
use crate::hashing::FastMap;
use crate::semconv::Instrument;
use crate::spans::Span;

/// What a duration series' key must say about it.
pub trait DurationKey: Eq + Hash {
    fn pid(&self) -> u32;
    /// The histogram its points go to.
    fn instrument(&self) -> &'static Instrument;
    fn attributes(&self) -> Vec<KeyValue>;
}

/// One series: the process's resource, since when it counts, and the histogram.
#[derive(Debug, Clone)]
pub struct DurationSeries {
    pub resource: Arc<Resource>,
    pub start_unix_ns: u64,
    /// When a span last counted here (series not updated for OBI's `ttl` go).
    pub last_unix_ns: u64,
    pub duration: HistogramState,
}

impl DurationSeries {
    pub fn new(resource: &Arc<Resource>, now_unix_ns: u64, layout: HistogramLayout<'_>) -> Self {
        Self {
            resource: Arc::clone(resource),
            start_unix_ns: now_unix_ns,
            last_unix_ns: now_unix_ns,
            duration: HistogramState::new(layout),
        }
    }

    /// The span's duration, in seconds, counted at `now_unix_ns` (and its
    /// exemplar, when `exemplars` keeps one).
    pub fn record(
        &mut self,
        bounds: &[f64],
        span: &Span,
        now_unix_ns: u64,
        exemplars: ExemplarPolicy,
    ) {
        self.last_unix_ns = self.last_unix_ns.max(now_unix_ns);
        let seconds = span.duration_ns() as f64 / 1e9;
        self.duration.record(bounds, seconds);
        if let Some(exemplar) = exemplars.of(span, seconds, now_unix_ns) {
            self.duration.keep_exemplar(bounds, exemplar);
        }
    }
}

/// The series of one protocol, at most [`MAX_SERIES`] (then one overflow
/// series per process takes the points, counted in `overflowed_points`).
#[derive(Debug)]
pub struct DurationStore<K> {
    pub(super) series: FastMap<K, DurationSeries>,
    pub overflowed_points: u64,
    instruments: &'static [Instrument],
    /// Configured bounds that replace the instruments' defaults.
    pub(super) buckets: HistogramBuckets,
    /// Which spans leave exemplars.
    pub(super) exemplars: ExemplarPolicy,
}

impl<K> DurationStore<K> {
    pub fn new(instruments: &'static [Instrument]) -> Self {
        Self {
            series: FastMap::default(),
            overflowed_points: 0,
            instruments,
            buckets: HistogramBuckets::default(),
            exemplars: ExemplarPolicy::Off,
        }
    }

    pub fn series(&self) -> impl Iterator<Item = (&K, &DurationSeries)> {
        self.series.iter()
    }

    /// Series kept (the overflow series included).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Whether a point of a series that `known` says is not kept yet must go
    /// to the overflow series; counts it when so.
    pub(super) fn overflows(
        &mut self,
        known: impl FnOnce(&FastMap<K, DurationSeries>) -> bool,
    ) -> bool {
        let full = self.series.len() >= MAX_SERIES && !known(&self.series);
        if full {
            self.overflowed_points += 1;
        }
        full
    }
}

impl<K: DurationKey> MetricStore for DurationStore<K> {
    fn instruments(&self) -> &'static [Instrument] {
        self.instruments
    }

    fn points(&self) -> Vec<Point<'_>> {
        self.series
            .iter()
            .map(|(key, series)| Point {
                pid: key.pid(),
                resource: &series.resource,
                instrument: key.instrument(),
                attributes: key.attributes(),
                start_unix_ns: series.start_unix_ns,
                state: Cow::Borrowed(&series.duration),
            })
            .collect()
    }

    fn expire(&mut self, cutoff_unix_ns: u64) {
        self.series
            .retain(|_, series| series.last_unix_ns >= cutoff_unix_ns);
    }

    fn after_export(&mut self, reset: bool, exited: &[u32], now_unix_ns: u64) {
        if reset {
            for (key, series) in self.series.iter_mut() {
                series.start_unix_ns = now_unix_ns;
                series.duration = HistogramState::new(key.instrument().layout_in(&self.buckets));
            }
        }
        self.series.retain(|key, _| !exited.contains(&key.pid()));
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}
