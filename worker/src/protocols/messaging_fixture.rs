//! The messaging decoders' recorded exchanges (`worker/testdata/`) replayed
//! into [`MessagingCall`]s, as `db::fixture` replays the databases'.

use super::db::fixture::{captured_pieces, connections, replay, Chunk, Cut};
use super::messaging_call::MessagingCall;
use super::messaging_session::MessagingDecoder;

/// The operations `decoder` makes of one recorded connection, closed at ts 1,000,000.
pub fn decode_chunks<D: MessagingDecoder>(
    chunks: &[Chunk],
    cut: Cut,
    mut decoder: D,
) -> Vec<MessagingCall> {
    let mut out = Vec::new();
    replay(chunks, cut, |direction, captured, gap, ts| {
        decoder.feed(direction, captured, gap, ts, &mut out)
    });
    decoder.finish(1_000_000, &mut out);
    out
}

/// Replays one recorded connection whole on a new decoder, taking the
/// reply keys of its requests after every segment: (the keys handed over,
/// the keys of the operations it made), which are the same when each
/// request is handed over once.
pub fn requests_handed_over<D: MessagingDecoder>(chunks: &[Chunk]) -> (Vec<u64>, Vec<u64>) {
    let mut decoder = D::new();
    let (mut calls, mut awaited) = (Vec::new(), Vec::new());
    replay(chunks, Cut::Whole, |direction, captured, gap, ts| {
        decoder.feed(direction, captured, gap, ts, &mut calls);
        decoder.take_awaited_replies(&mut awaited);
    });
    let keys = calls.iter().filter_map(|c| c.exchange.reply_key).collect();
    (awaited, keys)
}

/// The operations of every connection of a recording, each on a new decoder.
pub fn decode<D: MessagingDecoder>(fixture: &str, cut: Cut) -> Vec<MessagingCall> {
    connections(fixture)
        .iter()
        .flat_map(|chunks| decode_chunks(chunks, cut, D::new()))
        .collect()
}

/// The operations of a recording's `turns` when each is written or read in
/// the pieces `captured_pieces` makes of it (`first`, then `size` bytes,
/// 512 captured of each); turn `i` is at ts `(i+1)*1000`.
pub fn decode_turns<D: MessagingDecoder>(
    turns: &[Chunk],
    first: usize,
    size: usize,
) -> Vec<MessagingCall> {
    let mut decoder = D::new();
    let mut out = Vec::new();
    for (i, (direction, bytes)) in turns.iter().enumerate() {
        let ts = (i as u64 + 1) * 1000;
        for (captured, gap) in captured_pieces(bytes, first, size, 512) {
            decoder.feed(*direction, &captured, gap, ts, &mut out);
        }
    }
    decoder.finish(1_000_000, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use zerotrace_shared::event::Direction;

    use super::super::amqp::AmqpConnection;
    use super::super::kafka::KafkaConnection;
    use super::super::mqtt::MqttConnection;
    use super::super::nats::NatsConnection;
    use super::*;
    use crate::spans::MessagingOperation;

    /// Replays `fixture` (each connection whole, then in 7-byte pieces) and
    /// checks, segment by segment, that a delivery ended by the client's
    /// acknowledgement, if waited for, was waited for from its read (so a
    /// call made while it was processed waits for its span), and that
    /// nothing waits at the end. Returns how many deliveries were
    /// acknowledged, and how many of them were waited for.
    fn deliveries_followed<D: MessagingDecoder>(fixture: &str) -> (usize, usize) {
        let (mut acknowledged, mut waited) = (0, 0);
        for cut in [Cut::Whole, Cut::Pieces(7)] {
            for chunks in connections(fixture) {
                let mut decoder = D::new();
                let mut out = Vec::new();
                replay(&chunks, cut, |direction, captured, gap, ts| {
                    let waiting = decoder.oldest_unacknowledged_delivery_ns();
                    let before = out.len();
                    decoder.feed(direction, captured, gap, ts, &mut out);
                    let processed = out[before..]
                        .iter()
                        .filter(|call| call.exchange.operation == MessagingOperation::Process);
                    for call in processed.filter(|_| direction == Direction::Egress) {
                        acknowledged += 1;
                        if let Some(oldest) = waiting {
                            assert!(oldest <= call.start_ns, "{cut:?}: {call:?} ({oldest})");
                            waited += 1;
                        }
                    }
                });
                assert_eq!(decoder.oldest_unacknowledged_delivery_ns(), None);
            }
        }
        (acknowledged, waited)
    }

    #[test]
    fn deliveries_are_waited_for_from_their_read_to_their_acknowledgement() {
        let consume = |dir: &str, name: &str| {
            std::fs::read_to_string(format!(
                "{}/testdata/{dir}/{name}.txt",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
        };
        // Each whole and in pieces: paho's at QoS 1 and 2 (QoS 0 acknowledges
        // nothing), pika's three jobs, the request nats-py's responder
        // answered. The JetStream message is not waited for: the connection
        // acknowledged none before it (an `AckNone` consumer's never would;
        // `protocols/nats/tests.rs` waits for the next).
        let mqtt = consume("mqtt", "paho_consume");
        assert_eq!(deliveries_followed::<MqttConnection>(&mqtt), (2 * 2, 2 * 2));
        let amqp = consume("amqp", "pika_consume");
        assert_eq!(deliveries_followed::<AmqpConnection>(&amqp), (2 * 3, 2 * 3));
        let answered = consume("nats", "nats_request");
        assert_eq!(deliveries_followed::<NatsConnection>(&answered), (2, 2));
        let jetstream = consume("nats", "nats_jetstream");
        assert_eq!(deliveries_followed::<NatsConnection>(&jetstream), (2, 0));
        // A Kafka consumer polls: nothing is delivered of the broker's accord.
        let kafka = consume("kafka", "kafka_python_consume");
        assert_eq!(deliveries_followed::<KafkaConnection>(&kafka), (0, 0));
    }
}
