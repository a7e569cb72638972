//! Connection tracking: per-socket byte streams in both directions. The
//! protocol registry is asked which protocol a connection speaks from its
//! first bytes (either direction); that protocol's state then parses and
//! pairs the rest into spans. TLS records on the socket are skipped (the
//! plaintext comes from the TLS library hooks). Memory is bounded:
//! connections are forgotten on close, on process exit, after an idle
//! timeout, and beyond a cap.

mod in_flight;
mod threads;
mod tls_records;
mod undecided;

use std::sync::Arc;

use zerotrace_shared::event::{ConnTuple, ConnectionRole, Direction};

use crate::hashing::FastMap;
use crate::protocols::counters::{DecodeCounters, Http2Stats};
use crate::protocols::registry::{Outputs, ProtocolSelection, ProtocolState, Scratch};
use crate::protocols::session::{ConnectionInfo, DataSegment, FirstBytes};
use crate::spans::Span;
use in_flight::InFlightRequests;
use threads::ThreadRuns;
use tls_records::is_tls_record;
use undecided::{FirstBytesDecision, Undecided};

/// The span field for what the capture did not show (kept here for the
/// exporters that name it by this path).
pub use crate::protocols::http_span::UNKNOWN_REQUEST_FIELD;

/// Addresses of a connection whose first event was lost (or predates a worker restart).
const UNKNOWN_TUPLE: ConnTuple = ConnTuple {
    local: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    local_port: 0,
    peer: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    peer_port: 0,
};

/// Connections tracked at once; the least recently active is dropped beyond it.
const MAX_CONNECTIONS: usize = 65_536;
/// A connection silent this long is forgotten (nanoseconds).
const IDLE_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

/// What the tracker and the protocols could not follow, as the self-metrics read it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrackerCounters {
    pub garbage_segments: u64,
    pub unpaired_responses: u64,
    pub dropped_requests: u64,
    pub evicted_connections: u64,
    /// Socket bytes of TLS connections (records, not HTTP): skipped.
    pub encrypted_segments: u64,
    /// HTTP/1 requests whose connection closed (or was forgotten) before a
    /// response to them was seen.
    pub unanswered_requests: u64,
    /// Times a database or Kafka connection lost its message boundaries.
    pub framing_lost: u64,
    /// What HTTP/2 connections could not follow (summed over connections).
    pub http2: Http2Stats,
}

struct Connection {
    info: ConnectionInfo,
    last_seen_ns: u64,
    /// The protocol the registry found, once it did.
    state: Option<ProtocolState>,
    /// First segments held while the registry could not decide.
    undecided: Undecided,
    /// The socket's first bytes were TLS records, and no plaintext came (yet).
    encrypted: bool,
    /// Directions that carried data already (bit 0: ingress, bit 1: egress).
    directions_seen: u8,
    /// Which threads moved the latest bytes, to stamp spans with.
    threads: ThreadRuns,
    /// Start of the oldest request this server connection has not answered
    /// (kept while its process's unanswered requests are followed).
    in_flight_since: Option<u64>,
    /// Its process's unanswered requests are followed (see [`InFlightRequests`]).
    in_flight_tracked: bool,
}

impl Connection {
    fn new(
        pid: u32,
        process_name: &Arc<str>,
        role: ConnectionRole,
        tuple: ConnTuple,
        ts: u64,
        in_flight_tracked: bool,
    ) -> Self {
        Self {
            info: ConnectionInfo {
                pid,
                process_name: Arc::clone(process_name),
                role,
                tuple,
                tls: false,
            },
            last_seen_ns: ts,
            state: None,
            undecided: Undecided::default(),
            encrypted: false,
            directions_seen: 0,
            threads: ThreadRuns::default(),
            in_flight_since: None,
            in_flight_tracked,
        }
    }

    /// The start of the oldest request this connection serves and has not
    /// answered yet; on a client connection, of the oldest message a broker
    /// delivered and the client has not acknowledged yet.
    fn unanswered_since(&self) -> Option<u64> {
        let state = self.state.as_ref()?;
        if self.info.role == ConnectionRole::Server {
            state.oldest_unanswered_request_ns()
        } else {
            state.oldest_unacknowledged_delivery_ns()
        }
    }

