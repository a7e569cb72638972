//! One AMQP 0-9-1 connection's state, from the client's side, per channel.
//! A `basic.publish` the client writes, with its content (a header frame
//! and body frames), is a `publish` operation: it ends when its last body
//! frame is written, or, on a channel in confirm mode, with the broker's
//! `basic.ack` of its delivery tag (a `basic.nack` fails it, and so does a
//! `basic.return` of it or the channel's closing). A `basic.deliver` the
//! client reads, with its content, is a `process` operation up to the
//! client's `basic.ack` (or `basic.nack`/`basic.reject`, which fail it), or
//! the read alone for a consumer without acknowledgements.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};

use zerotrace_shared::event::Direction;

use super::frame::{self, Args, FrameHeader};
use crate::protocols::db::{bounded_text, MAX_PENDING};
use crate::protocols::messaging_call::MessagingCall;
use crate::protocols::prefix_framer::{Framed, PrefixFramer, PrefixHeader, ReadEvent};
use crate::spans::messaging::{reply_key, AMQP_NACK, AMQP_REJECTED};
use crate::spans::{MessagingExchange, MessagingOperation, MessagingSystem};

/// Bytes of a frame kept past its header: a method's arguments, a content
/// header's body size.
const KEPT_BYTES: usize = 512;
/// Channels followed per connection (RabbitMQ's `channel_max` is 2047).
pub const MAX_CHANNELS: usize = 2048;
/// Longest exchange, routing key or consumer tag kept.
const MAX_NAME: usize = 256;
/// The default exchange's name in spans, as the conventions ask.
const DEFAULT_EXCHANGE: &str = "amq.default";

/// What a connection could not follow. Counts only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmqpStats {
    /// Times a direction lost its framing.
    pub resyncs: u64,
    /// Frames that did not end with the frame-end byte.
    pub bad_frames: u64,
    /// Acknowledgements of no publish or delivery waiting.
    pub unmatched_acks: u64,
    /// Operations dropped: too many waiting, or on too many channels.
    pub pending_dropped: u64,
    /// Operations whose acknowledgement never came (at the close).
    pub unanswered: u64,
}

/// Content being written or read after its method: the operation it
/// belongs to (none for content the decoder passes over), and the body
/// bytes still to come once the header frame said how many.
#[derive(Debug)]
struct Content {
    call: Option<MessagingCall>,
    delivery_tag: u64,
    /// A delivery to a consumer that acknowledges nothing.
    no_ack: bool,
    body_left: Option<u64>,
}

/// One channel's state.
#[derive(Debug, Default)]
struct Channel {
    /// Publisher confirms asked for (`confirm.select`): publishes are
    /// numbered from 1 and wait for the broker's acknowledgement.
    confirms: bool,
    published: u64,
    writing: Option<Content>,
    reading: Option<Content>,
    /// Publishes waiting for the broker's `basic.ack`, by delivery tag.
    unconfirmed: VecDeque<(u64, MessagingCall)>,
    /// Deliveries waiting for the client's `basic.ack`, by delivery tag.
    unacked: VecDeque<(u64, MessagingCall)>,
    /// Consumer tags that acknowledge nothing (`no-ack`).
    no_ack_consumers: Vec<Vec<u8>>,
    /// `basic.consume`s without a tag, waiting for the broker's to come
    /// back in `consume-ok`: whether each acknowledges nothing.
    consumes_untagged: VecDeque<bool>,
}

/// One AMQP 0-9-1 connection's decoder.
#[derive(Debug)]
pub struct AmqpConnection {
    client: PrefixFramer<FrameHeader>,
    server: PrefixFramer<FrameHeader>,
    /// Bytes of the client's protocol header still to pass over.
    protocol_header_left: usize,
    channels: HashMap<u16, Channel>,
    /// The channel whose content each direction (client, server) read last:
    /// bytes passed over while that direction's framing is lost are its.
    content_channel: [Option<u16>; 2],
    stats: AmqpStats,
    events: Vec<ReadEvent<FrameHeader>>,
    /// Reply keys of the RPC requests written since they were last taken
    /// ([`Self::take_awaited_replies`]).
    awaited_replies: Vec<u64>,
}

