//! [`Http2Session`]: HTTP/2 in the protocol registry. Detected by the client
//! preface (prior knowledge) or entered from HTTP/1 by an h2c Upgrade; each
//! stream becomes a span, a gRPC call's span carrying the call.

use std::borrow::Cow;

use zerotrace_shared::event::{ConnectionRole, Direction};

use super::{grpc, Http2Connection, Http2Exchange, PREFACE};
use crate::protocols::counters::DecodeCounters;
use crate::protocols::http_span::{origin_of, UNKNOWN_REQUEST_FIELD};
use crate::protocols::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};
use crate::spans::{GrpcExchange, HttpExchange, HttpText, Protocol, Span};

/// One HTTP/2 connection, both directions.
#[derive(Debug, Default)]
pub struct Http2Session {
    connection: Http2Connection,
}

impl Http2Session {
    /// The connection after a `101` to h2c: `request`, the HTTP/1.1 request
    /// that asked for it, sent in `client`, is stream 1.
    pub fn upgraded(client: Direction, request: Http2Exchange) -> Self {
        let mut connection = Http2Connection::default();
        connection.upgraded_request(client, request);
        Self { connection }
    }

    fn emit(&mut self, conn: &ConnectionInfo, sink: &mut Sink<'_, Vec<Http2Exchange>>) {
        sink.counters.http2.add(&self.connection.take_stats());
        sink.spans.extend(
            sink.scratch
                .drain(..)
                .filter_map(|x| build_h2_span(conn, x)),
        );
    }
}

impl ProtocolSession for Http2Session {
    /// Streams completed by one segment, before they become spans.
    type Scratch = Vec<Http2Exchange>;
    type SwitchTo = std::convert::Infallible;

    /// The client connection preface (RFC 9113 §3.4), or a start of it.
    fn check(first: &FirstBytes<'_>) -> Verdict {
        if first.bytes.starts_with(PREFACE) {
            Verdict::Yes
        } else if PREFACE.starts_with(first.bytes) || server_settings_first(first) {
            // A server's own SETTINGS are written before it reads the
            // client's preface (grpcio, Go, Node.js): held until the preface
            // says HTTP/2, not counted as bytes no protocol claims.
            Verdict::NeedMore
        } else {
            Verdict::No
        }
    }

    fn start(first: &FirstBytes<'_>, conn: &mut ConnectionInfo) -> Self {
        if first.bytes.starts_with(PREFACE) {
            // The client sends the preface.
            conn.learn_client_direction(first.direction);
        }
        Self::default()
    }

    fn parse(
        &mut self,
        segment: DataSegment<'_>,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) -> ParseOutcome<Self::SwitchTo> {
        self.connection.feed(
            segment.direction,
            segment.captured,
            segment.missing,
            segment.ts_ns,
            sink.scratch,
        );
        self.emit(conn, sink);
        ParseOutcome::Parsed
    }

    fn finish(
        &mut self,
        ts_ns: u64,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) {
        self.connection.finish(ts_ns, sink.scratch);
        self.emit(conn, sink);
    }

    fn abandon(&self, counters: &mut DecodeCounters) {
        counters.http2.add(&self.connection.stats());
    }

    /// The oldest open stream.
    fn oldest_unanswered_request_ns(&self) -> Option<u64> {
        self.connection.oldest_open_stream_ns()
    }

    fn add_live_counts(&self, _counters: &mut DecodeCounters) {
        // Stats are handed over after every segment.
    }
}

/// An HTTP/2 stream as a span (a gRPC call's span carries the call too); a
/// method or path that was not decoded is `*`, never guessed.
fn build_h2_span(conn: &ConnectionInfo, exchange: Http2Exchange) -> Option<Span> {
    let grpc = grpc::call_of(&exchange);
    let http = HttpExchange {
        method: exchange
            .method
            .map_or(Cow::Borrowed(UNKNOWN_REQUEST_FIELD), Cow::Owned),
        target: exchange
            .path
            .map_or(HttpText::const_new(UNKNOWN_REQUEST_FIELD), HttpText::from),
        status: exchange.status.unwrap_or(0),
        protocol_version: "2",
        request_body_bytes: exchange.request_body_bytes,
        response_body_bytes: exchange.response_body_bytes,
        host: exchange.authority.map(HttpText::from),
        traceparent: exchange.traceparent,
        user_agent: exchange.user_agent.map(std::sync::Arc::new),
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

/// Whether a server's first bytes are its connection's first SETTINGS frame:
/// a frame header of type SETTINGS (4), no flags, stream 0, and a length of
/// whole settings (6 bytes each), at most 16 of them.
fn server_settings_first(first: &FirstBytes<'_>) -> bool {
    let b = first.bytes;
    if first.role != ConnectionRole::Server || first.direction != Direction::Egress || b.len() < 9 {
        return false;
    }
    let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
    b[3] == 4 && b[4] == 0 && b[5..9] == [0; 4] && len % 6 == 0 && len <= 16 * 6
}
