//! The AMQP 0-9-1 decoder on exchanges recorded from a real client
//! (Debian's pika 1.2, `tests/servers/amqp_app.py`) and a real broker
//! (Debian's RabbitMQ 3.10).

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{connections, Cut};
use crate::protocols::db::Detection;
use crate::protocols::messaging_call::MessagingCall;
use crate::protocols::messaging_fixture;

const PUBLISH: &str = include_str!("../../../testdata/amqp/pika_publish.txt");
const LARGE: &str = include_str!("../../../testdata/amqp/pika_publish_large.txt");
const CONSUME: &str = include_str!("../../../testdata/amqp/pika_consume.txt");
const RPC: &str = include_str!("../../../testdata/amqp/pika_rpc.txt");

fn decode(fixture: &str, cut: Cut) -> Vec<MessagingCall> {
    messaging_fixture::decode::<AmqpConnection>(fixture, cut)
}

fn show(calls: &[MessagingCall]) -> Vec<String> {
    calls
        .iter()
        .map(|call| {
            let e = &call.exchange;
            format!(
                "{} | {} | {} | {} | {}-{}{}",
                e.summary(),
                e.routing_key.as_deref().unwrap_or("-"),
                e.error_type().as_deref().unwrap_or("ok"),
                e.request_bytes + e.response_bytes,
                call.start_ns,
                call.end_ns,
                if call.partial { " | partial" } else { "" }
            )
        })
        .collect()
}

/// Two publishes to the default exchange without confirms (each ends with
/// its body frame), two after `confirm.select` (each ends with the broker's
/// `basic.ack`), and one to an exchange that does not exist: the broker
/// closes the channel with 404, which fails the publish waiting for its
/// confirmation.
const PUBLISH_CALLS: &[&str] = &[
    "publish amq.default | orders | ok | 60 | 12000-14000",
    "publish amq.default | orders | ok | 60 | 15000-17000",
    "publish amq.default | orders | ok | 81 | 20000-23000",
    "publish amq.default | orders | ok | 81 | 24000-27000",
    "publish missing | orders | NOT_FOUND | 64 | 28000-31000",
];

/// A 200 KB message in two body frames (frame_max 128 KiB) with confirms,
/// then a small one.
const LARGE_CALLS: &[&str] = &[
    "publish blobs | - | ok | 200081 | 13000-18000",
    "publish blobs | - | ok | 78 | 19000-20000",
];

/// Three publishes in one write, then three deliveries to a consumer that
/// acknowledges each: the deliveries end with the client's `basic.ack`.
const CONSUME_CALLS: &[&str] = &[
    "publish amq.default | jobs | ok | 56 | 14000-14000",
    "publish amq.default | jobs | ok | 56 | 14000-14000",
    "publish amq.default | jobs | ok | 56 | 14000-14000",
    "process amq.default | jobs | ok | 122 | 17000-18000",
    "process amq.default | jobs | ok | 122 | 17000-18000",
    "process amq.default | jobs | ok | 122 | 17000-18000",
];

/// RPC as pika's tutorial does it (`tests/servers/amqp_app.py` `/rpc`):
/// the responder's connection (two requests delivered, each answered by a
/// publish to its `reply_to`, then acknowledged), then the requester's (two
/// requests published with `reply_to` and `correlation_id`, the second
/// with a `traceparent` header, each answer delivered to a consumer that
/// acknowledges nothing).
const RPC_CALLS: &[&str] = &[
    "publish amq.default | amq.gen-QCmYMZck-L68fUuRoBzN4g | ok | 116 | 17000-19000",
    "process amq.default | rpc-28a8ef5d6ee9 | ok | 194 | 16000-20000",
    "publish amq.default | amq.gen-QCmYMZck-L68fUuRoBzN4g | ok | 116 | 22000-24000",
    "process amq.default | rpc-28a8ef5d6ee9 | ok | 270 | 21000-25000",
    "publish amq.default | rpc-28a8ef5d6ee9 | ok | 128 | 14000-16000",
    "process amq.default | amq.gen-QCmYMZck-L68fUuRoBzN4g | ok | 161 | 17000-17000",
    "publish amq.default | rpc-28a8ef5d6ee9 | ok | 204 | 18000-20000",
    "process amq.default | amq.gen-QCmYMZck-L68fUuRoBzN4g | ok | 161 | 21000-21000",
];

const RECORDINGS: [(&str, &[&str]); 4] = [
    (PUBLISH, PUBLISH_CALLS),
    (LARGE, LARGE_CALLS),
    (CONSUME, CONSUME_CALLS),
    (RPC, RPC_CALLS),
];

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in RECORDINGS {
        assert_eq!(show(&decode(fixture, Cut::Whole)), expected);
        for size in [1, 2, 7, 64] {
            assert_eq!(
                show(&decode(fixture, Cut::Pieces(size))),
                expected,
                "pieces of {size}"
            );
        }
    }
}

