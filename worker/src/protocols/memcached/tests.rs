//! The memcached decoder on exchanges recorded from real clients
//! (pymemcache, and commands typed as into `nc`) and a real memcached 1.6.

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{self, connections, Cut};
use crate::protocols::db::{DbOperation, Detection};

const PY: &str = include_str!("../../../testdata/memcached/pymemcache.txt");
const TEXT: &str = include_str!("../../../testdata/memcached/text.txt");

fn decode(fixture: &str, cut: Cut) -> Vec<DbOperation> {
    fixture::decode(fixture, cut, MemcachedConnection::new)
}

fn show(ops: &[DbOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            format!(
                "{} | {} | {} | rows={} | {}-{}{}",
                op.exchange.operation,
                op.exchange.query_text.as_deref().unwrap_or("-"),
                op.exchange.status_code.as_deref().unwrap_or("ok"),
                op.exchange.rows.map_or("-".to_string(), |r| r.to_string()),
                op.start_ns,
                op.end_ns,
                if op.partial { " | partial" } else { "" }
            )
        })
        .collect()
}

/// pymemcache: storage commands and their outcomes, a multi-key `get` (two
/// hits of three), `gets`/`cas`, incr/decr/touch, a 2000-byte value, a
/// `noreply` set (ends when sent), version, stats (96 `STAT` lines), flush_all.
const PY_OPS: &[&str] = &[
    "set | set user:1 ? ? ? | STORED | rows=- | 1000-2000",
    "get | get user:1 | ok | rows=1 | 3000-4000",
    "set | set user:2 ? ? ? | STORED | rows=- | 5000-6000",
    "get | get user:1 user:2 user:3 | ok | rows=2 | 7000-8000",
    "add | add user:1 ? ? ? | NOT_STORED | rows=- | 9000-10000",
    "replace | replace nobody ? ? ? | NOT_STORED | rows=- | 11000-12000",
    "append | append user:1 ? ? ? | STORED | rows=- | 13000-14000",
    "prepend | prepend user:1 ? ? ? | STORED | rows=- | 15000-16000",
    "gets | gets user:1 | ok | rows=1 | 17000-18000",
    "cas | cas user:1 ? ? ? ? | STORED | rows=- | 19000-20000",
    "cas | cas user:1 ? ? ? ? | EXISTS | rows=- | 21000-22000",
    "delete | delete user:2 | DELETED | rows=- | 23000-24000",
    "delete | delete user:2 | NOT_FOUND | rows=- | 25000-26000",
    "set | set hits ? ? ? | STORED | rows=- | 27000-28000",
    "incr | incr hits ? | ok | rows=- | 29000-30000",
    "decr | decr hits ? | ok | rows=- | 31000-32000",
    "incr | incr missing ? | NOT_FOUND | rows=- | 33000-34000",
    "touch | touch hits ? | TOUCHED | rows=- | 35000-36000",
    "set | set big ? ? ? | STORED | rows=- | 37000-38000",
    "get | get big | ok | rows=1 | 39000-40000",
    "set | set quiet ? ? ? noreply | ok | rows=- | 41000-41000",
    "version | version | ok | rows=- | 42000-43000",
    "stats | stats | ok | rows=- | 44000-45000",
    "flush_all | flush_all 0 | ok | rows=- | 46000-47000",
];

