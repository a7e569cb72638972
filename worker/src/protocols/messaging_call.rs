//! What the messaging decoders (Kafka, MQTT, AMQP, NATS) hand to the registry: one
//! operation of a client, before it becomes a span, and the span it becomes
//! (PRODUCER for what it sent, CONSUMER for what it received).

use std::net::SocketAddr;

use super::session::ConnectionInfo;
use crate::spans::{MessagingExchange, Protocol, Span, SpanOrigin};

/// One messaging operation seen from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingCall {
    pub exchange: MessagingExchange,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Part of the exchange was not captured: fields may be missing.
    pub partial: bool,
}

impl MessagingCall {
    /// The span of this operation on `conn`.
    pub fn into_span(self, conn: &ConnectionInfo) -> Span {
        let origin = SpanOrigin {
            kind: self.exchange.operation.span_kind(),
            pid: conn.pid,
            process_name: conn.process_name.clone(),
            local: SocketAddr::new(conn.tuple.local, conn.tuple.local_port),
            peer: SocketAddr::new(conn.tuple.peer, conn.tuple.peer_port),
            tls: conn.tls,
        };
        Span::new(
            origin,
            (self.start_ns, self.end_ns),
            self.partial,
            Protocol::Messaging(self.exchange),
        )
    }
}
