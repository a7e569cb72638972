//! The PostgreSQL decoder on exchanges recorded from real clients (psql,
//! psycopg2, psycopg 3) and a real PostgreSQL 15 server.

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{self, connections, replay, Chunk, Cut};
use crate::protocols::db::{DbOperation, Detection};

const PSQL: &str = include_str!("../../../testdata/postgres/psql.txt");
const PSYCOPG2: &str = include_str!("../../../testdata/postgres/psycopg2.txt");
const PSYCOPG3: &str = include_str!("../../../testdata/postgres/psycopg3.txt");
const PIPELINE: &str = include_str!("../../../testdata/postgres/psycopg3_pipeline.txt");
const LARGE_RESULTS: &str = include_str!("../../../testdata/postgres/psycopg2_large_results.txt");

fn decode_chunks(chunks: &[Chunk], cut: Cut) -> Vec<DbOperation> {
    fixture::decode_chunks(chunks, cut, PostgresConnection::new())
}

fn decode(fixture: &str, cut: Cut) -> Vec<DbOperation> {
    fixture::decode(fixture, cut, PostgresConnection::new)
}

fn show(ops: &[DbOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            format!(
                "{} | {} | {} | {} | {} | rows={} | {}-{}{}",
                op.exchange.operation,
                op.exchange.collection.as_deref().unwrap_or("-"),
                op.exchange.namespace.as_deref().unwrap_or("-"),
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

/// psql: SSLRequest refused, then simple queries only (`\;` joins two statements in one `Q`).
const PSQL_OPS: &[&str] = &[
    "SELECT | accounts | shop | SELECT id, name FROM accounts WHERE id = ? | ok | rows=1 | 5000-6000",
    "SELECT | - | shop | SELECT ? AS one | ok | rows=1 | 7000-8000",
    "SELECT | - | shop | SELECT ? AS two | ok | rows=1 | 8000-8000",
    "SELEC | - | shop | SELEC broken | 42601 | rows=- | 9000-10000",
    "SELECT | missing_table | shop | SELECT * FROM missing_table | 42P01 | rows=- | 12000-13000",
    "PREPARE | - | shop | PREPARE getacc(int) AS SELECT name FROM accounts WHERE id = $1 | ok | rows=- | 14000-15000",
    "SELECT | accounts | shop | SELECT name FROM accounts WHERE id = $1 | ok | rows=1 | 16000-17000",
    "COPY | accounts | shop | COPY accounts FROM STDIN | ok | rows=2 | 18000-21000",
    "COPY | accounts | shop | COPY accounts TO STDOUT | ok | rows=4 | 22000-23000",
    "SELECT | - | shop | SELECT g, repeat(?, ?) AS pad FROM generate_series(?, ?) g | ok | rows=60 | 24000-25000",
    "UPDATE | accounts | shop | UPDATE accounts SET balance = balance + ? WHERE id = ? | ok | rows=1 | 26000-27000",
    "DELETE | accounts | shop | DELETE FROM accounts WHERE id > ? | ok | rows=2 | 28000-29000",
];

/// psycopg2: simple queries with the values interpolated by the client (sanitized away).
const PSYCOPG2_OPS: &[&str] = &[
    "BEGIN | - | shop | BEGIN | ok | rows=- | 3000-4000",
    "SELECT | accounts | shop | SELECT name FROM accounts WHERE id = ? | ok | rows=1 | 5000-6000",
    "UPDATE | accounts | shop | UPDATE accounts SET name = ? WHERE id = ? | ok | rows=1 | 7000-8000",
    "COMMIT | - | shop | COMMIT | ok | rows=- | 9000-10000",
    "BEGIN | - | shop | BEGIN | ok | rows=- | 11000-12000",
    "SELECT | - | shop | SELECT ?/? | 22012 | rows=- | 13000-14000",
    "ROLLBACK | - | shop | ROLLBACK | ok | rows=- | 15000-16000",
];

/// psycopg 3: the extended protocol, server-side parameters, a named prepared
/// statement (`_pg3_0`, Parse + Sync, then two Bind/Execute of it).
const PSYCOPG3_OPS: &[&str] = &[
    "BEGIN | - | shop | BEGIN | ok | rows=- | 3000-4000",
    "SELECT | accounts | shop | SELECT name FROM accounts WHERE id = $1 | ok | rows=1 | 5000-6000",
    "SELECT | accounts | shop | SELECT balance FROM accounts WHERE id = $1 | ok | rows=1 | 9000-10000",
    "SELECT | accounts | shop | SELECT balance FROM accounts WHERE id = $1 | ok | rows=1 | 11000-12000",
    "INSERT | accounts | shop | INSERT INTO accounts (id, name, balance) VALUES ($1, $2, $3) | ok | rows=1 | 13000-14000",
    "COMMIT | - | shop | COMMIT | ok | rows=- | 15000-16000",
    "BEGIN | - | shop | BEGIN | ok | rows=- | 17000-18000",
    "SELECT | nope | shop | SELECT * FROM nope WHERE id = $1 | 42P01 | rows=- | 19000-20000",
    "ROLLBACK | - | shop | ROLLBACK | ok | rows=- | 21000-22000",
    "DEALLOCATE | - | shop | DEALLOCATE ALL | ok | rows=- | 23000-24000",
];

/// psycopg 3 pipeline mode: three Parse/Bind/Describe/Execute in one write
/// with one Sync, answered in one read; then a batch whose first Execute fails
/// (22012), so the server skips the second up to the Sync: no operation for it.
const PIPELINE_OPS: &[&str] = &[
    "SELECT | accounts | shop | SELECT name FROM accounts WHERE id = $1 | ok | rows=1 | 3000-4000",
    "UPDATE | accounts | shop | UPDATE accounts SET balance = balance + $1 WHERE id = $2 | ok | rows=1 | 3000-4000",
    "SELECT | accounts | shop | SELECT count(*) FROM accounts | ok | rows=1 | 3000-4000",
    "SELECT | - | shop | SELECT ?/$1 | 22012 | rows=- | 5000-6000",
];

/// The rows a query returned are told apart from those a statement
/// affected (`db.response.returned_rows` is only the former): psql's
/// `SELECT`s return theirs; `COPY`, `UPDATE` and `DELETE` count rows
/// affected or copied.
#[test]
fn rows_returned_are_told_from_rows_affected() {
    let returned: Vec<(String, Option<u64>)> = decode(PSQL, Cut::Whole)
        .iter()
        .map(|op| {
            let rows = op.exchange.rows.filter(|_| op.exchange.rows_returned);
            (op.exchange.operation.clone(), rows)
        })
        .collect();
    let want: Vec<(String, Option<u64>)> = [
        ("SELECT", Some(1)),
        ("SELECT", Some(1)),
        ("SELECT", Some(1)),
        ("SELEC", None),
        ("SELECT", None),
        ("PREPARE", None),
        ("SELECT", Some(1)),
        ("COPY", None),
        ("COPY", None),
        ("SELECT", Some(60)),
        ("UPDATE", None),
        ("DELETE", None),
    ]
    .into_iter()
    .map(|(operation, rows)| (operation.to_string(), rows))
    .collect();
    assert_eq!(returned, want);
}

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in [
        (PSQL, PSQL_OPS),
        (PSYCOPG2, PSYCOPG2_OPS),
        (PSYCOPG3, PSYCOPG3_OPS),
        (PIPELINE, PIPELINE_OPS),
    ] {
        assert_eq!(show(&decode(fixture, Cut::Whole)), expected);
        // Segment boundaries do not matter to the framing.
        for size in [1, 3, 7, 64] {
            assert_eq!(
                show(&decode(fixture, Cut::Pieces(size))),
                expected,
                "pieces of {size}"
            );
        }
    }
}

#[test]
fn errors_carry_sqlstate_severity_and_message() {
    let ops = decode(PSQL, Cut::Whole);
    let missing = &ops[4];
    assert_eq!(missing.exchange.error_type.as_deref(), Some("42P01"));
    assert_eq!(
        missing.exchange.error_message.as_deref(),
        Some("ERROR: relation \"missing_table\" does not exist")
    );
    assert!(ops[0].exchange.error_type.is_none());
    assert!(ops[0].exchange.request_bytes > 40 && ops[0].exchange.response_bytes > 40);
}

#[test]
fn a_kernel_sized_capture_keeps_every_operation() {
    // The kernel copies 512 bytes of each read: the 60-row result loses its
    // end (CommandComplete and ReadyForQuery), so that one operation ends where
    // its last read was seen, partial, and without a row count: the 9 rows
    // captured are not the result's 60.
    let mut expected: Vec<String> = PSQL_OPS.iter().map(|s| s.to_string()).collect();
    expected[9] = "SELECT | - | shop | SELECT g, repeat(?, ?) AS pad FROM generate_series(?, ?) g | ok | rows=- | 24000-25000 | partial".into();
    assert_eq!(show(&decode(PSQL, Cut::Capture(512))), expected);
    assert_eq!(show(&decode(PSYCOPG2, Cut::Capture(512))), PSYCOPG2_OPS);
    assert_eq!(show(&decode(PSYCOPG3, Cut::Capture(512))), PSYCOPG3_OPS);
    assert_eq!(show(&decode(PIPELINE, Cut::Capture(512))), PIPELINE_OPS);
}

/// `bytes`, one read or write, as the kernel copies it: `capture` bytes, and
/// its last `TAIL_LEN` bytes apart when it is longer than both (one within
/// `TAIL_LEN` of the copy is copied whole).
fn kernel_copy(bytes: &[u8], capture: usize) -> (Vec<u8>, u64, Vec<u8>) {
    let tail_len = zerotrace_shared::event::layout::TAIL_LEN;
    if bytes.len() <= capture + tail_len {
        return (bytes.to_vec(), 0, Vec::new());
    }
    let tail = bytes[bytes.len() - tail_len..].to_vec();
    (
        bytes[..capture].to_vec(),
        (bytes.len() - capture) as u64,
        tail,
    )
}

/// The operations of `turns` read `first` bytes first and then `size` at a
/// time, each read copied as the kernel does ([`kernel_copy`]).
fn decode_kernel_copies(
    turns: &[Chunk],
    first: usize,
    size: usize,
    capture: usize,
) -> Vec<DbOperation> {
    use crate::protocols::db::DbConnection;
    let mut connection = PostgresConnection::new();
    let mut out = Vec::new();
    for (i, (direction, bytes)) in turns.iter().enumerate() {
        let ts = (i as u64 + 1) * 1000;
        let mut at = 0;
        let mut take = first.max(1);
        while at < bytes.len() {
            let end = (at + take).min(bytes.len());
            let (captured, missing, tail) = kernel_copy(&bytes[at..end], capture);
            connection.feed_with_tail(*direction, &captured, missing, &tail, ts, &mut out);
            at = end;
            take = size.max(1);
        }
    }
    connection.finish(1_000_000, &mut out);
    out
}

/// With the end of each read copied too, psql's 60-row result and
/// psycopg2's 100- and 2000-row results are whole with their row counts,
/// wherever the client's reads start: every read ends at the result's end,
/// or it is the last bytes of the last read that hold it.
#[test]
fn the_copy_of_a_read_s_end_keeps_large_results_whole() {
    let psql = decode_kernel_copies(&connections(PSQL)[0], usize::MAX, usize::MAX, 512);
    assert_eq!(show(&psql), PSQL_OPS);
    let whole = fixture::untimed(show(&decode(LARGE_RESULTS, Cut::Whole)));
    let turns = fixture::turns(&connections(LARGE_RESULTS)[0]);
    let (mut cases, mut whole_cases) = (0, 0);
    for first in (1..4096).step_by(13) {
        for read in [4096, 8192, 16384, 65536] {
            let got = fixture::untimed(show(&decode_kernel_copies(&turns, first, read, 512)));
            let case = format!("reads of {read} after {first}: {got:#?}");
            assert_eq!(got.len(), whole.len(), "{case}");
            // A result whose end straddles two reads may still be lost:
            // then partial without a count, never another result's.
            for (got, whole) in got.iter().zip(&whole) {
                assert!(
                    got == whole || (got.ends_with("| partial") && got.contains("rows=-")),
                    "{case}"
                );
            }
            cases += 1;
            whole_cases += usize::from(got == whole);
        }
    }
    assert!(
        whole_cases * 10 >= cases * 9,
        "{whole_cases} of {cases} whole"
    );
}

/// psycopg 3's pipeline (three statements and one Sync in one write, their
/// results in one read) read through a tiny copy: whatever a read's end
/// regains, no result is paired with another statement.
#[test]
fn results_found_at_a_read_s_end_are_never_paired_with_the_wrong_statement() {
    let whole = show(&decode(PIPELINE, Cut::Whole));
    let turns = fixture::turns(&connections(PIPELINE)[0]);
    for capture in [8, 16, 24, 40] {
        for first in 1..60 {
            let got = show(&decode_kernel_copies(&turns, first, 64, capture));
            let case = format!("copy {capture}, first read {first}: {got:#?}");
            for op in &got {
                let text = op.split(" | ").nth(3).unwrap_or_default();
                let Some(same) = whole.iter().find(|w| w.split(" | ").nth(3) == Some(text)) else {
                    continue;
                };
                let rows = |line: &str| line.split(" | ").nth(5).map(str::to_string);
                let status = |line: &str| line.split(" | ").nth(4).map(str::to_string);
                assert!(
                    rows(op) == rows(same) || rows(op).as_deref() == Some("rows=-"),
                    "{case}"
                );
                assert!(
                    status(op) == status(same) || op.ends_with("| partial"),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn tiny_captures_never_invent_or_lose_operations_wholesale() {
    for fixture in [PSQL, PSYCOPG2, PSYCOPG3] {
        let whole = decode(fixture, Cut::Whole).len();
        for size in [0, 1, 5, 16, 40, 100] {
            let ops = decode(fixture, Cut::Capture(size));
            assert!(
                ops.len() <= whole + 2,
                "capture {size}: {} ops for {whole}",
                ops.len()
            );
            assert!(ops.iter().all(|op| op.end_ns >= op.start_ns));
            assert!(ops
                .iter()
                .filter(|op| !op.partial)
                .all(|op| !op.exchange.operation.is_empty()));
        }
    }
}

#[test]
fn joined_mid_stream_recovers_at_the_next_request() {
    let chunks = &connections(PSYCOPG3)[0];
    // Skip the startup, the first transaction's BEGIN and half of a response.
    let mut skipped = chunks[5..].to_vec();
    skipped[0].1.drain(..3);
    let ops = decode_chunks(&skipped, Cut::Whole);
    let shown = show(&ops);
    assert!(
        shown.iter().all(|op| op.contains("| - |")),
        "no namespace without a StartupMessage"
    );
    assert!(
        shown
            .iter()
            .any(|op| op.starts_with("INSERT | accounts | - | INSERT INTO accounts")),
        "{shown:#?}"
    );
    assert!(shown
        .iter()
        .any(|op| op.contains("SELECT * FROM nope") && op.contains("42P01")));
}

#[test]
fn detection_on_first_bytes() {
    for fixture in [PSQL, PSYCOPG2, PSYCOPG3] {
        let chunks = &connections(fixture)[0];
        assert_eq!(check(&chunks[0].1, Direction::Egress), Detection::Yes);
        assert_eq!(
            check(&chunks[0].1[..4], Direction::Egress),
            Detection::NeedMore
        );
        // The server's first message after a startup: an authentication request.
        let first_read = chunks
            .iter()
            .find(|(d, b)| *d == Direction::Ingress && b.len() > 1)
            .map(|(_, b)| b);
        assert_eq!(
            first_read.map(|b| check(b, Direction::Ingress)),
            Some(Detection::Yes)
        );
        // Mid-stream: a later request or response.
        for (direction, bytes) in chunks.iter().skip(4).take(4) {
            assert_eq!(
                check(bytes, *direction),
                Detection::Yes,
                "{direction:?} {bytes:02x?}"
            );
        }
    }
    for other in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\x16\x03\x01\x02\x00",
        b"PING\r\n",
        b"Q\0\0",
    ] {
        assert_ne!(check(other, Direction::Egress), Detection::Yes, "{other:?}");
        assert_ne!(
            check(other, Direction::Ingress),
            Detection::Yes,
            "{other:?}"
        );
    }
}

#[test]
fn tls_request_accepted_then_ciphertext_ignored() {
    let mut connection = PostgresConnection::new();
    let mut out = Vec::new();
    connection.feed(
        Direction::Egress,
        &[0, 0, 0, 8, 4, 210, 22, 47],
        0,
        1,
        &mut out,
    );
    connection.feed(Direction::Ingress, b"S", 0, 2, &mut out);
    connection.feed(
        Direction::Egress,
        b"\x16\x03\x01\x00\x20hello",
        200,
        3,
        &mut out,
    );
    connection.feed(
        Direction::Ingress,
        b"\x16\x03\x03\x00\x40hello",
        900,
        4,
        &mut out,
    );
    // The plaintext hooks then hand over the startup and the queries.
    let chunks = &connections(PSYCOPG2)[0];
    let plain: Vec<_> = chunks.to_vec();
    replay(&plain, Cut::Whole, |d, c, g, ts| {
        connection.feed(d, c, g, ts + 10, &mut out)
    });
    connection.feed(
        Direction::Egress,
        b"\x17\x03\x03\x00\x20data",
        0,
        99_999,
        &mut out,
    );
    assert_eq!(out.len(), PSYCOPG2_OPS.len());
    assert_eq!(out[1].exchange.namespace.as_deref(), Some("shop"));
    assert_eq!(
        out[1].exchange.query_text.as_deref(),
        Some("SELECT name FROM accounts WHERE id = ?")
    );
}

#[test]
fn prepared_statements_are_capped() {
    let mut connection = PostgresConnection::new();
    let mut out = Vec::new();
    for i in 0..(MAX_STATEMENTS_TEST + 10) {
        let name = format!("s{i}\0SELECT {i}\0\0\0");
        let mut msg = vec![b'P'];
        msg.extend_from_slice(&(u32::try_from(name.len() + 4).unwrap_or(0)).to_be_bytes());
        msg.extend_from_slice(name.as_bytes());
        connection.feed(Direction::Egress, &msg, 0, i as u64, &mut out);
    }
    assert_eq!(connection.stats().statements_evicted, 10);
}

const MAX_STATEMENTS_TEST: usize = connection::MAX_STATEMENTS;

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![tag];
    msg.extend_from_slice(&(u32::try_from(body.len() + 4).unwrap_or(0)).to_be_bytes());
    msg.extend_from_slice(body);
    msg
}

/// psycopg2's execute_batch joins 100 INSERTs in one simple query (about
/// 6 KB, which the kernel copies whole as a batch): each is a whole
/// operation on its table, where those past the first 4 KiB of the query's
/// text had been operations without a statement, partial.
#[test]
fn every_statement_of_a_long_simple_query_is_an_operation() {
    let statements: Vec<String> = (0..100)
        .map(|i| format!("INSERT INTO batch_rows (id, name) VALUES ({i}, 'name-{i}')"))
        .collect();
    let query = format!("{}\0", statements.join(";"));
    assert!(query.len() > 5000);
    let mut replies = Vec::new();
    for _ in 0..100 {
        replies.extend(message(b'C', b"INSERT 0 1\0"));
    }
    replies.extend(message(b'Z', b"I"));
    let mut connection = PostgresConnection::new();
    let mut out = Vec::new();
    connection.feed(
        Direction::Egress,
        &message(b'Q', query.as_bytes()),
        0,
        1,
        &mut out,
    );
    connection.feed(Direction::Ingress, &replies, 0, 2, &mut out);
    assert_eq!(out.len(), 100);
    for op in &out {
        assert!(!op.partial, "{op:?}");
        assert_eq!(
            op.exchange.collection.as_deref(),
            Some("batch_rows"),
            "{op:?}"
        );
        assert_eq!(op.exchange.rows, Some(1));
    }
    assert_eq!(connection.stats().unmatched_replies, 0);
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = PostgresConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    #[test]
    fn recorded_bytes_with_random_gaps_never_panic(cut_at in proptest::collection::vec(0usize..600, 1..40)) {
        let chunks = &connections(PSQL)[0];
        let mut connection = PostgresConnection::new();
        let mut out = Vec::new();
        for (i, (direction, bytes)) in chunks.iter().enumerate() {
            let keep = cut_at[i % cut_at.len()].min(bytes.len());
            connection.feed(*direction, &bytes[..keep], (bytes.len() - keep) as u64, i as u64, &mut out);
        }
        proptest::prop_assert!(out.len() <= PSQL_OPS.len() + 4);
    }
}

/// psycopg2 reads a 100-row and a 2000-row result (3 KB and 66 KB), then
/// runs two small queries. Whatever offsets the client's reads start at
/// inside the rows, the capture keeps 512 bytes of each: a large result
/// comes out partial, with every byte counted and a row count that is exact
/// or absent, never the rows that happened to be captured; and the queries
/// after it are decoded whole. Reads starting inside a row's text (`row
/// number 1234…`) once passed for a message whose length swallowed the next
/// answers.
#[test]
fn reads_cut_anywhere_in_a_large_result_lose_nothing_after_it() {
    let whole = decode(LARGE_RESULTS, Cut::Whole);
    let expected = fixture::untimed(show(&whole));
    assert_eq!(expected.len(), 6, "{expected:#?}");
    assert!(expected[2].contains("rows=2000"), "{expected:#?}");
    let turns = fixture::turns(&connections(LARGE_RESULTS)[0]);
    for first in (1..4096).step_by(7) {
        for read in [4096, 8192, 16384] {
            let out = fixture::decode_turns(&turns, first, read, PostgresConnection::new());
            let got = fixture::untimed(show(&out));
            let case = format!("reads of {read} after {first}: {got:#?}");
            assert_eq!(got.len(), expected.len(), "{case}");
            assert_eq!(got[3..], expected[3..], "{case}");
            for (i, rows) in [(1, 100), (2, 2000)] {
                let exact = format!("rows={rows}");
                assert!(
                    got[i].contains(&exact) || got[i].contains("rows=-"),
                    "{case}"
                );
                // Read unframed, the ReadyForQuery after the result (6 bytes)
                // may be counted with it.
                let counted = out[i].exchange.response_bytes;
                let framed = whole[i].exchange.response_bytes;
                assert!((framed..=framed + 6).contains(&counted), "{counted} {case}");
            }
        }
    }
}
