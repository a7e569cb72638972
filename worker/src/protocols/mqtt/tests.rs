//! The MQTT decoder on exchanges recorded from a real client (Debian's
//! paho-mqtt 1.6, `tests/servers/mqtt_app.py`) and a real broker (Debian's
//! mosquitto 2.0).

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{connections, Cut};
use crate::protocols::db::Detection;
use crate::protocols::messaging_call::MessagingCall;
use crate::protocols::messaging_fixture;

const PUBLISH: &str = include_str!("../../../testdata/mqtt/paho_publish.txt");
const LARGE: &str = include_str!("../../../testdata/mqtt/paho_publish_large.txt");
const REFUSED: &str = include_str!("../../../testdata/mqtt/paho_publish_refused.txt");
const CONSUME: &str = include_str!("../../../testdata/mqtt/paho_consume.txt");
const REQUEST: &str = include_str!("../../../testdata/mqtt/paho_request.txt");

fn decode(fixture: &str, cut: Cut) -> Vec<MessagingCall> {
    messaging_fixture::decode::<MqttConnection>(fixture, cut)
}

fn show(calls: &[MessagingCall]) -> Vec<String> {
    calls
        .iter()
        .map(|call| {
            let e = &call.exchange;
            format!(
                "{} | {} | {} | {} | {}-{}{}",
                e.summary(),
                e.client_id.as_deref().unwrap_or("-"),
                e.error_type().as_deref().unwrap_or("ok"),
                e.request_bytes + e.response_bytes,
                call.start_ns,
                call.end_ns,
                if call.partial { " | partial" } else { "" }
            )
        })
        .collect()
}

/// QoS 0 ends when written, QoS 1 at PUBACK, QoS 2 at PUBCOMP (after
/// PUBREC and PUBREL); the client id comes from CONNECT.
const PUBLISH_CALLS: &[&str] = &[
    "publish sensors/temp | zt-publisher | ok | 20 | 3000-3000",
    "publish sensors/temp | zt-publisher | ok | 26 | 4000-5000",
    "publish sensors/temp | zt-publisher | ok | 26 | 6000-9000",
];

/// A 100 KB publish written in two pieces, then a small one.
const LARGE_CALLS: &[&str] = &[
    "publish sensors/blob | zt-blob-publisher | ok | 100024 | 3000-5000",
    "publish sensors/blob | zt-blob-publisher | ok | 27 | 6000-7000",
];

/// MQTT 5: mosquitto's ACL refuses the publish, PUBACK reason 0x87.
const REFUSED_CALLS: &[&str] =
    &["publish locked/door | zt-v5-publisher | NOT_AUTHORIZED | 27 | 3000-4000"];

/// The subscriber's connection (deliveries at QoS 0, 1 and 2, each up to
/// the client's acknowledgement), then the publisher's. SUBSCRIBE and its
/// SUBACK are no operation.
const CONSUME_CALLS: &[&str] = &[
    "process alerts/fire | zt-subscriber | ok | 22 | 5000-5000",
    "process alerts/fire | zt-subscriber | ok | 28 | 6000-7000",
    "process alerts/fire | zt-subscriber | ok | 28 | 8000-11000",
    "publish alerts/fire | zt-alerter | ok | 22 | 3000-3000",
    "publish alerts/fire | zt-alerter | ok | 28 | 4000-5000",
    "publish alerts/fire | zt-alerter | ok | 28 | 6000-9000",
];

/// MQTT 5 request/response (`tests/servers/mqtt_app.py` `/request`): the
/// responder's connection (each request delivered at QoS 1 and processed
/// until its PUBACK, the answer published to its response topic before
/// that), then the requester's (two requests with a response topic and
/// correlation data, the second with a `traceparent` user property, and
/// the answers delivered).
const REQUEST_CALLS: &[&str] = &[
    "publish alerts/answers | zt-responder | ok | 37 | 6000-7000",
    "process sensors/work | zt-responder | ok | 49 | 5000-8000",
    "process sensors/work | zt-responder | ok | 120 | 9000-10000",
    "publish alerts/answers | zt-responder | ok | 37 | 10000-11000",
    "publish sensors/work | zt-requester | ok | 49 | 5000-6000",
    "process alerts/answers | zt-requester | ok | 37 | 7000-8000",
    "publish sensors/work | zt-requester | ok | 120 | 9000-10000",
    "process alerts/answers | zt-requester | ok | 37 | 11000-12000",
];

