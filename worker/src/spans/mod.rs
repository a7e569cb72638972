//! The span model: one exchange observed on one socket of one process. The
//! fields every protocol has (who, where, when, which trace) are written once
//! in [`Span`]; what only one protocol has is its arm of [`Protocol`].
//!
//! Adding a protocol adds an arm to [`Protocol`], a module here with its
//! exchange type (and how the trace printer shows it), and its semantic
//! conventions in `semconv/` (docs/architecture.md, "How to add a protocol").

pub mod db;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod messaging;

use std::net::SocketAddr;

pub use db::{DbExchange, DbSystem};
pub use grpc::{GrpcCall, GrpcExchange};
pub use http::{HttpExchange, HttpMethod, HttpText};
pub use ids::SpanIds;
pub use messaging::{MessagingExchange, MessagingOperation, MessagingSystem, NATS_REFUSED};

/// OpenTelemetry's span kinds, as far as a socket can tell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpanKind {
    /// The process answered the request (accepted socket).
    Server,
    /// The process sent the request (connected socket).
    Client,
    /// The process handed messages to a broker (a Kafka Produce).
    Producer,
    /// The process polled a broker for messages (a Kafka Fetch), or
    /// processed a message the broker delivered (see [`Span::is_delivery`]).
    Consumer,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Whether this side sent the request on the wire (client, producer,
    /// and consumer: a consumer's poll is its own request to the broker)
    /// rather than answered it.
    pub fn is_outgoing(self) -> bool {
        matches!(
            self,
            SpanKind::Client | SpanKind::Producer | SpanKind::Consumer
        )
    }
}

/// One exchange, with kernel timestamps (CLOCK_MONOTONIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub kind: SpanKind,
    pub pid: u32,
    /// The process's name (its main thread's), not the calling thread's.
    pub process_name: std::sync::Arc<str>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub start_monotonic_ns: u64,
    pub end_monotonic_ns: u64,
    /// Trace id, span id and parent, fixed once when the span is built.
    pub ids: SpanIds,
    /// Captured as plaintext from a TLS library.
    pub tls: bool,
    /// Part of the exchange was not captured (framing lost, stream reset):
    /// sizes are lower bounds.
    pub partial: bool,
    /// The threads that handled the exchange, for in-process nesting.
    pub threads: ExchangeThreads,
    /// What the protocol adds.
    pub protocol: Protocol,
}

/// The threads (kernel tids, 0 when not seen) that moved an exchange's
/// bytes, whatever its protocol: a client call made while serving a request
/// is made by the thread that read the request or the one that answers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeThreads {
    /// The thread that read (server, delivery) or wrote (client) the request's first bytes.
    pub request_first: u32,
    /// The thread that wrote (server; a delivery's acknowledgement) or read
    /// (client) the response's last bytes.
    pub response_last: u32,
}

impl ExchangeThreads {
    /// Whether `tid` is one of these threads (0, unknown, never is).
    pub fn includes(&self, tid: u32) -> bool {
        tid != 0 && (self.request_first == tid || self.response_last == tid)
    }
}

/// The per-protocol part of a span: one arm per decoded protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.x or HTTP/2 exchange that is not a gRPC call.
    Http(HttpExchange),
    /// A gRPC call, with the HTTP/2 exchange that carried it: the RPC
    /// conventions name and judge it and its metric is the RPC one.
    Grpc(GrpcExchange),
    /// A database or cache operation (PostgreSQL, MySQL/MariaDB, Redis,
    /// memcached), seen from the client.
    Db(DbExchange),
    /// A messaging operation (Kafka Produce or Fetch), seen from the client.
    Messaging(MessagingExchange),
}

/// Who and where a span happened: the connection's side of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanOrigin {
    pub kind: SpanKind,
    pub pid: u32,
    pub process_name: std::sync::Arc<str>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub tls: bool,
}

#[cfg(test)]
impl SpanOrigin {
    /// Process `app` (`pid`), at 127.0.0.1:8080, talking with `peer`: the
    /// origin unit tests give the spans they build.
    pub(crate) fn for_test(kind: SpanKind, pid: u32, peer: &str) -> Self {
        Self {
            kind,
            pid,
            process_name: "app".into(),
            local: "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: peer.parse().unwrap_or_else(|e| panic!("{peer}: {e}")),
            tls: false,
        }
    }
}