/// Typed commands: gat/gats, an unknown command (ERROR), a malformed storage
/// line and a non-numeric incr (CLIENT_ERROR), a meta no-op, a repeated key.
const TEXT_OPS: &[&str] = &[
    "set | set k ? ? ? | STORED | rows=- | 1000-2000",
    "gat | gat ? k | ok | rows=1 | 3000-4000",
    "gats | gats ? k nokey | ok | rows=1 | 5000-6000",
    "bogus | bogus | ERROR | rows=- | 7000-8000",
    "set | set k ? ? ? | CLIENT_ERROR | rows=- | 9000-10000",
    "incr | incr k ? | CLIENT_ERROR | rows=- | 11000-12000",
    "verbosity | verbosity 1 | ok | rows=- | 13000-14000",
    "mn | mn | ok | rows=- | 15000-16000",
    "get | get k k k | ok | rows=3 | 17000-18000",
];

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in [(PY, PY_OPS), (TEXT, TEXT_OPS)] {
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
fn a_kernel_sized_capture_skips_values_by_length() {
    // The 2000-byte value is skipped by its declared length on both sides;
    // the stats reply (lines, no lengths) loses the framing, so `stats` ends
    // partial where its read was seen, and the next command is whole again.
    let mut expected: Vec<String> = PY_OPS.iter().map(|s| s.to_string()).collect();
    expected[18].push_str(" | partial");
    expected[19].push_str(" | partial");
    expected[22] = "stats | stats | ok | rows=- | 44000-45000 | partial".into();
    let ops = decode(PY, Cut::Capture(512));
    assert_eq!(show(&ops), expected);
    // `VALUE big 0 2000`, the value, and its `END` in the gap: all counted.
    assert_eq!(ops[19].exchange.response_bytes, 18 + 2002 + 5);
    let whole = decode(PY, Cut::Whole);
    for (op, whole) in ops.iter().zip(&whole) {
        assert_eq!(op.exchange.request_bytes, whole.exchange.request_bytes);
        assert_eq!(op.exchange.response_bytes, whole.exchange.response_bytes);
    }
    assert_eq!(show(&decode(TEXT, Cut::Capture(512))), TEXT_OPS);
}

/// Past the cap, a command written while replies of dropped ones are still
/// to come is dropped too, multi-line replies (`VALUE … END`) passed whole:
/// no reply is paired with a later command than its own.
#[test]
fn commands_written_after_dropped_ones_never_take_their_replies() {
    let max = crate::protocols::db::MAX_PENDING;
    let mut connection = MemcachedConnection::new();
    let mut out = Vec::new();
    connection.feed(
        Direction::Egress,
        &b"get a\r\n".repeat(max + 2),
        0,
        1,
        &mut out,
    );
    connection.feed(Direction::Ingress, &b"END\r\n".repeat(max), 0, 2, &mut out);
    assert_eq!(out.len(), max);
    connection.feed(Direction::Egress, b"delete b\r\n", 0, 3, &mut out);
    let replies = b"VALUE a 0 1\r\nx\r\nEND\r\nVALUE a 0 1\r\nx\r\nEND\r\nDELETED\r\n";
    connection.feed(Direction::Ingress, replies, 0, 4, &mut out);
    connection.feed(Direction::Egress, b"get c\r\n", 0, 5, &mut out);
    connection.feed(
        Direction::Ingress,
        b"VALUE c 0 2\r\nyy\r\nEND\r\n",
        0,
        6,
        &mut out,
    );
    assert_eq!(show(&out[max..]), ["get | get c | ok | rows=1 | 5-6"]);
    assert!(out.iter().all(|op| op.exchange.operation == "get"));
    let stats = connection.stats();
    assert_eq!((stats.pending_dropped, stats.unmatched_replies), (3, 3));
}

/// A `get` of more keys than the decoder keeps of a line (pymemcache's
/// get_many of 400 keys, 4.7 KB) counts them all: its hits are its rows,
/// and it is whole. The line is seen whole, in one piece or many.
#[test]
fn a_get_longer_than_the_kept_line_counts_every_key() {
    let keys: Vec<String> = (0..400).map(|i| format!("key:{i}")).collect();
    let command = format!("get {}\r\n", keys.join(" "));
    let mut reply = String::new();
    for key in &keys[..399] {
        reply.push_str(&format!("VALUE {key} 0 1\r\nv\r\n"));
    }
    reply.push_str("END\r\n");
    for piece in [command.len(), 2048, 2047, 1000, 7] {
        let mut connection = MemcachedConnection::new();
        let mut out = Vec::new();
        for (i, chunk) in command.as_bytes().chunks(piece).enumerate() {
            connection.feed(Direction::Egress, chunk, 0, 1 + i as u64, &mut out);
        }
        connection.feed(Direction::Ingress, reply.as_bytes(), 0, 1000, &mut out);
        assert_eq!(out.len(), 1, "pieces of {piece}");
        assert_eq!(out[0].exchange.rows, Some(399), "pieces of {piece}");
        assert!(!out[0].partial, "pieces of {piece}");
        assert_eq!(out[0].exchange.request_bytes, command.len() as u64);
    }
    // A storage line past the kept length is not whole.
    let mut connection = MemcachedConnection::new();
    let mut out = Vec::new();
    let long = format!("set {} 0 0 1\r\nx\r\n", "k".repeat(3000));
    connection.feed(Direction::Egress, long.as_bytes(), 0, 1, &mut out);
    connection.feed(Direction::Ingress, b"CLIENT_ERROR bad\r\n", 0, 2, &mut out);
    assert!(out.iter().all(|op| op.partial), "{out:?}");
}

#[test]
fn tiny_captures_stay_bounded() {
    for (fixture, expected) in [(PY, PY_OPS), (TEXT, TEXT_OPS)] {
        for size in [0, 1, 4, 10, 30] {
            let ops = decode(fixture, Cut::Capture(size));
            assert!(
                ops.len() <= expected.len() + 2,
                "capture {size}: {}",
                ops.len()
            );
            assert!(ops.iter().all(|op| op.end_ns >= op.start_ns));
        }
    }
}

#[test]
fn detection_on_first_bytes() {
    for fixture in [PY, TEXT] {
        let chunks = &connections(fixture)[0];
        assert_eq!(check(&chunks[0].1, Direction::Egress), Detection::Yes);
        assert_eq!(
            check(&chunks[0].1[..2], Direction::Egress),
            Detection::NeedMore
        );
        assert_eq!(check(&chunks[1].1, Direction::Ingress), Detection::Yes);
    }
    assert_eq!(
        check(b"VALUE k 0 5\r\nhello\r\nEND\r\n", Direction::Ingress),
        Detection::Yes
    );
    for other in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"GET key\r\n",
        b"set key value\r\n",
        b"+OK\r\n",
        b"get\r\n",
        b"\x80\x00\x00\x05",
    ] {
        assert_eq!(check(other, Direction::Egress), Detection::No, "{other:?}");
        assert_eq!(check(other, Direction::Ingress), Detection::No, "{other:?}");
    }
}

