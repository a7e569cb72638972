//! Metrics of messaging client operations (Kafka send and poll, MQTT
//! publish): the `messaging.client.operation.duration` histogram (seconds),
//! and of MQTT deliveries: `messaging.process.duration`, per process and
//! low-cardinality attribute set. Names and attributes come from
//! `semconv/messaging.rs`.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::duration::{DurationKey, DurationSeries, DurationStore};
use super::red::overflow_attributes;
use crate::semconv::messaging::{instrument_of, MessagingMetricLabels, INSTRUMENTS};
use crate::semconv::Instrument;
use crate::spans::{MessagingExchange, MessagingOperation, Span};

/// One series: the process, and its labels (None: the overflow series).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessagingSeriesKey {
    pub pid: u32,
    pub labels: Option<MessagingMetricLabels>,
}

impl DurationKey for MessagingSeriesKey {
    fn pid(&self) -> u32 {
        self.pid
    }

    /// The overflow series is the client operations'.
    fn instrument(&self) -> &'static Instrument {
        let operation = self.labels.as_ref().map(|l| l.operation);
        instrument_of(operation.unwrap_or(MessagingOperation::Send))
    }

    fn attributes(&self) -> Vec<KeyValue> {
        self.labels
            .as_ref()
            .map_or_else(overflow_attributes, MessagingMetricLabels::attributes)
    }
}

/// The operation duration histograms of every process. Messaging
/// operations are far fewer than HTTP requests: the key is built owned.
pub type MessagingMetrics = DurationStore<MessagingSeriesKey>;

impl Default for MessagingMetrics {
    fn default() -> Self {
        Self::new(&INSTRUMENTS)
    }
}

impl MessagingMetrics {
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
        if self.overflows(|series| series.contains_key(&key)) {
            key.labels = None;
        }
        let instrument = key.instrument();
        let bounds = instrument.bounds_in(&self.buckets);
        let layout = instrument.layout_in(&self.buckets);
        self.series
            .entry(key)
            .or_insert_with(|| DurationSeries::new(resource, now_unix_ns, layout))
            .record(bounds, span, now_unix_ns, self.exemplars);
    }
}
