//! One MQTT connection's state, from the client's side. A PUBLISH the
//! client writes is a `publish` operation: at QoS 0 it ends when written,
//! at QoS 1 with the broker's PUBACK, at QoS 2 with its PUBCOMP (or a
//! PUBREC that refuses it). A PUBLISH the client reads is a `process`
//! operation, from its read to the client's acknowledgement (PUBACK, or
//! PUBCOMP at QoS 2: clients acknowledge once the message was handed to the
//! application); at QoS 0 it is the read alone. Acknowledgements are paired
//! by packet id, per direction (an acknowledgement's reason code, MQTT 5's,
//! is read when it is there). CONNECT gives the client id; other control
//! packets (SUBSCRIBE, PINGREQ…) are read over.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use zerotrace_shared::event::Direction;

use super::packet::{self, FixedHeader, Packet, PacketReader};
use crate::protocols::db::{bounded_text, MAX_PENDING};
use crate::protocols::messaging_call::MessagingCall;
use crate::protocols::prefix_framer::ReadEvent;
use crate::spans::messaging::reply_key;
use crate::spans::{MessagingExchange, MessagingOperation, MessagingSystem};

/// Bytes of a packet kept past its fixed header: a PUBLISH's topic and
/// packet id, an acknowledgement's reason code come first.
const KEPT_BYTES: usize = 1024;
/// Longest topic or client id kept.
const MAX_NAME: usize = 256;

/// What a connection could not follow. Counts only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttStats {
    /// Times a direction lost its framing.
    pub resyncs: u64,
    /// Acknowledgements that answered no publish waiting.
    pub unmatched_acks: u64,
    /// Publishes dropped because too many waited.
    pub pending_dropped: u64,
    /// Publishes whose acknowledgement never came (at the close).
    pub unanswered: u64,
}

/// A publish waiting for its acknowledgement.
#[derive(Debug)]
struct Waiting {
    packet_id: u16,
    /// Acknowledged by PUBACK (QoS 1) or PUBCOMP (QoS 2).
    qos: u8,
    call: MessagingCall,
}

/// One MQTT connection's decoder.
#[derive(Debug)]
pub struct MqttConnection {
    client: PacketReader,
    server: PacketReader,
    client_id: Option<String>,
    /// The client's publishes waiting for the broker's acknowledgement.
    sent: VecDeque<Waiting>,
    /// Messages delivered to the client, waiting for its acknowledgement.
    delivered: VecDeque<Waiting>,
    stats: MqttStats,
    events: Vec<ReadEvent<FixedHeader>>,
    /// The client's CONNECT asked for MQTT 5: its PUBLISHes carry
    /// properties (unknown on a connection joined mid-stream: not read).
    level_5: bool,
    /// Reply keys of the requests written since they were last taken
    /// ([`Self::take_awaited_replies`]).
    awaited_replies: Vec<u64>,
}

impl Default for MqttConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl MqttConnection {
    pub fn new() -> Self {
        Self {
            client: PacketReader::new(KEPT_BYTES),
            server: PacketReader::new(KEPT_BYTES),
            client_id: None,
            sent: VecDeque::new(),
            delivered: VecDeque::new(),
            stats: MqttStats::default(),
            events: Vec::new(),
            level_5: false,
            awaited_replies: Vec::new(),
        }
    }

    /// A connection joined mid-stream (opened before the agent): no
    /// CONNECT comes (no client id), and each direction finds its framing at
    /// a segment that starts with a packet.
    pub fn joined_mid_stream() -> Self {
        Self {
            client: PacketReader::new_lost(KEPT_BYTES),
            server: PacketReader::new_lost(KEPT_BYTES),
            ..Self::new()
        }
    }

