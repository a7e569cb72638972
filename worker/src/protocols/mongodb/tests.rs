//! The MongoDB decoder on exchanges recorded from a real client (pymongo
//! 3.11, Debian's) and a MongoDB stand-in (MockupDB's wire protocol,
//! mongomock's data: see `tests/servers/mongo_stand_in.py`).

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{self, connections, Cut};
use crate::protocols::db::{DbOperation, Detection};

const CRUD: &str = include_str!("../../../testdata/mongodb/pymongo_crud.txt");
const ERRORS: &str = include_str!("../../../testdata/mongodb/pymongo_errors.txt");
const LARGE: &str = include_str!("../../../testdata/mongodb/pymongo_large.txt");
const UNACKNOWLEDGED: &str = include_str!("../../../testdata/mongodb/pymongo_unacknowledged.txt");

fn decode(fixture: &str, cut: Cut) -> Vec<DbOperation> {
    fixture::decode(fixture, cut, MongoConnection::new)
}

fn show(ops: &[DbOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            let e = &op.exchange;
            format!(
                "{} | {} | {} | {} | rows={}{} | {}-{}{}",
                e.summary(),
                e.namespace.as_deref().unwrap_or("-"),
                e.status_code.as_deref().unwrap_or("ok"),
                e.error_message.as_deref().unwrap_or("-"),
                e.rows.map_or("-".to_string(), |r| r.to_string()),
                if e.rows_returned { " returned" } else { "" },
                op.start_ns,
                op.end_ns,
                if op.partial { " | partial" } else { "" }
            )
        })
        .collect()
}

/// pymongo writes and reads `shop.users`: the handshake (`isMaster` in an
/// OP_QUERY, answered by an OP_REPLY) and the monitor's connection make no
/// operation; every OP_MSG command does.
const CRUD_OPS: &[&str] = &[
    "insert users | shop | ok | - | rows=1 | 3000-4000",
    "insert users | shop | ok | - | rows=3 | 5000-6000",
    "find users | shop | ok | - | rows=3 returned | 7000-8000",
    "update users | shop | ok | - | rows=1 | 9000-10000",
    "delete users | shop | ok | - | rows=1 | 11000-12000",
];

/// A duplicate `_id` fails in a write error (`ok: 1`, `writeErrors`), an
/// unknown command with `ok: 0`: both are failures with the server's code.
const ERRORS_OPS: &[&str] = &[
    "insert orders | shop | ok | - | rows=1 | 3000-4000",
    "insert orders | shop | 11000 | DuplicateKey: E11000 duplicate key error: E11000 Duplicate Key Error | rows=0 | 5000-6000",
    "ztNoSuchCommand shop | shop | 59 | CommandNotFound: no such command: 'ztNoSuchCommand' | rows=- | 7000-8000",
];

/// 300 documents inserted in one command (41 KB), read back by a find and
/// two getMores whose batches are larger than the decoder keeps (no row
/// count), then a find of one document.
const LARGE_OPS: &[&str] = &[
    "insert items | shop | ok | - | rows=300 | 3000-4000",
    "find items | shop | ok | - | rows=- | 5000-6000",
    "getMore items | shop | ok | - | rows=- | 7000-8000",
    "getMore items | shop | ok | - | rows=- | 9000-10000",
    "find items | shop | ok | - | rows=1 returned | 11000-12000",
];

/// An insert with write concern `w: 0` is flagged moreToCome: no reply
/// comes, and the operation ends when written.
const UNACKNOWLEDGED_OPS: &[&str] = &[
    "insert events | shop | ok | - | rows=- | 3000-3000",
    "find events | shop | ok | - | rows=1 returned | 4000-5000",
];

