//! The Redis decoder on exchanges recorded from real clients (redis-cli in
//! RESP2 and RESP3, redis-py, inline commands) and a real Redis 7 server.

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{self, connections, Chunk, Cut};
use crate::protocols::db::{DbOperation, Detection};

const CLI: &str = include_str!("../../../testdata/redis/redis_cli.txt");
const CLI_RESP3: &str = include_str!("../../../testdata/redis/redis_cli_resp3.txt");
const PY: &str = include_str!("../../../testdata/redis/redis_py.txt");
const INLINE: &str = include_str!("../../../testdata/redis/inline.txt");

fn decode_chunks(chunks: &[Chunk], cut: Cut, connection: RedisConnection) -> Vec<DbOperation> {
    fixture::decode_chunks(chunks, cut, connection)
}

fn decode(fixture: &str, cut: Cut) -> Vec<DbOperation> {
    fixture::decode(fixture, cut, RedisConnection::new)
}

fn show(ops: &[DbOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            format!(
                "{} | {} | {} | {} | {}-{}{}",
                op.exchange.namespace.as_deref().unwrap_or("-"),
                op.exchange.operation,
                op.exchange.query_text.as_deref().unwrap_or("-"),
                op.exchange.status_code.as_deref().unwrap_or("ok"),
                op.start_ns,
                op.end_ns,
                if op.partial { " | partial" } else { "" }
            )
        })
        .collect()
}

/// redis-cli, RESP2: `SELECT 2` moves the namespace, errors keep their prefix,
/// a transaction's queued commands end at EXEC with their own results, and a
/// 2000-byte value is written and read.
const CLI_OPS: &[&str] = &[
    "0 | SET | SET user:1 ? | ok | 1000-2000",
    "0 | GET | GET user:1 | ok | 3000-4000",
    "0 | SELECT | SELECT 2 | ok | 5000-6000",
    "2 | SET | SET counter ? | ok | 7000-8000",
    "2 | INCR | INCR counter | ok | 9000-10000",
    "2 | RPUSH | RPUSH list ? ? ? | ok | 11000-12000",
    "2 | LRANGE | LRANGE list ? ? | ok | 13000-14000",
    "2 | GET | GET list | WRONGTYPE | 15000-16000",
    "2 | NOSUCHCMD | NOSUCHCMD x | ERR | 17000-18000",
    "2 | HSET | HSET h ? ? ? ? | ok | 19000-20000",
    "2 | HGETALL | HGETALL h | ok | 21000-22000",
    "2 | MULTI | MULTI | ok | 23000-24000",
    "2 | SET | SET tx ? | ok | 25000-32000",
    "2 | INCR | INCR tx | ok | 27000-32000",
    "2 | RPUSH | RPUSH tx ? | WRONGTYPE | 29000-32000",
    "2 | EXEC | EXEC | ok | 31000-32000",
    "2 | SET | SET big ? | ok | 33000-34000",
    "2 | GET | GET big | ok | 35000-36000",
    "2 | DEL | DEL big ? | ok | 37000-38000",
];

/// redis-cli -3: HELLO 3, then maps, sets, doubles, booleans, nulls, and a
/// client-tracking invalidation push that answers no command.
const CLI_RESP3_OPS: &[&str] = &[
    "0 | HELLO | HELLO ? | ok | 1000-2000",
    "0 | HSET | HSET h ? ? | ok | 3000-4000",
    "0 | HGETALL | HGETALL h | ok | 5000-6000",
    "0 | SADD | SADD s ? ? | ok | 7000-8000",
    "0 | SMEMBERS | SMEMBERS s | ok | 9000-10000",
    "0 | ZADD | ZADD z ? ? | ok | 11000-12000",
    "0 | ZSCORE | ZSCORE z ? | ok | 13000-14000",
    "0 | EVAL | EVAL ? ? | ok | 15000-16000",
    "0 | GET | GET missing | ok | 17000-18000",
    "0 | CLIENT | CLIENT TRACKING ? | ok | 19000-20000",
    "0 | GET | GET h2 | ok | 21000-22000",
    "0 | SET | SET h2 ? | ok | 23000-24000",
    "0 | GET | GET h2 | ok | 25000-26000",
    "0 | PING | PING | ok | 27000-28000",
];

