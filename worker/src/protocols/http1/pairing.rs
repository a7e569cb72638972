//! Requests paired with responses in order (keep-alive and pipelining), a
//! response that comes before its request is read kept for it, and the span
//! of each pair.

use zerotrace_shared::event::Direction;

use super::queue::InlineFirstQueue;
use super::{Http1Stream, HttpMessage, MessageHead, MessageSink};
use crate::protocols::counters::DecodeCounters;
use crate::protocols::http_span::origin_of;
use crate::protocols::session::ConnectionInfo;
use crate::spans::{HttpExchange, Protocol, Span};

/// Requests waiting for their response on one connection (pipelining depth).
const MAX_PENDING_REQUESTS: usize = 64;

/// The pairing of one session, as the sink of the stream of `direction`:
/// each message completed there is paired as it comes. It holds the other
/// stream (a request tells it what the response answers) and the queues,
/// which are the session's own fields, borrowed apart from the stream fed.
pub(super) struct Pairing<'a> {
    pub(super) direction: Direction,
    pub(super) other: &'a mut Http1Stream,
    pub(super) pending: &'a mut InlineFirstQueue<(Direction, HttpMessage)>,
    pub(super) early: &'a mut InlineFirstQueue<HttpMessage>,
    pub(super) conn: &'a mut ConnectionInfo,
    pub(super) counters: &'a mut DecodeCounters,
    pub(super) spans: &'a mut Vec<Span>,
}

impl MessageSink for Pairing<'_> {
    /// A message completed in `direction`: a request waits for its response
    /// (or pairs with one that came early), a response pairs with the
    /// oldest request that travelled the other way.
    fn message(&mut self, message: HttpMessage) {
        let direction = self.direction;
        match &message.head {
            MessageHead::Request { method, .. } => {
                self.other.expect_response_to(method);
                // Reading a request means we serve it; writing one means we asked.
                self.conn.learn_client_direction(direction);
                if let Some(response) = self.early.pop_front() {
                    let mut request = message;
                    push_span(self.spans, self.conn, &mut request, &response);
                    return;
                }
                if self.pending.len() >= MAX_PENDING_REQUESTS {
                    self.pending.pop_front();
                    self.counters.dropped_requests += 1;
                }
                self.pending.push_back((direction, message));
            }
            MessageHead::Response { status } => {
                if (100..200).contains(status) && *status != 101 {
                    return; // interim response: the final one follows
                }
                // The response travels opposite to its request.
                let position = self.pending.iter().position(|(d, _)| *d != direction);
                let Some((index, (_, request))) =
                    position.and_then(|i| Some((i, self.pending.get_mut(i)?)))
                else {
                    if self.other.in_message() && self.early.len() < MAX_PENDING_REQUESTS {
                        self.early.push_back(message);
                    } else {
                        self.counters.unpaired_responses += 1;
                    }
                    return;
                };
                // The request is read where it waits, then dropped there:
                // an HTTP message is ~170 bytes, not moved out to be read.
                push_span(self.spans, self.conn, request, &message);
                self.pending.discard(index);
            }
        }
    }
}

/// The span of `request` answered by `response`, pushed where it is built;
/// the request's texts are taken from it (it is dropped after).
fn push_span(
    spans: &mut Vec<Span>,
    conn: &ConnectionInfo,
    request: &mut HttpMessage,
    response: &HttpMessage,
) {
    let taken = std::mem::replace(&mut request.head, MessageHead::Response { status: 0 });
    let MessageHead::Request { method, target } = taken else {
        return;
    };
    let MessageHead::Response { status } = response.head else {
        return;
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
        host: request.host.take(),
        traceparent: request.traceparent.take().map(String::from),
        user_agent: request.user_agent.take(),
        route: None,
    };
    spans.push(Span::new(
        origin_of(conn),
        (
            request.first_ts_ns,
            response.last_ts_ns.max(request.last_ts_ns),
        ),
        request.truncated || response.truncated,
        Protocol::Http(http),
    ));
}