#[test]
fn a_kernel_sized_capture_follows_frames_by_their_size() {
    for (fixture, expected) in RECORDINGS {
        assert_eq!(show(&decode(fixture, Cut::Capture(512))), expected);
    }
}

#[test]
fn tiny_captures_stay_bounded() {
    for (fixture, expected) in RECORDINGS {
        for size in [0, 1, 6, 8, 12, 20] {
            let calls = decode(fixture, Cut::Capture(size));
            assert!(calls.len() <= expected.len(), "capture {size}: {calls:?}");
            assert!(calls.iter().all(|c| c.end_ns >= c.start_ns));
        }
    }
}

#[test]
fn detection_on_first_bytes() {
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            let header = &chunks[0].1;
            assert_eq!(check(header, Direction::Egress), Detection::Yes);
            assert_eq!(check(header, Direction::Ingress), Detection::No);
            for cut in 1..8 {
                assert_eq!(
                    check(&header[..cut], Direction::Egress),
                    Detection::NeedMore
                );
            }
            // connection.start, start-ok: a connection joined later is not taken.
            for (direction, bytes) in &chunks[1..3] {
                assert_eq!(check(bytes, *direction), Detection::No);
            }
        }
    }
    for other in [
        &b"AMQP\x00\x01\x00\x00"[..],
        b"AMQP\x03\x01\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
        b"AMQX",
    ] {
        assert_eq!(check(other, Direction::Egress), Detection::No, "{other:?}");
    }
}

/// The registry finds AMQP from the protocol header whatever the port.
#[test]
fn the_registry_picks_amqp_from_the_protocol_header() {
    use crate::protocols::registry::{detect, Detection as Found, Protocol, ProtocolSelection};
    use crate::protocols::session::FirstBytes;
    use zerotrace_shared::event::ConnectionRole;
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            for role in [ConnectionRole::Client, ConnectionRole::Unknown] {
                let first = FirstBytes {
                    bytes: &chunks[0].1,
                    direction: Direction::Egress,
                    role,
                    local_port: 40000,
                    peer_port: 5672,
                };
                assert_eq!(
                    detect(&first, true, ProtocolSelection::ALL),
                    Found::Found(Protocol::Amqp)
                );
            }
        }
    }
}

/// However the kernel cuts the 200 KB publish (512 bytes kept of each
/// write), it is one whole operation, and the publish after it too.
#[test]
fn a_large_publish_cut_anywhere_keeps_the_publish_after_it_whole() {
    use crate::protocols::db::fixture::turns;
    let untimed = |lines: Vec<String>| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                l.rsplit_once(" | ")
                    .map_or(l.as_str(), |(head, _)| head)
                    .to_owned()
            })
            .collect()
    };
    let expected = untimed(show(&decode(LARGE, Cut::Whole)));
    let turns = turns(&connections(LARGE)[0]);
    for first in (1..4096).step_by(17) {
        for size in [4096, 16384, 65536] {
            let out = messaging_fixture::decode_turns::<AmqpConnection>(&turns, first, size);
            assert_eq!(
                untimed(show(&out)),
                expected,
                "pieces of {size} after {first}"
            );
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = AmqpConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    /// Recorded frames with bytes flipped: sizes, channels and tags that lie.
    #[test]
    fn corrupted_recordings_never_panic(
        flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..12),
        cut in 0usize..600,
    ) {
        for chunks in connections(PUBLISH).iter().chain(&connections(CONSUME)) {
            let mut connection = AmqpConnection::new();
            let mut out = Vec::new();
            for (i, (direction, bytes)) in chunks.iter().enumerate() {
                let mut bytes = bytes.clone();
                for (at, value) in &flips {
                    let at = *at % bytes.len().max(1);
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= value;
                    }
                }
                let kept = cut.min(bytes.len());
                connection.feed(*direction, &bytes[..kept], (bytes.len() - kept) as u64, i as u64, &mut out);
            }
            connection.finish(u64::MAX, &mut out);
        }
    }
}

