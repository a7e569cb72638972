//! The messaging part of a span (Kafka, MQTT, AMQP, NATS): one request a producer or
//! consumer made to a broker, or one message a broker delivered, and how the
//! trace printer shows it.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// The key of a reply subject, the same in every connection of this worker
/// and unknown outside it (std's SipHash, keyed once from the OS's
/// randomness): a request and the delivery that answers it name one.
pub fn reply_key<T: std::hash::Hash + ?Sized>(reply_subject: &T) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(reply_subject)
}

/// `messaging.system` of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessagingSystem {
    Kafka,
    Mqtt,
    /// RabbitMQ's AMQP 0-9-1.
    Rabbitmq,
    Nats,
}

impl MessagingSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            MessagingSystem::Kafka => "kafka",
            MessagingSystem::Mqtt => "mqtt",
            MessagingSystem::Rabbitmq => "rabbitmq",
            MessagingSystem::Nats => "nats",
        }
    }
}

/// What the client did: send messages (Kafka's Produce, MQTT's PUBLISH),
/// poll for them (Kafka's Fetch), or take one the broker pushed (an MQTT
/// PUBLISH read, up to the client's acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessagingOperation {
    Send,
    Poll,
    Publish,
    Process,
}

impl MessagingOperation {
    /// `messaging.operation.name`: the client's own name for it.
    pub fn name(self) -> &'static str {
        match self {
            MessagingOperation::Send => "send",
            MessagingOperation::Poll => "poll",
            MessagingOperation::Publish => "publish",
            MessagingOperation::Process => "process",
        }
    }

    /// `messaging.operation.type`: the conventions' kind of operation.
    pub fn operation_type(self) -> &'static str {
        match self {
            MessagingOperation::Send | MessagingOperation::Publish => "send",
            MessagingOperation::Poll => "receive",
            MessagingOperation::Process => "process",
        }
    }

    /// PRODUCER for what sends, CONSUMER for what receives.
    pub fn span_kind(self) -> super::SpanKind {
        match self {
            MessagingOperation::Send | MessagingOperation::Publish => super::SpanKind::Producer,
            MessagingOperation::Poll | MessagingOperation::Process => super::SpanKind::Consumer,
        }
    }
}

/// What one messaging operation adds to its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingExchange {
    pub system: MessagingSystem,
    pub operation: MessagingOperation,
    /// `messaging.destination.name`: the topic, when the request named one.
    pub destination: Option<String>,
    /// `messaging.destination.partition.id`, when the request touched one.
    pub partition: Option<i32>,
    /// `messaging.client.id`: the request header's client id.
    pub client_id: Option<String>,
    /// RabbitMQ's routing key (`messaging.rabbitmq.destination.routing_key`).
    pub routing_key: Option<String>,
    /// The W3C `traceparent` the message carried in its headers (NATS's,
    /// AMQP's headers table), when its publisher's SDK put one there.
    pub traceparent: Option<String>,
    /// [`reply_key`] of the subject a request asks its reply on (the
    /// requester's publish) or a delivery is to be answered on (the
    /// responder's), NATS's, or of an AMQP RPC request's correlation id: a
    /// request and its delivery elsewhere share it.
    pub reply_key: Option<u64>,
    /// `messaging.batch.message_count`, when every batch header was captured.
    pub message_count: Option<u64>,
    /// The broker's error code, when not 0 (the operation failed).
    pub error_code: Option<i16>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// [`MessagingExchange::summary`], computed once: the span name.
    pub name: String,
}

impl MessagingExchange {
    pub fn new(system: MessagingSystem, operation: MessagingOperation) -> Self {
        Self {
            system,
            operation,
            destination: None,
            partition: None,
            client_id: None,
            routing_key: None,
            traceparent: None,
            reply_key: None,
            message_count: None,
            error_code: None,
            request_bytes: 0,
            response_bytes: 0,
            name: String::new(),
        }
    }

    /// `{operation} {destination}` (`send orders`), the operation alone
    /// when the destination is not known (or several).
    pub fn summary(&self) -> String {
        match &self.destination {
            Some(topic) => format!("{} {topic}", self.operation.name()),
            None => self.operation.name().to_owned(),
        }
    }

    pub fn named(mut self) -> Self {
        self.name = self.summary();
        self
    }

    /// `error.type`: the error code's name (Kafka's
    /// `UNKNOWN_TOPIC_OR_PARTITION`, MQTT's `NOT_AUTHORIZED`), its number
    /// when the name is not known.
    pub fn error_type(&self) -> Option<String> {
        let code = self.error_code?;
        let name = match self.system {
            MessagingSystem::Kafka => kafka_error_name(code),
            MessagingSystem::Mqtt => u8::try_from(code).ok().and_then(mqtt_reason_name),
            MessagingSystem::Rabbitmq => amqp_reply_name(code),
            MessagingSystem::Nats => nats_status_name(code),
        };
        Some(match name {
            Some(name) => name.to_owned(),
            None => code.to_string(),
        })
    }

    /// The span's status description when it failed.
    pub fn error_message(&self) -> Option<String> {
        let error_type = self.error_type()?;
        Some(match self.system {
            MessagingSystem::Kafka => format!("Kafka error {error_type}"),
            MessagingSystem::Mqtt => format!("MQTT reason {error_type}"),
            MessagingSystem::Rabbitmq => format!("AMQP {error_type}"),
            MessagingSystem::Nats => format!("NATS {error_type}"),
        })
    }