const RECORDINGS: [(&str, &[&str]); 4] = [
    (CRUD, CRUD_OPS),
    (ERRORS, ERRORS_OPS),
    (LARGE, LARGE_OPS),
    (UNACKNOWLEDGED, UNACKNOWLEDGED_OPS),
];

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in RECORDINGS {
        assert_eq!(show(&decode(fixture, Cut::Whole)), expected);
        for size in [1, 2, 5, 64] {
            assert_eq!(
                show(&decode(fixture, Cut::Pieces(size))),
                expected,
                "pieces of {size}"
            );
        }
    }
}

#[test]
fn a_kernel_sized_capture_follows_messages_by_their_length() {
    // Each message is followed across the bytes not captured by its length:
    // the same operations, with all their bytes counted.
    for (fixture, expected) in RECORDINGS {
        let ops = decode(fixture, Cut::Capture(512));
        assert_eq!(show(&ops), expected);
        fixture::assert_same_sizes(&ops, &decode(fixture, Cut::Whole), "capture 512");
    }
    let large = decode(LARGE, Cut::Whole);
    assert_eq!(large[0].exchange.request_bytes, 41_783, "{:?}", large[0]);
    assert!(large[1].exchange.response_bytes > 13_000, "{:?}", large[1]);
}

/// However the kernel cuts the large writes and reads (512 bytes kept of
/// each), every operation comes out once, with its bytes counted, and the
/// find after them is whole.
#[test]
fn large_messages_cut_anywhere_keep_the_operations_after_them_whole() {
    let whole = decode(LARGE, Cut::Whole);
    let expected = fixture::untimed(show(&whole));
    let turns = fixture::turns(&connections(LARGE)[1]);
    for first in (1..4096).step_by(13) {
        for size in [4096, 16384, 65536] {
            let out = fixture::decode_turns(&turns, first, size, MongoConnection::new());
            let got = fixture::untimed(show(&out));
            let case = format!("pieces of {size} after {first}: {got:#?}");
            assert_eq!(got, expected, "{case}");
            fixture::assert_same_sizes(&out, &whole, &case);
        }
    }
}

#[test]
fn tiny_captures_stay_bounded() {
    for (fixture, expected) in RECORDINGS {
        for size in [0, 1, 4, 10, 16, 30] {
            let ops = decode(fixture, Cut::Capture(size));
            // A handshake not captured far enough to be known for one is an
            // operation (two per connection at most).
            let handshakes = 2 * connections(fixture).len();
            assert!(
                ops.len() <= expected.len() + handshakes,
                "capture {size}: {ops:?}"
            );
            assert!(ops.iter().all(|op| op.end_ns >= op.start_ns));
        }
    }
}

#[test]
fn detection_on_first_bytes() {
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            // pymongo's first message: `isMaster` in an OP_QUERY.
            assert_eq!(check(&chunks[0].1, Direction::Egress), Detection::Yes);
            assert_eq!(
                check(&chunks[0].1[..3], Direction::Egress),
                Detection::NeedMore
            );
            assert_eq!(
                check(&chunks[0].1[..20], Direction::Egress),
                Detection::NeedMore
            );
            assert_eq!(check(&chunks[0].1, Direction::Ingress), Detection::No);
            // Its reply, and an OP_MSG command and reply, joined mid-stream.
            assert_eq!(check(&chunks[1].1, Direction::Ingress), Detection::Yes);
            assert_eq!(check(&chunks[1].1, Direction::Egress), Detection::No);
            for (direction, bytes) in chunks.iter().skip(2).take(2) {
                assert_eq!(check(bytes, *direction), Detection::Yes);
            }
        }
    }
    for other in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"get key\r\n",
        // PostgreSQL's StartupMessage, a MySQL greeting, a Kafka request.
        b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00shop\x00\x00",
        b"\x4a\x00\x00\x00\x0a11.0.2-MariaDB\x00\x08\x00\x00\x00abcdefgh\x00\xfe\xf7\x08\x02\x00",
        b"\x00\x00\x00\x1f\x00\x12\x00\x03\x00\x00\x00\x01\x00\x0ckafka-python\x00",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8d\x27\x4a\x91\x02\x6b\xc4\x55\x10\x3f\xe2\x91\x07\x19",
    ] {
        assert_eq!(check(other, Direction::Egress), Detection::No, "{other:?}");
        assert_eq!(check(other, Direction::Ingress), Detection::No, "{other:?}");
    }
}

