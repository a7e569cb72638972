//! The decoder on exchanges recorded between real clients (kafka-python
//! 2.0.2, tansu's own `tansu cat`) and a real broker (tansu 0.6.0):
//! `worker/testdata/kafka/`, replayed whole, in small pieces and with
//! kernel-sized captures.

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{self, Cut};
use crate::spans::MessagingOperation;

const PRODUCE: &str = include_str!("../../../testdata/kafka/kafka_python_produce.txt");
const CONSUME: &str = include_str!("../../../testdata/kafka/kafka_python_consume.txt");
const INVALID: &str = include_str!("../../../testdata/kafka/kafka_python_invalid_record.txt");
const TANSU_CAT: &str = include_str!("../../../testdata/kafka/tansu_cat_consume.txt");
const ACKS0: &str = include_str!("../../../testdata/kafka/kafka_python_acks0.txt");

const CUTS: [Cut; 4] = [
    Cut::Whole,
    Cut::Pieces(1),
    Cut::Pieces(7),
    Cut::Capture(512),
];

/// Every connection of a recording through a fresh decoder; the stats summed.
fn decode(recording: &str, cut: Cut) -> (Vec<KafkaOperation>, KafkaStats) {
    let mut ops = Vec::new();
    let mut total = KafkaStats::default();
    for chunks in fixture::connections(recording) {
        let mut connection = KafkaConnection::new();
        fixture::replay(&chunks, cut, |direction, captured, gap, ts| {
            connection.feed(direction, captured, gap, ts, &mut ops)
        });
        connection.finish(1_000_000, &mut ops);
        let stats = connection.stats();
        total.resyncs += stats.resyncs;
        total.bad_messages += stats.bad_messages;
        total.unmatched_responses += stats.unmatched_responses;
        total.unanswered += stats.unanswered;
        total.other_calls += stats.other_calls;
    }
    (ops, total)
}

#[test]
fn every_connection_of_the_recordings_is_kafka_from_its_first_write() {
    for recording in [PRODUCE, CONSUME, INVALID, TANSU_CAT, ACKS0] {
        for chunks in fixture::connections(recording) {
            let (direction, first) = &chunks[0];
            assert_eq!(*direction, Direction::Egress);
            assert_eq!(check(first, Direction::Egress), Detection::Yes);
            for len in 1..14 {
                assert_eq!(check(&first[..len], Direction::Egress), Detection::NeedMore);
            }
            // A client speaks first: a broker's bytes start nothing.
            assert_eq!(check(&chunks[1].1, Direction::Ingress), Detection::No);
        }
    }
}

#[test]
fn other_protocols_first_bytes_are_not_kafka() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"get user:1\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(check(bytes, Direction::Egress), Detection::No, "{bytes:?}");
    }
}

#[test]
fn a_kafka_python_produce_is_one_send_with_its_topic_partition_and_count() {
    for cut in CUTS {
        let (ops, stats) = decode(PRODUCE, cut);
        assert_eq!(ops.len(), 1, "{cut:?}: {ops:#?}");
        let send = &ops[0].exchange;
        assert_eq!(send.operation, MessagingOperation::Send);
        assert_eq!(send.name, "send orders");
        assert_eq!(send.destination.as_deref(), Some("orders"));
        assert_eq!(send.partition, Some(0));
        assert_eq!(send.client_id.as_deref(), Some("zt-order-producer"));
        assert_eq!(send.message_count, Some(3), "{cut:?}");
        assert_eq!(send.error_code, None);
        assert!(!ops[0].partial, "{cut:?}");
        assert!(ops[0].end_ns >= ops[0].start_ns);
        // ApiVersions and Metadata paired and dropped; nothing lost.
        assert_eq!(stats.other_calls, 3, "{cut:?}");
        assert_eq!(
            (
                stats.resyncs,
                stats.bad_messages,
                stats.unmatched_responses,
                stats.unanswered
            ),
            (0, 0, 0, 0),
            "{cut:?}"
        );
    }
}

#[test]
fn a_produce_the_schema_refuses_carries_invalid_record() {
    for cut in CUTS {
        let (ops, _) = decode(INVALID, cut);
        assert_eq!(ops.len(), 1, "{cut:?}");
        let send = &ops[0].exchange;
        assert_eq!(send.destination.as_deref(), Some("payments"));
        assert_eq!(send.error_code, Some(87));
        assert_eq!(send.error_type().as_deref(), Some("INVALID_RECORD"));
        assert_eq!(send.client_id.as_deref(), Some("zt-payment-producer"));
    }
}

