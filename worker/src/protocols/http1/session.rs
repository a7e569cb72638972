//! [`Http1Session`]: HTTP/1 in the protocol registry. One [`Http1Stream`] per
//! direction, requests paired with responses in order, and the two ways an
//! HTTP/1 connection becomes HTTP/2: a `101` to h2c, or the client preface.

use zerotrace_shared::event::Direction;

use super::pairing::Pairing;
use super::queue::InlineFirstQueue;
use super::start_line::{check_start, skip_blank_lines, Parse};
use super::{Http1Stream, HttpMessage, MessageHead};
use crate::protocols::counters::DecodeCounters;
use crate::protocols::http2::{h2c, Http2Exchange, Http2Session, PREFACE};
use crate::protocols::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};
use crate::spans::{HttpText, Span};

/// One HTTP/1 connection: both directions' streams and the requests that
/// wait for their responses.
#[derive(Debug, Default)]
pub struct Http1Session {
    pub(super) ingress: Http1Stream,
    pub(super) egress: Http1Stream,
    /// Requests not yet answered, with the direction they travelled.
    pub(super) pending: InlineFirstQueue<(Direction, HttpMessage)>,
    /// Responses that came while their request was still being read (a
    /// server may answer before it has read the body): each pairs with the
    /// next request completed.
    pub(super) early: InlineFirstQueue<HttpMessage>,
}

pub(super) fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

impl Http1Session {
    /// Runs `feed` on the stream of `direction` with the pairing as its sink.
    fn with_pairing(
        &mut self,
        direction: Direction,
        conn: &mut ConnectionInfo,
        counters: &mut DecodeCounters,
        spans: &mut Vec<Span>,
        feed: impl FnOnce(&mut Http1Stream, &mut Pairing<'_>),
    ) {
        let (stream, other) = match direction {
            Direction::Ingress => (&mut self.ingress, &mut self.egress),
            Direction::Egress => (&mut self.egress, &mut self.ingress),
        };
        let mut pairing = Pairing {
            direction,
            other,
            pending: &mut self.pending,
            early: &mut self.early,
            conn,
            counters,
            spans,
        };
        feed(stream, &mut pairing);
    }

    /// After a switch of protocols seen in `direction`, the other direction
    /// switches too: its WebSocket frames or tunnelled bytes are not HTTP/1
    /// messages, nor garbage.
    fn follow_an_upgrade(&mut self, direction: Direction) {
        let (stream, other) = match direction {
            Direction::Ingress => (&self.ingress, &mut self.egress),
            Direction::Egress => (&self.egress, &mut self.ingress),
        };
        if stream.is_upgraded() {
            other.follow_upgrade();
        }
    }

    fn garbage(&self) -> u64 {
        self.ingress.garbage_segments() + self.egress.garbage_segments()
    }

    /// A `101 Switching Protocols` to h2c travels in `direction`: the request
    /// that asked for it becomes HTTP/2 stream 1 and the connection is
    /// HTTP/2 from here on (RFC 7540 §3.2). None when no request waits.
    fn upgrade_to_h2c(
        &mut self,
        conn: &mut ConnectionInfo,
        direction: Direction,
    ) -> Option<Http2Session> {
        let position = self.pending.iter().position(|(d, _)| *d != direction)?;
        let (client, request) = self.pending.remove(position)?;
        let MessageHead::Request { method, target } = request.head else {
            return None;
        };
        conn.learn_client_direction(client);
        let session = Http2Session::upgraded(
            client,
            Http2Exchange {
                method: Some(method.into_owned()),
                path: Some(target.into_string()),
                authority: request.host.map(HttpText::into_string),
                scheme: Some("http".into()),
                content_type: request.content_type,
                traceparent: request.traceparent.map(String::from),
                user_agent: request.user_agent.map(|agent| agent.as_str().to_owned()),
                request_body_bytes: request.body_size,
                start_ts_ns: request.first_ts_ns,
                partial: request.truncated,
                ..Http2Exchange::default()
            },
        );
        self.pending.clear();
        Some(session)
    }
}

impl ProtocolSession for Http1Session {
    /// Messages completed by one segment, before they are paired.
    type Scratch = ();
    /// By an h2c Upgrade, or a client preface.
    type SwitchTo = Http2Session;

    /// A request or status line, whole or as far as it came; blank lines
    /// before it are allowed (RFC 9112 §2.2).
    fn check(first: &FirstBytes<'_>) -> Verdict {
        match check_start(skip_blank_lines(first.bytes)) {
            Parse::Line(_) | Parse::More(Some(_)) => Verdict::Yes,
            Parse::More(None) => Verdict::NeedMore,
            Parse::Bad => Verdict::No,
        }
    }

    fn start(_first: &FirstBytes<'_>, _conn: &mut ConnectionInfo) -> Self {
        Self::default()
    }

    fn parse(
        &mut self,
        segment: DataSegment<'_>,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) -> ParseOutcome<Http2Session> {
        if segment.captured.starts_with(PREFACE) {
            // The client preface: after an Upgrade to h2c whose 101 the
            // capture missed, the connection is HTTP/2 from here.
            let first = FirstBytes::of(conn, segment.direction, segment.captured);
            let to = Http2Session::start(&first, conn);
            return ParseOutcome::Switch { to, offset: 0 };
        }
        let Sink {
            spans, counters, ..
        } = sink;
        // The direction turns: what the other stream holds that waits only
        // for an end the capture could not show is complete, so that a
        // request pairs with its own response.
        let other = opposite(segment.direction);
        self.with_pairing(other, conn, counters, spans, |stream, pairing| {
            stream.peer_spoke(segment.captured, pairing)
        });
        if let Some(frames) = h2c::switch_offset(segment.captured) {
            if let Some(h2) = self.upgrade_to_h2c(conn, segment.direction) {
                return ParseOutcome::Switch {
                    to: h2,
                    offset: frames,
                };
            }
        }
        self.with_pairing(
            segment.direction,
            conn,
            counters,
            spans,
            |stream, pairing| {
                stream.feed_with_tail(
                    segment.captured,
                    segment.missing,
                    segment.tail,
                    segment.ts_ns,
                    pairing,
                )
            },
        );
        self.follow_an_upgrade(segment.direction);
        ParseOutcome::Parsed
    }

    fn finish(
        &mut self,
        ts_ns: u64,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) {
        let Sink {
            spans, counters, ..
        } = sink;
        // Requests first, so that a response completed by the close finds its request.
        let first = conn.request_direction();
        for direction in [first, opposite(first)] {
            self.with_pairing(direction, conn, counters, spans, |stream, pairing| {
                stream.finish(ts_ns, pairing)
            });
        }
        self.abandon(counters);
    }

    fn abandon(&self, counters: &mut DecodeCounters) {
        counters.garbage_segments += self.garbage();
        counters.unanswered_requests += self.pending.len() as u64;
        counters.unpaired_responses += self.early.len() as u64;
    }

    fn add_live_counts(&self, counters: &mut DecodeCounters) {
        counters.garbage_segments += self.garbage();
    }

    /// A request read and not answered, or a message still being read
    /// (a request, or the response whose request is pending).
    fn oldest_unanswered_request_ns(&self) -> Option<u64> {
        let pending = self.pending.front().map(|(_, request)| request.first_ts_ns);
        [
            pending,
            self.ingress.message_first_ts_ns(),
            self.egress.message_first_ts_ns(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
