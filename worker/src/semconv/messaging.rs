//! The OpenTelemetry messaging semantic conventions for Kafka and MQTT clients: span
//! name `{messaging.operation.name} {destination}`, the `messaging.*`
//! attributes, the error rule (a non-zero Kafka error code, an MQTT reason
//! code of 0x80 or more), and the `messaging.client.operation.duration` and
//! `messaging.process.duration` histograms with their low-cardinality
//! attributes.

use std::net::IpAddr;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::attribute::{int_attribute, string_attribute, AttributeSink};
use super::db::peer_attributes;
use super::{BucketKind, Conventions, Instrument, PeerKind, SpanError};
use crate::spans::{MessagingExchange, MessagingOperation, MessagingSystem, Span};

/// The buckets the conventions advise for `messaging.client.operation.duration` (seconds).
pub const MESSAGING_DURATION_BOUNDS_SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The duration of client operations (send, poll, publish), and of the
/// processing of a delivered message (MQTT: from its read to the client's
/// acknowledgement).
pub static INSTRUMENTS: [Instrument; 2] = [
    Instrument {
        name: "messaging.client.operation.duration",
        prometheus_name: "messaging_client_operation_duration_seconds",
        unit: "s",
        prometheus_unit: "seconds",
        description: "Duration of messaging operation initiated by a producer or consumer client.",
        bounds: &MESSAGING_DURATION_BOUNDS_SECONDS,
        buckets: BucketKind::Duration,
    },
    Instrument {
        name: "messaging.process.duration",
        prometheus_name: "messaging_process_duration_seconds",
        unit: "s",
        prometheus_unit: "seconds",
        description: "Duration of processing operation.",
        bounds: &MESSAGING_DURATION_BOUNDS_SECONDS,
        buckets: BucketKind::Duration,
    },
];

/// The instrument an operation's duration goes to.
pub fn instrument_of(operation: MessagingOperation) -> &'static Instrument {
    let [client, process] = &INSTRUMENTS;
    match operation {
        MessagingOperation::Process => process,
        MessagingOperation::Send | MessagingOperation::Poll | MessagingOperation::Publish => client,
    }
}

impl Conventions for MessagingExchange {
    /// A broker has no server span of its own here: its edge is known at once.
    fn peer_kind(&self) -> PeerKind {
        PeerKind::MessagingSystem
    }

    fn span_name_parts<'a>(&'a self, _span: &'a Span) -> [&'a str; 3] {
        [&self.name, "", ""]
    }

    fn span_attributes(&self, span: &Span, out: &mut dyn AttributeSink) {
        out.string("messaging.system", self.system.as_str());
        out.string("messaging.operation.name", self.operation.name());
        out.string("messaging.operation.type", self.operation.operation_type());
        if let Some(topic) = &self.destination {
            out.string("messaging.destination.name", topic);
        }
        if let Some(partition) = self.partition {
            out.string("messaging.destination.partition.id", &partition.to_string());
        }
        if let Some(client_id) = &self.client_id {
            out.string("messaging.client.id", client_id);
        }
        if let Some(key) = &self.routing_key {
            out.string("messaging.rabbitmq.destination.routing_key", key);
        }
        if let Some(count) = self.message_count {
            out.int(
                "messaging.batch.message_count",
                i64::try_from(count).unwrap_or(i64::MAX),
            );
        }
        peer_attributes(span, out);
    }

    /// A failure code in the response: `error.type` is its name.
    fn error(&self, _span: &Span) -> Option<SpanError> {
        Some(SpanError {
            error_type: self.error_type()?,
            message: self.error_message()?,
        })
    }

    fn is_error(&self, _span: &Span) -> bool {
        self.error_code.is_some()
    }
}

/// What identifies one `messaging.client.operation.duration` series: the
/// low-cardinality attributes only (no client id, no partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessagingMetricLabels {
    pub system: MessagingSystem,
    pub operation: MessagingOperation,
    pub destination: Option<String>,
    pub server_address: IpAddr,
    pub server_port: u16,
    pub error_type: Option<String>,
}

impl MessagingMetricLabels {
    pub fn of(span: &Span, messaging: &MessagingExchange) -> Self {
        Self {
            system: messaging.system,
            operation: messaging.operation,
            destination: messaging.destination.clone(),
            server_address: span.peer.ip(),
            server_port: span.peer.port(),
            error_type: messaging.error_type(),
        }
    }

    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = vec![
            string_attribute("messaging.system", self.system.as_str()),
            string_attribute("messaging.operation.name", self.operation.name()),
            string_attribute("messaging.operation.type", self.operation.operation_type()),
        ];
        if let Some(topic) = &self.destination {
            attributes.push(string_attribute(
                "messaging.destination.name",
                topic.clone(),
            ));
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
