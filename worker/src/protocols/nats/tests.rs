//! The NATS decoder on exchanges recorded from a real client (nats-py 2.9,
//! `tests/servers/nats_app.py`) and a real server (Debian's nats-server
//! 2.9, JetStream on).

use zerotrace_shared::event::Direction;

use super::line::{self, Control, MessageLine};
use super::*;
use crate::protocols::db::fixture::{connections, Cut};
use crate::protocols::db::Detection;
use crate::protocols::messaging_call::MessagingCall;
use crate::protocols::messaging_fixture;
use crate::spans::MessagingOperation;

const PUBLISH: &str = include_str!("../../../testdata/nats/nats_publish.txt");
const LARGE: &str = include_str!("../../../testdata/nats/nats_publish_large.txt");
const REQUEST: &str = include_str!("../../../testdata/nats/nats_request.txt");
const REFUSED: &str = include_str!("../../../testdata/nats/nats_request_refused.txt");
const CONSUME: &str = include_str!("../../../testdata/nats/nats_consume.txt");
const JETSTREAM: &str = include_str!("../../../testdata/nats/nats_jetstream.txt");
const TRACED: &str = include_str!("../../../testdata/nats/nats_consume_traced.txt");

fn decode(fixture: &str, cut: Cut) -> Vec<MessagingCall> {
    messaging_fixture::decode::<NatsConnection>(fixture, cut)
}

