//! Database connections through the worker's path — connection tracker,
//! registry, decoders, spans, conventions, metrics, printer: the recorded exchanges of
//! real clients (`worker/testdata/`) found from their bytes on any port,
//! decoded into CLIENT spans with the database conventions' names and
//! attributes, and into `db.client.operation.duration`; garbage, servers and
//! protocols turned off give no span.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;

use zerotrace_shared::event::{ConnTuple, ConnectionRole, Direction};

use crate::clock::WallClock;
use crate::config::Temporality;
use crate::connections::{ConnectionTracker, Segment};
use crate::exporters::trace_printer::text_line;
use crate::metrics::red::RedMetrics;
use crate::protocols::db::fixture::{self, Chunk, Cut};
use crate::protocols::db::{DbConnection, DbOperation};
use crate::protocols::memcached::MemcachedConnection;
use crate::protocols::mongodb::MongoConnection;
use crate::protocols::mysql::MysqlConnection;
use crate::protocols::postgres::PostgresConnection;
use crate::protocols::redis::RedisConnection;
use crate::protocols::registry::{Protocol, ProtocolSelection};
use crate::semconv;
use crate::spans::{DbExchange, DbSystem, Protocol as SpanProtocol, Span, SpanKind};

const PSQL: &str = include_str!("../testdata/postgres/psql.txt");
const PSYCOPG2: &str = include_str!("../testdata/postgres/psycopg2.txt");
const PSYCOPG3: &str = include_str!("../testdata/postgres/psycopg3.txt");
const PIPELINE: &str = include_str!("../testdata/postgres/psycopg3_pipeline.txt");
const MARIADB_CLI: &str = include_str!("../testdata/mysql/mariadb_cli.txt");
const PYMYSQL: &str = include_str!("../testdata/mysql/pymysql.txt");
const PERL_PREPARE: &str = include_str!("../testdata/mysql/perl_prepare.txt");
const REDIS_CLI: &str = include_str!("../testdata/redis/redis_cli.txt");
const REDIS_RESP3: &str = include_str!("../testdata/redis/redis_cli_resp3.txt");
const REDIS_PY: &str = include_str!("../testdata/redis/redis_py.txt");
const REDIS_INLINE: &str = include_str!("../testdata/redis/inline.txt");
const PYMEMCACHE: &str = include_str!("../testdata/memcached/pymemcache.txt");
const MEMCACHED_TEXT: &str = include_str!("../testdata/memcached/text.txt");
const PSYCOPG2_LARGE: &str = include_str!("../testdata/postgres/psycopg2_large_results.txt");
const REDIS_PY_LARGE: &str = include_str!("../testdata/redis/redis_py_large_values.txt");
const PYMEMCACHE_LARGE: &str = include_str!("../testdata/memcached/pymemcache_large_values.txt");
const PYMONGO_CRUD: &str = include_str!("../testdata/mongodb/pymongo_crud.txt");
const PYMONGO_ERRORS: &str = include_str!("../testdata/mongodb/pymongo_errors.txt");
const PYMONGO_LARGE: &str = include_str!("../testdata/mongodb/pymongo_large.txt");
const PYMONGO_UNACKNOWLEDGED: &str = include_str!("../testdata/mongodb/pymongo_unacknowledged.txt");

fn tuple(peer_port: u16) -> ConnTuple {
    ConnTuple {
        local: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local_port: 41234,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        peer_port,
    }
}

/// Replays one recorded connection through `tracker` as socket `sock_id` of
/// `python3[123]` (the recording's client), cut as `cut` says, then closes it.
pub(crate) fn replay(
    tracker: &mut ConnectionTracker,
    sock_id: u64,
    role: ConnectionRole,
    peer_port: u16,
    chunks: &[Chunk],
    cut: Cut,
) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut first = true;
    fixture::replay(chunks, cut, |direction, captured, gap, ts_ns| {
        tracker.on_data(
            Segment {
                sock_id,
                pid: 123,
                tid: 123,
                process_name: &"python3".into(),
                role,
                direction,
                tuple: first.then_some(tuple(peer_port)),
                ts_ns,
                payload: captured,
                total_bytes: captured.len() as u64 + gap,
                tls: false,
                tail: &[],
            },
            &mut spans,
        );
        first = false;
    });
    tracker.close(sock_id, 1_000_000, &mut spans);
    spans
}