/// redis-py: `db=3`, a pipeline of five commands in one write (one reply
/// read), and a MULTI/EXEC pipeline.
const PY_OPS: &[&str] = &[
    "0 | SELECT | SELECT 3 | ok | 1000-2000",
    "3 | SET | SET page:home ? | ok | 3000-4000",
    "3 | GET | GET page:home | ok | 5000-6000",
    "3 | INCRBY | INCRBY hits ? | ok | 5000-6000",
    "3 | INCRBY | INCRBY hits ? | ok | 5000-6000",
    "3 | LPUSH | LPUSH page:home ? | WRONGTYPE | 5000-6000",
    "3 | EXISTS | EXISTS page:home ? | ok | 5000-6000",
    "3 | MULTI | MULTI | ok | 7000-8000",
    "3 | INCRBY | INCRBY hits ? | ok | 7000-8000",
    "3 | EXPIRE | EXPIRE hits ? | ok | 7000-8000",
    "3 | GET | GET hits | ok | 7000-8000",
    "3 | EXEC | EXEC | ok | 7000-8000",
];

/// Inline commands, one per write, with a RESP3 big number reply.
const INLINE_OPS: &[&str] = &[
    "0 | PING | PING | ok | 1000-2000",
    "0 | HELLO | HELLO ? | ok | 3000-4000",
    "0 | SET | SET inl ? | ok | 5000-6000",
    "0 | GET | GET inl | ok | 7000-8000",
    "0 | EVAL | EVAL ? ? | ok | 9000-10000",
    "0 | SELECT | SELECT 5 | ok | 11000-12000",
    "5 | GET | GET inl | ok | 13000-14000",
    "5 | QUIT | QUIT | ok | 15000-16000",
];

const ALL: [(&str, &[&str]); 4] = [
    (CLI, CLI_OPS),
    (CLI_RESP3, CLI_RESP3_OPS),
    (PY, PY_OPS),
    (INLINE, INLINE_OPS),
];

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in ALL {
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
fn a_kernel_sized_capture_follows_bulk_lengths() {
    // The 2000-byte SET and GET are cut by a 512-byte capture; their bulk
    // lengths carry the framing over the gap, so only those two are partial.
    let mut expected: Vec<String> = CLI_OPS.iter().map(|s| s.to_string()).collect();
    expected[16].push_str(" | partial");
    expected[17].push_str(" | partial");
    assert_eq!(show(&decode(CLI, Cut::Capture(512))), expected);
    for (fixture, expected) in &ALL[1..] {
        assert_eq!(show(&decode(fixture, Cut::Capture(512))), *expected);
    }
}

#[test]
fn errors_and_sizes() {
    let ops = decode(CLI, Cut::Whole);
    assert_eq!(ops[7].exchange.error_type.as_deref(), Some("WRONGTYPE"));
    assert!(ops[7]
        .exchange
        .error_message
        .as_deref()
        .is_some_and(|m| m.starts_with("WRONGTYPE Operation against a key")));
    assert_eq!(ops[16].exchange.request_bytes, 2031);
    assert_eq!(ops[17].exchange.response_bytes, 2009);
}

#[test]
fn tiny_captures_stay_bounded_and_ordered() {
    for (fixture, expected) in ALL {
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
fn joined_mid_stream_has_no_namespace_and_skips_a_partial_value() {
    let chunks = &connections(CLI)[0];
    let mut later = chunks[5..].to_vec();
    later[0].1.drain(..2);
    let ops = decode_chunks(&later, Cut::Whole, RedisConnection::joined_mid_stream());
    let shown = show(&ops);
    assert_eq!(shown[0], "- | SET | SET counter ? | ok | 2000-3000");
    assert_eq!(shown.len(), CLI_OPS.len() - 3);
}

#[test]
fn detection_on_first_bytes() {
    for (fixture, _) in ALL {
        let chunks = &connections(fixture)[0];
        assert_eq!(
            check(&chunks[0].1, Direction::Egress),
            Detection::Yes,
            "{:?}",
            chunks[0].1
        );
        assert_eq!(
            check(&chunks[0].1[..3], Direction::Egress),
            Detection::NeedMore
        );
        assert_eq!(
            check(&chunks[1].1, Direction::Ingress),
            Detection::Yes,
            "{:?}",
            chunks[1].1
        );
    }
    for other in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\0\0\0\x08\x04\xd2\x16\x2f",
        b"+OK POP3 server ready\r\n",
        b"EHLO example.com\r\n",
        b"get key\r\n\r\n",
        b"\x16\x03\x01",
        // A NATS server's greeting, as its own write: no Redis command
        // takes a JSON object.
        b"INFO {\"server_id\":\"NA2N\",\"proto\":1}\r\n",
    ] {
        assert_eq!(check(other, Direction::Egress), Detection::No, "{other:?}");
        assert_eq!(check(other, Direction::Ingress), Detection::No, "{other:?}");
    }
}

#[test]
fn pending_commands_are_capped() {
    let mut connection = RedisConnection::new();
    let mut out = Vec::new();
    let many = b"*1\r\n$4\r\nPING\r\n".repeat(crate::protocols::db::MAX_PENDING + 5);
    connection.feed(Direction::Egress, &many, 0, 1, &mut out);
    assert_eq!(connection.stats().pending_dropped, 5);
}

/// `redis-cli --pipe` writes while it reads: past the cap, a command written
/// while replies of dropped ones are still to come is dropped too, so no
/// reply is paired with a later command than its own.
#[test]
fn commands_written_after_dropped_ones_never_take_their_replies() {
    let max = crate::protocols::db::MAX_PENDING;
    let mut connection = RedisConnection::new();
    let mut out = Vec::new();
    let gets = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n".repeat(max + 3);
    connection.feed(Direction::Egress, &gets, 0, 1, &mut out);
    connection.feed(Direction::Ingress, &b"$-1\r\n".repeat(max), 0, 2, &mut out);
    assert_eq!(out.len(), max);
    // Written before the three dropped GETs are answered: its `+OK` is
    // the fourth reply from here, not the first.
    connection.feed(
        Direction::Egress,
        b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\nx\r\n",
        0,
        3,
        &mut out,
    );
    connection.feed(
        Direction::Ingress,
        b"$-1\r\n$-1\r\n$-1\r\n+OK\r\n",
        0,
        4,
        &mut out,
    );
    connection.feed(
        Direction::Egress,
        b"*2\r\n$3\r\nGET\r\n$1\r\nz\r\n",
        0,
        5,
        &mut out,
    );
    connection.feed(Direction::Ingress, b"-WRONGTYPE no\r\n", 0, 6, &mut out);
    assert_eq!(out.len(), max + 1);
    let last = out.last().map(|op| {
        (
            op.exchange.query_text.clone(),
            op.exchange.status_code.clone(),
            op.start_ns,
            op.end_ns,
        )
    });
    assert_eq!(
        last,
        Some((
            Some("GET z".to_string()),
            Some("WRONGTYPE".to_string()),
            5,
            6
        ))
    );
    assert!(out
        .iter()
        .all(|op| op.exchange.operation == "GET" && !op.partial));
    let stats = connection.stats();
    assert_eq!((stats.pending_dropped, stats.unmatched_replies), (4, 4));
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = RedisConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    #[test]
    fn resp_shaped_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, "[*$:+%~>|_#,(=!-]?[0-9-]{0,3}\r\n[a-z]{0,4}\r?\n?", 0u64..8), 0..60)
    ) {
        let mut connection = RedisConnection::new();
        let mut out = Vec::new();
        for (i, (egress, text, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, text.as_bytes(), *gap, i as u64, &mut out);
        }
        connection.finish(u64::MAX, &mut out);
    }
}