fn show(calls: &[MessagingCall]) -> Vec<String> {
    calls
        .iter()
        .map(|call| {
            let e = &call.exchange;
            format!(
                "{} {} | {} | {} | {} | {}-{}{}",
                e.operation.span_kind().as_str(),
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

/// Two publishes without a reply subject, each ending when written; the
/// client id is CONNECT's `name`.
const PUBLISH_CALLS: &[&str] = &[
    "producer publish orders.created | zt-publisher | ok | 26 | 6000-6000",
    "producer publish orders.created | zt-publisher | ok | 26 | 6000-6000",
];

/// A 200 KB publish written in several pieces, then a small one (the
/// relay read its end and the small one together).
const LARGE_CALLS: &[&str] = &[
    "producer publish orders.blob | zt-blob-publisher | ok | 200027 | 6000-11000",
    "producer publish orders.blob | zt-blob-publisher | ok | 27 | 11000-11000",
];

/// The responder's connection (the request delivered, processed until its
/// reply is written; no publish span for the reply), then the requester's:
/// its request ends with the reply, and the request nobody listens to with
/// the server's 503 status message.
const REQUEST_CALLS: &[&str] = &[
    "consumer process svc.add | zt-responder | ok | 147 | 7000-8000",
    "producer publish svc.add | zt-requester | ok | 146 | 4000-5000",
    "producer publish svc.none | zt-requester | NO_RESPONDERS | 165 | 6000-7000",
];

/// The server refuses a request by permissions (`-ERR 'Permissions
/// Violation for Publish to "locked.door"'`).
const REFUSED_CALLS: &[&str] =
    &["producer publish locked.door | zt-intruder | PERMISSIONS_VIOLATION | 141 | 4000-5000"];

/// The subscriber's connection (two deliveries without a reply subject,
/// read in one segment), then the emitter's.
const CONSUME_CALLS: &[&str] = &[
    "consumer process events.login | zt-subscriber | ok | 27 | 7000-7000",
    "consumer process events.login | zt-subscriber | ok | 27 | 7000-7000",
    "producer publish events.login | zt-emitter | ok | 26 | 7000-7000",
    "producer publish events.login | zt-emitter | ok | 26 | 7000-7000",
];

/// JetStream through nats-py: API requests answered on their inbox (the
/// consumer lookup's 404 in the reply's JSON), the stream's acknowledgement
/// of a publish, a pull consumer's fetch answered by the message that
/// arrives by its inbox's subscription, and that message processed until
/// its acknowledgement (`$JS.ACK.…`, no span of its own).
const JETSTREAM_CALLS: &[&str] = &[
    "producer publish $JS.API.STREAM.CREATE.JOBS | zt-jetstream | ok | 1060 | 4000-5000",
    "producer publish jobs.new | zt-jetstream | ok | 176 | 6000-7000",
    "producer publish $JS.API.STREAM.NAMES | zt-jetstream | ok | 291 | 8000-9000",
    "producer publish $JS.API.CONSUMER.INFO.JOBS.worker | zt-jetstream | NOT_FOUND | 301 | 10000-11000",
    "producer publish $JS.API.CONSUMER.CREATE.JOBS.worker.jobs.new | zt-jetstream | ok | 986 | 12000-13000",
    "producer publish $JS.API.CONSUMER.MSG.NEXT.JOBS.worker | zt-jetstream | ok | 186 | 14000-15000",
    "consumer process jobs.new | zt-jetstream | ok | 131 | 15000-16000",
    "producer publish $JS.API.STREAM.DELETE.JOBS | zt-jetstream | ok | 235 | 18000-19000",
];

/// A message whose headers carry a traceparent: the subscriber's delivery,
/// then the emitter's HPUB; both keep the header's context.
const TRACED_CALLS: &[&str] = &[
    "consumer process events.traced | zt-traced-subscriber | ok | 132 | 8000-8000",
    "producer publish events.traced | zt-traced-emitter | ok | 131 | 4000-4000",
];

const RECORDINGS: [(&str, &[&str]); 7] = [
    (PUBLISH, PUBLISH_CALLS),
    (LARGE, LARGE_CALLS),
    (REQUEST, REQUEST_CALLS),
    (REFUSED, REFUSED_CALLS),
    (CONSUME, CONSUME_CALLS),
    (JETSTREAM, JETSTREAM_CALLS),
    (TRACED, TRACED_CALLS),
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

/// 512 bytes captured of each segment: payloads are followed by their
/// size across the rest; the JetStream replies' JSON and the 503 status
/// come in the first bytes. In the large recording the small publish comes
/// at the end of the same segment as the 200 KB payload's end, past what
/// is captured: it is lost, and the loss counted.
#[test]
fn a_kernel_sized_capture_follows_payloads_by_their_size() {
    for (fixture, expected) in RECORDINGS {
        let calls = decode(fixture, Cut::Capture(512));
        if fixture == LARGE {
            assert_eq!(show(&calls), expected[..1]);
        } else {
            assert_eq!(show(&calls), expected);
        }
    }
    let mut connection = NatsConnection::new();
    crate::protocols::db::fixture::replay(
        &connections(LARGE)[0],
        Cut::Capture(512),
        |d, c, g, t| connection.feed(d, c, g, t, &mut Vec::new()),
    );
    assert_eq!(connection.stats().resyncs, 1);
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

/// However the kernel cuts the 200 KB publish, it is one whole operation;
/// the small publish written after it is decoded when its bytes are captured.
#[test]
fn a_large_publish_cut_anywhere_stays_one_operation() {
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
            let out = messaging_fixture::decode_turns::<NatsConnection>(&turns, first, size);
            let got = untimed(show(&out));
            assert!(
                !got.is_empty() && expected.starts_with(&got),
                "pieces of {size} after {first}: {got:?}"
            );
        }
    }
}

#[test]
fn detection_on_first_bytes() {
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            // The server speaks first: INFO is read, then CONNECT written.
            let (info, connect) = (&chunks[0].1, &chunks[1].1);
            assert_eq!(check(info, Direction::Ingress), Detection::Yes);
            assert_eq!(check(info, Direction::Egress), Detection::No);
            assert_eq!(check(connect, Direction::Egress), Detection::Yes);
            assert_eq!(check(connect, Direction::Ingress), Detection::No);
            for cut in 1..6 {
                assert_eq!(check(&info[..cut], Direction::Ingress), Detection::NeedMore);
                assert_eq!(
                    check(&connect[..cut], Direction::Egress),
                    Detection::NeedMore
                );
            }
            // Joined mid-stream: messages and subscriptions of either side
            // are found; PING and PONG alone are not (Redis's too), nor a
            // large message's payload.
            for (direction, bytes) in &chunks[2..] {
                let lines = [&b"\n"[..], bytes].concat();
                let telling = [
                    &b"\nPUB "[..],
                    b"\nSUB ",
                    b"\nMSG ",
                    b"\nHMSG ",
                    b"\nHPUB ",
                    b"\nUNSUB ",
                ]
                .iter()
                .any(|op| lines.windows(op.len()).any(|w| w == *op))
                    && !bytes.starts_with(b"xxxx");
                let expected = if telling {
                    Detection::Yes
                } else {
                    Detection::No
                };
                assert_eq!(
                    check(bytes, *direction),
                    expected,
                    "{direction:?} {bytes:?}"
                );
            }
        }
    }
    for (other, direction) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], Direction::Egress),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            Direction::Egress,
        ),
        (b"*1\r\n$4\r\nPING\r\n", Direction::Egress),
        (b"PING\r\n", Direction::Egress),
        (b"+OK\r\n", Direction::Ingress),
        (b"-ERR unknown command\r\n", Direction::Ingress),
        (b"INFO\r\n", Direction::Egress),
        (b"get key\r\n", Direction::Egress),
        (b"VALUE key 0 5\r\nhello\r\nEND\r\n", Direction::Ingress),
        // A server's side: what a client writes, read; what it reads, written.
        (b"PUB a 1\r\nx\r\n", Direction::Ingress),
        (b"MSG a 1 1\r\nx\r\n", Direction::Egress),
        // Malformed: no size, a size that is not a number, junk after a message.
        (b"PUB a\r\n", Direction::Egress),
        (b"PUB a b c d\r\n", Direction::Egress),
        (b"PUB a 1\r\nx\r\nGET / HTTP/1.1\r\n", Direction::Egress),
        (b"MSG a 1 x\r\n", Direction::Ingress),
    ] {
        assert_eq!(check(other, direction), Detection::No, "{other:?}");
    }
}