pub(crate) fn replay_fixture(fixture: &str, peer_port: u16, cut: Cut) -> Vec<Span> {
    let mut tracker = ConnectionTracker::new();
    fixture::connections(fixture)
        .iter()
        .enumerate()
        .flat_map(|(i, chunks)| {
            replay(
                &mut tracker,
                i as u64 + 1,
                ConnectionRole::Client,
                peer_port,
                chunks,
                cut,
            )
        })
        .collect()
}

fn db(span: &Span) -> &DbExchange {
    match &span.protocol {
        SpanProtocol::Db(db) => db,
        other => panic!("not a database span: {other:?}"),
    }
}

/// The span's attributes (`error.type` included), values as text.
pub(crate) fn attributes(span: &Span) -> BTreeMap<String, String> {
    let error = semconv::error(span);
    semconv::span_attributes(span, error.as_ref())
        .into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|v| v.value) {
                Some(Value::StringValue(s)) => s,
                Some(Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key, value)
        })
        .collect()
}

/// What the decoder alone makes of a recording (the tracker must agree).
fn decoded<C: DbConnection>(fixture: &str, cut: Cut, new: impl Fn() -> C) -> Vec<DbOperation> {
    fixture::decode(fixture, cut, new)
}

#[test]
fn every_recording_becomes_one_client_span_per_operation_on_any_port() {
    type Decode = fn(&str, Cut) -> Vec<DbOperation>;
    let cases: [(&str, DbSystem, Decode); 17] = [
        (PSQL, DbSystem::Postgresql, |f, c| {
            decoded(f, c, PostgresConnection::new)
        }),
        (PSYCOPG2, DbSystem::Postgresql, |f, c| {
            decoded(f, c, PostgresConnection::new)
        }),
        (PSYCOPG3, DbSystem::Postgresql, |f, c| {
            decoded(f, c, PostgresConnection::new)
        }),
        (PIPELINE, DbSystem::Postgresql, |f, c| {
            decoded(f, c, PostgresConnection::new)
        }),
        (MARIADB_CLI, DbSystem::Mariadb, |f, c| {
            decoded(f, c, MysqlConnection::new)
        }),
        (PYMYSQL, DbSystem::Mariadb, |f, c| {
            decoded(f, c, MysqlConnection::new)
        }),
        (PERL_PREPARE, DbSystem::Mariadb, |f, c| {
            decoded(f, c, MysqlConnection::new)
        }),
        (REDIS_CLI, DbSystem::Redis, |f, c| {
            decoded(f, c, RedisConnection::new)
        }),
        (REDIS_RESP3, DbSystem::Redis, |f, c| {
            decoded(f, c, RedisConnection::new)
        }),
        (REDIS_PY, DbSystem::Redis, |f, c| {
            decoded(f, c, RedisConnection::new)
        }),
        (REDIS_INLINE, DbSystem::Redis, |f, c| {
            decoded(f, c, RedisConnection::new)
        }),
        (PYMEMCACHE, DbSystem::Memcached, |f, c| {
            decoded(f, c, MemcachedConnection::new)
        }),
        (MEMCACHED_TEXT, DbSystem::Memcached, |f, c| {
            decoded(f, c, MemcachedConnection::new)
        }),
        (PYMONGO_CRUD, DbSystem::Mongodb, |f, c| {
            decoded(f, c, MongoConnection::new)
        }),
        (PYMONGO_ERRORS, DbSystem::Mongodb, |f, c| {
            decoded(f, c, MongoConnection::new)
        }),
        (PYMONGO_LARGE, DbSystem::Mongodb, |f, c| {
            decoded(f, c, MongoConnection::new)
        }),
        (PYMONGO_UNACKNOWLEDGED, DbSystem::Mongodb, |f, c| {
            decoded(f, c, MongoConnection::new)
        }),
    ];
    for (index, (recording, system, decode)) in cases.iter().enumerate() {
        // Standard ports and others: detection is from the bytes.
        for port in [5432, 3306, 6379, 11211, 27017, 15432, 40001] {
            for cut in [Cut::Whole, Cut::Pieces(7), Cut::Capture(512)] {
                let spans = replay_fixture(recording, port, cut);
                let expected = decode(recording, cut);
                assert!(!expected.is_empty(), "recording {index}");
                assert_eq!(spans.len(), expected.len(), "recording {index}, {cut:?}");
                for (span, op) in spans.iter().zip(&expected) {
                    let db = db(span);
                    assert_eq!(db.system, *system, "recording {index}");
                    assert_eq!(span.kind, SpanKind::Client);
                    assert_eq!((span.pid, &*span.process_name), (123, "python3"));
                    assert_eq!(span.peer.port(), port);
                    assert_eq!(db.operation, op.exchange.operation);
                    assert_eq!(db.query_text, op.exchange.query_text);
                    assert_eq!(span.partial, op.partial);
                    assert_eq!(
                        (span.start_monotonic_ns, span.end_monotonic_ns),
                        (op.start_ns, op.end_ns)
                    );
                }
            }
        }
    }
}