impl Span {
    /// The one constructor decoders use: ids are assigned here, from the
    /// trace context the request carried (if any), so every exporter sees
    /// the same ones and later stages (parent/child linking) can change them.
    #[inline]
    pub fn new(
        origin: SpanOrigin,
        (start_monotonic_ns, end_monotonic_ns): (u64, u64),
        partial: bool,
        protocol: Protocol,
    ) -> Self {
        let ids = SpanIds::assign(origin.kind, protocol.traceparent());
        Self {
            kind: origin.kind,
            pid: origin.pid,
            process_name: origin.process_name,
            local: origin.local,
            peer: origin.peer,
            start_monotonic_ns,
            end_monotonic_ns: end_monotonic_ns.max(start_monotonic_ns),
            ids,
            tls: origin.tls,
            partial,
            threads: ExchangeThreads::default(),
            protocol,
        }
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_monotonic_ns
            .saturating_sub(self.start_monotonic_ns)
    }

    /// The HTTP exchange of HTTP spans and of gRPC calls (routes apply to both).
    pub fn http(&self) -> Option<&HttpExchange> {
        match &self.protocol {
            Protocol::Http(http) => Some(http),
            Protocol::Grpc(grpc) => Some(&grpc.http),
            Protocol::Db(_) | Protocol::Messaging(_) => None,
        }
    }

    pub fn http_mut(&mut self) -> Option<&mut HttpExchange> {
        match &mut self.protocol {
            Protocol::Http(http) => Some(http),
            Protocol::Grpc(grpc) => Some(&mut grpc.http),
            Protocol::Db(_) | Protocol::Messaging(_) => None,
        }
    }

    /// What the live view groups spans by: the route, else the path (HTTP,
    /// gRPC); the span name of a database operation (`SELECT accounts`).
    pub fn operation(&self) -> &str {
        match &self.protocol {
            Protocol::Http(http) => http.route_or_path(),
            Protocol::Grpc(grpc) => grpc.http.route_or_path(),
            Protocol::Db(db) => &db.name,
            Protocol::Messaging(messaging) => &messaging.name,
        }
    }
}

impl Protocol {
    /// The W3C `traceparent` the request carried.
    pub fn traceparent(&self) -> Option<&str> {
        match self {
            Protocol::Http(http) => http.traceparent.as_deref(),
            Protocol::Grpc(grpc) => grpc.http.traceparent.as_deref(),
            // A NATS message's headers or an AMQP message's headers table may
            // carry one (its publisher's SDK put it there); Kafka record
            // headers and MQTT 5 user properties may too, but they are not
            // read. Database protocols carry none on the wire.
            Protocol::Messaging(messaging) => messaging.traceparent.as_deref(),
            Protocol::Db(_) => None,
        }
    }
}

impl Span {
    /// Whether this is a message the broker pushed to the process, from its
    /// read to the process's acknowledgement or reply (a `process` span of
    /// MQTT, AMQP or NATS): the exchange starts with bytes read, as a
    /// server's does, and the calls the process makes while it is open may
    /// be made for it.
    pub fn is_delivery(&self) -> bool {
        matches!(
            &self.protocol,
            Protocol::Messaging(m) if m.operation == MessagingOperation::Process
        )
    }

    /// The reply subject's key of a messaging request or of a delivery to
    /// be answered (NATS): a request and its delivery elsewhere share it.
    pub fn reply_key(&self) -> Option<u64> {
        match &self.protocol {
            Protocol::Messaging(m) => m.reply_key,
            _ => None,
        }
    }

    /// Whether the exchange starts with the bytes this side read (a
    /// server's request, a delivery) rather than with bytes it wrote.
    pub fn starts_with_a_read(&self) -> bool {
        !self.kind.is_outgoing() || self.is_delivery()
    }

    /// The trace printer's protocol text: what goes before the duration
    /// (`"GET /x HTTP/1.1" 200 7B`) and after it (` req=3B grpc=NOT_FOUND`).
    pub fn printer_text(&self) -> (String, String) {
        match &self.protocol {
            Protocol::Http(http) => http.printer_text(),
            Protocol::Grpc(grpc) => grpc.printer_text(),
            Protocol::Db(db) => db.printer_text(),
            Protocol::Messaging(messaging) => messaging.printer_text(),
        }
    }

    /// The trace printer's JSON fields of the protocol part.
    pub fn printer_json(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        match &self.protocol {
            Protocol::Http(http) => http.printer_json(self.tls, out),
            Protocol::Grpc(grpc) => grpc.printer_json(self.tls, out),
            Protocol::Db(db) => db.printer_json(out),
            Protocol::Messaging(messaging) => messaging.printer_json(out),
        }
    }
}