impl Default for AmqpConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl AmqpConnection {
    pub fn new() -> Self {
        Self {
            client: PrefixFramer::new(KEPT_BYTES),
            server: PrefixFramer::new(KEPT_BYTES),
            protocol_header_left: frame::PROTOCOL_HEADER.len(),
            channels: HashMap::new(),
            content_channel: [None; 2],
            stats: AmqpStats::default(),
            events: Vec::new(),
            awaited_replies: Vec::new(),
        }
    }

    /// A connection joined mid-stream (opened before the agent): no
    /// protocol header comes, and each direction finds its framing at a
    /// segment that starts with a frame.
    pub fn joined_mid_stream() -> Self {
        Self {
            client: PrefixFramer::new_lost(KEPT_BYTES),
            server: PrefixFramer::new_lost(KEPT_BYTES),
            protocol_header_left: 0,
            ..Self::new()
        }
    }

    /// When the oldest delivery the client has not yet acknowledged, on any
    /// of its channels, was read.
    pub fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
        self.channels
            .values()
            .filter_map(|channel| channel.unacked.front().map(|(_, call)| call.start_ns))
            .min()
    }

    /// Moves the reply keys of the RPC requests written since the last call
    /// into `out`: a delivery elsewhere on this host that shares one is that
    /// request's.
    pub fn take_awaited_replies(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.awaited_replies);
    }

    pub fn stats(&self) -> AmqpStats {
        let mut stats = self.stats;
        stats.resyncs += self.client.losses + self.server.losses;
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
        let mut captured = captured;
        if direction == Direction::Egress && self.protocol_header_left > 0 {
            let skip = self.protocol_header_left.min(captured.len());
            self.protocol_header_left -= skip;
            captured = &captured[skip..];
        }
        let mut events = std::mem::take(&mut self.events);
        let framer = match direction {
            Direction::Egress => &mut self.client,
            Direction::Ingress => &mut self.server,
        };
        let skipped_before = framer.skipped_bytes;
        framer.feed(captured, gap, ts_ns, &mut events);
        let skipped = framer.skipped_bytes - skipped_before;
        if skipped > 0 {
            self.count_skipped(direction, skipped);
        }
        for event in events.drain(..) {
            match event {
                ReadEvent::Frame(frame) => self.on_frame(direction, &frame, out),
                // Content in the lost bytes leaves its operation to end, partial,
                // at the close.
                ReadEvent::Lost => {}
            }
        }
        self.events = events;
    }

    /// The connection closed: what still waits ends partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<MessagingCall>) {
        for (_, channel) in self.channels.drain() {
            let writing = channel.writing.and_then(|c| c.call);
            let reading = channel.reading.and_then(|c| c.call);
            let waiting = channel.unconfirmed.into_iter().chain(channel.unacked);
            for mut call in waiting.map(|(_, call)| call).chain(writing).chain(reading) {
                call.end_ns = call.end_ns.max(ts_ns);
                call.partial = true;
                self.stats.unanswered += 1;
                out.push(call);
            }
        }
    }

    fn on_frame(
        &mut self,
        direction: Direction,
        frame: &Framed<FrameHeader>,
        out: &mut Vec<MessagingCall>,
    ) {
        let size = frame.header.size as usize;
        if !frame.cut && frame.body.get(size) != Some(&frame::FRAME_END) {
            self.stats.bad_frames += 1;
            return;
        }
        let payload = &frame.body[..size.min(frame.body.len())];
        let number = frame.header.channel;
        if !self.channels.contains_key(&number) && self.channels.len() >= MAX_CHANNELS {
            self.stats.pending_dropped += 1;
            return;
        }
        let channel = self.channels.entry(number).or_default();
        match frame.header.kind {
            frame::METHOD => {
                let Some((id, args)) = frame::method(payload) else {
                    return;
                };
                match direction {
                    Direction::Egress => self.on_client_method(number, id, args, frame, out),
                    Direction::Ingress => self.on_server_method(number, id, args, frame, out),
                }
            }
            frame::HEADER | frame::BODY => {
                self.content_channel[usize::from(direction == Direction::Ingress)] = Some(number);
                let content = match direction {
                    Direction::Egress => &mut channel.writing,
                    Direction::Ingress => &mut channel.reading,
                };
                let Some(current) = content else {
                    return;
                };
                if let Some(call) = &mut current.call {
                    match direction {
                        Direction::Egress => call.exchange.request_bytes += frame.header.total(),
                        Direction::Ingress => call.exchange.response_bytes += frame.header.total(),
                    }
                }
                if frame.header.kind == frame::HEADER {
                    if let Some(call) = &mut current.call {
                        let key = link_from_properties(payload, &mut call.exchange);
                        let awaited = &mut self.awaited_replies;
                        if let Some(key) = key.filter(|_| direction == Direction::Egress) {
                            if awaited.len() < MAX_PENDING {
                                awaited.push(key);
                            }
                        }
                    }
                    current.body_left = frame::body_size(payload);
                    // Cut before its size: the body cannot be followed.
                    if current.body_left.is_none() {
                        if let Some(call) = &mut current.call {
                            call.partial = true;
                        }
                        current.body_left = Some(0);
                    }
                } else if let Some(left) = &mut current.body_left {
                    *left = left.saturating_sub(u64::from(frame.header.size));
                }
                if current.body_left == Some(0) {
                    if let Some(done) = content.take() {
                        self.content_done(number, direction, done, frame.end_ns, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Bytes the framing passed over (a frame header in a gap, and what
    /// follows until a segment starts with a frame) belong to the content
    /// being written or read: the rest of a large message's body frames.
    fn count_skipped(&mut self, direction: Direction, skipped: u64) {
        let side = usize::from(direction == Direction::Ingress);
        let Some(number) = self.content_channel[side] else {
            return;
        };
        let Some(channel) = self.channels.get_mut(&number) else {
            return;
        };
        let content = match direction {
            Direction::Egress => &mut channel.writing,
            Direction::Ingress => &mut channel.reading,
        };
        if let Some(call) = content.as_mut().and_then(|c| c.call.as_mut()) {
            match direction {
                Direction::Egress => call.exchange.request_bytes += skipped,
                Direction::Ingress => call.exchange.response_bytes += skipped,
            }
        }
    }

    fn channel(&mut self, number: u16) -> &mut Channel {
        self.channels.entry(number).or_default()
    }

    fn on_client_method(
        &mut self,
        number: u16,
        id: (u16, u16),
        mut args: Args<'_>,
        frame: &Framed<FrameHeader>,
        out: &mut Vec<MessagingCall>,
    ) {
        match id {
            frame::BASIC_PUBLISH => {
                let _reserved = args.u16();
                let exchange = args.short_str();
                let routing_key = args.short_str();
                let mut call = new_call(MessagingOperation::Publish, exchange, routing_key, frame);
                call.exchange.request_bytes = frame.header.total();
                let channel = self.channel(number);
                // A publish whose content's end was lost to the capture was
                // written by now: the broker numbers it for its confirmation
                // all the same.
                let unfinished = channel.writing.replace(Content {
                    call: Some(call),
                    delivery_tag: 0,
                    no_ack: false,
                    body_left: None,
                });
                if let Some(unfinished) = unfinished {
                    self.content_done(number, Direction::Egress, unfinished, frame.start_ns, out);
                }
            }
            frame::CONFIRM_SELECT => {
                let channel = self.channel(number);
                channel.confirms = true;
                channel.published = 0;
            }
            frame::BASIC_CONSUME => {
                let _reserved = args.u16();
                let _queue = args.short_str();
                let tag = args.short_str().unwrap_or_default().to_vec();
                let no_ack = args.u8().is_some_and(|bits| bits & 0b10 != 0);
                let channel = self.channel(number);
                if tag.is_empty() {
                    if channel.consumes_untagged.len() < MAX_PENDING {
                        channel.consumes_untagged.push_back(no_ack);
                    }
                } else if no_ack && channel.no_ack_consumers.len() < MAX_PENDING {
                    channel.no_ack_consumers.push(tag);
                }
            }
            frame::BASIC_ACK | frame::BASIC_NACK | frame::BASIC_REJECT => {
                let tag = args.u64().unwrap_or(0);
                let multiple = id != frame::BASIC_REJECT && args.u8().is_some_and(|b| b & 1 != 0);
                let failure = (id != frame::BASIC_ACK).then_some(AMQP_REJECTED);
                // A delivery whose content's end the capture lost was all
                // read if the client settles it.
                let channel = self.channel(number);
                let reading_tag = channel.reading.as_ref().map(|c| c.delivery_tag);
                if reading_tag.is_some_and(|t| t == tag || (multiple && (tag == 0 || t <= tag))) {
                    if let Some(unfinished) = channel.reading.take() {
                        self.content_done(
                            number,
                            Direction::Ingress,
                            unfinished,
                            frame.start_ns,
                            out,
                        );
                    }
                }
                let channel = self.channel(number);
                let settled = settle(&mut channel.unacked, tag, multiple);
                if settled.is_empty() {
                    self.stats.unmatched_acks += 1;
                }
                for mut call in settled {
                    call.end_ns = frame.start_ns.max(call.start_ns);
                    call.exchange.error_code = failure;
                    call.exchange.request_bytes += frame.header.total();
                    out.push(call);
                }
            }
            _ => {}
        }
    }

    fn on_server_method(
        &mut self,
        number: u16,
        id: (u16, u16),
        mut args: Args<'_>,
        frame: &Framed<FrameHeader>,
        out: &mut Vec<MessagingCall>,
    ) {
        match id {
            frame::BASIC_DELIVER => {
                let consumer_tag = args.short_str().unwrap_or_default();
                let delivery_tag = args.u64().unwrap_or(0);
                let _redelivered = args.u8();
                let exchange = args.short_str();
                let routing_key = args.short_str();
                let mut call = new_call(MessagingOperation::Process, exchange, routing_key, frame);
                call.exchange.response_bytes = frame.header.total();
                let channel = self.channel(number);
                let no_ack = channel.no_ack_consumers.iter().any(|t| t == consumer_tag);
                // A delivery whose content's end the capture lost was all read by now.
                let unfinished = channel.reading.replace(Content {
                    call: Some(call),
                    delivery_tag,
                    no_ack,
                    body_left: None,
                });
                if let Some(unfinished) = unfinished {
                    self.content_done(number, Direction::Ingress, unfinished, frame.start_ns, out);
                }
            }
            frame::BASIC_RETURN | frame::BASIC_GET_OK => {
                if id == frame::BASIC_RETURN {
                    // An unroutable mandatory publish: it fails with the code.
                    let code = args.u16().and_then(|c| i16::try_from(c).ok());
                    let _text = args.short_str();
                    let exchange = args.short_str().map(exchange_name);
                    let channel = self.channel(number);
                    let returned = channel
                        .unconfirmed
                        .iter_mut()
                        .find(|(_, call)| call.exchange.destination == exchange);
                    if let Some((_, call)) = returned {
                        call.exchange.error_code = code;
                    }
                }
                // Its content is read over.
                self.channel(number).reading = Some(Content {
                    call: None,
                    delivery_tag: 0,
                    no_ack: true,
                    body_left: None,
                });
            }
            frame::BASIC_CONSUME_OK => {
                let tag = args.short_str().unwrap_or_default().to_vec();
                let channel = self.channel(number);
                if channel.consumes_untagged.pop_front() == Some(true)
                    && channel.no_ack_consumers.len() < MAX_PENDING
                {
                    channel.no_ack_consumers.push(tag);
                }
            }
            frame::BASIC_ACK | frame::BASIC_NACK => {
                let tag = args.u64().unwrap_or(0);
                let multiple = args.u8().is_some_and(|b| b & 1 != 0);
                // A publish whose content's end the capture lost was all
                // written if the broker confirms its number.
                let channel = self.channel(number);
                let next = channel.published + 1;
                if channel.confirms && (next <= tag || (multiple && tag == 0)) {
                    if let Some(unfinished) = channel.writing.take() {
                        self.content_done(
                            number,
                            Direction::Egress,
                            unfinished,
                            frame.start_ns,
                            out,
                        );
                    }
                }
                let channel = self.channel(number);
                let settled = settle(&mut channel.unconfirmed, tag, multiple);
                if settled.is_empty() {
                    self.stats.unmatched_acks += 1;
                }
                for mut call in settled {
                    call.end_ns = frame.end_ns.max(call.start_ns);
                    if id == frame::BASIC_NACK {
                        call.exchange.error_code = Some(AMQP_NACK);
                    }
                    call.exchange.response_bytes += frame.header.total();
                    out.push(call);
                }
            }
            frame::CHANNEL_CLOSE | frame::CONNECTION_CLOSE => {
                // The broker ends the channel (or every channel) for an error
                // of the last command: what waits on it fails with the code.
                let code = args.u16().and_then(|c| i16::try_from(c).ok());
                let closed: Vec<u16> = if id == frame::CHANNEL_CLOSE {
                    vec![number]
                } else {
                    self.channels.keys().copied().collect()
                };
                for closed in closed {
                    if let Some(channel) = self.channels.remove(&closed) {
                        close_channel(channel, code, frame.end_ns, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// A publish's or a delivery's content was all written or read.
    fn content_done(
        &mut self,
        number: u16,
        direction: Direction,
        content: Content,
        end_ns: u64,
        out: &mut Vec<MessagingCall>,
    ) {
        let Some(mut call) = content.call else {
            return;
        };
        let channel = self.channel(number);
        let (waiting, tag) = match direction {
            Direction::Egress if channel.confirms => {
                channel.published += 1;
                (&mut channel.unconfirmed, channel.published)
            }
            Direction::Ingress if !content.no_ack => (&mut channel.unacked, content.delivery_tag),
            Direction::Egress | Direction::Ingress => {
                call.end_ns = end_ns;
                out.push(call);
                return;
            }
        };
        if waiting.len() >= MAX_PENDING {
            self.stats.pending_dropped += 1;
            return;
        }
        call.end_ns = end_ns;
        waiting.push_back((tag, call));
    }
}

/// The operations a `basic.ack`/`nack` of `tag` settles: that one, or with
/// `multiple` every one up to it (tag 0 with `multiple`: all).
fn settle(
    waiting: &mut VecDeque<(u64, MessagingCall)>,
    tag: u64,
    multiple: bool,
) -> Vec<MessagingCall> {
    let mut settled = Vec::new();
    if multiple {
        while let Some((front, _)) = waiting.front() {
            if tag != 0 && *front > tag {
                break;
            }
            if let Some((_, call)) = waiting.pop_front() {
                settled.push(call);
            }
        }
    } else if let Some(at) = waiting.iter().position(|(t, _)| *t == tag) {
        if let Some((_, call)) = waiting.remove(at) {
            settled.push(call);
        }
    }
    settled
}

/// A closed channel's publishes fail with the broker's code; its
/// deliveries, which the broker requeues, end partial.
fn close_channel(channel: Channel, code: Option<i16>, end_ns: u64, out: &mut Vec<MessagingCall>) {
    let writing = channel.writing.and_then(|c| c.call);
    for mut call in channel
        .unconfirmed
        .into_iter()
        .map(|(_, c)| c)
        .chain(writing)
    {
        call.end_ns = end_ns.max(call.start_ns);
        call.exchange.error_code = code;
        out.push(call);
    }
    let reading = channel.reading.and_then(|c| c.call);
    for mut call in channel.unacked.into_iter().map(|(_, c)| c).chain(reading) {
        call.end_ns = end_ns.max(call.start_ns);
        call.partial = true;
        out.push(call);
    }
}

/// The exchange as spans name it: the default exchange (`""`) is `amq.default`.
fn exchange_name(exchange: &[u8]) -> String {
    if exchange.is_empty() {
        DEFAULT_EXCHANGE.to_owned()
    } else {
        bounded_text(exchange, MAX_NAME)
    }
}

fn new_call(
    operation: MessagingOperation,
    exchange: Option<&[u8]>,
    routing_key: Option<&[u8]>,
    frame: &Framed<FrameHeader>,
) -> MessagingCall {
    let mut messaging = MessagingExchange::new(MessagingSystem::Rabbitmq, operation);
    messaging.destination = exchange.map(exchange_name);
    messaging.routing_key = routing_key
        .filter(|k| !k.is_empty())
        .map(|k| bounded_text(k, MAX_NAME));
    messaging.message_count = Some(1);
    MessagingCall {
        exchange: messaging.named(),
        start_ns: frame.start_ns,
        end_ns: frame.end_ns,
        // Its arguments were cut by the capture: fields may be missing.
        partial: exchange.is_none(),
    }
}

/// Reads what trace linking needs of a publish's or a delivery's content
/// header into its exchange: the `traceparent` of its headers (an SDK's
/// instrumentation writes one), and, for an RPC request (`reply-to` and
/// `correlation-id` both set), the key the request and its delivery to the
/// responder share, which it returns. The correlation id alone is keyed: the
/// broker rewrites a direct reply-to (`amq.rabbitmq.reply-to`) on its way.
fn link_from_properties(payload: &[u8], exchange: &mut MessagingExchange) -> Option<u64> {
    let properties = frame::link_properties(payload);
    exchange.traceparent = properties
        .traceparent
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(|value| value.chars().take(64).collect());
    properties.reply_to?;
    let key = reply_key(&("amqp correlation-id", properties.correlation_id?));
    exchange.reply_key = Some(key);
    Some(key)
}