#[test]
fn postgres_spans_follow_the_database_conventions() {
    let spans = replay_fixture(PSQL, 5432, Cut::Whole);
    let select = &spans[0];
    assert_eq!(semconv::span_name(select), "SELECT accounts");
    assert!(!semconv::is_error(select));
    let attributes = attributes(select);
    let expected = [
        ("db.system.name", "postgresql"),
        ("db.operation.name", "SELECT"),
        ("db.query.summary", "SELECT accounts"),
        ("db.collection.name", "accounts"),
        ("db.namespace", "shop"),
        (
            "db.query.text",
            "SELECT id, name FROM accounts WHERE id = ?",
        ),
        ("server.address", "127.0.0.1"),
        ("server.port", "5432"),
        ("network.peer.address", "127.0.0.1"),
        ("network.peer.port", "5432"),
    ];
    for (key, value) in expected {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(!attributes.contains_key("error.type"));
    assert!(!attributes.contains_key("db.response.status_code"));

    // A missing table: the SQLSTATE is the status code and the error type.
    let missing = spans
        .iter()
        .find(|s| db(s).collection.as_deref() == Some("missing_table"))
        .unwrap_or_else(|| panic!("no missing_table span"));
    assert_eq!(semconv::span_name(missing), "SELECT missing_table");
    let error = semconv::error(missing).unwrap_or_else(|| panic!("not an error"));
    assert_eq!(error.error_type, "42P01");
    assert!(error.message.contains("missing_table"), "{}", error.message);
    let attributes = self::attributes(missing);
    assert_eq!(attributes["db.response.status_code"], "42P01");
    assert_eq!(attributes["error.type"], "42P01");

    // A statement with no table: the span is named by the operation and
    // database; the query's summary is its operation alone (the database
    // is not the query's).
    assert_eq!(semconv::span_name(&spans[1]), "SELECT shop");
    assert_eq!(
        self::attributes(&spans[1])
            .get("db.query.summary")
            .map(String::as_str),
        Some("SELECT")
    );
}

#[test]
fn mongodb_spans_follow_the_database_conventions() {
    let spans = replay_fixture(PYMONGO_CRUD, 27017, Cut::Whole);
    let find = spans
        .iter()
        .find(|s| db(s).operation == "find")
        .unwrap_or_else(|| panic!("no find: {spans:#?}"));
    assert_eq!(semconv::span_name(find), "find users");
    assert!(!semconv::is_error(find));
    let attributes = attributes(find);
    for (key, value) in [
        ("db.system.name", "mongodb"),
        ("db.operation.name", "find"),
        ("db.query.summary", "find users"),
        ("db.collection.name", "users"),
        ("db.namespace", "shop"),
        ("db.response.returned_rows", "3"),
        ("server.port", "27017"),
    ] {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(!attributes.contains_key("db.query.text"));
    // An insert's `n` is documents written, not returned.
    let insert = &spans[1];
    assert_eq!(semconv::span_name(insert), "insert users");
    assert!(!self::attributes(insert).contains_key("db.response.returned_rows"));

    // A duplicate key (a write error) and an unknown command (`ok: 0`):
    // the server's code is the status code and the error type.
    let spans = replay_fixture(PYMONGO_ERRORS, 27017, Cut::Whole);
    let failed: Vec<_> = spans.iter().filter(|s| semconv::is_error(s)).collect();
    assert_eq!(failed.len(), 2, "{spans:#?}");
    let duplicate = semconv::error(failed[0]).unwrap_or_else(|| panic!("not an error"));
    assert_eq!(duplicate.error_type, "11000");
    assert!(
        duplicate.message.contains("DuplicateKey"),
        "{}",
        duplicate.message
    );
    assert_eq!(
        self::attributes(failed[0])["db.response.status_code"],
        "11000"
    );
    assert_eq!(semconv::span_name(failed[1]), "ztNoSuchCommand shop");
    assert_eq!(self::attributes(failed[1])["error.type"], "59");
}

#[test]
fn the_text_printer_shows_one_line_per_operation_with_its_error() {
    let spans = replay_fixture(PSQL, 5432, Cut::Whole);
    let clock = WallClock::new();
    let line = text_line(&spans[0], &clock);
    assert!(
        line.contains(" client python3[123] 127.0.0.1:41234 -> 127.0.0.1:5432 postgresql \"SELECT accounts\" "),
        "{line}"
    );
    assert!(line.contains("ms rows=1 trace="), "{line}");
    let failed = spans
        .iter()
        .map(|s| text_line(s, &clock))
        .find(|l| l.contains("missing_table"))
        .unwrap_or_default();
    assert!(failed.contains(" error=42P01 trace="), "{failed}");
    let json = crate::exporters::trace_printer::json_value(&spans[0], &clock);
    assert_eq!(json["db"]["system"], "postgresql");
    assert_eq!(json["db"]["collection"], "accounts");
    assert_eq!(json["kind"], "client");
}

#[test]
fn redis_commands_are_named_by_command_and_database_and_fail_with_their_prefix() {
    let spans = replay_fixture(REDIS_CLI, 6379, Cut::Whole);
    assert_eq!(semconv::span_name(&spans[0]), "SET 0");
    let wrongtype = spans
        .iter()
        .find(|s| db(s).status_code.as_deref() == Some("WRONGTYPE"))
        .unwrap_or_else(|| panic!("no WRONGTYPE"));
    let attributes = attributes(wrongtype);
    assert_eq!(attributes["db.system.name"], "redis");
    assert_eq!(attributes["db.namespace"], "2");
    assert_eq!(attributes["error.type"], "WRONGTYPE");
    assert_eq!(attributes["db.response.status_code"], "WRONGTYPE");
    assert!(semconv::is_error(wrongtype));
}

#[test]
fn operations_feed_the_duration_histogram_without_query_text() {
    let spans = replay_fixture(PSQL, 5432, Cut::Whole);
    let resource = Arc::new(Resource::default());
    let mut red = RedMetrics::new(Temporality::Cumulative);
    for span in &spans {
        red.record(span, &resource, 1);
    }
    assert_eq!(red.http.series().count(), 0);
    let observations: u64 = red.db.series().map(|(_, s)| s.duration.count).sum();
    assert_eq!(observations, spans.len() as u64);
    let request = red.export(10).unwrap_or_default();
    let metrics: Vec<_> = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].name, "db.client.operation.duration");
    assert_eq!(metrics[0].unit, "s");
    let Some(metric::Data::Histogram(histogram)) = &metrics[0].data else {
        panic!("not a histogram");
    };
    let mut errors = 0;
    for point in &histogram.data_points {
        assert_eq!(
            point.explicit_bounds,
            [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]
        );
        let keys: Vec<&str> = point.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert!(!keys.contains(&"db.query.text"), "{keys:?}");
        for key in ["db.system.name", "server.address", "server.port"] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        errors += u64::from(keys.contains(&"error.type"));
    }
    assert_eq!(errors, 2, "42601 and 42P01, one series each");
}