    /// The TLS library hooks speak for this connection from now on: what the
    /// socket bytes said (records, perhaps a partial parse) is dropped.
    fn switch_to_plaintext(&mut self, counters: &mut DecodeCounters) {
        self.info.tls = true;
        self.encrypted = false;
        if self.state.as_ref().is_some_and(|s| s.continues_in_tls()) {
            // Upgraded in band (an SSLRequest): what was said in clear stands.
            return;
        }
        if let Some(state) = self.state.take() {
            state.add_live_counts(counters);
        }
        self.undecided = Undecided::default();
        self.directions_seen = 0;
    }

    /// Whether `direction` carries its first bytes now (and remembers it).
    fn first_bytes(&mut self, direction: Direction) -> bool {
        let bit = match direction {
            Direction::Ingress => 1,
            Direction::Egress => 2,
        };
        let first = self.directions_seen & bit == 0;
        self.directions_seen |= bit;
        first
    }

    /// Forgotten without a close: counts what it leaves undone.
    fn abandon(&self, counters: &mut DecodeCounters) {
        if let Some(state) = &self.state {
            state.abandon(counters);
        }
        counters.garbage_segments += self.undecided.unclaimed_directions();
    }
}

/// One data segment of a connection, as the kernel reported it.
pub struct Segment<'a> {
    pub sock_id: u64,
    pub pid: u32,
    /// Shared by the process's connections: a new one costs no allocation.
    pub process_name: &'a Arc<str>,
    pub role: ConnectionRole,
    pub direction: Direction,
    /// Present on the first segment of a socket only.
    pub tuple: Option<ConnTuple>,
    pub ts_ns: u64,
    /// The thread that made the call.
    pub tid: u32,
    pub payload: &'a [u8],
    pub total_bytes: u64,
    /// Plaintext from a TLS library hook rather than the socket's bytes.
    pub tls: bool,
    /// The segment's last bytes, when the kernel copied them apart from
    /// `payload` (they are among the `total_bytes` it does not hold).
    pub tail: &'a [u8],
}

/// A socket the kernel saw accepted or connected.
pub struct OpenedConnection<'a> {
    pub sock_id: u64,
    pub pid: u32,
    /// Shared by the process's connections: a new one costs no allocation.
    pub process_name: &'a Arc<str>,
    pub role: ConnectionRole,
    pub tuple: ConnTuple,
    pub ts_ns: u64,
}

/// Every tracked connection, by socket id, with what it is known to speak.
#[derive(Default)]
pub struct ConnectionTracker {
    connections: FastMap<u64, Connection>,
    /// What the protocols could not follow, from connections already gone
    /// (open ones add theirs when the counters are read).
    decode: DecodeCounters,
    evicted_connections: u64,
    encrypted_segments: u64,
    scratch: Scratch,
    /// The protocols connections may be found to speak.
    protocols: ProtocolSelection,
    in_flight: InFlightRequests,
    /// Reply keys of the requests written since they were last taken
    /// ([`Self::take_awaited_replies`]; the sessions that add them keep
    /// them bounded).
    awaited_replies: Vec<u64>,
}

