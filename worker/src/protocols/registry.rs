//! The one list of protocols the agent decodes, in the order detection asks
//! them, and the per-connection state of whichever one a connection speaks.
//!
//! The connection tracker asks [`detect`] about a connection's first bytes
//! until it answers; the winner's [`ProtocolState`] then parses everything
//! else of the connection. Adding a protocol is one module implementing
//! [`ProtocolSession`] and one line in the `protocol_registry!` list below.

use super::amqp::AmqpConnection;
use super::counters::DecodeCounters;
use super::db_session::DbSession;
use super::http1::Http1Session;
use super::http2::Http2Session;
use super::kafka::KafkaConnection;
use super::memcached::MemcachedConnection;
use super::messaging_session::MessagingSession;
use super::mongodb::MongoConnection;
use super::mqtt::MqttConnection;
use super::mysql::MysqlConnection;
use super::nats::NatsConnection;
use super::postgres::PostgresConnection;
use super::redis::RedisConnection;
use super::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};

/// What the registry says of a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Found(Protocol),
    /// A protocol asked earlier in the order may still claim them: hold
    /// them and ask again with more.
    NeedMore,
    /// No protocol claims them.
    Unknown,
}

/// The protocols detection may pick (the configuration can turn some off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolSelection(u32);

impl ProtocolSelection {
    /// Every protocol of the registry.
    pub const ALL: Self = Self(u32::MAX);

    fn bit(protocol: Protocol) -> u32 {
        1 << (protocol as u32)
    }

    pub fn contains(self, protocol: Protocol) -> bool {
        self.0 & Self::bit(protocol) != 0
    }

    /// The same selection without `protocol`.
    pub fn without(self, protocol: Protocol) -> Self {
        Self(self.0 & !Self::bit(protocol))
    }
}

impl Default for ProtocolSelection {
    fn default() -> Self {
        Self::ALL
    }
}

/// Asks every selected protocol in [`Protocol::DETECTION_ORDER`] about
/// `first`. The first yes wins unless an earlier protocol needs more bytes to
/// decide; when `more_may_come` is false (a gap follows, or nothing more is
/// held), "need more" counts as no.
pub fn detect(
    first: &FirstBytes<'_>,
    more_may_come: bool,
    selection: ProtocolSelection,
) -> Detection {
    let mut waiting = false;
    for protocol in Protocol::DETECTION_ORDER {
        if !selection.contains(*protocol) {
            continue;
        }
        match protocol.check(first) {
            Verdict::Yes if !waiting => return Detection::Found(*protocol),
            Verdict::NeedMore if more_may_come => waiting = true,
            Verdict::Yes | Verdict::NeedMore | Verdict::No => {}
        }
    }
    if waiting {
        Detection::NeedMore
    } else {
        Detection::Unknown
    }
}

