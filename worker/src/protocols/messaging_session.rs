//! [`MessagingSession`]: the messaging decoders (Kafka, MQTT, AMQP, NATS) in the
//! protocol registry. One generic session wraps each decoder: detection from
//! the client's side of the connection (a broker's own connections are not
//! decoded), one PRODUCER or CONSUMER span per operation, the decoder's
//! losses in the shared counters, and what trace linking needs of it (the
//! oldest delivery not yet acknowledged, the keys of requests written).

use zerotrace_shared::event::Direction;

use super::amqp::connection::AmqpStats;
use super::amqp::AmqpConnection;
use super::counters::DecodeCounters;
use super::db::Detection;
use super::db_session::client_side_check;
use super::kafka::connection::KafkaStats;
use super::kafka::KafkaConnection;
use super::messaging_call::MessagingCall;
use super::mqtt::connection::MqttStats;
use super::mqtt::MqttConnection;
use super::nats::connection::NatsStats;
use super::nats::NatsConnection;
use super::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};

/// Reply keys kept between two takes (the pipeline takes them at every
/// flush): past this the oldest are dropped (their deliveries go unlinked).
/// Checked here, where keys are added, so that other protocols' segments
/// pay nothing.
const MAX_AWAITED_REPLIES: usize = 65_536;

/// What the registry needs of a messaging decoder.
pub trait MessagingDecoder: std::fmt::Debug {
    /// The decoder's side-effect-free check of one direction's first bytes,
    /// the direction seen from the client.
    fn check(first_bytes: &[u8], direction: Direction) -> Detection;
    fn new() -> Self;
    /// The state of a connection whose first bytes (in `first.direction`)
    /// were found to be this protocol's: from its start, or joined mid-stream.
    fn start(first: &FirstBytes<'_>) -> Self
    where
        Self: Sized,
    {
        let _ = first;
        Self::new()
    }
    /// One segment: `captured` bytes, then `missing` bytes not captured.
    fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        missing: u64,
        ts_ns: u64,
        out: &mut Vec<MessagingCall>,
    );
    /// The connection closed: what still waits ends.
    fn finish(&mut self, ts_ns: u64, out: &mut Vec<MessagingCall>);
    /// Adds what the decoder lost or refused so far to the shared counters.
    fn add_counts(&self, counters: &mut DecodeCounters);
    /// When the oldest delivery the client has not acknowledged was read
    /// (None: the protocol delivers nothing, or nothing waits).
    fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64>;
    /// Moves the reply keys of the requests written since the last call
    /// into `out` (NATS's, and AMQP's RPC requests; Kafka and MQTT 3
    /// requests name no reply).
    fn take_awaited_replies(&mut self, out: &mut Vec<u64>) {
        let _ = out;
    }
}

/// A decoder's [`MessagingDecoder`] from its inherent `new`, `feed`,
/// `finish` and `stats`, its protocol's `check`, and how its stats count.
macro_rules! messaging_decoder {
    ($decoder:ty, $check:path, $counts:path, $deliveries:expr $(, $start:path)? $(; awaits $awaits:path)?) => {
        impl MessagingDecoder for $decoder {
            fn check(first_bytes: &[u8], direction: Direction) -> Detection {
                $check(first_bytes, direction)
            }
            fn new() -> Self {
                <$decoder>::new()
            }
            fn feed(
                &mut self,
                direction: Direction,
                captured: &[u8],
                missing: u64,
                ts_ns: u64,
                out: &mut Vec<MessagingCall>,
            ) {
                <$decoder>::feed(self, direction, captured, missing, ts_ns, out);
            }
            fn finish(&mut self, ts_ns: u64, out: &mut Vec<MessagingCall>) {
                <$decoder>::finish(self, ts_ns, out);
            }
            fn add_counts(&self, counters: &mut DecodeCounters) {
                $counts(&self.stats(), counters);
            }
            fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
                let oldest: fn(&$decoder) -> Option<u64> = $deliveries;
                oldest(self)
            }
            $(fn take_awaited_replies(&mut self, out: &mut Vec<u64>) {
                $awaits(self, out)
            })?
            $(fn start(first: &FirstBytes<'_>) -> Self {
                $start(first)
            })?
        }
    };
}

// A Kafka consumer polls: the broker delivers nothing of its own accord.
messaging_decoder!(KafkaConnection, super::kafka::check, kafka_counts, |_| None);
messaging_decoder!(
    MqttConnection,
    super::mqtt::check,
    mqtt_counts,
    MqttConnection::oldest_unacknowledged_delivery_ns,
    mqtt_start;
    awaits MqttConnection::take_awaited_replies
);

