//! One NATS connection's state, from the client's side.
//!
//! - A message the client writes (`PUB`, `HPUB`) is a `publish` operation.
//!   Without a reply subject it ends when written (core NATS acknowledges
//!   nothing). With one it is a request: it ends when the reply comes, a
//!   message on that reply subject (a responder's answer, a JetStream
//!   publish's acknowledgement, the server's `503` when nobody listens), or
//!   with the server's `-ERR` refusing the publish by permissions.
//! - A message the client reads (`MSG`, `HMSG`) is a `process` operation.
//!   Without a reply subject it is the read alone. With one it lasts until
//!   the client writes to that subject: its reply to a request, or its
//!   acknowledgement of a JetStream message (`$JS.ACK.…`). That write is
//!   part of the processing, not a publish of its own.
//! - A reply of the server alone (a header status and no payload of the
//!   application's: idle heartbeats, flow control) makes no operation.
//!
//! CONNECT gives the client id (its `name`); SUB, UNSUB, PING, PONG, INFO
//! and `+OK` are read over.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};

use zerotrace_shared::event::Direction;

use super::line::{self, Control, MessageLine};
use super::reader::{Operation, OperationReader, ReadEvent};
use crate::protocols::db::{bounded_text, MAX_PENDING};
use crate::protocols::messaging_call::MessagingCall;
use crate::spans::messaging::reply_key;
use crate::spans::{MessagingExchange, MessagingOperation, MessagingSystem, NATS_REFUSED};

/// How long a request waits for its reply, and a delivery for the client's
/// answer or acknowledgement, before it ends where it was written or read:
/// JetStream's default acknowledgement wait (past it the server delivers
/// the message again). A consumer created with `AckNone` never acknowledges
/// its messages, yet they carry `$JS.ACK.…` reply subjects; a request whose
/// requester gave up keeps its own inbox.
const ANSWER_WAIT_NS: u64 = 30_000_000_000;

/// Payload bytes kept of each message: its headers (a status line, a
/// `traceparent`), the start of a JetStream reply's JSON.
const KEPT_BYTES: usize = 1024;
/// Longest subject kept, and longest reply subject followed: inboxes are
/// about 50 bytes. With at most [`MAX_PENDING`] requests, deliveries and
/// subscriptions each, a connection's state stays under a few MiB.
const MAX_NAME: usize = 256;

/// What a connection could not follow. Counts only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsStats {
    /// Times a direction lost its framing.
    pub resyncs: u64,
    /// Control lines that were not NATS.
    pub bad_lines: u64,
    /// `-ERR`s that ended no operation.
    pub unmatched_errors: u64,
    /// Requests whose reply never came (at the close, or another request
    /// took their reply subject, or too many waited).
    pub unanswered: u64,
}

/// An operation waiting for a message on `reply`.
#[derive(Debug)]
struct Waiting {
    reply: String,
    /// When the request was written or the message read.
    since_ns: u64,
    /// `None` for a server's message of its own (flow control): its reply
    /// ends nothing the application made.
    call: Option<MessagingCall>,
}

/// One NATS connection's decoder.
#[derive(Debug)]
pub struct NatsConnection {
    client: OperationReader,
    server: OperationReader,
    client_id: Option<String>,
    /// The client's requests, waiting for their replies.
    requests: VecDeque<Waiting>,
    /// Messages delivered to the client with a reply subject, waiting for
    /// its reply or acknowledgement.
    deliveries: VecDeque<Waiting>,
    /// The subject of each subscription, by sid: a message that comes by a
    /// request's reply subscription answers it even under its own subject
    /// (a JetStream pull consumer's fetch).
    subscriptions: HashMap<String, String>,
    stats: NatsStats,
    events: Vec<ReadEvent>,
    /// The client acknowledged a JetStream message on this connection: its
    /// JetStream deliveries are processed until acknowledged (those of an
    /// `AckNone` consumer never are).
    acknowledges_jetstream: bool,
    /// [`reply_key`]s of the requests written since they were last taken
    /// ([`Self::take_awaited_replies`]).
    awaited_replies: Vec<u64>,
}