const RECORDINGS: [(&str, &[&str]); 5] = [
    (PUBLISH, PUBLISH_CALLS),
    (LARGE, LARGE_CALLS),
    (REFUSED, REFUSED_CALLS),
    (CONSUME, CONSUME_CALLS),
    (REQUEST, REQUEST_CALLS),
];

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in RECORDINGS {
        assert_eq!(show(&decode(fixture, Cut::Whole)), expected);
        for size in [1, 2, 3, 7, 64] {
            assert_eq!(
                show(&decode(fixture, Cut::Pieces(size))),
                expected,
                "pieces of {size}"
            );
        }
    }
}

#[test]
fn a_kernel_sized_capture_follows_packets_by_their_remaining_length() {
    for (fixture, expected) in RECORDINGS {
        assert_eq!(show(&decode(fixture, Cut::Capture(512))), expected);
    }
    // The 100 KB publish: 512 bytes of each of its two writes captured.
    let calls = decode(LARGE, Cut::Capture(512));
    assert!(!calls[0].partial);
    assert_eq!(calls[0].exchange.message_count, Some(1));
}

#[test]
fn tiny_captures_stay_bounded() {
    for (fixture, expected) in RECORDINGS {
        for size in [0, 1, 2, 5, 12] {
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
            let connect = &chunks[0].1;
            assert_eq!(check(connect, Direction::Egress), Detection::Yes);
            assert_eq!(check(connect, Direction::Ingress), Detection::No);
            for cut in 1..9 {
                assert_eq!(
                    check(&connect[..cut], Direction::Egress),
                    Detection::NeedMore,
                    "{cut}"
                );
            }
            // Joined mid-stream: what the client writes is found (PUBLISH,
            // SUBSCRIBE, acknowledgements, PINGREQ), what it reads is not
            // (a broker reads the same packets).
            // (Not DISCONNECT, which ends the connection; the large
            // recording's chunks after its PUBLISH are payload.)
            for (direction, bytes) in &chunks[1..] {
                if fixture == LARGE || bytes[0] == 0xe0 {
                    continue;
                }
                let expected = match direction {
                    Direction::Egress => Detection::Yes,
                    Direction::Ingress => Detection::No,
                };
                assert_eq!(
                    check(bytes, *direction),
                    expected,
                    "{direction:?} {bytes:?}"
                );
            }
        }
    }
    for other in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\x10\x0c\x00\x04AMQP\x04\x02\x00\x1e\x00\x00",
        // Mid-stream look-alikes: a PUBLISH whose topic has a wildcard or a
        // control byte, an acknowledgement of packet 0, bytes after a whole
        // packet that are not one.
        b"\x30\x07\x00\x03a/#hi",
        b"\x30\x07\x00\x03a\x01bhi",
        b"\x40\x02\x00\x00",
        b"\xc0\x00GET / HTTP/1.1\r\n",
        b"\x00\x00\x00\x1f\x00\x12\x00\x03",
        b"\x10\x0c\x00\x04MQTT\x09\x02\x00\x1e\x00\x00",
        b"\x10\xff\xff\xff\xff\x00\x04MQTT\x04",
        // A MongoDB OP_MSG whose length starts with 0x10.
        b"\x10\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00",
    ] {
        assert_eq!(check(other, Direction::Egress), Detection::No, "{other:?}");
    }
}

/// The registry finds MQTT from the client's CONNECT whatever the port,
/// and no protocol asked before it takes it.
#[test]
fn the_registry_picks_mqtt_from_the_connect() {
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
                    peer_port: 1883,
                };
                assert_eq!(
                    detect(&first, true, ProtocolSelection::ALL),
                    Found::Found(Protocol::Mqtt)
                );
            }
        }
    }
}