#[test]
fn kafka_python_fetches_are_polls_of_their_topic_and_deliver_the_messages() {
    for cut in CUTS {
        let (ops, stats) = decode(CONSUME, cut);
        assert!(!ops.is_empty(), "{cut:?}");
        for op in &ops {
            let poll = &op.exchange;
            assert_eq!(poll.operation, MessagingOperation::Poll);
            assert_eq!(poll.name, "poll orders");
            assert_eq!(poll.partition, Some(0));
            assert_eq!(poll.client_id.as_deref(), Some("zt-order-consumer"));
            assert_eq!(poll.error_code, None, "{cut:?}");
        }
        let delivered: u64 = ops.iter().filter_map(|op| op.exchange.message_count).sum();
        assert_eq!(delivered, 3, "{cut:?}: {ops:#?}");
        assert_eq!((stats.resyncs, stats.bad_messages), (0, 0), "{cut:?}");
    }
}

#[test]
fn fetch_by_topic_id_is_named_from_the_metadata_of_the_same_connection() {
    // tansu cat: Metadata v12 (topic ids), then Fetch v17 naming the topic by id.
    for cut in CUTS {
        let (ops, _) = decode(TANSU_CAT, cut);
        assert_eq!(ops.len(), 1, "{cut:?}: {ops:#?}");
        let poll = &ops[0].exchange;
        assert_eq!(poll.operation, MessagingOperation::Poll);
        assert_eq!(poll.destination.as_deref(), Some("orders"), "{cut:?}");
        assert_eq!(poll.client_id.as_deref(), Some("tansu-cat"));
        assert_eq!(poll.message_count, Some(3), "{cut:?}");
    }
    // Without that Metadata the id cannot be named: the span is `poll`.
    let connection = fixture::connections(TANSU_CAT).remove(1);
    let mut decoder = KafkaConnection::new();
    let mut ops = Vec::new();
    for (direction, bytes) in connection.iter().skip(2) {
        decoder.feed(*direction, bytes, 0, 1, &mut ops);
    }
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].exchange.destination, None);
    assert_eq!(ops[0].exchange.name, "poll");
}

#[test]
fn a_response_without_its_request_and_garbage_are_counted_never_paired() {
    let connection = fixture::connections(PRODUCE).remove(1);
    let mut decoder = KafkaConnection::new();
    let mut ops = Vec::new();
    // The response alone (joined after the request), then bytes that are not Kafka.
    decoder.feed(Direction::Ingress, &connection[1].1, 0, 1, &mut ops);
    decoder.feed(
        Direction::Egress,
        b"\xff\xff\xff\xffnot kafka at all",
        0,
        2,
        &mut ops,
    );
    decoder.feed(Direction::Egress, &connection[0].1, 0, 3, &mut ops);
    decoder.feed(Direction::Ingress, &connection[1].1, 0, 4, &mut ops);
    assert_eq!(ops.len(), 1, "the request after the resync pairs: {ops:#?}");
    let stats = decoder.stats();
    assert_eq!(stats.unmatched_responses, 1);
    assert_eq!(stats.resyncs, 1);
}

#[test]
fn in_flight_requests_are_capped() {
    let request = &fixture::connections(PRODUCE).remove(1)[0].1;
    let mut decoder = KafkaConnection::new();
    let mut ops = Vec::new();
    for _ in 0..connection::MAX_IN_FLIGHT + 10 {
        decoder.feed(Direction::Egress, request, 0, 1, &mut ops);
    }
    decoder.finish(2, &mut ops);
    assert!(ops.is_empty());
    let stats = decoder.stats();
    assert_eq!(stats.pending_dropped, 10);
    assert_eq!(stats.unanswered, connection::MAX_IN_FLIGHT as u64);
}

#[test]
fn no_recorded_broker_response_passes_for_a_request() {
    // A response's correlation id, read as a request header, is API key 0
    // (Produce) and a small version: only the body tells them apart.
    for recording in [PRODUCE, CONSUME, INVALID, TANSU_CAT] {
        for chunks in fixture::connections(recording) {
            for (direction, bytes) in &chunks {
                let shape = check_request(bytes);
                match direction {
                    Direction::Egress => assert_eq!(shape, RequestShape::Request),
                    Direction::Ingress => {
                        assert_ne!(shape, RequestShape::Request, "{bytes:02x?}")
                    }
                }
            }
        }
    }
}

#[test]
fn an_acks_0_produce_is_done_once_written() {
    // kafka-python with acks=0: two Produce requests, to `orders` and
    // `payments`. A Kafka broker sends no response to them; tansu 0.6.0
    // does, and those responses answer nothing waiting: counted, not paired.
    for cut in CUTS {
        let (ops, stats) = decode(ACKS0, cut);
        let names: Vec<&str> = ops.iter().map(|op| op.exchange.name.as_str()).collect();
        assert_eq!(names, ["send orders", "send payments"], "{cut:?}");
        for op in &ops {
            assert_eq!(op.exchange.client_id.as_deref(), Some("zt-fire-and-forget"));
            assert_eq!(op.exchange.message_count, Some(2), "{cut:?}");
            assert_eq!(op.exchange.response_bytes, 0);
            assert_eq!(op.exchange.error_code, None);
        }
        assert_eq!(stats.unmatched_responses, 2, "{cut:?}");
    }
}
