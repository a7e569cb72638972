//! Connection tracking: per-socket byte streams in both directions, parsed as
//! HTTP/1.x, with requests paired to responses in order (so keep-alive and
//! pipelining pair correctly). Memory is bounded: connections are forgotten
//! on close, on process exit, after an idle timeout, and beyond a cap.

use std::collections::VecDeque;
use std::net::SocketAddr;

use zerotrace_shared::event::{ConnTuple, ConnectionRole, Direction};

use crate::hashing::FastMap;
use crate::protocols::grpc;
use crate::protocols::http1::{Http1Stream, HttpMessage, MessageHead};
use crate::protocols::http2::{Http2Connection, Http2Exchange, Http2Stats, PREFACE};
use crate::spans::{GrpcExchange, HttpExchange, Protocol, Span, SpanKind, SpanOrigin};

/// Addresses of a connection whose first event was lost (or predates a worker restart).
const UNKNOWN_TUPLE: ConnTuple = ConnTuple {
    local: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    local_port: 0,
    peer: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    peer_port: 0,
};

/// Requests waiting for their response on one connection (pipelining depth).
const MAX_PENDING_REQUESTS: usize = 64;
/// Connections tracked at once; the least recently active is dropped beyond it.
const MAX_CONNECTIONS: usize = 65_536;
/// A connection silent this long is forgotten (nanoseconds).
const IDLE_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

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
    /// What HTTP/2 connections could not follow (summed over connections).
    pub http2: Http2Stats,
}

struct Connection {
    pid: u32,
    process_name: String,
    role: ConnectionRole,
    tuple: ConnTuple,
    ingress: Http1Stream,
    egress: Http1Stream,
    /// Requests not yet answered, with the direction they travelled.
    pending: VecDeque<(Direction, HttpMessage)>,
    /// Responses that came while their request was still being read (a
    /// server may answer before it has read the body): each pairs with the
    /// next request completed.
    early: VecDeque<HttpMessage>,
    last_seen_ns: u64,
    /// Set once the HTTP/2 connection preface is seen: the bytes are frames from then on.
    http2: Option<Box<Http2Connection>>,
    /// Plaintext comes from the TLS library hooks; socket bytes are records.
    tls: bool,
    /// The socket's first bytes were TLS records, and no plaintext came (yet).
    encrypted: bool,
    /// Directions that carried data already (bit 0: ingress, bit 1: egress).
    directions_seen: u8,
}

impl Connection {
    fn new(pid: u32, process_name: &str, role: ConnectionRole, tuple: ConnTuple, ts: u64) -> Self {
        Self {
            pid,
            process_name: process_name.to_owned(),
            role,
            tuple,
            ingress: Http1Stream::new(),
            egress: Http1Stream::new(),
            pending: VecDeque::new(),
            early: VecDeque::new(),
            last_seen_ns: ts,
            http2: None,
            tls: false,
            encrypted: false,
            directions_seen: 0,
        }
    }

    /// The TLS library hooks speak for this connection from now on: what the
    /// socket bytes said (records, perhaps a partial parse) is dropped.
    fn switch_to_plaintext(&mut self) {
        self.tls = true;
        self.encrypted = false;
        self.ingress = Http1Stream::new();
        self.egress = Http1Stream::new();
        self.pending.clear();
        self.early.clear();
        self.http2 = None;
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

    fn stream(&mut self, direction: Direction) -> &mut Http1Stream {
        match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }

    fn garbage(&self) -> u64 {
        self.ingress.garbage_segments() + self.egress.garbage_segments()
    }

    /// The direction requests travel, as far as known (ingress for a server).
    fn request_direction(&self) -> Direction {
        match self.role {
            ConnectionRole::Client => Direction::Egress,
            _ => Direction::Ingress,
        }
    }
}

fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

/// One data segment of a connection, as the kernel reported it.
pub struct Segment<'a> {
    pub sock_id: u64,
    pub pid: u32,
    pub process_name: &'a str,
    pub role: ConnectionRole,
    pub direction: Direction,
    /// Present on the first segment of a socket only.
    pub tuple: Option<ConnTuple>,
    pub ts_ns: u64,
    pub payload: &'a [u8],
    pub total_bytes: u64,
    /// Plaintext from a TLS library hook rather than the socket's bytes.
    pub tls: bool,
}