/// The registry finds MongoDB from a connection's first bytes, whatever
/// the port, and no protocol asked before it takes them.
#[test]
fn the_registry_picks_mongodb_from_the_first_bytes() {
    use crate::protocols::registry::{detect, Detection as Found, Protocol, ProtocolSelection};
    use crate::protocols::session::FirstBytes;
    use zerotrace_shared::event::ConnectionRole;
    for (fixture, _) in RECORDINGS {
        for chunks in connections(fixture) {
            for (role, (direction, bytes)) in [
                (ConnectionRole::Client, &chunks[0]),
                (ConnectionRole::Unknown, &chunks[0]),
                (ConnectionRole::Unknown, &chunks[1]),
            ] {
                let first = FirstBytes {
                    bytes,
                    direction: *direction,
                    role,
                    local_port: 40000,
                    peer_port: 27017,
                };
                assert_eq!(
                    detect(&first, true, ProtocolSelection::ALL),
                    Found::Found(Protocol::Mongo),
                    "{direction:?} {role:?}"
                );
            }
        }
    }
}

/// Replies are paired by `responseTo`: a reply that names no request is
/// counted, and a request whose reply was lost ends, partial, when the
/// reply to a later one comes.
#[test]
fn replies_pair_by_the_request_they_name() {
    let crud = connections(CRUD);
    let chunks = &crud[1];
    // The handshake, then the first insert whose reply is lost, then the second.
    let mut connection = MongoConnection::new();
    let mut out = Vec::new();
    connection.feed(Direction::Egress, &chunks[0].1, 0, 1, &mut out);
    connection.feed(Direction::Ingress, &chunks[1].1, 0, 2, &mut out);
    connection.feed(Direction::Egress, &chunks[2].1, 0, 3, &mut out);
    connection.feed(Direction::Egress, &chunks[4].1, 0, 5, &mut out);
    connection.feed(Direction::Ingress, &chunks[5].1, 0, 6, &mut out);
    assert_eq!(
        show(&out),
        [
            "insert users | shop | ok | - | rows=- | 3-6 | partial",
            "insert users | shop | ok | - | rows=3 | 5-6",
        ]
    );
    // The lost reply, late: it names a request no longer waiting.
    connection.feed(Direction::Ingress, &chunks[3].1, 0, 7, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(connection.stats().unmatched_replies, 1);
}

/// Past the bound, requests are dropped and counted; the connection's
/// state stays bounded.
#[test]
fn requests_past_the_bound_are_dropped_and_counted() {
    let crud = connections(CRUD);
    let find = &crud[1][6].1;
    let mut connection = MongoConnection::new();
    let mut out = Vec::new();
    for i in 0..crate::protocols::db::MAX_PENDING + 5 {
        connection.feed(Direction::Egress, find, 0, i as u64, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(connection.stats().pending_dropped, 5);
    connection.finish(u64::MAX, &mut out);
    assert_eq!(out.len(), crate::protocols::db::MAX_PENDING);
    assert!(out.iter().all(|op| op.partial));
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..96), 0u64..2000), 0..40)
    ) {
        let mut connection = MongoConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    /// Recorded messages with bytes flipped: documents whose lengths and
    /// types lie.
    #[test]
    fn corrupted_recordings_never_panic(
        flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..12),
        cut in 0usize..600,
    ) {
        for chunks in connections(CRUD).iter().chain(&connections(ERRORS)) {
            let mut connection = MongoConnection::new();
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

/// Builds a BSON document of `elements` (already encoded, type byte first).
fn document(elements: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = elements.concat();
    let mut doc = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    doc.extend_from_slice(&body);
    doc.push(0);
    doc
}

fn element(kind: u8, key: &str, value: &[u8]) -> Vec<u8> {
    let mut e = vec![kind];
    e.extend_from_slice(key.as_bytes());
    e.push(0);
    e.extend_from_slice(value);
    e
}

fn string_value(text: &str) -> Vec<u8> {
    let mut v = ((text.len() + 1) as i32).to_le_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

/// An OP_MSG of one body section.
fn op_msg(request_id: i32, response_to: i32, flags: u32, body: &[u8]) -> Vec<u8> {
    let length = (16 + 4 + 1 + body.len()) as i32;
    let mut msg = length.to_le_bytes().to_vec();
    msg.extend_from_slice(&request_id.to_le_bytes());
    msg.extend_from_slice(&response_to.to_le_bytes());
    msg.extend_from_slice(&wire::OP_MSG.to_le_bytes());
    msg.extend_from_slice(&flags.to_le_bytes());
    msg.push(0);
    msg.extend_from_slice(body);
    msg
}

/// Exhaust cursors and streaming `hello` (MongoDB 4.4+): a reply flagged
/// moreToCome is followed by replies answering it, not the request. The
/// operation ends with the last reply; a driver's streaming `hello` never
/// makes a span, and none of its replies counts as unmatched. (The
/// stand-in does not stream: these messages are built here, after the
/// wire protocol's description.)
#[test]
fn streamed_replies_follow_the_reply_they_answer() {
    let ok = element(0x01, "ok", &1.0f64.to_le_bytes());
    let batch = |docs: usize| {
        let entries: Vec<Vec<u8>> = (0..docs)
            .map(|i| {
                element(
                    0x03,
                    &i.to_string(),
                    &document(&[element(0x10, "x", &1i32.to_le_bytes())]),
                )
            })
            .collect();
        document(&[
            element(0x04, "nextBatch", &document(&entries)),
            element(0x12, "id", &7i64.to_le_bytes()),
        ])
    };
    let get_more = document(&[
        element(0x12, "getMore", &7i64.to_le_bytes()),
        element(0x02, "collection", &string_value("events")),
        element(0x02, "$db", &string_value("shop")),
    ]);
    let hello = document(&[
        element(0x10, "hello", &1i32.to_le_bytes()),
        element(0x02, "$db", &string_value("admin")),
    ]);
    let exhaust_allowed = 1 << 16;
    let mut connection = MongoConnection::new();
    let mut out = Vec::new();
    let mut feed =
        |direction, bytes: Vec<u8>, ts| connection.feed(direction, &bytes, 0, ts, &mut out);
    feed(
        Direction::Egress,
        op_msg(10, 0, exhaust_allowed, &get_more),
        1,
    );
    feed(Direction::Egress, op_msg(11, 0, exhaust_allowed, &hello), 2);
    let reply = |docs| document(&[element(0x03, "cursor", &batch(docs)), ok.clone()]);
    let streamed = document(&[element(0x08, "isWritablePrimary", &[1]), ok.clone()]);
    // Two streamed batches (2, then 3 documents), each answering the last
    // reply, and the hello's stream interleaved.
    feed(
        Direction::Ingress,
        op_msg(100, 10, wire::MORE_TO_COME, &reply(2)),
        3,
    );
    feed(
        Direction::Ingress,
        op_msg(200, 11, wire::MORE_TO_COME, &streamed),
        4,
    );
    feed(Direction::Ingress, op_msg(101, 100, 0, &reply(3)), 5);
    feed(
        Direction::Ingress,
        op_msg(201, 200, wire::MORE_TO_COME, &streamed),
        6,
    );
    assert_eq!(
        show(&out),
        ["getMore events | shop | ok | - | rows=5 returned | 1-5"]
    );
    assert_eq!(connection.stats().unmatched_replies, 0);
    // At the close, the hello still streaming makes no span.
    connection.finish(9, &mut out);
    assert_eq!(out.len(), 1);
}