    /// The printer's text: `kafka "send orders"`, ` messages=3 error=…`.
    pub fn printer_text(&self) -> (String, String) {
        let summary = format!("{} \"{}\"", self.system.as_str(), self.name.escape_debug());
        let mut details = String::new();
        if let Some(count) = self.message_count {
            details.push_str(&format!(" messages={count}"));
        }
        if let Some(error) = self.error_type() {
            details.push_str(&format!(" error={error}"));
        }
        (summary, details)
    }

    /// The printer's JSON fields (under `messaging`).
    pub fn printer_json(&self, out: &mut Map<String, Value>) {
        out.insert(
            "messaging".into(),
            json!({
                "system": self.system.as_str(),
                "operation": self.operation.name(),
                "destination": self.destination,
                "partition": self.partition,
                "client_id": self.client_id,
                "message_count": self.message_count,
                "error_type": self.error_type(),
                "request_bytes": self.request_bytes,
                "response_bytes": self.response_bytes,
                "name": self.name,
                "traceparent": self.traceparent,
            }),
        );
    }
}

/// A NATS publish the server refused by permissions (`-ERR 'Permissions
/// Violation for Publish to …'`; NATS has no code for it).
pub const NATS_REFUSED: i16 = -1;

/// The names of the statuses a NATS server puts in a reply's headers, and
/// of the JetStream API's error codes (HTTP's numbers), and of a refusal.
pub fn nats_status_name(code: i16) -> Option<&'static str> {
    Some(match code {
        NATS_REFUSED => "PERMISSIONS_VIOLATION",
        400 => "BAD_REQUEST",
        404 => "NOT_FOUND",
        408 => "REQUEST_TIMEOUT",
        409 => "CONFLICT",
        500 => "SERVER_ERROR",
        503 => "NO_RESPONDERS",
        _ => return None,
    })
}

/// A publish the broker nacked (AMQP has no code for it).
pub const AMQP_NACK: i16 = -1;
/// A delivery the client nacked or rejected.
pub const AMQP_REJECTED: i16 = -2;

/// The names of AMQP 0-9-1's reply codes (the specification's constants),
/// and of the negative acknowledgements.
pub fn amqp_reply_name(code: i16) -> Option<&'static str> {
    Some(match code {
        AMQP_NACK => "NACK",
        AMQP_REJECTED => "REJECTED",
        311 => "CONTENT_TOO_LARGE",
        312 => "NO_ROUTE",
        313 => "NO_CONSUMERS",
        320 => "CONNECTION_FORCED",
        402 => "INVALID_PATH",
        403 => "ACCESS_REFUSED",
        404 => "NOT_FOUND",
        405 => "RESOURCE_LOCKED",
        406 => "PRECONDITION_FAILED",
        501 => "FRAME_ERROR",
        502 => "SYNTAX_ERROR",
        503 => "COMMAND_INVALID",
        504 => "CHANNEL_ERROR",
        505 => "UNEXPECTED_FRAME",
        506 => "RESOURCE_ERROR",
        530 => "NOT_ALLOWED",
        540 => "NOT_IMPLEMENTED",
        541 => "INTERNAL_ERROR",
        _ => return None,
    })
}

/// The names of MQTT 5's failure reason codes (0x80 and above) that a
/// PUBACK, PUBREC or PUBCOMP may carry (the specification's table 2-6).
pub fn mqtt_reason_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x80 => "UNSPECIFIED_ERROR",
        0x83 => "IMPLEMENTATION_SPECIFIC_ERROR",
        0x87 => "NOT_AUTHORIZED",
        0x90 => "TOPIC_NAME_INVALID",
        0x91 => "PACKET_IDENTIFIER_IN_USE",
        0x92 => "PACKET_IDENTIFIER_NOT_FOUND",
        0x97 => "QUOTA_EXCEEDED",
        0x99 => "PAYLOAD_FORMAT_INVALID",
        _ => return None,
    })
}

/// The names of Kafka's common error codes (the protocol guide's table).
pub fn kafka_error_name(code: i16) -> Option<&'static str> {
    Some(match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        4 => "INVALID_FETCH_SIZE",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        10 => "MESSAGE_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        22 => "ILLEGAL_GENERATION",
        25 => "UNKNOWN_MEMBER_ID",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        42 => "INVALID_REQUEST",
        43 => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        46 => "DUPLICATE_SEQUENCE_NUMBER",
        47 => "INVALID_PRODUCER_EPOCH",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        87 => "INVALID_RECORD",
        100 => "UNKNOWN_TOPIC_ID",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_and_the_printer_say_the_operation_the_topic_and_the_error() {
        let mut exchange = MessagingExchange::new(MessagingSystem::Kafka, MessagingOperation::Send);
        assert_eq!(exchange.summary(), "send");
        exchange.destination = Some("orders".into());
        exchange.message_count = Some(3);
        exchange.error_code = Some(3);
        let exchange = exchange.named();
        assert_eq!(exchange.name, "send orders");
        assert_eq!(
            exchange.printer_text(),
            (
                "kafka \"send orders\"".into(),
                " messages=3 error=UNKNOWN_TOPIC_OR_PARTITION".into()
            )
        );
        let odd = MessagingExchange {
            error_code: Some(999),
            ..MessagingExchange::new(MessagingSystem::Kafka, MessagingOperation::Poll)
        };
        assert_eq!(odd.error_type().as_deref(), Some("999"));
    }
}
