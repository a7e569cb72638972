//! [`DbSession`]: the database and cache decoders (PostgreSQL, MySQL/MariaDB,
//! Redis, memcached, MongoDB) in the protocol registry. One generic session wraps each
//! decoder: detection from the client's side of the connection, one CLIENT
//! span per operation, and the decoder's losses in the shared counters.
//!
//! The decoders read a connection as its client does (what it writes are
//! requests). A process on the server side of a database connection is not
//! decoded: a connection whose role is server, or whose peer sends what a
//! client would, is not claimed.

use zerotrace_shared::event::{ConnectionRole, Direction};

use super::counters::DecodeCounters;
use super::db::{DbConnection, DbDecoderStats, DbOperation, Detection};
use super::http_span::origin_of;
use super::memcached::MemcachedConnection;
use super::mongodb::MongoConnection;
use super::mysql::MysqlConnection;
use super::postgres::PostgresConnection;
use super::redis::RedisConnection;
use super::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};
use crate::spans::{Protocol, Span};

/// What the registry needs of a database decoder besides [`DbConnection`].
pub trait DbDecoder: DbConnection + std::fmt::Debug {
    /// The decoder's side-effect-free check of one direction's first bytes,
    /// the direction seen from the client.
    fn check(first_bytes: &[u8], direction: Direction) -> Detection;
    /// The state of a connection whose first bytes (in `first.direction`)
    /// were found to be this protocol's; `first.role` is still the kernel's.
    fn start(first: &FirstBytes<'_>) -> Self;
    /// What the decoder lost or refused so far (counts only grow).
    fn stats(&self) -> DbDecoderStats;
    /// The client asked for TLS in the protocol (SSLRequest): the TLS hooks'
    /// plaintext continues this decoder.
    fn continues_in_tls(&self) -> bool {
        false
    }
}

impl DbDecoder for PostgresConnection {
    fn check(first_bytes: &[u8], direction: Direction) -> Detection {
        super::postgres::check(first_bytes, direction)
    }
    /// Finds a StartupMessage or a mid-stream join by itself.
    fn start(_first: &FirstBytes<'_>) -> Self {
        Self::new()
    }
    fn stats(&self) -> DbDecoderStats {
        PostgresConnection::stats(self)
    }
    fn continues_in_tls(&self) -> bool {
        self.tls_accepted()
    }
}

impl DbDecoder for MysqlConnection {
    fn check(first_bytes: &[u8], direction: Direction) -> Detection {
        super::mysql::check(first_bytes, direction)
    }
    /// Finds the greeting or a mid-stream join by itself.
    fn start(_first: &FirstBytes<'_>) -> Self {
        Self::new()
    }
    fn stats(&self) -> DbDecoderStats {
        MysqlConnection::stats(self)
    }
    fn continues_in_tls(&self) -> bool {
        self.tls_requested()
    }
}

impl DbDecoder for RedisConnection {
    fn check(first_bytes: &[u8], direction: Direction) -> Detection {
        super::redis::check(first_bytes, direction)
    }
    /// From the start (database 0) only when the kernel saw the connect and
    /// the client speaks first; otherwise joined mid-stream (database unknown).
    fn start(first: &FirstBytes<'_>) -> Self {
        if first.role == ConnectionRole::Client && first.direction == Direction::Egress {
            Self::new()
        } else {
            Self::joined_mid_stream()
        }
    }
    fn stats(&self) -> DbDecoderStats {
        RedisConnection::stats(self)
    }
}

impl DbDecoder for MemcachedConnection {
    fn check(first_bytes: &[u8], direction: Direction) -> Detection {
        super::memcached::check(first_bytes, direction)
    }
    fn start(_first: &FirstBytes<'_>) -> Self {
        Self::new()
    }
    fn stats(&self) -> DbDecoderStats {
        MemcachedConnection::stats(self)
    }
}

impl DbDecoder for MongoConnection {
    fn check(first_bytes: &[u8], direction: Direction) -> Detection {
        super::mongodb::check(first_bytes, direction)
    }
    /// From the start when the client's first request is the first thing
    /// seen; otherwise each direction finds its framing at a message start.
    fn start(first: &FirstBytes<'_>) -> Self {
        if first.direction == Direction::Egress {
            Self::new()
        } else {
            Self::joined_mid_stream()
        }
    }
    fn stats(&self) -> DbDecoderStats {
        MongoConnection::stats(self)
    }
}

fn verdict(detection: Detection) -> Verdict {
    match detection {
        Detection::Yes => Verdict::Yes,
        Detection::No => Verdict::No,
        Detection::NeedMore => Verdict::NeedMore,
    }
}

/// A client-side decoder's `check` from the client's side of a connection:
/// a server-side connection is never claimed; when the kernel did not say
/// which side this is, bytes read that look like a client's request mean
/// the server's side.
pub fn client_side_check(
    first: &FirstBytes<'_>,
    check: impl Fn(&[u8], Direction) -> Detection,
) -> Verdict {
    let as_client = |direction| verdict(check(first.bytes, direction));
    match (first.role, first.direction) {
        (ConnectionRole::Server, _) => Verdict::No,
        (ConnectionRole::Client, direction) => as_client(direction),
        (ConnectionRole::Unknown, Direction::Egress) => as_client(Direction::Egress),
        (ConnectionRole::Unknown, Direction::Ingress) => {
            match check(first.bytes, Direction::Egress) {
                Detection::Yes => Verdict::No,
                Detection::No => as_client(Direction::Ingress),
                Detection::NeedMore => match as_client(Direction::Ingress) {
                    Verdict::No => Verdict::No,
                    Verdict::Yes | Verdict::NeedMore => Verdict::NeedMore,
                },
            }
        }
    }
}

/// Adds a decoder's losses to the shared counters: replies that answered no
/// request are unpaired responses, requests dropped past the queue's bound
/// are dropped requests, and each loss of framing (bytes it could not read)
/// a framing loss.
fn add_stats(stats: &DbDecoderStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_replies;
    counters.dropped_requests += stats.pending_dropped;
    counters.framing_lost += stats.resyncs;
}

/// One database connection of the client process, decoded by `D`.
#[derive(Debug)]
pub struct DbSession<D> {
    decoder: D,
}

impl<D: DbDecoder> DbSession<D> {
    fn emit(&self, conn: &ConnectionInfo, sink: &mut Sink<'_, Vec<DbOperation>>) {
        if sink.scratch.is_empty() {
            return;
        }
        let origin = origin_of(conn);
        sink.spans.extend(sink.scratch.drain(..).map(|op| {
            let (times, partial) = ((op.start_ns, op.end_ns), op.partial);
            Span::new(
                origin.clone(),
                times,
                partial,
                Protocol::Db(op.into_exchange()),
            )
        }));
    }
}

impl<D: DbDecoder> ProtocolSession for DbSession<D> {
    /// Operations completed by one segment, before they become spans.
    type Scratch = Vec<DbOperation>;
    type SwitchTo = std::convert::Infallible;