/// A socket the kernel saw accepted or connected.
pub struct OpenedConnection<'a> {
    pub sock_id: u64,
    pub pid: u32,
    pub process_name: &'a str,
    pub role: ConnectionRole,
    pub tuple: ConnTuple,
    pub ts_ns: u64,
}

#[derive(Default)]
pub struct ConnectionTracker {
    connections: FastMap<u64, Connection>,
    counters: TrackerCounters,
    messages: Vec<HttpMessage>,
}

impl ConnectionTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn counters(&self) -> TrackerCounters {
        let mut counters = self.counters.clone();
        counters.garbage_segments += self
            .connections
            .values()
            .map(Connection::garbage)
            .sum::<u64>();
        counters
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
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
                self.counters.garbage_segments += conn.garbage();
                self.counters.unanswered_requests += conn.pending.len() as u64;
                self.counters.unpaired_responses += conn.early.len() as u64;
            }
            self.counters.evicted_connections += 1;
        }
    }

    pub fn on_data(&mut self, segment: Segment<'_>, spans: &mut Vec<Span>) {
        if !self.connections.contains_key(&segment.sock_id) {
            self.make_room();
        }
        let conn = self.connections.entry(segment.sock_id).or_insert_with(|| {
            Connection::new(
                segment.pid,
                segment.process_name,
                segment.role,
                segment.tuple.unwrap_or(UNKNOWN_TUPLE),
                segment.ts_ns,
            )
        });
        if conn.role == ConnectionRole::Unknown {
            conn.role = segment.role;
        }
        if let Some(tuple) = segment.tuple {
            conn.tuple = tuple;
        }
        conn.last_seen_ns = segment.ts_ns;
        if segment.tls {
            if !conn.tls {
                conn.switch_to_plaintext();
            }
        } else if conn.tls || conn.encrypted {
            self.counters.encrypted_segments += 1;
            return;
        }
        let first_bytes = conn.first_bytes(segment.direction);
        if !segment.tls && first_bytes && is_tls_record(segment.payload) {
            // A TLS connection whose library is not hooked (or not yet):
            // its records are not HTTP.
            conn.encrypted = true;
            self.counters.encrypted_segments += 1;
            return;
        }
        let missing = segment
            .total_bytes
            .saturating_sub(segment.payload.len() as u64);
        if conn.http2.is_none() && segment.payload.starts_with(PREFACE) {
            conn.http2 = Some(Box::default());
            if conn.role == ConnectionRole::Unknown {
                // The client sends the preface.
                conn.role = match segment.direction {
                    Direction::Ingress => ConnectionRole::Server,
                    Direction::Egress => ConnectionRole::Client,
                };
            }
        }
        if let Some(h2) = conn.http2.as_mut() {
            let mut exchanges = Vec::new();
            h2.feed(
                segment.direction,
                segment.payload,
                missing,
                segment.ts_ns,
                &mut exchanges,
            );
            self.counters.http2.add(&h2.take_stats());
            spans.extend(exchanges.into_iter().filter_map(|x| build_h2_span(conn, x)));
            return;
        }
        let mut messages = std::mem::take(&mut self.messages);
        // The direction turns: what the other stream holds that waits only
        // for an end the capture could not show is complete, so that a
        // request pairs with its own response.
        let other = opposite(segment.direction);
        conn.stream(other)
            .peer_spoke(segment.payload, &mut messages);
        for message in messages.drain(..) {
            Self::on_message(conn, other, message, &mut self.counters, spans);
        }
        self.messages = messages;
        if let Some(frames) = h2c_switch(segment.payload) {
            if let Some(h2) = Self::upgrade_to_h2c(conn, segment.direction) {
                let mut exchanges = Vec::new();
                h2.feed(
                    segment.direction,
                    frames,
                    missing,
                    segment.ts_ns,
                    &mut exchanges,
                );
                self.counters.http2.add(&h2.take_stats());
                let conn = &*conn;
                spans.extend(exchanges.into_iter().filter_map(|x| build_h2_span(conn, x)));
                return;
            }
        }
        let mut messages = std::mem::take(&mut self.messages);
        conn.stream(segment.direction)
            .feed(segment.payload, missing, segment.ts_ns, &mut messages);
        for message in messages.drain(..) {
            Self::on_message(conn, segment.direction, message, &mut self.counters, spans);
        }
        self.messages = messages;
    }

    /// A `101 Switching Protocols` to h2c travels in `direction`: the request
    /// that asked for it becomes HTTP/2 stream 1 and the connection is
    /// HTTP/2 from here on (RFC 7540 §3.2). None when no request waits.
    fn upgrade_to_h2c(conn: &mut Connection, direction: Direction) -> Option<&mut Http2Connection> {
        let position = conn.pending.iter().position(|(d, _)| *d != direction)?;
        let (client, request) = conn.pending.remove(position)?;
        let MessageHead::Request { method, target } = request.head else {
            return None;
        };
        if conn.role == ConnectionRole::Unknown {
            conn.role = match client {
                Direction::Ingress => ConnectionRole::Server,
                Direction::Egress => ConnectionRole::Client,
            };
        }
        let mut h2 = Box::<Http2Connection>::default();
        h2.upgraded_request(
            client,
            Http2Exchange {
                method: Some(method),
                path: Some(target),
                authority: request.host,
                scheme: Some("http".into()),
                content_type: request.content_type,
                traceparent: request.traceparent,
                request_body_bytes: request.body_size,
                start_ts_ns: request.first_ts_ns,
                partial: request.truncated,
                ..Http2Exchange::default()
            },
        );
        conn.pending.clear();
        Some(conn.http2.insert(h2))
    }

    fn on_message(
        conn: &mut Connection,
        direction: Direction,
        message: HttpMessage,
        counters: &mut TrackerCounters,
        spans: &mut Vec<Span>,
    ) {
        match &message.head {
            MessageHead::Request { method, .. } => {
                conn.stream(opposite(direction)).expect_response_to(method);
                if conn.role == ConnectionRole::Unknown {
                    // Reading a request means we serve it; writing one means we asked.
                    conn.role = match direction {
                        Direction::Ingress => ConnectionRole::Server,
                        Direction::Egress => ConnectionRole::Client,
                    };
                }
                if let Some(response) = conn.early.pop_front() {
                    if let Some(span) = build_span(conn, message, response) {
                        spans.push(span);
                    }
                    return;
                }
                if conn.pending.len() >= MAX_PENDING_REQUESTS {
                    conn.pending.pop_front();
                    counters.dropped_requests += 1;
                }
                conn.pending.push_back((direction, message));
            }
            MessageHead::Response { status } => {
                if (100..200).contains(status) && *status != 101 {
                    return; // interim response: the final one follows
                }
                // The response travels opposite to its request.
                let position = conn.pending.iter().position(|(d, _)| *d != direction);
                let Some((_, request)) = position.and_then(|i| conn.pending.remove(i)) else {
                    let request_stream = conn.stream(opposite(direction));
                    if request_stream.in_message() && conn.early.len() < MAX_PENDING_REQUESTS {
                        conn.early.push_back(message);
                    } else {
                        counters.unpaired_responses += 1;
                    }
                    return;
                };
                if let Some(span) = build_span(conn, request, message) {
                    spans.push(span);
                }
            }
        }
    }

    /// The socket was closed: finish both streams and forget the connection.
    pub fn close(&mut self, sock_id: u64, ts: u64, spans: &mut Vec<Span>) {
        let Some(mut conn) = self.connections.remove(&sock_id) else {
            return;
        };
        if let Some(mut h2) = conn.http2.take() {
            let mut exchanges = Vec::new();
            h2.finish(ts, &mut exchanges);
            self.counters.http2.add(&h2.take_stats());
            spans.extend(
                exchanges
                    .into_iter()
                    .filter_map(|x| build_h2_span(&conn, x)),
            );
            return;
        }
        let mut messages = std::mem::take(&mut self.messages);
        // Requests first, so that a response completed by the close finds its request.
        let first = conn.request_direction();
        for direction in [first, opposite(first)] {
            conn.stream(direction).finish(ts, &mut messages);
            for message in messages.drain(..) {
                Self::on_message(&mut conn, direction, message, &mut self.counters, spans);
            }
        }
        self.messages = messages;
        self.counters.garbage_segments += conn.garbage();
        self.counters.unanswered_requests += conn.pending.len() as u64;
        self.counters.unpaired_responses += conn.early.len() as u64;
    }

    /// The process exited: its sockets are gone with it.
    pub fn forget_process(&mut self, pid: u32, ts: u64, spans: &mut Vec<Span>) {
        let ids: Vec<u64> = self
            .connections
            .iter()
            .filter(|(_, c)| c.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.close(id, ts, spans);
        }
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

/// When `bytes` start with a `101 Switching Protocols` response that switches
/// to `h2c`, the bytes after its head (the server's first HTTP/2 frames, if
/// any were written with it).
fn h2c_switch(bytes: &[u8]) -> Option<&[u8]> {
    let status_line = b"HTTP/1.1 101";
    if bytes.len() < status_line.len()
        || !bytes[..status_line.len()].eq_ignore_ascii_case(status_line)
    {
        return None;
    }
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = bytes.get(..end)?;
    let upgrades_to_h2c = head.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = line.split_at(colon);
        name.trim_ascii().eq_ignore_ascii_case(b"upgrade")
            && value
                .get(1..)
                .unwrap_or_default()
                .trim_ascii()
                .eq_ignore_ascii_case(b"h2c")
    });
    upgrades_to_h2c.then(|| bytes.get(end + 4..).unwrap_or_default())
}