/// A connection opened before the agent (services keep theirs for days) is
/// found from its first whole frame, a method only that side sends, and
/// decoded from there: the operations after it are those of the whole
/// recording.
#[test]
fn a_connection_joined_mid_stream_is_decoded_from_its_first_whole_frame() {
    let name_and_error = |calls: &[MessagingCall]| -> Vec<String> {
        calls
            .iter()
            .map(|c| {
                let e = &c.exchange;
                format!("{} {:?}", e.summary(), e.error_type())
            })
            .collect()
    };
    for (fixture, _) in RECORDINGS {
        let chunks = &connections(fixture)[0];
        let whole = messaging_fixture::decode_chunks(chunks, Cut::Whole, AmqpConnection::new());
        // The first chunk after the handshake that a joined connection
        // would start with: a publish, or a delivery.
        let Some(k) = (1..chunks.len()).find(|&i| {
            let (direction, bytes) = &chunks[i];
            check(bytes, *direction) == Detection::Yes
        }) else {
            panic!("no mid-stream start in {fixture:.60}");
        };
        let from = (k as u64 + 1) * 1000;
        let expected: Vec<MessagingCall> =
            whole.into_iter().filter(|c| c.start_ns >= from).collect();
        assert!(!expected.is_empty());
        let out = messaging_fixture::decode_chunks(
            &chunks[k..],
            Cut::Whole,
            AmqpConnection::joined_mid_stream(),
        );
        assert_eq!(
            name_and_error(&out),
            name_and_error(&expected),
            "from chunk {k}"
        );
    }
    // A heartbeat is a frame of either side; a client's method read, or a
    // broker's written, is not the side it claims.
    let heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce";
    assert_eq!(check(heartbeat, Direction::Egress), Detection::Yes);
    let publish = &connections(PUBLISH)[0]
        .iter()
        .find(|(d, b)| *d == Direction::Egress && b.starts_with(b"\x01\x00\x01") && b.len() == 23)
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    assert_eq!(check(publish, Direction::Egress), Detection::Yes);
    assert_eq!(check(publish, Direction::Ingress), Detection::No);
}

#[test]
fn an_rpc_request_and_its_delivery_to_the_responder_share_a_key() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for cut in [Cut::Whole, Cut::Pieces(7), Cut::Capture(512)] {
        let calls = decode(RPC, cut);
        let key = |at: usize| calls[at].exchange.reply_key;
        let traceparent = |at: usize| calls[at].exchange.traceparent.as_deref();
        // The responder's deliveries (1, 3) and the requests (4, 6).
        assert!(key(1).is_some() && key(3).is_some(), "{cut:?}: {calls:#?}");
        assert_ne!(key(1), key(3));
        assert_eq!((key(4), key(6)), (key(1), key(3)), "{cut:?}");
        // The answers name no reply: neither their publish nor their delivery.
        for answer in [0, 2, 5, 7] {
            assert_eq!(key(answer), None, "{cut:?} {answer}");
        }
        // Job 1's headers carried its SDK's context: both ends read it.
        assert_eq!(
            (traceparent(3), traceparent(6)),
            (Some(TRACEPARENT), Some(TRACEPARENT))
        );
        assert_eq!((traceparent(1), traceparent(4)), (None, None));
    }
}

#[test]
fn the_rpc_requests_written_are_handed_over_once_each() {
    let requester = &connections(RPC)[1];
    let (awaited, requests) = messaging_fixture::requests_handed_over::<AmqpConnection>(requester);
    assert_eq!((awaited.len(), awaited), (2, requests));
}

#[test]
fn content_properties_are_read_as_far_as_they_go() {
    // class 60, weight 0, body size 1, then the flags.
    let header = |flags: u16, properties: &[u8]| {
        let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        payload.extend_from_slice(&flags.to_be_bytes());
        payload.extend_from_slice(properties);
        payload
    };
    // Content type, a headers table whose traceparent follows a number,
    // a bool and an array, delivery mode, correlation id and reply-to.
    let mut properties = b"\x10application/json".to_vec();
    let mut table = Vec::new();
    table.extend_from_slice(b"\x05tries");
    table.extend_from_slice(b"I\x00\x00\x00\x03");
    table.extend_from_slice(b"\x04seent\x01");
    table.extend_from_slice(b"\x04hopsA\x00\x00\x00\x02s\x00");
    table.extend_from_slice(b"\x0btraceparentS\x00\x00\x00\x0500-ab");
    properties.extend_from_slice(&(table.len() as u32).to_be_bytes());
    properties.extend_from_slice(&table);
    properties.extend_from_slice(b"\x02\x03c-1\x05reply");
    let flags = 0x8000 | 0x2000 | 0x1000 | 0x0400 | 0x0200;
    let full = header(flags, &properties);
    let read = frame::link_properties(&full);
    assert_eq!(read.traceparent, Some(&b"00-ab"[..]));
    assert_eq!(read.correlation_id, Some(&b"c-1"[..]));
    assert_eq!(read.reply_to, Some(&b"reply"[..]));
    // Cut anywhere: what came before the cut, nothing made up.
    for cut in 0..full.len() {
        let read = frame::link_properties(&full[..cut]);
        assert!(read.reply_to.is_none() || cut == full.len());
        assert!(read.traceparent.is_none() || cut > 12 + 2 + 17);
    }
    // A table type no broker writes: the table is not read further.
    let odd = header(0x2000, b"\x00\x00\x00\x04\x01aZ\x00");
    assert_eq!(
        frame::link_properties(&odd),
        frame::LinkProperties::default()
    );
}