    /// The decoder's check, from the client's side ([`client_side_check`]).
    fn check(first: &FirstBytes<'_>) -> Verdict {
        client_side_check(first, D::check)
    }

    fn start(first: &FirstBytes<'_>, conn: &mut ConnectionInfo) -> Self {
        conn.learn_client_direction(Direction::Egress);
        Self {
            decoder: D::start(first),
        }
    }

    fn parse(
        &mut self,
        segment: DataSegment<'_>,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) -> ParseOutcome<Self::SwitchTo> {
        self.decoder.feed_with_tail(
            segment.direction,
            segment.captured,
            segment.missing,
            segment.tail,
            segment.ts_ns,
            sink.scratch,
        );
        self.emit(conn, sink);
        ParseOutcome::Parsed
    }

    /// Operations still waiting for their reply end partial at the close.
    fn finish(
        &mut self,
        ts_ns: u64,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) {
        self.decoder.finish(ts_ns, sink.scratch);
        self.emit(conn, sink);
        self.abandon(sink.counters);
    }

    fn abandon(&self, counters: &mut DecodeCounters) {
        add_stats(&self.decoder.stats(), counters);
    }

    fn continues_in_tls(&self) -> bool {
        self.decoder.continues_in_tls()
    }

    fn add_live_counts(&self, counters: &mut DecodeCounters) {
        add_stats(&self.decoder.stats(), counters);
    }
}