/// The registry finds NATS from the server's greeting (read first) or the
/// client's CONNECT whatever the port, and no protocol asked before it
/// takes it (Redis knows an inline `INFO`, HTTP a `CONNECT`); and, joined
/// mid-stream, from a write that starts with `PING` (Redis's inline
/// command) before its publishes: seen end to end, nats-py's flush writes
/// `PING\r\nPUB …`.
#[test]
fn the_registry_picks_nats_from_the_greeting() {
    use crate::protocols::registry::{detect, Detection as Found, Protocol, ProtocolSelection};
    use crate::protocols::session::FirstBytes;
    use zerotrace_shared::event::ConnectionRole;
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            for (direction, bytes) in &chunks[..2] {
                for role in [ConnectionRole::Client, ConnectionRole::Unknown] {
                    let first = FirstBytes {
                        bytes,
                        direction: *direction,
                        role,
                        local_port: 40000,
                        peer_port: 4222,
                    };
                    assert_eq!(
                        detect(&first, true, ProtocolSelection::ALL),
                        Found::Found(Protocol::Nats),
                        "{direction:?} {role:?}"
                    );
                }
            }
            // The server's side of the same connection is nobody's.
            let first = FirstBytes {
                bytes: &chunks[1].1,
                direction: Direction::Ingress,
                role: ConnectionRole::Server,
                local_port: 4222,
                peer_port: 40000,
            };
            assert_ne!(
                detect(&first, true, ProtocolSelection::ALL),
                Found::Found(Protocol::Nats)
            );
        }
    }
}