/// An acknowledgement of no publish waiting is counted, and a publish
/// whose acknowledgement never comes ends, partial, at the close.
#[test]
fn acknowledgements_pair_by_packet_id() {
    let chunks = &connections(PUBLISH)[0];
    let mut connection = MqttConnection::new();
    let mut out = Vec::new();
    // CONNECT, CONNACK, the QoS 1 publish, then a PUBACK for another id.
    connection.feed(Direction::Egress, &chunks[0].1, 0, 1, &mut out);
    connection.feed(Direction::Ingress, &chunks[1].1, 0, 2, &mut out);
    connection.feed(Direction::Egress, &chunks[3].1, 0, 3, &mut out);
    connection.feed(Direction::Ingress, b"\x40\x02\x00\x09", 0, 4, &mut out);
    assert!(out.is_empty());
    assert_eq!(connection.stats().unmatched_acks, 1);
    connection.finish(10, &mut out);
    assert_eq!(
        show(&out),
        ["publish sensors/temp | zt-publisher | ok | 22 | 3-10 | partial"]
    );
    assert_eq!(connection.stats().unanswered, 1);
}

/// However the kernel cuts the 100 KB publish (512 bytes kept of each
/// write), it is one whole operation, and the publish after it too.
#[test]
fn a_large_publish_cut_anywhere_keeps_the_publish_after_it_whole() {
    use crate::protocols::db::fixture::turns;
    let expected = show(&decode(LARGE, Cut::Whole));
    let turns = turns(&connections(LARGE)[0]);
    for first in (1..4096).step_by(17) {
        for size in [4096, 16384, 65536] {
            let out = messaging_fixture::decode_turns::<MqttConnection>(&turns, first, size);
            let got: Vec<String> = show(&out).iter().map(|l| untimed(l)).collect();
            let want: Vec<String> = expected.iter().map(|l| untimed(l)).collect();
            assert_eq!(got, want, "pieces of {size} after {first}");
        }
    }
}

fn untimed(line: &str) -> String {
    line.rsplit_once(" | ")
        .map_or(line, |(head, _)| head)
        .to_owned()
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = MqttConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    /// Recorded packets with bytes flipped: lengths, types and flags that lie.
    #[test]
    fn corrupted_recordings_never_panic(
        flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..12),
        cut in 0usize..600,
    ) {
        for chunks in connections(PUBLISH).iter().chain(&connections(CONSUME)) {
            let mut connection = MqttConnection::new();
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

/// A connection opened before the agent is found from what the client
/// writes (a PUBLISH, an acknowledgement, a PINGREQ) and decoded from
/// there: the operations after it are those of the whole recording, with
/// no client id (CONNECT was not seen).
#[test]
fn a_connection_joined_mid_stream_is_decoded_from_the_client_s_first_packet() {
    let untimed = |calls: &[MessagingCall]| -> Vec<String> {
        calls
            .iter()
            .map(|c| format!("{} {:?}", c.exchange.summary(), c.exchange.error_type()))
            .collect()
    };
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            let whole =
                messaging_fixture::decode_chunks(&chunks, Cut::Whole, MqttConnection::new());
            let Some(k) = (2..chunks.len()).find(|&i| chunks[i].0 == Direction::Egress) else {
                continue;
            };
            let from = (k as u64 + 1) * 1000;
            let expected: Vec<MessagingCall> =
                whole.into_iter().filter(|c| c.start_ns >= from).collect();
            let out = messaging_fixture::decode_chunks(
                &chunks[k..],
                Cut::Whole,
                MqttConnection::joined_mid_stream(),
            );
            assert_eq!(untimed(&out), untimed(&expected), "from chunk {k}");
            assert!(out.iter().all(|c| c.exchange.client_id.is_none()));
        }
    }
}

