//! What every protocol implements to sit in the registry, and what it is
//! given and gives back: the first bytes to judge, the connection as spans
//! name it, one segment to parse, the outcome of a parse, and the counters of
//! what could not be followed.

use zerotrace_shared::event::{ConnTuple, ConnectionRole, Direction};

use super::counters::DecodeCounters;
use crate::spans::Span;

/// A protocol's answer to "are these a connection's first bytes of mine?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    /// They could be, once more bytes come (say, half of a preface).
    NeedMore,
}

/// The first bytes of one direction of a connection, as detection sees them.
#[derive(Debug, Clone, Copy)]
pub struct FirstBytes<'a> {
    /// Captured bytes from the direction's first, without gaps.
    pub bytes: &'a [u8],
    pub direction: Direction,
    /// From accept/connect when the kernel saw it, else unknown.
    pub role: ConnectionRole,
    /// Hints only: a protocol must never need them to say yes.
    pub local_port: u16,
    pub peer_port: u16,
}

impl<'a> FirstBytes<'a> {
    /// `bytes`, the first of `direction` on `conn`.
    pub fn of(conn: &ConnectionInfo, direction: Direction, bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            direction,
            role: conn.role,
            local_port: conn.tuple.local_port,
            peer_port: conn.tuple.peer_port,
        }
    }
}

/// The connection as spans name it: whose it is, where its ends are, and
/// which end this process is (learnt by the protocols where the kernel did
/// not say).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub pid: u32,
    pub process_name: std::sync::Arc<str>,
    pub role: ConnectionRole,
    pub tuple: ConnTuple,
    /// Plaintext comes from the TLS library hooks; socket bytes are records.
    pub tls: bool,
}

impl ConnectionInfo {
    /// The client sends in `client`: when the role is not known yet, it is
    /// the server if that is what it reads, the client if it is what it writes.
    pub fn learn_client_direction(&mut self, client: Direction) {
        if self.role == ConnectionRole::Unknown {
            self.role = match client {
                Direction::Ingress => ConnectionRole::Server,
                Direction::Egress => ConnectionRole::Client,
            };
        }
    }

    /// The direction requests travel, as far as known (ingress for a server).
    pub fn request_direction(&self) -> Direction {
        match self.role {
            ConnectionRole::Client => Direction::Egress,
            _ => Direction::Ingress,
        }
    }
}

/// One segment of one direction: the captured bytes, then `missing` bytes
/// that moved uncaptured, of which the last `tail.len()` are known when the
/// kernel copied the segment's end apart (a protocol that reads no tail
/// takes them as missing).
#[derive(Debug, Clone, Copy)]
pub struct DataSegment<'a> {
    pub direction: Direction,
    pub captured: &'a [u8],
    pub missing: u64,
    pub tail: &'a [u8],
    pub ts_ns: u64,
}

impl<'a> DataSegment<'a> {
    /// The same segment from `offset` of its captured bytes on.
    pub fn from_offset(self, offset: usize) -> Self {
        Self {
            captured: self.captured.get(offset..).unwrap_or_default(),
            ..self
        }
    }
}

/// What parsing one segment came to; `S` is the state of the protocol the
/// connection may switch to.
pub enum ParseOutcome<S> {
    /// The segment was taken (spans of what it completed were made).
    Parsed,
    /// From `offset` of the segment on the connection speaks another
    /// protocol, whose state `to` replaces this one (an HTTP/1 Upgrade to
    /// h2c); the rest of the segment goes to it.
    Switch { to: S, offset: usize },
}

/// Where a protocol's state puts what it makes: spans, counters, and the
/// scratch buffers every connection of the tracker shares.
pub struct Sink<'a, S> {
    pub spans: &'a mut Vec<Span>,
    pub counters: &'a mut DecodeCounters,
    pub scratch: &'a mut S,
    /// Reply keys of the requests written (a NATS request's inbox): a
    /// delivery elsewhere on this host that names one is that request's
    /// (trace linking holds it for the request's span).
    pub awaited_replies: &'a mut Vec<u64>,
}

/// A protocol in the registry: a side-effect-free check of a connection's
/// first bytes, and the per-connection state that parses what follows and
/// pairs requests with responses into spans.
pub trait ProtocolSession: Sized {
    /// Buffers reused across connections (say, messages parsed from one
    /// segment before they are paired), so that idle connections hold none.
    type Scratch: Default;

    /// The state of the protocol a connection may switch to from this one
    /// ([`std::convert::Infallible`] when it never does).
    type SwitchTo;

    /// Whether `first` starts a connection of this protocol. Looks only.
    fn check(first: &FirstBytes<'_>) -> Verdict;

    /// The state of a connection whose first bytes `first` were found to be
    /// this protocol's (they are then parsed, from the start, with [`Self::parse`]).
    fn start(first: &FirstBytes<'_>, conn: &mut ConnectionInfo) -> Self;

    /// Parses one segment; spans of the exchanges it completes go to `sink`.
    fn parse(
        &mut self,
        segment: DataSegment<'_>,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) -> ParseOutcome<Self::SwitchTo>;

    /// The connection closed at `ts_ns`: what waited only for the close is
    /// complete, and what cannot be completed is counted.
    fn finish(&mut self, ts_ns: u64, conn: &mut ConnectionInfo, sink: &mut Sink<'_, Self::Scratch>);

    /// The connection is forgotten without a close (evicted), or another
    /// protocol takes it over: counts what is left undone, makes no span.
    fn abandon(&self, counters: &mut DecodeCounters);

    /// Adds what this open connection has counted so far and not yet handed
    /// to the counters (read live, so that the counters need no callback per
    /// segment).
    fn add_live_counts(&self, counters: &mut DecodeCounters);

    /// When the oldest request this connection carries and has not yet
    /// made a span of began (its first bytes), for trace linking: a client
    /// call the serving process makes meanwhile may be that request's child.
    /// None (the default) says the protocol serves nothing that makes calls.
    fn oldest_unanswered_request_ns(&self) -> Option<u64> {
        None
    }

    /// When the oldest message the broker delivered on this connection and
    /// the client has not yet acknowledged (or answered) was read, for trace
    /// linking: a call the client makes meanwhile may be made for it. None
    /// (the default): the protocol delivers nothing.
    fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
        None
    }

    /// Whether the connection asked for TLS in its own protocol (a
    /// PostgreSQL or MySQL SSLRequest) before the TLS hooks' plaintext began:
    /// that plaintext then continues this state, which knows what was said
    /// in clear (MySQL's greeting names the server). False (the default):
    /// the plaintext starts the connection afresh, detected anew.
    fn continues_in_tls(&self) -> bool {
        false
    }
}
