//! The MySQL decoder on exchanges recorded from real clients (the mariadb
//! command-line client, PyMySQL, Perl DBD::MariaDB with server-side
//! prepared statements) and a real MariaDB 10.11 server.

use zerotrace_shared::event::Direction;

use super::*;
use crate::protocols::db::fixture::{self, connections, Chunk, Cut};
use crate::protocols::db::{DbOperation, DbSystem, Detection};

const CLI: &str = include_str!("../../../testdata/mysql/mariadb_cli.txt");
const PYMYSQL: &str = include_str!("../../../testdata/mysql/pymysql.txt");
const PERL: &str = include_str!("../../../testdata/mysql/perl_prepare.txt");

fn decode_chunks(chunks: &[Chunk], cut: Cut) -> Vec<DbOperation> {
    fixture::decode_chunks(chunks, cut, MysqlConnection::new())
}

fn decode(fixture: &str, cut: Cut) -> Vec<DbOperation> {
    fixture::decode(fixture, cut, MysqlConnection::new)
}

fn show(ops: &[DbOperation]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            format!(
                "{} | {} | {} | {} | {} | {} | rows={} | {}-{}{}",
                op.exchange.system.as_str(),
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

/// The mariadb client: COM_QUERY each, errors 1146 and 1064, a 60-row
/// result (2.9 KB read), `USE mysql` as COM_INIT_DB refused (1044, the
/// namespace stays `shop`).
const CLI_OPS: &[&str] = &[
    "mariadb | SELECT | items | shop | SELECT id, name FROM items WHERE id = ? | ok | rows=1 | 4000-5000",
    "mariadb | SELECT | missing_table | shop | SELECT * FROM missing_table | 1146 | rows=- | 6000-7000",
    "mariadb | SELEC | - | shop | SELEC broken | 1064 | rows=- | 8000-9000",
    "mariadb | INSERT | items | shop | INSERT INTO items VALUES (?, ?) | ok | rows=1 | 10000-11000",
    "mariadb | UPDATE | items | shop | UPDATE items SET name = ? WHERE id = ? | ok | rows=1 | 12000-13000",
    "mariadb | SELECT | seq_1_to_60 | shop | SELECT seq, REPEAT(?, ?) AS pad FROM seq_1_to_60 | ok | rows=60 | 14000-15000",
    "mariadb | SELECT | - | shop | SELECT DATABASE() | ok | rows=1 | 16000-17000",
    "mariadb | USE | - | shop | USE mysql | 1044 | rows=- | 18000-19000",
    "mariadb | DELETE | shop.items | shop | DELETE FROM shop.items WHERE id = ? | ok | rows=1 | 20000-21000",
];

/// PyMySQL: the database in the HandshakeResponse, client-side interpolation,
/// a multi-row INSERT from executemany, an unknown column (1054).
const PYMYSQL_OPS: &[&str] = &[
    "mariadb | SET | - | shop | SET AUTOCOMMIT = ? | ok | rows=0 | 4000-5000",
    "mariadb | SELECT | items | shop | SELECT name FROM items WHERE id = ? | ok | rows=1 | 6000-7000",
    "mariadb | INSERT | items | shop | INSERT INTO items (id, name) VALUES (?, ?),(?, ?) | ok | rows=2 | 8000-9000",
    "mariadb | COMMIT | - | shop | COMMIT | ok | rows=0 | 10000-11000",
    "mariadb | SELECT | items | shop | SELECT nope FROM items | 1054 | rows=- | 12000-13000",
    "mariadb | DELETE | items | shop | DELETE FROM items WHERE id >= ? | ok | rows=2 | 14000-15000",
    "mariadb | COMMIT | - | shop | COMMIT | ok | rows=0 | 16000-17000",
];

/// DBD::MariaDB with `mariadb_server_prepare=1`: COM_STMT_PREPARE (no
/// operation of its own), COM_STMT_EXECUTE carrying the prepared text, a
/// duplicate key (1062), COM_STMT_RESET and COM_STMT_CLOSE (no operations), a
/// prepare that fails (1146) and is an operation.
const PERL_OPS: &[&str] = &[
    "mariadb | SET | - | shop | SET NAMES ? | ok | rows=0 | 4000-5000",
    "mariadb | SET | - | shop | SET character_set_server = ? | ok | rows=0 | 6000-7000",
    "mariadb | SET | - | shop | SET collation_connection = ? | ok | rows=0 | 8000-9000",
    "mariadb | SET | - | shop | SET collation_server = ? | ok | rows=0 | 10000-11000",
    "mariadb | SELECT | items | shop | SELECT name FROM items WHERE id = ? | ok | rows=1 | 14000-15000",
    "mariadb | SELECT | items | shop | SELECT name FROM items WHERE id = ? | ok | rows=1 | 16000-17000",
    "mariadb | INSERT | items | shop | INSERT INTO items (id, name) VALUES (?, ?) | ok | rows=1 | 20000-21000",
    "mariadb | INSERT | items | shop | INSERT INTO items (id, name) VALUES (?, ?) | 1062 | rows=- | 22000-23000",
    "mariadb | DELETE | items | shop | DELETE FROM items WHERE id = ? | ok | rows=1 | 28000-29000",
    "mariadb | SELECT | nowhere | shop | SELECT * FROM nowhere WHERE id = ? | 1146 | rows=- | 30000-31000",
];

const ALL: [(&str, &[&str]); 3] = [(CLI, CLI_OPS), (PYMYSQL, PYMYSQL_OPS), (PERL, PERL_OPS)];

#[test]
fn recorded_exchanges_decode_exactly() {
    for (fixture, expected) in ALL {
        assert_eq!(show(&decode(fixture, Cut::Whole)), expected);
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
fn a_kernel_sized_capture_keeps_every_operation() {
    // The 60-row read loses its end to a 512-byte capture: that operation ends
    // partial when the next command is written, without a row count (the 9
    // rows captured are not the result's 60), its bytes all counted.
    let mut expected: Vec<String> = CLI_OPS.iter().map(|s| s.to_string()).collect();
    expected[5] = "mariadb | SELECT | seq_1_to_60 | shop | SELECT seq, REPEAT(?, ?) AS pad FROM seq_1_to_60 | ok | rows=- | 14000-15000 | partial".into();
    let captured = decode(CLI, Cut::Capture(512));
    assert_eq!(show(&captured), expected);
    let whole = decode(CLI, Cut::Whole);
    assert_eq!(
        captured[5].exchange.response_bytes,
        whole[5].exchange.response_bytes
    );
    assert_eq!(show(&decode(PYMYSQL, Cut::Capture(512))), PYMYSQL_OPS);
    assert_eq!(show(&decode(PERL, Cut::Capture(512))), PERL_OPS);
}

#[test]
fn errors_carry_code_and_sqlstate() {
    let ops = decode(CLI, Cut::Whole);
    assert_eq!(ops[1].exchange.error_type.as_deref(), Some("1146"));
    assert_eq!(
        ops[1].exchange.error_message.as_deref(),
        Some("42S02: Table 'shop.missing_table' doesn't exist")
    );
    assert_eq!(ops[0].exchange.system, DbSystem::Mariadb);
}

#[test]
fn tiny_captures_stay_bounded() {
    for (fixture, expected) in ALL {
        for size in [0, 1, 4, 10, 30, 100] {
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
fn joined_mid_stream_recovers_at_the_next_command() {
    let chunks = &connections(PERL)[0];
    // From the middle of the second SET's reply on: no greeting, no handshake.
    let mut later = chunks[6..].to_vec();
    later[0].1.drain(..2);
    let shown = show(&decode_chunks(&later, Cut::Whole));
    assert_eq!(
        shown[0],
        "mysql | SET | - | - | SET collation_connection = ? | ok | rows=0 | 2000-3000"
    );
    // Statement ids prepared after the join are known.
    assert!(shown
        .iter()
        .any(|op| op.contains("INSERT INTO items (id, name) VALUES (?, ?) | 1062")));
}

/// A query longer than the payload capture (an ORM's `IN (…)` of 1,500
/// ids, 6.9 KB), which the kernel copies whole as it starts a query, is a
/// whole operation: its text was cut at the 4 KiB a command kept.
#[test]
fn a_long_query_copied_whole_is_whole() {
    let chunks = &connections(PYMYSQL)[0];
    // pymysql's session up to its COM_QUIT.
    let session = &chunks[..chunks.len() - 1];
    let mut connection = MysqlConnection::new();
    let mut out = Vec::new();
    for (i, (direction, bytes)) in session.iter().enumerate() {
        connection.feed(*direction, bytes, 0, i as u64, &mut out);
    }
    let before = out.len();
    let ids: Vec<String> = (0..1500).map(|i| i.to_string()).collect();
    let query = format!("DELETE FROM items WHERE id IN ({})", ids.join(","));
    assert!(query.len() > 6000);
    let length = u32::try_from(query.len() + 1).unwrap_or(0).to_le_bytes();
    let mut packet = vec![length[0], length[1], length[2], 0, 0x03];
    packet.extend_from_slice(query.as_bytes());
    connection.feed(Direction::Egress, &packet, 0, 1000, &mut out);
    // OK, 2 rows affected.
    let ok = [7, 0, 0, 1, 0, 2, 0, 2, 0, 0, 0];
    connection.feed(Direction::Ingress, &ok, 0, 1001, &mut out);
    assert_eq!(out.len(), before + 1, "{out:#?}");
    let op = &out[before];
    assert!(!op.partial, "{op:#?}");
    assert_eq!(op.exchange.operation, "DELETE");
    assert_eq!(op.exchange.collection.as_deref(), Some("items"));
    assert_eq!(op.exchange.rows, Some(2));
}

#[test]
fn detection_on_first_bytes() {
    for (fixture, _) in ALL {
        let chunks = &connections(fixture)[0];
        assert_eq!(check(&chunks[0].1, Direction::Ingress), Detection::Yes);
        assert_eq!(
            check(&chunks[1].1, Direction::Egress),
            Detection::Yes,
            "handshake response"
        );
        assert_eq!(
            check(&chunks[3].1, Direction::Egress),
            Detection::Yes,
            "a COM_QUERY"
        );
    }
    for other in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\0\0\0\x08\x04\xd2\x16\x2f",
        b"+OK\r\n\r\n",
    ] {
        assert_eq!(check(other, Direction::Egress), Detection::No, "{other:?}");
        assert_eq!(check(other, Direction::Ingress), Detection::No, "{other:?}");
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        segments in proptest::collection::vec((proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..2000), 0..40)
    ) {
        let mut connection = MysqlConnection::new();
        let mut out = Vec::new();
        for (i, (egress, bytes, gap)) in segments.iter().enumerate() {
            let direction = if *egress { Direction::Egress } else { Direction::Ingress };
            connection.feed(direction, bytes, *gap, i as u64, &mut out);
            let _ = check(bytes, direction);
        }
        connection.finish(u64::MAX, &mut out);
    }

    #[test]
    fn recorded_bytes_with_random_gaps_never_panic(cut_at in proptest::collection::vec(0usize..300, 1..40)) {
        let chunks = &connections(PERL)[0];
        let mut connection = MysqlConnection::new();
        let mut out = Vec::new();
        for (i, (direction, bytes)) in chunks.iter().enumerate() {
            let keep = cut_at[i % cut_at.len()].min(bytes.len());
            connection.feed(*direction, &bytes[..keep], (bytes.len() - keep) as u64, i as u64, &mut out);
        }
        proptest::prop_assert!(out.len() <= PERL_OPS.len() + 2);
    }
}