/// paho-mqtt reads a PUBACK in reads of 1, 1 and 2 bytes: on a connection
/// joined mid-stream, whose reads find their framing again, the first
/// byte alone starts the acknowledgement (seen end to end: without this, no
/// publish of a connection opened before the agent ever ended).
#[test]
fn an_acknowledgement_read_a_byte_at_a_time_ends_a_joined_connection_s_publish() {
    let mut connection = MqttConnection::joined_mid_stream();
    let mut out = Vec::new();
    connection.feed(
        Direction::Egress,
        b"\x32\x11\x00\x0csensors/kept\x00\x011",
        0,
        1,
        &mut out,
    );
    for (i, piece) in [&b"@"[..], b"\x02", b"\x00\x01"].into_iter().enumerate() {
        connection.feed(Direction::Ingress, piece, 0, 2 + i as u64, &mut out);
    }
    assert_eq!(show(&out), ["publish sensors/kept | - | ok | 23 | 1-4"]);
}

#[test]
fn an_mqtt_5_request_and_its_delivery_to_the_responder_share_a_key() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for cut in [Cut::Whole, Cut::Pieces(3), Cut::Capture(512)] {
        let calls = decode(REQUEST, cut);
        let key = |at: usize| calls[at].exchange.reply_key;
        let traceparent = |at: usize| calls[at].exchange.traceparent.as_deref();
        // The responder's deliveries (1, 2) and the requests (4, 6).
        assert!(key(1).is_some() && key(2).is_some(), "{cut:?}: {calls:#?}");
        assert_ne!(key(1), key(2));
        assert_eq!((key(4), key(6)), (key(1), key(2)), "{cut:?}");
        // The answers carry the correlation data alone: no key.
        for answer in [0, 3, 5, 7] {
            assert_eq!(key(answer), None, "{cut:?} {answer}");
        }
        assert_eq!(
            (traceparent(2), traceparent(6)),
            (Some(TRACEPARENT), Some(TRACEPARENT))
        );
        assert_eq!((traceparent(1), traceparent(4)), (None, None));
    }
    // Joined mid-stream, the level is not known: properties are not read.
    let responder = &connections(REQUEST)[0];
    let joined = messaging_fixture::decode_chunks(
        &responder[4..],
        Cut::Whole,
        MqttConnection::joined_mid_stream(),
    );
    assert!(!joined.is_empty());
    assert!(joined
        .iter()
        .all(|c| c.exchange.reply_key.is_none() && c.exchange.traceparent.is_none()));
}

#[test]
fn the_mqtt_5_requests_written_are_handed_over_once_each() {
    let requester = &connections(REQUEST)[1];
    let (awaited, requests) = messaging_fixture::requests_handed_over::<MqttConnection>(requester);
    assert_eq!((awaited.len(), awaited), (2, requests));
}

#[test]
fn publish_properties_are_read_as_far_as_they_go() {
    let header = FixedHeader {
        kind: packet::PUBLISH,
        flags: 0b0010,
        remaining: 0,
        len: 2,
    };
    // Topic, packet id, then the properties: payload format, a
    // subscription id, a user property before the traceparent one,
    // response topic, correlation data.
    let mut properties = vec![0x01, 0x01, 0x0b, 0x81, 0x01];
    properties.extend_from_slice(b"\x26\x00\x01k\x00\x01v");
    properties.extend_from_slice(b"\x26\x00\x0btraceparent\x00\x0500-ab");
    properties.extend_from_slice(b"\x08\x00\x03r/t\x09\x00\x02id");
    let mut body = b"\x00\x01t\x00\x07".to_vec();
    body.push(properties.len() as u8);
    body.extend_from_slice(&properties);
    body.extend_from_slice(b"payload");
    let read = packet::publish_link_properties(&header, &body);
    assert_eq!(read.traceparent, Some(&b"00-ab"[..]));
    assert_eq!(read.response_topic, Some(&b"r/t"[..]));
    assert_eq!(read.correlation_data, Some(&b"id"[..]));
    for cut in 0..body.len() {
        let read = packet::publish_link_properties(&header, &body[..cut]);
        assert!(read.correlation_data.is_none() || cut >= body.len() - b"payload".len());
    }
    // A property a PUBLISH cannot carry: the rest is not read.
    let odd = b"\x00\x01t\x00\x07\x05\x11\x00\x00\x00\x01".to_vec();
    assert_eq!(
        packet::publish_link_properties(&header, &odd),
        packet::LinkProperties::default()
    );
}