#[test]
fn the_registry_picks_nats_from_a_write_that_starts_with_ping() {
    use crate::protocols::registry::{detect, Detection as Found, Protocol, ProtocolSelection};
    use crate::protocols::session::FirstBytes;
    use zerotrace_shared::event::ConnectionRole;
    for role in [ConnectionRole::Client, ConnectionRole::Unknown] {
        let first = FirstBytes {
            bytes: b"PING\r\nPUB orders.kept  1\r\n1\r\nPUB orders.kept  1\r\n1\r\n",
            direction: Direction::Egress,
            role,
            local_port: 40000,
            peer_port: 4222,
        };
        assert_eq!(
            detect(&first, true, ProtocolSelection::ALL),
            Found::Found(Protocol::Nats)
        );
        // A Redis client's inline PING alone stays Redis's (once no more
        // bytes may come: PostgreSQL waits for a startup message's 8).
        let first = FirstBytes {
            bytes: b"PING\r\n",
            ..first
        };
        assert_eq!(
            detect(&first, false, ProtocolSelection::ALL),
            Found::Found(Protocol::Redis)
        );
    }
}

#[test]
fn control_lines_parse_as_the_protocol_reference_writes_them() {
    let egress = |l: &[u8]| line::parse(l, Direction::Egress);
    let ingress = |l: &[u8]| line::parse(l, Direction::Ingress);
    let message = |subject: &str, sid: Option<&str>, reply: Option<&str>, header_size, size| {
        Some(Control::Message(MessageLine {
            subject: subject.into(),
            sid: sid.map(Into::into),
            reply: reply.map(Into::into),
            header_size,
            size,
        }))
    };
    assert_eq!(egress(b"PUB a.b 5"), message("a.b", None, None, 0, 5));
    assert_eq!(
        egress(b"pub\ta.b  r.s\t5"),
        message("a.b", None, Some("r.s"), 0, 5)
    );
    assert_eq!(
        egress(b"HPUB a r 22 33"),
        message("a", None, Some("r"), 22, 33)
    );
    assert_eq!(egress(b"HPUB a 22 33"), message("a", None, None, 22, 33));
    assert_eq!(ingress(b"MSG a 9 5"), message("a", Some("9"), None, 0, 5));
    assert_eq!(
        ingress(b"HMSG a 9 r 16 16"),
        message("a", Some("9"), Some("r"), 16, 16)
    );
    assert_eq!(
        egress(b"SUB a.* q 7"),
        Some(Control::Sub {
            subject: "a.*".into(),
            sid: "7".into()
        })
    );
    assert_eq!(
        ingress(b"-ERR 'Stale Connection'"),
        Some(Control::Err("Stale Connection".into()))
    );
    assert_eq!(ingress(b"+OK"), Some(Control::Ok));
    assert_eq!(egress(b"PING"), Some(Control::Ping));
    assert_eq!(ingress(b"pong"), Some(Control::Pong));
    assert_eq!(
        egress(br#"CONNECT {"verbose":true,"name":"svc"}"#),
        Some(Control::Connect {
            name: Some("svc".into()),
            verbose: true
        })
    );
    // A CONNECT cut by the capture still is one, without its fields.
    assert_eq!(
        egress(br#"CONNECT {"verbose":false,"na"#),
        Some(Control::Connect {
            name: None,
            verbose: false
        })
    );
    for bad in [
        &b"PUB a"[..],
        b"PUB a b c 5",
        b"PUB a 5x",
        b"PUB a 99999999999",
        b"HPUB a 9 5",
        b"MSG a 1",
        b"PING x",
        b"CONNECT x",
        b"SUB a",
        b"PUB a\x01b 5",
    ] {
        assert_eq!(egress(bad), None, "{bad:?}");
    }
    assert_eq!(ingress(b"MSG a b-c 5"), None);
    assert_eq!(ingress(b"PUB a 5"), None);
    assert_eq!(egress(b"MSG a 1 5"), None);
}

/// The trace context a publisher's SDK put in the headers is the span's:
/// on the message read and on the message written. Without headers, or
/// with the header cut by the capture, there is none.
#[test]
fn a_traceparent_header_is_kept_on_both_sides() {
    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for cut in [Cut::Whole, Cut::Pieces(7), Cut::Capture(512)] {
        let calls = decode(TRACED, cut);
        assert_eq!(calls.len(), 2, "{cut:?}");
        for call in &calls {
            assert_eq!(
                call.exchange.traceparent.as_deref(),
                Some(TRACEPARENT),
                "{cut:?}"
            );
        }
    }
    assert!(decode(CONSUME, Cut::Whole)
        .iter()
        .all(|c| c.exchange.traceparent.is_none()));
    let headers = b"NATS/1.0\r\nNats-Msg-Id: 1\r\nTraceParent:  00-ab  \r\n\r\n";
    assert_eq!(line::header_value(headers, "traceparent"), Some("00-ab"));
    assert_eq!(line::header_value(headers, "tracestate"), None);
    // The status line is no header; a line cut before its end is not read.
    assert_eq!(
        line::header_value(b"NATS/1.0 503\r\n\r\n", "NATS/1.0 503"),
        None
    );
    assert_eq!(
        line::header_value(b"NATS/1.0\r\ntraceparent: 00-0a", "traceparent"),
        None
    );
}

#[test]
fn statuses_and_jetstream_errors_come_from_the_first_payload_bytes() {
    assert_eq!(line::header_status(b"NATS/1.0 503\r\n\r\n"), Some(503));
    assert_eq!(
        line::header_status(b"NATS/1.0 100 Idle Heartbeat\r\n"),
        Some(100)
    );
    assert_eq!(line::header_status(b"NATS/1.0\r\nX: 1\r\n\r\n"), None);
    assert_eq!(line::header_status(b"NATS/1.0 5034"), None);
    assert_eq!(
        line::jetstream_error(br#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","error":{"code":404,"err_code":10014}}"#),
        Some(404)
    );
    assert_eq!(
        line::jetstream_error(br#"{"error":{"code":503,"err_code":10077}}"#),
        Some(503)
    );
    assert_eq!(
        line::jetstream_error(br#"{"stream":"JOBS", "seq":1}"#),
        None
    );
    // An application's own JSON is not read for errors.
    assert_eq!(
        line::jetstream_error(br#"{"order":1,"error":{"code":404}}"#),
        None
    );
    assert_eq!(
        line::refused_publish(r#"Permissions Violation for Publish to "locked.door""#),
        Some("locked.door")
    );
    assert_eq!(
        line::refused_publish("Permissions Violation for Subscription to \"x\""),
        None
    );
}

/// The server's own messages (a status, no payload: idle heartbeats and
/// flow control) make no span, and the client's answer to flow control is
/// no publish either.
#[test]
fn the_server_s_own_messages_make_no_operation() {
    let mut connection = NatsConnection::new();
    let mut out = Vec::new();
    connection.feed(
        Direction::Ingress,
        b"HMSG deliver.x 5  $JS.FC.JOBS.abc 16 16\r\nNATS/1.0 100\r\n\r\n\r\n",
        0,
        1,
        &mut out,
    );
    connection.feed(
        Direction::Ingress,
        b"HMSG deliver.x 5 35 35\r\nNATS/1.0 100 Idle Heartbeat\r\n\r\n\r\n",
        0,
        2,
        &mut out,
    );
    connection.feed(
        Direction::Egress,
        b"PUB $JS.FC.JOBS.abc 0\r\n\r\n",
        0,
        3,
        &mut out,
    );
    connection.finish(10, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(connection.stats(), connection::NatsStats::default());
}

/// A request whose reply subject a later request takes again (a pull
/// consumer's inbox) ends unanswered where it was written; one still
/// waiting at the close too; an `-ERR` that ends nothing is counted.
#[test]
fn requests_without_their_reply_end_where_they_were_written() {
    let mut connection = NatsConnection::new();
    let mut out = Vec::new();
    connection.feed(
        Direction::Egress,
        b"PUB work _INBOX.a 1\r\nx\r\n",
        0,
        1,
        &mut out,
    );
    connection.feed(
        Direction::Egress,
        b"PUB work _INBOX.a 1\r\ny\r\n",
        0,
        2,
        &mut out,
    );
    connection.feed(
        Direction::Ingress,
        b"-ERR 'Slow Consumer'\r\n",
        0,
        3,
        &mut out,
    );
    connection.finish(10, &mut out);
    assert_eq!(
        show(&out),
        [
            "producer publish work | - | ok | 24 | 1-1",
            "producer publish work | - | ok | 24 | 2-2",
        ]
    );
    let stats = connection.stats();
    assert_eq!((stats.unanswered, stats.unmatched_errors), (2, 1));
}

/// A reply subject longer than any kept is not followed: the request ends
/// when written, nothing waits for it.
#[test]
fn a_request_with_an_overlong_reply_subject_ends_when_written() {
    let mut connection = NatsConnection::new();
    let mut out = Vec::new();
    let line = format!("PUB work _INBOX.{} 1\r\nx\r\n", "a".repeat(300));
    connection.feed(Direction::Egress, line.as_bytes(), 0, 1, &mut out);
    assert_eq!(out.len(), 1);
    connection.finish(10, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(connection.stats().unanswered, 0);
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = NatsConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    /// Recorded operations with bytes flipped: sizes, subjects and
    /// operation names that lie.
    #[test]
    fn corrupted_recordings_never_panic(
        flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..12),
        cut in 0usize..600,
    ) {
        for chunks in connections(REQUEST).iter().chain(&connections(JETSTREAM)) {
            let mut connection = NatsConnection::new();
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

/// A connection opened before the agent is found from the client's next
/// message or the server's next delivery, and decoded from there: the
/// operations after it are those of the whole recording, with no client
/// id (CONNECT was not seen).
#[test]
fn a_connection_joined_mid_stream_is_decoded_from_its_next_operation() {
    let untimed = |calls: &[MessagingCall]| -> Vec<String> {
        calls
            .iter()
            .map(|c| format!("{} {:?}", c.exchange.summary(), c.exchange.error_type()))
            .collect()
    };
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            let whole =
                messaging_fixture::decode_chunks(&chunks, Cut::Whole, NatsConnection::new());
            let Some(k) =
                (2..chunks.len()).find(|&i| check(&chunks[i].1, chunks[i].0) == Detection::Yes)
            else {
                continue;
            };
            let from = (k as u64 + 1) * 1000;
            let expected: Vec<MessagingCall> =
                whole.into_iter().filter(|c| c.start_ns >= from).collect();
            let out = messaging_fixture::decode_chunks(
                &chunks[k..],
                Cut::Whole,
                NatsConnection::joined_mid_stream(),
            );
            assert_eq!(untimed(&out), untimed(&expected), "from chunk {k}");
            assert!(out.iter().all(|c| c.exchange.client_id.is_none()));
        }
    }
}

#[test]
fn a_request_and_the_delivery_that_answers_it_share_their_reply_subject_s_key() {
    for cut in [Cut::Whole, Cut::Pieces(5), Cut::Capture(512)] {
        let calls = decode(REQUEST, cut);
        let key = |at: usize| calls[at].exchange.reply_key;
        // The responder's delivery of svc.add and the requester's request.
        assert!(key(0).is_some(), "{cut:?}: {calls:#?}");
        assert_eq!(key(0), key(1), "{cut:?}");
        // The request nobody answers has an inbox of its own.
        assert!(key(2).is_some_and(|k| Some(k) != key(1)), "{cut:?}");
    }
    // A JetStream message is answered on the server's `$JS.ACK.…`: no
    // client's request names it.
    let calls = decode(JETSTREAM, Cut::Whole);
    let fetched = calls
        .iter()
        .find(|c| c.exchange.operation == MessagingOperation::Process);
    assert_eq!(fetched.map(|c| c.exchange.reply_key), Some(None));
    // Plain publishes and deliveries name no reply.
    assert!(decode(CONSUME, Cut::Whole)
        .iter()
        .all(|c| c.exchange.reply_key.is_none()));
}

#[test]
fn the_requests_written_are_handed_over_once_each() {
    let requester = &connections(REQUEST)[1];
    let (awaited, requests) = messaging_fixture::requests_handed_over::<NatsConnection>(requester);
    assert_eq!((awaited.len(), awaited), (2, requests));
}

/// One segment of `bytes` in `direction` at `ts_s` seconds.
fn feed_at(
    conn: &mut NatsConnection,
    direction: Direction,
    bytes: &[u8],
    ts_s: u64,
) -> Vec<MessagingCall> {
    let mut out = Vec::new();
    conn.feed(direction, bytes, 0, ts_s * 1_000_000_000, &mut out);
    out
}

#[test]
fn jetstream_deliveries_are_waited_for_once_the_client_was_seen_acknowledging_one() {
    let mut conn = NatsConnection::new();
    feed_at(&mut conn, Direction::Ingress, b"INFO {}\r\n", 1);
    feed_at(
        &mut conn,
        Direction::Egress,
        b"CONNECT {}\r\nSUB jobs.new 1\r\n",
        1,
    );
    let first = b"MSG jobs.new 1 $JS.ACK.JOBS.worker.1.1.1.9.0 5\r\nbuild\r\n";
    feed_at(&mut conn, Direction::Ingress, first, 2);
    // It may be an AckNone consumer's: not waited for.
    assert_eq!(conn.oldest_unacknowledged_delivery_ns(), None);
    let ack = b"PUB $JS.ACK.JOBS.worker.1.1.1.9.0 0\r\n\r\n";
    assert_eq!(feed_at(&mut conn, Direction::Egress, ack, 3).len(), 1);
    let second = b"MSG jobs.new 1 $JS.ACK.JOBS.worker.1.2.2.9.0 4\r\ntest\r\n";
    feed_at(&mut conn, Direction::Ingress, second, 4);
    assert_eq!(
        conn.oldest_unacknowledged_delivery_ns(),
        Some(4_000_000_000)
    );
}

#[test]
fn requests_and_deliveries_left_unanswered_end_after_the_answer_wait() {
    let mut conn = NatsConnection::new();
    feed_at(&mut conn, Direction::Ingress, b"INFO {}\r\n", 1);
    feed_at(
        &mut conn,
        Direction::Egress,
        b"CONNECT {}\r\nSUB ev.x 1\r\n",
        1,
    );
    // An AckNone consumer's messages, and a request whose requester gave up.
    let message = b"MSG ev.x 1 $JS.ACK.EV.c.1.1.1.9.0 1\r\n0\r\n";
    assert!(feed_at(&mut conn, Direction::Ingress, message, 2).is_empty());
    let request = b"PUB svc.x _INBOX.a.1 1\r\n?\r\n";
    assert!(feed_at(&mut conn, Direction::Egress, request, 3).is_empty());
    // Within the wait, nothing ends.
    assert!(feed_at(&mut conn, Direction::Ingress, b"PING\r\n", 31).is_empty());
    // Past it, each ends where it was read or written.
    let ended = feed_at(&mut conn, Direction::Ingress, b"PING\r\n", 34);
    let shown: Vec<(MessagingOperation, u64)> = ended
        .iter()
        .map(|c| (c.exchange.operation, c.end_ns / 1_000_000_000))
        .collect();
    assert_eq!(
        shown,
        [
            (MessagingOperation::Publish, 3),
            (MessagingOperation::Process, 2)
        ]
    );
    assert_eq!(conn.stats().unanswered, 1);
}