#[test]
fn garbage_on_database_ports_makes_no_span_and_is_counted() {
    let garbage: Vec<Chunk> = vec![
        (
            Direction::Egress,
            b"\x13\x37 hello there, not a database\r\n".to_vec(),
        ),
        (Direction::Ingress, vec![0xfe; 40]),
        (Direction::Egress, (0u8..=255).collect()),
    ];
    for port in [5432, 6379, 3306, 11211, 9092] {
        let mut tracker = ConnectionTracker::new();
        let spans = replay(
            &mut tracker,
            1,
            ConnectionRole::Client,
            port,
            &garbage,
            Cut::Whole,
        );
        assert!(spans.is_empty(), "port {port}: {spans:?}");
        assert!(tracker.counters().garbage_segments >= 3, "port {port}");
    }
}

/// Results and values larger than the capture (the kernel copies the first
/// 512 bytes of each read and write) lose a direction's message boundaries:
/// each loss is counted as such, not as garbage, and the operations after it
/// are still decoded.
#[test]
fn framing_lost_past_the_capture_is_counted_apart_from_garbage() {
    for (recording, port) in [
        (PSYCOPG2_LARGE, 5432),
        (REDIS_PY_LARGE, 6379),
        (PYMEMCACHE_LARGE, 11211),
    ] {
        let whole = replay_fixture(recording, port, Cut::Whole).len();
        let mut tracker = ConnectionTracker::new();
        let mut spans = Vec::new();
        for (i, chunks) in fixture::connections(recording).iter().enumerate() {
            let cut = Cut::Capture(512);
            let role = ConnectionRole::Client;
            spans.extend(replay(&mut tracker, i as u64 + 1, role, port, chunks, cut));
        }
        let counters = tracker.counters();
        assert!(counters.framing_lost >= 1, "port {port}: {counters:?}");
        assert_eq!(counters.garbage_segments, 0, "port {port}");
        assert_eq!(spans.len(), whole, "port {port}: {spans:#?}");
    }
}