impl ConnectionTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker that recognises only the `protocols` selected (the
    /// configuration's `instrumentations`); other bytes count as garbage.
    pub fn with_protocols(protocols: ProtocolSelection) -> Self {
        Self {
            protocols,
            ..Self::default()
        }
    }

    pub fn counters(&self) -> TrackerCounters {
        let mut decode = self.decode.clone();
        for state in self.connections.values().filter_map(|c| c.state.as_ref()) {
            state.add_live_counts(&mut decode);
        }
        TrackerCounters {
            garbage_segments: decode.garbage_segments,
            unpaired_responses: decode.unpaired_responses,
            dropped_requests: decode.dropped_requests,
            evicted_connections: self.evicted_connections,
            encrypted_segments: self.encrypted_segments,
            unanswered_requests: decode.unanswered_requests,
            framing_lost: decode.framing_lost,
            http2: decode.http2,
        }
    }

    /// The reply keys of the messaging requests decoded since the last call
    /// (a NATS request's inbox, an AMQP or MQTT 5 request's correlation):
    /// trace linking holds a delivery naming one for the request's span.
    pub fn take_awaited_replies(&mut self) -> std::vec::Drain<'_, u64> {
        self.awaited_replies.drain(..)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// When the oldest server request `pid` has read and not yet answered
    /// was read: a client call of `pid` made after it may be its child.
    pub fn oldest_unanswered_request_ns(&mut self, pid: u32) -> Option<u64> {
        self.unanswered_requests(pid)
            .into_iter()
            .map(|(start, _)| start)
            .min()
    }

    /// The server requests `pid` has read and not yet answered (each
    /// connection's oldest): when each was read, and by which thread (0: unknown).
    /// The first time a process is asked about, its requests are followed
    /// from then on (see [`InFlightRequests`]).
    pub fn unanswered_requests(&mut self, pid: u32) -> Vec<(u64, u32)> {
        if !self.in_flight.tracks(pid) {
            self.track_in_flight(pid);
        }
        self.in_flight.of(pid)
    }

    /// From now on, `pid`'s unanswered requests are kept as they come and
    /// go, starting with those its connections hold now.
    fn track_in_flight(&mut self, pid: u32) {
        self.in_flight.track(pid);
        for (sock_id, conn) in self.connections.iter_mut() {
            if conn.info.pid != pid {
                continue;
            }
            conn.in_flight_tracked = true;
            let now = conn.unanswered_since();
            let threads = &conn.threads;
            self.in_flight.update(pid, *sock_id, None, now, |start| {
                threads.thread_at(Direction::Ingress, start)
            });
            conn.in_flight_since = now;
        }
    }

    /// Server connections with a request in flight, all processes together.
    pub fn unanswered_connection_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Forgets `conn` (socket `sock_id`) as a connection with a request in flight.
    fn forget_in_flight(&mut self, sock_id: u64, conn: &Connection) {
        self.in_flight
            .update(conn.info.pid, sock_id, conn.in_flight_since, None, |_| 0);
    }

    /// The kernel saw the socket accepted or connected.
    pub fn on_connection(&mut self, opened: OpenedConnection<'_>, spans: &mut Vec<Span>) {
        // A reused socket address is a new connection.
        self.close(opened.sock_id, opened.ts_ns, spans);
        self.make_room();
        self.connections.insert(
            opened.sock_id,
            Connection::new(
                opened.pid,
                opened.process_name,
                opened.role,
                opened.tuple,
                opened.ts_ns,
                self.in_flight.tracks(opened.pid),
            ),
        );
    }

    fn make_room(&mut self) {
        if self.connections.len() < MAX_CONNECTIONS {
            return;
        }
        let oldest = self
            .connections
            .iter()
            .min_by_key(|(_, c)| c.last_seen_ns)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            if let Some(conn) = self.connections.remove(&id) {
                conn.abandon(&mut self.decode);
                self.forget_in_flight(id, &conn);
            }
            self.evicted_connections += 1;
        }
    }

    pub fn on_data(&mut self, segment: Segment<'_>, spans: &mut Vec<Span>) {
        // One lookup for a known connection (nearly every segment).
        let conn = match self.connections.get_mut(&segment.sock_id) {
            Some(conn) => conn,
            None => {
                self.make_room();
                let tracked = self.in_flight.tracks(segment.pid);
                self.connections.entry(segment.sock_id).or_insert_with(|| {
                    Connection::new(
                        segment.pid,
                        segment.process_name,
                        segment.role,
                        segment.tuple.unwrap_or(UNKNOWN_TUPLE),
                        segment.ts_ns,
                        tracked,
                    )
                })
            }
        };
        if conn.info.role == ConnectionRole::Unknown {
            conn.info.role = segment.role;
        }
        if let Some(tuple) = segment.tuple {
            conn.info.tuple = tuple;
        }
        conn.last_seen_ns = segment.ts_ns;
        conn.threads
            .note(segment.direction, segment.tid, segment.ts_ns);
        if segment.tls {
            if !conn.info.tls {
                conn.switch_to_plaintext(&mut self.decode);
            }
        } else if conn.info.tls || conn.encrypted {
            self.encrypted_segments += 1;
            return;
        } else if conn
            .state
            .as_ref()
            .is_some_and(ProtocolState::continues_in_tls)
        {
            // Asked for in band (an SSLRequest): every socket byte from here
            // on is TLS, records or their pieces; the hooks give the plaintext.
            conn.encrypted = true;
            self.encrypted_segments += 1;
            return;
        }
        let first_bytes = conn.first_bytes(segment.direction);
        if !segment.tls && first_bytes && is_tls_record(segment.payload) {
            // A TLS connection whose library is not hooked (or not yet):
            // its records are no protocol we decode.
            conn.encrypted = true;
            self.encrypted_segments += 1;
            return;
        }
        let data = DataSegment {
            direction: segment.direction,
            captured: segment.payload,
            missing: segment
                .total_bytes
                .saturating_sub(segment.payload.len() as u64),
            tail: segment.tail,
            ts_ns: segment.ts_ns,
        };
        let first_new_span = spans.len();
        let mut out = Outputs {
            spans,
            counters: &mut self.decode,
            scratch: &mut self.scratch,
            awaited_replies: &mut self.awaited_replies,
        };
        let state = match &mut conn.state {
            Some(state) => state,
            None => match conn.undecided.decide(&conn.info, &data, self.protocols) {
                FirstBytesDecision::Held => return,
                FirstBytesDecision::Unclaimed(segments) => {
                    out.counters.garbage_segments += segments;
                    return;
                }
                FirstBytesDecision::Found(protocol) => {
                    let bytes = conn.undecided.bytes_of(data.direction, data.captured);
                    let first = FirstBytes::of(&conn.info, data.direction, &bytes);
                    let state = conn.state.insert(protocol.start(&first, &mut conn.info));
                    // The protocol parses the connection from its first byte.
                    for held in conn.undecided.take() {
                        state.parse(held.as_segment(), &mut conn.info, &mut out);
                    }
                    state
                }
            },
        };
        state.parse(data, &mut conn.info, &mut out);
        for span in spans.get_mut(first_new_span..).unwrap_or_default() {
            conn.threads.stamp(span);
        }
        if !conn.in_flight_tracked {
            return;
        }
        let now = conn.unanswered_since();
        let threads = &conn.threads;
        self.in_flight.update(
            conn.info.pid,
            segment.sock_id,
            conn.in_flight_since,
            now,
            |start| threads.thread_at(Direction::Ingress, start),
        );
        conn.in_flight_since = now;
    }

    /// The socket was closed: the protocol finishes what waited for the
    /// close, and the connection is forgotten.
    pub fn close(&mut self, sock_id: u64, ts: u64, spans: &mut Vec<Span>) {
        let Some(mut conn) = self.connections.remove(&sock_id) else {
            return;
        };
        self.forget_in_flight(sock_id, &conn);
        let first_new_span = spans.len();
        if let Some(state) = &mut conn.state {
            let mut out = Outputs {
                spans,
                counters: &mut self.decode,
                scratch: &mut self.scratch,
                awaited_replies: &mut self.awaited_replies,
            };
            state.finish(ts, &mut conn.info, &mut out);
        }
        for span in spans.get_mut(first_new_span..).unwrap_or_default() {
            conn.threads.stamp(span);
        }
        self.decode.garbage_segments += conn.undecided.unclaimed_directions();
    }

    /// The process exited: its sockets are gone with it.
    pub fn forget_process(&mut self, pid: u32, ts: u64, spans: &mut Vec<Span>) {
        let ids: Vec<u64> = self
            .connections
            .iter()
            .filter(|(_, c)| c.info.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.close(id, ts, spans);
        }
        self.in_flight.forget_process(pid);
    }

    /// Forgets connections idle for longer than the timeout.
    pub fn expire_idle(&mut self, now_ns: u64, spans: &mut Vec<Span>) {
        let idle: Vec<u64> = self
            .connections
            .iter()
            .filter(|(_, c)| now_ns.saturating_sub(c.last_seen_ns) > IDLE_TIMEOUT_NS)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id, now_ns, spans);
        }
    }
}

#[cfg(test)]
mod tests;