const LARGE_VALUES: &str = include_str!("../../../testdata/redis/redis_py_large_values.txt");

/// redis-py writes a 3000-element RPUSH (77 KB, in three writes) and reads it
/// back with LRANGE, writes and reads a 100 KB value, then runs small
/// commands. However the kernel cuts those writes and reads, keeping 512
/// bytes of each, every command comes out once, with all its bytes counted
/// and the small ones after the large ones whole. Pieces that start inside a
/// long command (`element number 1234…`) or a long reply (`$17…`) once
/// passed for commands and replies of their own.
#[test]
fn large_commands_and_replies_cut_anywhere_make_no_command_of_their_pieces() {
    let whole = decode(LARGE_VALUES, Cut::Whole);
    let untimed = |ops: &[DbOperation]| -> Vec<String> {
        ops.iter()
            .map(|op| {
                format!(
                    "{} | {} | {} | req={} resp={}",
                    op.exchange.operation,
                    op.exchange.query_text.as_deref().unwrap_or("-"),
                    op.exchange.status_code.as_deref().unwrap_or("ok"),
                    op.exchange.request_bytes,
                    op.exchange.response_bytes,
                )
            })
            .collect()
    };
    let expected = untimed(&whole);
    assert_eq!(expected.len(), 8, "{expected:#?}");
    assert!(
        expected[1].starts_with("RPUSH | RPUSH l ? ?"),
        "{expected:#?}"
    );
    let turns = fixture::turns(&connections(LARGE_VALUES)[0]);
    for first in (1..4096).step_by(11) {
        for size in [4096, 6000, 16384, 65536] {
            let out = fixture::decode_turns(&turns, first, size, RedisConnection::new());
            let got = untimed(&out);
            let case = format!("pieces of {size} after {first}: {got:#?}");
            assert_eq!(got.len(), expected.len(), "{case}");
            for (got, expected) in got.iter().zip(&expected) {
                let name = |line: &str| line.split(" | ").next().map(str::to_string);
                assert_eq!(name(got), name(expected), "{case}");
            }
            // Small commands after the large ones are exact.
            assert_eq!(got[5..], expected[5..], "{case}");
            fixture::assert_same_sizes(&out, &whole, &case);
        }
    }
}