/// Whether bytes start with a TLS record header: content type 20-23
/// (change_cipher_spec, alert, handshake, application_data), major version 3,
/// minor 0-4, and a length a record may have. No HTTP message starts so.
fn is_tls_record(bytes: &[u8]) -> bool {
    match bytes {
        [content_type, 3, minor, len_hi, len_lo, ..] => {
            (20..=23).contains(content_type)
                && *minor <= 4
                && u16::from_be_bytes([*len_hi, *len_lo]) <= 16384 + 2048
        }
        _ => false,
    }
}

fn socket_addr(addr: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

/// Who and where a span on `conn` happened.
fn origin_of(conn: &Connection) -> SpanOrigin {
    SpanOrigin {
        kind: match conn.role {
            ConnectionRole::Client => SpanKind::Client,
            _ => SpanKind::Server,
        },
        pid: conn.pid,
        process_name: conn.process_name.clone(),
        local: socket_addr(conn.tuple.local, conn.tuple.local_port),
        peer: socket_addr(conn.tuple.peer, conn.tuple.peer_port),
        tls: conn.tls,
    }
}

pub use crate::spans::http::UNKNOWN_REQUEST_FIELD;

/// An HTTP/2 stream as a span (a gRPC call's span carries the call too); a
/// method or path that was not decoded is `*`, never guessed.
fn build_h2_span(conn: &Connection, exchange: Http2Exchange) -> Option<Span> {
    let grpc = grpc::call_of(&exchange);
    let http = HttpExchange {
        method: exchange
            .method
            .unwrap_or_else(|| UNKNOWN_REQUEST_FIELD.to_owned()),
        target: exchange
            .path
            .unwrap_or_else(|| UNKNOWN_REQUEST_FIELD.to_owned()),
        status: exchange.status.unwrap_or(0),
        protocol_version: "2",
        request_body_bytes: exchange.request_body_bytes,
        response_body_bytes: exchange.response_body_bytes,
        host: exchange.authority,
        traceparent: exchange.traceparent,
        route: None,
    };
    let protocol = match grpc {
        Some(call) => Protocol::Grpc(GrpcExchange { call, http }),
        None => Protocol::Http(http),
    };
    Some(Span::new(
        origin_of(conn),
        (exchange.start_ts_ns, exchange.end_ts_ns),
        exchange.partial || exchange.reset,
        protocol,
    ))
}

fn build_span(conn: &Connection, request: HttpMessage, response: HttpMessage) -> Option<Span> {
    let MessageHead::Request { method, target } = request.head else {
        return None;
    };
    let MessageHead::Response { status } = response.head else {
        return None;
    };
    let http = HttpExchange {
        method,
        target,
        status,
        protocol_version: if request.version_minor == 0 {
            "1.0"
        } else {
            "1.1"
        },
        request_body_bytes: request.body_size,
        response_body_bytes: response.body_size,
        host: request.host,
        traceparent: request.traceparent,
        route: None,
    };
    Some(Span::new(
        origin_of(conn),
        (
            request.first_ts_ns,
            response.last_ts_ns.max(request.last_ts_ns),
        ),
        request.truncated || response.truncated,
        Protocol::Http(http),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn http(span: &Span) -> &HttpExchange {
        span.http().unwrap_or_else(|| panic!("not HTTP: {span:?}"))
    }

    const TUPLE: ConnTuple = ConnTuple {
        local: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local_port: 8443,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        peer_port: 40000,
    };

    fn feed(
        tracker: &mut ConnectionTracker,
        direction: Direction,
        payload: &[u8],
        tls: bool,
        ts_ns: u64,
    ) -> Vec<Span> {
        let mut spans = Vec::new();
        tracker.on_data(
            Segment {
                sock_id: 7,
                pid: 42,
                process_name: "server",
                role: ConnectionRole::Server,
                direction,
                tuple: Some(TUPLE),
                ts_ns,
                payload,
                total_bytes: payload.len() as u64,
                tls,
            },
            &mut spans,
        );
        spans
    }

    /// One segment of `bytes` as the kernel reports it: `cap` bytes
    /// captured, the rest counted.
    fn feed_capped(
        tracker: &mut ConnectionTracker,
        role: ConnectionRole,
        direction: Direction,
        bytes: &[u8],
        cap: usize,
        ts_ns: u64,
    ) -> Vec<Span> {
        let mut spans = Vec::new();
        tracker.on_data(
            Segment {
                sock_id: 7,
                pid: 42,
                process_name: "p",
                role,
                direction,
                tuple: Some(TUPLE),
                ts_ns,
                payload: &bytes[..bytes.len().min(cap)],
                total_bytes: bytes.len() as u64,
                tls: false,
            },
            &mut spans,
        );
        spans
    }

    fn request_with_cookie(path: &str, head_len: usize) -> Vec<u8> {
        let start = format!("GET {path} HTTP/1.1\r\nHost: h\r\nCookie: ");
        let cookie = "c".repeat(head_len - start.len() - 4);
        format!("{start}{cookie}\r\n\r\n").into_bytes()
    }

    #[test]
    fn requests_with_heads_beyond_the_capture_pair_with_their_own_responses() {
        let mut tracker = ConnectionTracker::new();
        let mut spans = Vec::new();
        let exchanges = [("/a", 200, "ok"), ("/b", 404, "missing"), ("/c", 201, "")];
        for (i, (path, status, body)) in exchanges.iter().enumerate() {
            let ts = 10 * i as u64 + 1;
            let request = request_with_cookie(path, 2000);
            let (server, ingress) = (ConnectionRole::Server, Direction::Ingress);
            spans.extend(feed_capped(
                &mut tracker,
                server,
                ingress,
                &request,
                512,
                ts,
            ));
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let egress = Direction::Egress;
            spans.extend(feed_capped(
                &mut tracker,
                server,
                egress,
                response.as_bytes(),
                512,
                ts + 1,
            ));
            assert_eq!(
                spans.len(),
                i + 1,
                "one span per exchange, at once: {spans:?}"
            );
        }
        tracker.close(7, 100, &mut spans);
        let got: Vec<_> = spans
            .iter()
            .map(|s| {
                (
                    http(s).method.as_str(),
                    http(s).target.as_str(),
                    http(s).status,
                    http(s).response_body_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("GET", "/a", 200, 2),
                ("GET", "/b", 404, 7),
                ("GET", "/c", 201, 0)
            ]
        );
        assert!(spans.iter().all(|s| http(s).host.as_deref() == Some("h")));
        assert_eq!(
            (spans[1].start_monotonic_ns, spans[1].end_monotonic_ns),
            (11, 12)
        );
        let counters = tracker.counters();
        assert_eq!(
            (
                counters.unpaired_responses,
                counters.unanswered_requests,
                counters.garbage_segments
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_response_head_beyond_the_capture_keeps_its_body_size() {
        for role in [ConnectionRole::Server, ConnectionRole::Client] {
            let (requests, responses) = match role {
                ConnectionRole::Client => (Direction::Egress, Direction::Ingress),
                _ => (Direction::Ingress, Direction::Egress),
            };
            let mut tracker = ConnectionTracker::new();
            let mut spans = Vec::new();
            for (i, path) in ["/one", "/two"].iter().enumerate() {
                let ts = 10 * i as u64 + 1;
                let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
                spans.extend(feed_capped(
                    &mut tracker,
                    role,
                    requests,
                    request.as_bytes(),
                    512,
                    ts,
                ));
                // The head (900 bytes of Set-Cookie) in one write, the body in others.
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nSet-Cookie: {}\r\n\r\n",
                    "s".repeat(900)
                );
                spans.extend(feed_capped(
                    &mut tracker,
                    role,
                    responses,
                    head.as_bytes(),
                    512,
                    ts + 1,
                ));
                for _ in 0..4 {
                    let body = vec![b'x'; 25_000];
                    spans.extend(feed_capped(
                        &mut tracker,
                        role,
                        responses,
                        &body,
                        512,
                        ts + 2,
                    ));
                }
            }
            // The first ends when the second request comes, the second at the close.
            assert_eq!(spans.len(), 1, "{role:?}");
            tracker.close(7, 100, &mut spans);
            let got: Vec<_> = spans
                .iter()
                .map(|s| {
                    (
                        http(s).target.as_str(),
                        http(s).status,
                        http(s).response_body_bytes,
                        s.partial,
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![("/one", 200, 100_000, false), ("/two", 200, 100_000, false)],
                "{role:?}"
            );
            assert_eq!(spans[0].end_monotonic_ns, 3);
            assert_eq!(tracker.counters().unpaired_responses, 0);
        }
    }

    #[test]
    fn a_response_sent_before_the_request_body_was_read_pairs_with_it() {
        let mut tracker = ConnectionTracker::new();
        let (server, ingress, egress) = (
            ConnectionRole::Server,
            Direction::Ingress,
            Direction::Egress,
        );
        let head = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n0123456789";
        assert!(feed_capped(&mut tracker, server, ingress, head, 512, 1).is_empty());
        let early = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
        assert!(feed_capped(&mut tracker, server, egress, early, 512, 2).is_empty());
        let spans = feed_capped(&mut tracker, server, ingress, &[b'b'; 990], 512, 3);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (
                http(&spans[0]).target.as_str(),
                http(&spans[0]).status,
                http(&spans[0]).request_body_bytes
            ),
            ("/upload", 413, 1000)
        );
        assert_eq!(
            (spans[0].start_monotonic_ns, spans[0].end_monotonic_ns),
            (1, 3)
        );
        let mut spans = Vec::new();
        tracker.close(7, 4, &mut spans);
        let counters = tracker.counters();
        assert_eq!(
            (counters.unpaired_responses, counters.unanswered_requests),
            (0, 0)
        );
    }

    #[test]
    fn requests_never_answered_are_counted() {
        let mut tracker = ConnectionTracker::new();
        let request = request_with_cookie("/gone", 3000);
        let (server, ingress) = (ConnectionRole::Server, Direction::Ingress);
        assert!(feed_capped(&mut tracker, server, ingress, &request, 512, 1).is_empty());
        let mut spans = Vec::new();
        tracker.close(7, 2, &mut spans);
        assert!(spans.is_empty());
        assert_eq!(tracker.counters().unanswered_requests, 1);
        assert_eq!(tracker.counters().garbage_segments, 0);
    }

    /// A TLS 1.3 ClientHello's record header, then some of its body.
    const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    const APPLICATION_DATA: &[u8] = b"\x17\x03\x03\x00\x45\x9a\x11\x02";

    #[test]
    fn tls_records_are_skipped_and_the_plaintext_makes_an_https_span() {
        let mut tracker = ConnectionTracker::new();
        assert!(feed(&mut tracker, Direction::Ingress, CLIENT_HELLO, false, 1).is_empty());
        assert!(feed(
            &mut tracker,
            Direction::Egress,
            b"\x16\x03\x03\x00\x7a\x02",
            false,
            2
        )
        .is_empty());
        assert!(feed(&mut tracker, Direction::Ingress, APPLICATION_DATA, false, 3).is_empty());
        let request = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(feed(&mut tracker, Direction::Ingress, request, true, 4).is_empty());
        // The socket bytes of the same exchange (records) change nothing.
        assert!(feed(&mut tracker, Direction::Ingress, APPLICATION_DATA, false, 4).is_empty());
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let spans = feed(&mut tracker, Direction::Egress, response, true, 5);
        assert!(feed(&mut tracker, Direction::Egress, APPLICATION_DATA, false, 6).is_empty());
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(
            (
                http(span).method.as_str(),
                http(span).target.as_str(),
                http(span).status
            ),
            ("GET", "/secret", 200)
        );
        assert!(span.tls);
        assert_eq!(HttpExchange::scheme(span.tls), "https");
        assert_eq!(span.local.port(), 8443);
        assert!(tracker.counters().encrypted_segments >= 4);
        assert_eq!(tracker.counters().garbage_segments, 0);
    }

    #[test]
    fn record_like_bytes_inside_a_plain_http_body_are_still_http() {
        let mut tracker = ConnectionTracker::new();
        let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n";
        assert!(feed(&mut tracker, Direction::Ingress, head, false, 1).is_empty());
        // The body happens to start like a TLS record: it is body, not TLS.
        assert!(feed(&mut tracker, Direction::Ingress, APPLICATION_DATA, false, 2).is_empty());
        let spans = feed(
            &mut tracker,
            Direction::Egress,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            false,
            3,
        );
        assert_eq!(spans.len(), 1);
        assert_eq!(http(&spans[0]).status, 201);
        assert!(!spans[0].tls);
        assert_eq!(HttpExchange::scheme(spans[0].tls), "http");
        assert_eq!(tracker.counters().encrypted_segments, 0);
    }

    #[test]
    fn http2_over_tls_plaintext_starts_with_the_preface() {
        let mut tracker = ConnectionTracker::new();
        assert!(feed(&mut tracker, Direction::Ingress, CLIENT_HELLO, false, 1).is_empty());
        assert!(feed(&mut tracker, Direction::Ingress, PREFACE, true, 2).is_empty());
        assert!(tracker
            .connections
            .get(&7)
            .is_some_and(|c| c.tls && c.http2.is_some()));
    }

    #[test]
    fn an_h2c_upgrade_makes_the_request_stream_one_of_an_http2_connection() {
        let mut tracker = ConnectionTracker::new();
        let request = b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
        assert!(feed(&mut tracker, Direction::Ingress, request, false, 1).is_empty());
        // 101, then the server's SETTINGS and the response on stream 1:
        // HEADERS (:status 200, indexed 0x88) with END_STREAM|END_HEADERS.
        let mut switch =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                .to_vec();
        switch.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        switch.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
        let spans = feed(&mut tracker, Direction::Egress, &switch, false, 2);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(
            (
                http(span).method.as_str(),
                http(span).target.as_str(),
                http(span).status
            ),
            ("GET", "/up", 200)
        );
        assert_eq!(http(span).protocol_version, "2");
        assert_eq!(http(span).host.as_deref(), Some("h"));
        assert_eq!(span.start_monotonic_ns, 1);
    }

    #[test]
    fn a_websocket_upgrade_stays_an_http1_exchange() {
        let mut tracker = ConnectionTracker::new();
        let request =
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(feed(&mut tracker, Direction::Ingress, request, false, 1).is_empty());
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
        let spans = feed(&mut tracker, Direction::Egress, switch, false, 2);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (http(&spans[0]).status, http(&spans[0]).protocol_version),
            (101, "1.1")
        );
        assert!(h2c_switch(switch).is_none());
    }

    #[test]
    fn tls_record_headers_are_recognised() {
        assert!(is_tls_record(CLIENT_HELLO));
        assert!(is_tls_record(APPLICATION_DATA));
        assert!(!is_tls_record(b"GET / HTTP/1.1\r\n"));
        assert!(!is_tls_record(b"\x16\x03\x01"));
        assert!(!is_tls_record(b"\x17\x03\x03\xff\xff"));
        assert!(!is_tls_record(PREFACE));
    }
}