#[test]
fn huge_declared_lengths_do_not_overflow() {
    // Found by the fuzz target: `<bytes>` + CRLF overflowed at u64::MAX.
    let mut connection = MemcachedConnection::new();
    let mut out = Vec::new();
    connection.feed(
        Direction::Egress,
        b"set k 0 0 18446744073709551615\r\n",
        5,
        1,
        &mut out,
    );
    connection.feed(
        Direction::Ingress,
        b"VALUE k 0 18446744073709551615\r\n",
        5,
        2,
        &mut out,
    );
    assert!(out.len() <= 1);
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = MemcachedConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    #[test]
    fn protocol_shaped_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, "(get|set|VALUE|END|STORED|incr|STAT)? ?[a-z0-9 ]{0,12}\r?\n?", 0u64..8), 0..60)
    ) {
        let mut connection = MemcachedConnection::new();
        let mut out = Vec::new();
        for (i, (egress, text, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, text.as_bytes(), *gap, i as u64, &mut out);
        }
        connection.finish(u64::MAX, &mut out);
    }
}

const LARGE_VALUES: &str = include_str!("../../../testdata/memcached/pymemcache_large_values.txt");

/// pymemcache sets and gets a 200 KB value, sets 50 values of 240 to 270
/// bytes, reads them back with one 50-key `get` (14 KB), then sets and gets
/// a small one. However the kernel cuts those writes and reads, keeping 512
/// bytes of each, every command comes out once with all its bytes counted, a
/// hit count that is exact or absent, and the commands after the large
/// replies whole. Pieces of the 50-key reply that start inside a value
/// (`12 value…`) could pass for replies of their own.
#[test]
fn large_values_cut_anywhere_keep_the_commands_after_them_whole() {
    let whole = decode(LARGE_VALUES, Cut::Whole);
    let expected = fixture::untimed(show(&whole));
    let multi_get = expected
        .iter()
        .position(|line| line.starts_with("get | get k0 k1"))
        .unwrap_or_else(|| panic!("{expected:#?}"));
    assert!(expected[multi_get].contains("rows=50"), "{expected:#?}");
    let turns = fixture::turns(&connections(LARGE_VALUES)[0]);
    for first in (1..4096).step_by(11) {
        for size in [4096, 16384, 65536] {
            let out = fixture::decode_turns(&turns, first, size, MemcachedConnection::new());
            let got = fixture::untimed(show(&out));
            let case = format!("pieces of {size} after {first}: {got:#?}");
            assert_eq!(got.len(), expected.len(), "{case}");
            let rows = &got[multi_get];
            assert!(
                rows.contains("rows=50") || rows.contains("rows=-"),
                "{case}"
            );
            assert_eq!(got[multi_get + 1..], expected[multi_get + 1..], "{case}");
            fixture::assert_same_sizes(&out, &whole, &case);
        }
    }
}