impl Default for NatsConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl NatsConnection {
    pub fn new() -> Self {
        Self {
            client: OperationReader::new(Direction::Egress, KEPT_BYTES),
            server: OperationReader::new(Direction::Ingress, KEPT_BYTES),
            client_id: None,
            requests: VecDeque::new(),
            deliveries: VecDeque::new(),
            subscriptions: HashMap::new(),
            stats: NatsStats::default(),
            events: Vec::new(),
            acknowledges_jetstream: false,
            awaited_replies: Vec::new(),
        }
    }

    /// A connection joined mid-stream (opened before the agent): no
    /// CONNECT comes (no client id), and each direction finds its framing at
    /// a segment that starts with an operation.
    pub fn joined_mid_stream() -> Self {
        Self {
            client: OperationReader::new_lost(Direction::Egress, KEPT_BYTES),
            server: OperationReader::new_lost(Direction::Ingress, KEPT_BYTES),
            ..Self::new()
        }
    }

    /// When the oldest message delivered with a reply subject, and not yet
    /// answered or acknowledged by the client, was read. JetStream messages
    /// count once the client was seen acknowledging one: until then it may
    /// be an `AckNone` consumer's, whose messages are never acknowledged.
    pub fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
        // In the order they were read.
        self.deliveries
            .iter()
            .filter(|d| self.acknowledges_jetstream || !is_jetstream_ack(&d.reply))
            .find_map(|d| d.call.as_ref().map(|call| call.start_ns))
    }

    /// Moves the [`reply_key`]s of the requests written since the last
    /// call into `out`: a delivery elsewhere on this host that shares one
    /// is that request's, and waits for its span.
    pub fn take_awaited_replies(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.awaited_replies);
    }

    pub fn stats(&self) -> NatsStats {
        let mut stats = self.stats;
        stats.resyncs += self.client.losses + self.server.losses;
        stats.bad_lines += self.client.bad_lines + self.server.bad_lines;
        stats
    }

    /// Feeds one segment: `captured` bytes, then `gap` bytes not captured.
    pub fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<MessagingCall>,
    ) {
        let mut events = std::mem::take(&mut self.events);
        match direction {
            Direction::Egress => self.client.feed(captured, gap, ts_ns, &mut events),
            Direction::Ingress => self.server.feed(captured, gap, ts_ns, &mut events),
        }
        for event in events.drain(..) {
            match event {
                ReadEvent::Operation(operation) => self.on_operation(direction, operation, out),
                // Replies in the lost bytes leave their requests waiting:
                // they end at the close, or once they waited too long.
                ReadEvent::Lost => {}
            }
        }
        self.events = events;
        self.end_overdue(ts_ns, out);
    }

    /// Requests and deliveries that waited [`ANSWER_WAIT_NS`] end where
    /// they were written or read: their answer is not coming.
    fn end_overdue(&mut self, now_ns: u64, out: &mut Vec<MessagingCall>) {
        let overdue = |w: &Waiting| w.since_ns.saturating_add(ANSWER_WAIT_NS) < now_ns;
        // Both queues are in the order they were written or read.
        while self.requests.front().is_some_and(overdue) {
            self.end_unanswered(0, out);
        }
        while self.deliveries.front().is_some_and(overdue) {
            out.extend(self.deliveries.pop_front().and_then(|d| d.call));
        }
    }

    /// The connection closed: requests still waiting end unanswered, where
    /// they were written; deliveries never answered end with their read.
    pub fn finish(&mut self, _ts_ns: u64, out: &mut Vec<MessagingCall>) {
        self.stats.unanswered += self.requests.iter().filter(|w| w.call.is_some()).count() as u64;
        for waiting in self.requests.drain(..).chain(self.deliveries.drain(..)) {
            out.extend(waiting.call);
        }
    }

    fn on_operation(
        &mut self,
        direction: Direction,
        operation: Operation,
        out: &mut Vec<MessagingCall>,
    ) {
        match (&operation.control, direction) {
            (Control::Connect { name, .. }, _) => self.client_id.clone_from(name),
            (Control::Sub { subject, sid }, _) => self.subscribe(sid, subject),
            (
                Control::Unsub {
                    sid,
                    after_max: false,
                },
                _,
            ) => {
                self.subscriptions.remove(sid);
            }
            (Control::Message(message), Direction::Egress) => {
                self.on_written(message, &operation, out)
            }
            (Control::Message(message), Direction::Ingress) => {
                self.on_read(message, &operation, out)
            }
            (Control::Err(text), _) => self.on_error(text, &operation, out),
            _ => {}
        }
    }

    /// A message the client wrote: the reply ending a delivery's processing,
    /// or a publish.
    fn on_written(
        &mut self,
        message: &MessageLine,
        operation: &Operation,
        out: &mut Vec<MessagingCall>,
    ) {
        if let Some(at) = self
            .deliveries
            .iter()
            .position(|d| d.reply == message.subject)
        {
            self.acknowledges_jetstream |= is_jetstream_ack(&message.subject);
            if let Some(mut call) = self.deliveries.remove(at).and_then(|d| d.call) {
                call.end_ns = operation.start_ns.max(call.start_ns);
                call.exchange.request_bytes += operation.wire_size();
                out.push(call);
            }
            return;
        }
        let mut exchange = self.exchange(MessagingOperation::Publish, message, operation);
        exchange.request_bytes = operation.wire_size();
        // A reply subject longer than any kept is not followed: the request
        // ends when written (what waits stays small).
        let followed = message.reply.as_ref().filter(|r| r.len() <= MAX_NAME);
        if let Some(reply) = followed {
            let key = reply_key(reply);
            exchange.reply_key = Some(key);
            if self.awaited_replies.len() < MAX_PENDING {
                self.awaited_replies.push(key);
            }
        }
        let call = MessagingCall {
            exchange: exchange.named(),
            start_ns: operation.start_ns,
            end_ns: operation.end_ns,
            partial: false,
        };
        let Some(reply) = followed else {
            out.push(call);
            return;
        };
        // A reply subject used again (a pull consumer's inbox): the earlier
        // request's reply is not told apart from this one's.
        if let Some(at) = self.requests.iter().position(|r| &r.reply == reply) {
            self.end_unanswered(at, out);
        }
        if self.requests.len() >= MAX_PENDING {
            self.end_unanswered(0, out);
        }
        self.requests.push_back(Waiting {
            reply: reply.clone(),
            since_ns: operation.start_ns,
            call: Some(call),
        });
    }

    /// A message the client read: the reply to one of its requests, or a delivery.
    fn on_read(
        &mut self,
        message: &MessageLine,
        operation: &Operation,
        out: &mut Vec<MessagingCall>,
    ) {
        let status = (message.header_size > 0)
            .then(|| line::header_status(&operation.payload))
            .flatten();
        if let Some(at) = self
            .requests
            .iter()
            .position(|r| r.reply == message.subject)
        {
            self.answer(at, status, Some(message), operation, out);
            return;
        }
        // A message under its own subject by a request's reply
        // subscription: the answer to a fetch, and a delivery.
        let by_subscription = message
            .sid
            .as_ref()
            .and_then(|sid| self.subscriptions.get(sid));
        if let Some(at) = by_subscription
            .and_then(|subject| self.requests.iter().position(|r| &r.reply == subject))
        {
            self.answer(at, status, None, operation, out);
        }
        // The server's own messages (a status and no payload): heartbeats,
        // flow control, which the client may have to answer.
        let own = status.is_some() && message.size == message.header_size;
        let reply = message.reply.as_ref().filter(|r| r.len() <= MAX_NAME);
        let call = (!own).then(|| {
            let mut exchange = self.exchange(MessagingOperation::Process, message, operation);
            exchange.response_bytes = operation.wire_size();
            // A requester's inbox; the server's own subjects (`$JS.ACK.…`)
            // answer no client's request.
            exchange.reply_key = reply.filter(|r| !r.starts_with('$')).map(reply_key);
            MessagingCall {
                exchange: exchange.named(),
                start_ns: operation.start_ns,
                end_ns: operation.end_ns,
                partial: false,
            }
        });
        let Some(reply) = reply else {
            out.extend(call);
            return;
        };
        if self.deliveries.len() >= MAX_PENDING {
            // Never answered: it ends with its read.
            out.extend(self.deliveries.pop_front().and_then(|d| d.call));
        }
        self.deliveries.push_back(Waiting {
            reply: reply.clone(),
            since_ns: operation.start_ns,
            call,
        });
    }

    /// The request at `at` answered by `operation`: a status of 400 and up,
    /// or the error code of a JetStream reply (`reply`, when the message is
    /// the reply itself), fails it.
    fn answer(
        &mut self,
        at: usize,
        status: Option<u16>,
        reply: Option<&MessageLine>,
        operation: &Operation,
        out: &mut Vec<MessagingCall>,
    ) {
        if let Some(mut call) = self.requests.remove(at).and_then(|r| r.call) {
            call.end_ns = operation.end_ns.max(call.start_ns);
            call.exchange.response_bytes += operation.wire_size();
            let body = reply.and_then(|message| {
                let headers = usize::try_from(message.header_size).unwrap_or(usize::MAX);
                operation.payload.get(headers..)
            });
            let error = status
                .filter(|s| *s >= 400)
                .or_else(|| body.and_then(line::jetstream_error));
            call.exchange.error_code = error.and_then(|code| i16::try_from(code).ok());
            out.push(call);
        }
    }

    /// `-ERR` refusing a publish by permissions ends the oldest request to
    /// that subject; other errors end nothing (a fire-and-forget publish
    /// ended when written).
    fn on_error(&mut self, text: &str, operation: &Operation, out: &mut Vec<MessagingCall>) {
        let refused = line::refused_publish(text).and_then(|subject| {
            self.requests.iter().position(|r| {
                r.call
                    .as_ref()
                    .is_some_and(|c| c.exchange.destination.as_deref() == Some(subject))
            })
        });
        let Some(at) = refused else {
            self.stats.unmatched_errors += 1;
            return;
        };
        if let Some(mut call) = self.requests.remove(at).and_then(|r| r.call) {
            call.end_ns = operation.end_ns.max(call.start_ns);
            call.exchange.response_bytes += operation.wire_size();
            call.exchange.error_code = Some(NATS_REFUSED);
            out.push(call);
        }
    }

    /// Keeps a subscription's subject, at most [`MAX_PENDING`] of them, none
    /// longer than a reply subject that is followed.
    fn subscribe(&mut self, sid: &str, subject: &str) {
        if subject.len() > MAX_NAME {
            self.subscriptions.remove(sid);
            return;
        }
        if self.subscriptions.len() < MAX_PENDING || self.subscriptions.contains_key(sid) {
            self.subscriptions
                .insert(sid.to_owned(), subject.to_owned());
        }
    }

    fn end_unanswered(&mut self, at: usize, out: &mut Vec<MessagingCall>) {
        if let Some(call) = self.requests.remove(at).and_then(|r| r.call) {
            self.stats.unanswered += 1;
            out.push(call);
        }
    }

    /// The exchange of a message written or read: its subject, and the
    /// trace context its headers carry.
    fn exchange(
        &self,
        kind: MessagingOperation,
        message: &MessageLine,
        operation: &Operation,
    ) -> MessagingExchange {
        let mut exchange = MessagingExchange::new(MessagingSystem::Nats, kind);
        let headers = usize::try_from(message.header_size)
            .unwrap_or(usize::MAX)
            .min(operation.payload.len());
        exchange.traceparent = line::header_value(&operation.payload[..headers], "traceparent")
            .map(|value| value.chars().take(64).collect());
        exchange.client_id = self.client_id.clone();
        exchange.destination = Some(bounded_text(message.subject.as_bytes(), MAX_NAME));
        exchange.message_count = Some(1);
        exchange
    }
}

/// Whether a reply subject is a JetStream message's, answered by
/// acknowledging it.
fn is_jetstream_ack(reply: &str) -> bool {
    reply.starts_with("$JS.ACK.")
}