/// Builds, from one list of `Arm(SessionType) scratch field_name`:
/// [`Protocol`] (the list, in detection order), [`ProtocolState`] (one arm
/// per protocol, boxed so that a connection holds one pointer whatever the
/// size of its protocol's state) and [`Scratch`] (each protocol's shared buffers), and dispatches
/// [`ProtocolSession`]'s calls to the arm.
macro_rules! protocol_registry {
    ($($(#[$doc:meta])* $arm:ident($session:ty) scratch $field:ident;)+) => {
        /// Every protocol the agent decodes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Protocol {
            $($(#[$doc])* $arm,)+
        }

        impl Protocol {
            /// The order detection asks in (the order of the list).
            pub const DETECTION_ORDER: &'static [Protocol] = &[$(Protocol::$arm,)+];

            /// Whether `first` starts a connection of this protocol.
            pub fn check(self, first: &FirstBytes<'_>) -> Verdict {
                match self {
                    $(Protocol::$arm => <$session as ProtocolSession>::check(first),)+
                }
            }

            /// The state of a connection found to speak this protocol.
            pub fn start(self, first: &FirstBytes<'_>, conn: &mut ConnectionInfo) -> ProtocolState {
                match self {
                    $(Protocol::$arm => {
                        ProtocolState::$arm(Box::new(<$session as ProtocolSession>::start(first, conn)))
                    })+
                }
            }
        }

        /// The per-connection state of the protocol a connection speaks.
        pub enum ProtocolState {
            $($arm(Box<$session>),)+
        }

        /// Buffers every protocol reuses across connections.
        #[derive(Default)]
        pub struct Scratch {
            $($field: <$session as ProtocolSession>::Scratch,)+
        }

        $(impl From<$session> for ProtocolState {
            fn from(state: $session) -> Self {
                ProtocolState::$arm(Box::new(state))
            }
        })+

        impl ProtocolState {
            pub fn protocol(&self) -> Protocol {
                match self {
                    $(ProtocolState::$arm(_) => Protocol::$arm,)+
                }
            }

            fn parse_once(
                &mut self,
                segment: DataSegment<'_>,
                conn: &mut ConnectionInfo,
                out: &mut Outputs<'_>,
            ) -> ParseOutcome<ProtocolState> {
                match self {
                    $(ProtocolState::$arm(state) => {
                        let mut sink = Sink { spans: out.spans, counters: out.counters, scratch: &mut out.scratch.$field, awaited_replies: out.awaited_replies };
                        match state.parse(segment, conn, &mut sink) {
                            ParseOutcome::Parsed => ParseOutcome::Parsed,
                            ParseOutcome::Switch { to, offset } => ParseOutcome::Switch { to: to.into(), offset },
                        }
                    })+
                }
            }

            /// The connection closed at `ts_ns`.
            pub fn finish(&mut self, ts_ns: u64, conn: &mut ConnectionInfo, out: &mut Outputs<'_>) {
                match self {
                    $(ProtocolState::$arm(state) => {
                        let mut sink = Sink { spans: out.spans, counters: out.counters, scratch: &mut out.scratch.$field, awaited_replies: out.awaited_replies };
                        state.finish(ts_ns, conn, &mut sink);
                    })+
                }
            }

            /// The connection is forgotten, or taken over by another protocol.
            pub fn abandon(&self, counters: &mut DecodeCounters) {
                match self {
                    $(ProtocolState::$arm(state) => state.abandon(counters),)+
                }
            }

            /// When the oldest request not yet answered on this connection began.
            pub fn oldest_unanswered_request_ns(&self) -> Option<u64> {
                match self {
                    $(ProtocolState::$arm(state) => state.oldest_unanswered_request_ns(),)+
                }
            }

            /// When the oldest delivery not yet acknowledged on this connection was read.
            pub fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
                match self {
                    $(ProtocolState::$arm(state) => state.oldest_unacknowledged_delivery_ns(),)+
                }
            }

            /// Whether the TLS hooks' plaintext continues this state.
            pub fn continues_in_tls(&self) -> bool {
                match self {
                    $(ProtocolState::$arm(state) => state.continues_in_tls(),)+
                }
            }

            /// Adds what this open connection counted and did not hand over yet.
            pub fn add_live_counts(&self, counters: &mut DecodeCounters) {
                match self {
                    $(ProtocolState::$arm(state) => state.add_live_counts(counters),)+
                }
            }
        }
    };
}

protocol_registry! {
    /// HTTP/2 with prior knowledge: the client preface. Asked before
    /// HTTP/1 because the preface starts `PRI * HTTP/2.0`, which HTTP/1
    /// takes for the start of a request line until its version is read
    /// (h2c by Upgrade starts as HTTP/1 and switches mid-connection;
    /// gRPC is HTTP/2 streams).
    Http2(Http2Session) scratch http2;
    /// HTTP/1.x: a request or status line.
    Http1(Http1Session) scratch http1;
    /// PostgreSQL (protocol v3): a StartupMessage, SSLRequest or
    /// CancelRequest, or mid-stream a `Q`/`P` message or backend messages up
    /// to a ReadyForQuery. Binary length-prefixed messages: no text protocol
    /// passes, so its place after HTTP only saves work.
    Postgres(DbSession<PostgresConnection>) scratch postgres;
    /// MySQL and MariaDB: the server's greeting (protocol 10), a
    /// HandshakeResponse, or mid-stream a COM_QUERY packet.
    MySql(DbSession<MysqlConnection>) scratch mysql;
    /// NATS: the server's `INFO {` greeting or the client's `CONNECT {`
    /// (HTTP's CONNECT has no brace), or mid-stream whole operations with a
    /// message or subscription. Before Redis, whose inline `PING` a NATS
    /// client's write may start with (`PING\r\nPUB …`): NATS never says
    /// yes to what a Redis or memcached client writes or reads.
    Nats(MessagingSession<NatsConnection>) scratch nats;
    /// Redis: a RESP array of bulk strings, an upper-case inline command, or
    /// mid-stream a reply. Before memcached, whose text commands are the same
    /// words in lower case (the two checks never both say yes).
    Redis(DbSession<RedisConnection>) scratch redis;
    /// memcached's text protocol: a lower-case command line, or mid-stream a
    /// reply only memcached sends.
    Memcached(DbSession<MemcachedConnection>) scratch memcached;
    /// MongoDB: a request (OP_MSG, OP_QUERY, OP_COMPRESSED) with a
    /// little-endian length and well-formed content, or mid-stream a reply.
    /// After the text protocols and the big-endian framings it cannot be
    /// taken for; before Kafka, whose request a MongoDB message never reads as.
    Mongo(DbSession<MongoConnection>) scratch mongo;
    /// MQTT: a client's CONNECT (type 1, then `MQTT` or `MQIsdp` and a
    /// level). A CONNECT's remaining length never makes a MongoDB length
    /// MongoDB accepts, nor a Kafka request.
    Mqtt(MessagingSession<MqttConnection>) scratch mqtt;
    /// AMQP 0-9-1 (RabbitMQ): the client's protocol header `AMQP\0\0\x09\x01`.
    Amqp(MessagingSession<AmqpConnection>) scratch amqp;
    /// Kafka: a client's request (a size prefix, an API key and version in
    /// Kafka's ranges, a client id). Last: a PostgreSQL StartupMessage also
    /// reads as a Metadata v0 request with a printable client id.
    Kafka(MessagingSession<KafkaConnection>) scratch kafka;
}

/// A protocol that never switches has nothing to become.
impl From<std::convert::Infallible> for ProtocolState {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Where the registry's states put what they make.
pub struct Outputs<'a> {
    pub spans: &'a mut Vec<crate::spans::Span>,
    pub counters: &'a mut DecodeCounters,
    pub scratch: &'a mut Scratch,
    /// See [`Sink::awaited_replies`].
    pub awaited_replies: &'a mut Vec<u64>,
}

/// Protocol switches followed within one segment (HTTP/1 → HTTP/2 is one);
/// past this the rest of the segment is not parsed, so that two protocols
/// handing a segment back and forth cannot loop.
const MAX_SWITCHES: usize = 4;

impl ProtocolState {
    /// Parses one segment, following the connection into another protocol
    /// when it switches (the old state's leftovers are counted).
    pub fn parse(
        &mut self,
        segment: DataSegment<'_>,
        conn: &mut ConnectionInfo,
        out: &mut Outputs<'_>,
    ) {
        let mut segment = segment;
        for _ in 0..MAX_SWITCHES {
            match self.parse_once(segment, conn, out) {
                ParseOutcome::Parsed => return,
                ParseOutcome::Switch { to, offset } => {
                    std::mem::replace(self, to).abandon(out.counters);
                    segment = segment.from_offset(offset);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerotrace_shared::event::{ConnectionRole, Direction};

    fn first(bytes: &[u8]) -> FirstBytes<'_> {
        FirstBytes {
            bytes,
            direction: Direction::Ingress,
            role: ConnectionRole::Unknown,
            local_port: 0,
            peer_port: 0,
        }
    }

    #[test]
    fn every_protocol_is_asked_once_in_the_written_order() {
        assert_eq!(
            Protocol::DETECTION_ORDER,
            &[
                Protocol::Http2,
                Protocol::Http1,
                Protocol::Postgres,
                Protocol::MySql,
                Protocol::Nats,
                Protocol::Redis,
                Protocol::Memcached,
                Protocol::Mongo,
                Protocol::Mqtt,
                Protocol::Amqp,
                Protocol::Kafka
            ]
        );
    }

    #[test]
    fn the_http2_preface_wins_over_the_request_line_it_looks_like() {
        let preface = crate::protocols::http2::PREFACE;
        assert_eq!(
            detect(&first(preface), true, ProtocolSelection::ALL),
            Detection::Found(Protocol::Http2)
        );
        // `PRI * HTTP/` could still start an HTTP/1 request line: HTTP/2
        // asks for more, and its answer comes first.
        let start = &preface[..11];
        assert_eq!(Protocol::Http1.check(&first(start)), Verdict::Yes);
        assert_eq!(
            detect(&first(start), true, ProtocolSelection::ALL),
            Detection::NeedMore
        );
        // When no more can come (a gap follows), the next yes is taken.
        assert_eq!(
            detect(&first(start), false, ProtocolSelection::ALL),
            Detection::Found(Protocol::Http1)
        );
    }

    #[test]
    fn http1_start_lines_are_found_and_other_bytes_are_not() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\r\nPOST /x HTTP/1.0\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"GET /long-target-cut-by-the-capture",
        ] {
            assert_eq!(
                detect(&first(bytes), true, ProtocolSelection::ALL),
                Detection::Found(Protocol::Http1),
                "{bytes:?}"
            );
        }
        assert_eq!(
            detect(&first(b"GE"), true, ProtocolSelection::ALL),
            Detection::NeedMore
        );
        assert_eq!(
            detect(&first(b"GE"), false, ProtocolSelection::ALL),
            Detection::Unknown
        );
        assert_eq!(
            detect(&first(b"\x00\xffnot http"), true, ProtocolSelection::ALL),
            Detection::Unknown
        );
        assert_eq!(
            detect(
                &first(b"*1\r\n$4\r\nPING\r\n"),
                true,
                ProtocolSelection::ALL
            ),
            Detection::Unknown
        );
    }
}