/// From the start when the client's CONNECT is the first thing seen;
/// otherwise joined mid-stream.
fn mqtt_start(first: &FirstBytes<'_>) -> MqttConnection {
    if first.direction == Direction::Egress && first.bytes.first() == Some(&0x10) {
        MqttConnection::new()
    } else {
        MqttConnection::joined_mid_stream()
    }
}
messaging_decoder!(
    AmqpConnection,
    super::amqp::check,
    amqp_counts,
    AmqpConnection::oldest_unacknowledged_delivery_ns,
    amqp_start;
    awaits AmqpConnection::take_awaited_replies
);

/// From the start when the client's protocol header is the first thing
/// seen; otherwise joined mid-stream.
fn amqp_start(first: &FirstBytes<'_>) -> AmqpConnection {
    if first.direction == Direction::Egress && first.bytes.starts_with(b"AMQP") {
        AmqpConnection::new()
    } else {
        AmqpConnection::joined_mid_stream()
    }
}

messaging_decoder!(
    NatsConnection,
    super::nats::check,
    nats_counts,
    NatsConnection::oldest_unacknowledged_delivery_ns,
    nats_start;
    awaits NatsConnection::take_awaited_replies
);

/// From the start when the server's greeting or the client's CONNECT is
/// the first thing seen; otherwise joined mid-stream.
fn nats_start(first: &FirstBytes<'_>) -> NatsConnection {
    if super::nats::starts_with_greeting(first.bytes, first.direction) {
        NatsConnection::new()
    } else {
        NatsConnection::joined_mid_stream()
    }
}

/// Unpaired responses, dropped and unanswered requests go where the other
/// protocols' do; a loss of framing is a framing loss, a message that is
/// not Kafka's a garbage segment.
fn kafka_counts(stats: &KafkaStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_responses;
    counters.dropped_requests += stats.pending_dropped;
    counters.unanswered_requests += stats.unanswered;
    counters.framing_lost += stats.resyncs;
    counters.garbage_segments += stats.bad_messages;
}

/// Acknowledgements of no publish are unpaired responses, publishes never
/// acknowledged unanswered requests, dropped ones dropped requests.
fn mqtt_counts(stats: &MqttStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_acks;
    counters.dropped_requests += stats.pending_dropped;
    counters.unanswered_requests += stats.unanswered;
    counters.framing_lost += stats.resyncs;
}

/// `-ERR`s that ended nothing are unpaired responses, requests never
/// answered unanswered requests, lines that are not NATS garbage.
fn nats_counts(stats: &NatsStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_errors;
    counters.unanswered_requests += stats.unanswered;
    counters.framing_lost += stats.resyncs;
    counters.garbage_segments += stats.bad_lines;
}

/// Acknowledgements of nothing waiting are unpaired responses, operations
/// never acknowledged unanswered requests, frames without their end garbage.
fn amqp_counts(stats: &AmqpStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_acks;
    counters.dropped_requests += stats.pending_dropped;
    counters.unanswered_requests += stats.unanswered;
    counters.framing_lost += stats.resyncs;
    counters.garbage_segments += stats.bad_frames;
}

/// One messaging connection of a client process, decoded by `D`.
#[derive(Debug)]
pub struct MessagingSession<D> {
    decoder: D,
}

impl<D> MessagingSession<D> {
    fn emit(conn: &ConnectionInfo, sink: &mut Sink<'_, Vec<MessagingCall>>) {
        sink.spans
            .extend(sink.scratch.drain(..).map(|call| call.into_span(conn)));
    }
}

impl<D: MessagingDecoder> ProtocolSession for MessagingSession<D> {
    /// Operations completed by one segment, before they become spans.
    type Scratch = Vec<MessagingCall>;
    type SwitchTo = std::convert::Infallible;

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
        self.decoder.feed(
            segment.direction,
            segment.captured,
            segment.missing,
            segment.ts_ns,
            sink.scratch,
        );
        self.decoder.take_awaited_replies(sink.awaited_replies);
        let awaited = &mut *sink.awaited_replies;
        if awaited.len() > MAX_AWAITED_REPLIES {
            awaited.drain(..awaited.len() - MAX_AWAITED_REPLIES);
        }
        Self::emit(conn, sink);
        ParseOutcome::Parsed
    }

    fn finish(
        &mut self,
        ts_ns: u64,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) {
        self.decoder.finish(ts_ns, sink.scratch);
        Self::emit(conn, sink);
        self.abandon(sink.counters);
    }

    fn abandon(&self, counters: &mut DecodeCounters) {
        self.decoder.add_counts(counters);
    }

    fn add_live_counts(&self, counters: &mut DecodeCounters) {
        self.decoder.add_counts(counters);
    }

    fn oldest_unacknowledged_delivery_ns(&self) -> Option<u64> {
        self.decoder.oldest_unacknowledged_delivery_ns()
    }
}
