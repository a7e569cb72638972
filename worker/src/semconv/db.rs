//! The stable OpenTelemetry database semantic conventions for client
//! operations (PostgreSQL, MySQL/MariaDB, Redis, memcached): span name,
//! `db.*` attributes, the error rule, and the `db.client.operation.duration`
//! histogram with its low-cardinality attributes (never the query text).

use std::net::IpAddr;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::attribute::{int_attribute, string_attribute, AttributeSink, IpString};
use super::{BucketKind, Conventions, Instrument, SpanError};
use crate::spans::{DbExchange, DbSystem, Span};

/// The buckets the conventions advise for `db.client.operation.duration` (seconds).
pub const DB_DURATION_BOUNDS_SECONDS: [f64; 9] =
    [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// The duration of client operations.
pub static INSTRUMENTS: [Instrument; 1] = [Instrument {
    name: "db.client.operation.duration",
    prometheus_name: "db_client_operation_duration_seconds",
    unit: "s",
    prometheus_unit: "seconds",
    description: "Duration of database client operations.",
    bounds: &DB_DURATION_BOUNDS_SECONDS,
    buckets: BucketKind::Duration,
}];

/// `server.address`/`server.port` and `network.peer.*` of a client operation:
/// the peer socket.
pub fn peer_attributes(span: &Span, out: &mut dyn AttributeSink) {
    let address = IpString::of(span.peer.ip());
    let port = i64::from(span.peer.port());
    out.string("server.address", address.as_str());
    out.int("server.port", port);
    out.string("network.peer.address", address.as_str());
    out.int("network.peer.port", port);
}

impl Conventions for DbExchange {
    /// The service graph counts a database call at once, against the server
    /// as a `database` node (the server side is never instrumented here).
    fn peer_kind(&self) -> super::PeerKind {
        super::PeerKind::Database
    }

    /// `{db.operation.name} {target}`, the target being the collection, else
    /// the namespace; `db.system.name` when nothing else is known.
    fn span_name_parts<'a>(&'a self, _span: &'a Span) -> [&'a str; 3] {
        [&self.name, "", ""]
    }

    fn span_attributes(&self, span: &Span, out: &mut dyn AttributeSink) {
        out.string("db.system.name", self.system.as_str());
        if !self.operation.is_empty() {
            out.string("db.operation.name", &self.operation);
            // The query's own summary: its operation and collection (the span
            // name is that when a collection is known; it falls back to the
            // namespace, which is not the query's).
            let summary = match self.collection {
                Some(_) => &self.name,
                None => &self.operation,
            };
            out.string("db.query.summary", summary);
        }
        if let Some(collection) = &self.collection {
            out.string("db.collection.name", collection);
        }
        if let Some(namespace) = &self.namespace {
            out.string("db.namespace", namespace);
        }
        if let Some(text) = &self.query_text {
            out.string("db.query.text", text);
        }
        if let Some(code) = &self.status_code {
            out.string("db.response.status_code", code);
        }
        if let Some(rows) = self.rows.filter(|_| self.rows_returned) {
            out.int(
                "db.response.returned_rows",
                i64::try_from(rows).unwrap_or(i64::MAX),
            );
        }
        peer_attributes(span, out);
    }

    /// An operation the server refused or failed: `error.type` is its code
    /// (SQLSTATE, MySQL error number, Redis error prefix), the description the server's message.
    fn error(&self, _span: &Span) -> Option<SpanError> {
        let error_type = self.error_type.clone()?;
        Some(SpanError {
            error_type,
            message: self.error_message.clone().unwrap_or_default(),
        })
    }

    fn is_error(&self, _span: &Span) -> bool {
        self.error_type.is_some()
    }
}

/// What identifies one `db.client.operation.duration` series: the
/// low-cardinality attributes only (never the query text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbMetricLabels {
    pub system: DbSystem,
    pub operation: String,
    pub collection: Option<String>,
    pub namespace: Option<String>,
    pub server_address: IpAddr,
    pub server_port: u16,
    pub error_type: Option<String>,
}

impl DbMetricLabels {
    pub fn of(span: &Span, db: &DbExchange) -> Self {
        Self {
            system: db.system,
            operation: db.operation.clone(),
            collection: db.collection.clone(),
            namespace: db.namespace.clone(),
            server_address: span.peer.ip(),
            server_port: span.peer.port(),
            error_type: db.error_type.clone(),
        }
    }

    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = vec![string_attribute("db.system.name", self.system.as_str())];
        if !self.operation.is_empty() {
            attributes.push(string_attribute(
                "db.operation.name",
                self.operation.clone(),
            ));
        }
        if let Some(collection) = &self.collection {
            attributes.push(string_attribute("db.collection.name", collection.clone()));
        }
        if let Some(namespace) = &self.namespace {
            attributes.push(string_attribute("db.namespace", namespace.clone()));
        }
        attributes.push(string_attribute(
            "server.address",
            self.server_address.to_string(),
        ));
        attributes.push(int_attribute("server.port", i64::from(self.server_port)));
        if let Some(error_type) = &self.error_type {
            attributes.push(string_attribute("error.type", error_type.clone()));
        }
        attributes
    }
}