#[test]
fn half_captured_and_mid_stream_connections_never_invent_more_operations() {
    for recording in [PSQL, REDIS_CLI, PYMYSQL, PYMEMCACHE] {
        let chunks = &fixture::connections(recording)[0];
        let whole = replay_fixture(recording, 5432, Cut::Whole).len();
        // Joined mid-stream: the first half of the connection never seen.
        for skip in [1, 2, chunks.len() / 2] {
            let mut tracker = ConnectionTracker::new();
            let spans = replay(
                &mut tracker,
                1,
                ConnectionRole::Unknown,
                5432,
                &chunks[skip..],
                Cut::Whole,
            );
            assert!(spans.len() <= whole, "skip {skip}");
        }
        // Tiny captures: most of every message a gap.
        for capture in [1, 5, 16] {
            let spans = replay_fixture(recording, 5432, Cut::Capture(capture));
            assert!(spans.len() <= whole, "capture {capture}");
        }
    }
}

#[test]
fn a_database_server_process_is_not_decoded() {
    // The server's side of a recording: what the client wrote arrives.
    let chunks: Vec<Chunk> = fixture::connections(REDIS_CLI)[0]
        .iter()
        .map(|(direction, bytes)| {
            let flipped = match direction {
                Direction::Egress => Direction::Ingress,
                Direction::Ingress => Direction::Egress,
            };
            (flipped, bytes.clone())
        })
        .collect();
    for role in [ConnectionRole::Server, ConnectionRole::Unknown] {
        let mut tracker = ConnectionTracker::new();
        let spans = replay(&mut tracker, 1, role, 6379, &chunks, Cut::Whole);
        assert!(spans.is_empty(), "{role:?}: {spans:?}");
    }
}

#[test]
fn a_protocol_turned_off_is_not_detected() {
    let selection = ProtocolSelection::ALL.without(Protocol::Redis);
    let mut tracker = ConnectionTracker::with_protocols(selection);
    let chunks = &fixture::connections(REDIS_PY)[0];
    let spans = replay(
        &mut tracker,
        1,
        ConnectionRole::Client,
        6379,
        chunks,
        Cut::Whole,
    );
    assert!(spans.is_empty());
    let mut tracker = ConnectionTracker::with_protocols(selection);
    let chunks = &fixture::connections(PSQL)[0];
    let spans = replay(
        &mut tracker,
        1,
        ConnectionRole::Client,
        5432,
        chunks,
        Cut::Whole,
    );
    assert!(!spans.is_empty());
}

/// A recorded client connection makes no span seen from the server's side
/// (what the client wrote arrives: a broker or database process), whether
/// the kernel said the socket is the server's or not, nor with `protocol`
/// turned off.
pub(crate) fn assert_no_span_from_the_server_or_turned_off(
    chunks: &[Chunk],
    port: u16,
    protocol: Protocol,
) {
    let flipped: Vec<Chunk> = chunks
        .iter()
        .map(|(direction, bytes)| {
            let other = match direction {
                Direction::Egress => Direction::Ingress,
                Direction::Ingress => Direction::Egress,
            };
            (other, bytes.clone())
        })
        .collect();
    for role in [ConnectionRole::Server, ConnectionRole::Unknown] {
        let mut tracker = ConnectionTracker::new();
        let spans = replay(&mut tracker, 1, role, port, &flipped, Cut::Whole);
        assert!(spans.is_empty(), "{role:?}: {spans:?}");
    }
    let mut tracker = ConnectionTracker::with_protocols(ProtocolSelection::ALL.without(protocol));
    let spans = replay(
        &mut tracker,
        1,
        ConnectionRole::Client,
        port,
        chunks,
        Cut::Whole,
    );
    assert!(spans.is_empty(), "{protocol:?} turned off: {spans:?}");
}