    /// When the oldest delivery the client has not yet acknowledged was read.
    pub fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
        // In the order they were read.
        self.delivered.front().map(|waiting| waiting.call.start_ns)
    }

    /// Moves the reply keys of the MQTT 5 requests written since the last
    /// call into `out`: a delivery elsewhere on this host that shares one
    /// is that request's.
    pub fn take_awaited_replies(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.awaited_replies);
    }

    pub fn stats(&self) -> MqttStats {
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
        let mut events = std::mem::take(&mut self.events);
        match direction {
            Direction::Egress => self.client.feed(captured, gap, ts_ns, &mut events),
            Direction::Ingress => self.server.feed(captured, gap, ts_ns, &mut events),
        }
        for event in events.drain(..) {
            match event {
                ReadEvent::Frame(packet) => self.on_packet(direction, &packet, out),
                // Acknowledgements in the lost bytes leave their publishes
                // waiting: they end, partial, at the close.
                ReadEvent::Lost => {}
            }
        }
        self.events = events;
    }

    /// The connection closed: what still waits for an acknowledgement ends partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<MessagingCall>) {
        for waiting in self.sent.drain(..).chain(self.delivered.drain(..)) {
            let mut call = waiting.call;
            call.end_ns = call.end_ns.max(ts_ns);
            call.partial = true;
            self.stats.unanswered += 1;
            out.push(call);
        }
    }

    fn on_packet(&mut self, direction: Direction, packet: &Packet, out: &mut Vec<MessagingCall>) {
        let kind = packet.header.kind;
        match (kind, direction) {
            (packet::CONNECT, Direction::Egress) => {
                if let Some(connect) = packet::connect(&packet.body) {
                    self.level_5 = connect.level == packet::LEVEL_5;
                    self.client_id = connect
                        .client_id
                        .filter(|id| !id.is_empty())
                        .map(|id| bounded_text(id, MAX_NAME));
                }
            }
            (packet::PUBLISH, _) => self.on_publish(direction, packet, out),
            (packet::PUBACK | packet::PUBREC | packet::PUBCOMP, _) => {
                self.on_ack(direction, packet, out)
            }
            _ => {}
        }
    }

    fn on_publish(&mut self, direction: Direction, packet: &Packet, out: &mut Vec<MessagingCall>) {
        let operation = match direction {
            Direction::Egress => MessagingOperation::Publish,
            Direction::Ingress => MessagingOperation::Process,
        };
        let mut exchange = MessagingExchange::new(MessagingSystem::Mqtt, operation);
        exchange.client_id = self.client_id.clone();
        let publish = packet::publish(&packet.header, &packet.body);
        exchange.destination = publish
            .as_ref()
            .map(|p| bounded_text(p.topic, MAX_NAME))
            .filter(|t| !t.is_empty());
        exchange.message_count = Some(1);
        if self.level_5 {
            let key = link_from_properties(&packet.header, &packet.body, &mut exchange);
            if let Some(key) = key.filter(|_| direction == Direction::Egress) {
                if self.awaited_replies.len() < MAX_PENDING {
                    self.awaited_replies.push(key);
                }
            }
        }
        let size = packet.header.len as u64 + packet.header.remaining;
        match direction {
            Direction::Egress => exchange.request_bytes = size,
            Direction::Ingress => exchange.response_bytes = size,
        }
        let call = MessagingCall {
            exchange: exchange.named(),
            start_ns: packet.start_ns,
            end_ns: packet.end_ns,
            // The topic lies past what was captured.
            partial: publish.is_none(),
        };
        let qos = packet.header.qos();
        let Some(packet_id) = publish.and_then(|p| p.packet_id).filter(|_| qos > 0) else {
            out.push(call);
            return;
        };
        let queue = match direction {
            Direction::Egress => &mut self.sent,
            Direction::Ingress => &mut self.delivered,
        };
        if queue.len() >= MAX_PENDING {
            self.stats.pending_dropped += 1;
            return;
        }
        queue.push_back(Waiting {
            packet_id,
            qos,
            call,
        });
    }

    /// An acknowledgement: the broker's (read) ends a publish of the
    /// client; the client's (written) ends the processing of a delivery.
    fn on_ack(&mut self, direction: Direction, packet: &Packet, out: &mut Vec<MessagingCall>) {
        let Some((packet_id, reason)) = packet::ack(&packet.body) else {
            return;
        };
        let kind = packet.header.kind;
        let queue = match direction {
            Direction::Ingress => &mut self.sent,
            Direction::Egress => &mut self.delivered,
        };
        let Some(at) = queue.iter().position(|w| w.packet_id == packet_id) else {
            // A PUBREC at QoS 2 is answered, the flow goes on to PUBCOMP;
            // one for no publish waiting is unmatched like any other.
            self.stats.unmatched_acks += 1;
            return;
        };
        let refused = reason >= 0x80;
        let ends = match (queue[at].qos, kind) {
            (1, packet::PUBACK) | (2, packet::PUBCOMP) => true,
            (2, packet::PUBREC) => refused,
            _ => false,
        };
        let own = match direction {
            Direction::Ingress => packet.end_ns,
            Direction::Egress => packet.start_ns,
        };
        if !ends {
            return;
        }
        if let Some(waiting) = queue.remove(at) {
            let mut call = waiting.call;
            call.end_ns = own.max(call.start_ns);
            if refused {
                call.exchange.error_code = Some(i16::from(reason));
            }
            match direction {
                Direction::Ingress => call.exchange.response_bytes += packet_size(packet),
                Direction::Egress => call.exchange.request_bytes += packet_size(packet),
            }
            out.push(call);
        }
    }
}

fn packet_size(packet: &Packet) -> u64 {
    packet.header.len as u64 + packet.header.remaining
}

/// Reads what trace linking needs of an MQTT 5 PUBLISH into its exchange:
/// a `traceparent` user property, and, for a request (response topic and
/// correlation data both set: MQTT 5's request/response), the key the
/// request and its delivery to the responder share (the broker passes both
/// on unaltered), which it returns.
fn link_from_properties(
    header: &FixedHeader,
    body: &[u8],
    exchange: &mut MessagingExchange,
) -> Option<u64> {
    let properties = packet::publish_link_properties(header, body);
    exchange.traceparent = properties
        .traceparent
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(|value| value.chars().take(64).collect());
    let key = reply_key(&(
        "mqtt response",
        properties.response_topic?,
        properties.correlation_data?,
    ));
    exchange.reply_key = Some(key);
    Some(key)
}
