//! Metrics of database and cache client operations: the
//! `db.client.operation.duration` histogram (seconds, the conventions'
//! buckets) per process and low-cardinality attribute set. Names and
//! attributes come from `semconv/db.rs`; see docs/configuration.md.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::duration::{DurationKey, DurationSeries, DurationStore};
use super::red::overflow_attributes;
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
}

impl DurationKey for DbSeriesKey {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn instrument(&self) -> &'static Instrument {
        instrument()
    }

    fn attributes(&self) -> Vec<KeyValue> {
        self.labels
            .as_ref()
            .map_or_else(overflow_attributes, DbMetricLabels::attributes)
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

/// The operation duration histograms of every process.
pub type DbMetrics = DurationStore<DbSeriesKey>;

impl Default for DbMetrics {
    fn default() -> Self {
        Self::new(&INSTRUMENTS)
    }
}

fn instrument() -> &'static Instrument {
    let [duration] = &INSTRUMENTS;
    duration
}

impl DbMetrics {
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
        if self.overflows(|series| series.contains_key(&key)) {
            key.labels = None;
        }
        let bounds = instrument().bounds_in(&self.buckets);
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
                (
                    owned,
                    DurationSeries::new(
                        resource,
                        now_unix_ns,
                        instrument().layout_in(&self.buckets),
                    ),
                )
            });
        series.record(bounds, span, now_unix_ns, self.exemplars);
    }
}
