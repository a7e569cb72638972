//! Database and cache calls as CLIENT spans and `db.client.operation.duration`:
//! real PostgreSQL, MariaDB, Redis and memcached servers (tests/src/db_servers.rs,
//! started once for this file), a real Python service calling them with real
//! client libraries while it serves HTTP requests (tests/servers/db_app.py,
//! one path per scenario), and the real agent exporting to an OTLP receiver
//! that decodes with opentelemetry-proto.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use serde_json::Value;
use zerotrace_integration_tests::db_servers::{db_servers, start_db_app, DbServers};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The servers, the instrumented service, the receiver and the agent of one test.
struct Setup {
    servers: &'static DbServers,
    app: Server,
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Setup {
    fn start() -> Setup {
        Self::start_with(&[])
    }

    /// With extra agent environment.
    fn start_with(extra: &[(&str, &str)]) -> Setup {
        require_root();
        let servers = db_servers();
        let app = start_db_app(servers);
        let receiver = OtlpReceiver::start_grpc();
        let agent =
            Agent::start_exporting_to(&["--open-port", &app.port.to_string()], &receiver, extra);
        Setup {
            servers,
            app,
            receiver,
            agent,
        }
    }

    /// Runs the service's scenario at `path`, which must report success.
    fn drive(&self, path: &str) {
        let body = curl(&[&self.app.url(path)]);
        assert_eq!(body, "ok\n", "scenario {path} failed in db_app.py");
    }

    /// The CLIENT spans of `system` once at least `count` arrived (and a
    /// moment more, so that extra ones would show).
    fn db_spans(&self, system: &str, count: usize) -> Vec<Span> {
        let of_system = |traces: &[ReceivedTraces]| -> Vec<Span> {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.kind == span::SpanKind::Client as i32)
                .filter(|s| attr_str(&s.attributes, "db.system.name").as_deref() == Some(system))
                .collect()
        };
        let arrived = self
            .receiver
            .wait_for_traces(Duration::from_secs(15), |traces| {
                let spans = of_system(traces);
                (spans.len() >= count).then_some(())
            });
        assert!(
            arrived.is_some(),
            "fewer than {count} {system} client spans arrived: {:#?}\nagent stderr:\n{}",
            self.receiver.spans(),
            self.agent.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(600));
        of_system(&self.receiver.traces())
    }

    /// Latest data points of `db.client.operation.duration` once one has
    /// `attributes` (all of them) and counts at least `count` operations.
    fn duration_point(&self, attributes: &[(&str, &str)], count: u64) -> HistogramDataPoint {
        self.receiver
            .wait_for_histogram_point("db.client.operation.duration", attributes, count)
    }
}

impl Setup {
    /// The spans of `system` the agent printed once the one whose query text
    /// is `last` came (and a moment more, so that extra ones would show),
    /// with that last one.
    fn printed_db_spans(&self, system: &str, last: &str) -> (Value, Vec<Value>) {
        let printed = self.agent.wait_for_spans(1, |s| {
            s.pointer("/db/query_text").and_then(Value::as_str) == Some(last)
        });
        assert_eq!(printed.len(), 1);
        std::thread::sleep(Duration::from_millis(600));
        let spans = self
            .agent
            .spans()
            .into_iter()
            .filter(|s| s.pointer("/db/system").and_then(Value::as_str) == Some(system))
            .collect();
        (printed[0].clone(), spans)
    }
}

fn text_of(span: &Span) -> String {
    attr_str(&span.attributes, "db.query.text").unwrap_or_default()
}

/// The spans whose sanitized query text is `text`.
fn with_text<'a>(spans: &'a [Span], text: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| text_of(s) == text).collect()
}

/// The one span whose query text is `text`.
fn one_with_text<'a>(spans: &'a [Span], text: &str) -> &'a Span {
    let found = with_text(spans, text);
    assert_eq!(found.len(), 1, "one span with text {text:?}: {spans:#?}");
    found[0]
}

fn attrs(span: &Span) -> BTreeMap<String, String> {
    attrs_map(&span.attributes)
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32)
}

/// `db.response.returned_rows`: the rows a query or a `get` returned, and
/// never the rows a statement affected.
fn assert_returned_rows(span: &Span, rows: Option<i64>) {
    assert_eq!(
        attr_int(&span.attributes, "db.response.returned_rows"),
        rows,
        "{span:#?}"
    );
}

/// The attributes every span to this server carries.
fn assert_server(span: &Span, port: u16) {
    assert_eq!(
        attr_str(&span.attributes, "server.address").as_deref(),
        Some("127.0.0.1"),
        "{span:#?}"
    );
    assert_eq!(
        attr_int(&span.attributes, "server.port"),
        Some(i64::from(port)),
        "{span:#?}"
    );
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
}

#[test]
fn every_scenario_of_the_service_works_against_the_real_servers() {
    // Without the agent: a failure here is the fixture's, not the capture's.
    require_root();
    let servers = db_servers();
    let app = start_db_app(servers);
    for path in [
        "/pg/simple",
        "/pg/errors",
        "/pg/prepared",
        "/pg/batch",
        "/pg/tls",
        "/mysql/queries",
        "/mysql/prepared",
        "/redis/commands",
        "/redis/pipeline",
        "/redis/transaction",
        "/memcached",
        "/large",
        "/pg/wide",
        "/mysql/wide",
        "/cli",
        "/early/open",
        "/early/use",
    ] {
        let body = curl(&[&app.url(path)]);
        assert_eq!(body, "ok\n", "{path}");
    }
}

#[test]
fn postgres_simple_queries_are_client_spans_with_sanitized_text_and_a_duration() {
    let setup = Setup::start();
    setup.drive("/pg/simple");
    let spans = setup.db_spans("postgresql", 2);
    let select = one_with_text(&spans, "SELECT name FROM accounts WHERE id = ?");
    assert_eq!(select.name, "SELECT accounts");
    let a = attrs(select);
    assert_eq!(
        a.get("db.operation.name").map(String::as_str),
        Some("SELECT")
    );
    assert_eq!(
        a.get("db.query.summary").map(String::as_str),
        Some("SELECT accounts")
    );
    assert_eq!(
        a.get("db.collection.name").map(String::as_str),
        Some("accounts")
    );
    assert_eq!(a.get("db.namespace").map(String::as_str), Some("shop"));
    assert!(!a.contains_key("db.response.status_code"), "{a:?}");
    assert_returned_rows(select, Some(1));
    assert!(!is_error(select));
    assert_server(select, setup.servers.postgres);
    let update = one_with_text(
        &spans,
        "UPDATE accounts SET balance = balance + ? WHERE id = ?",
    );
    assert_eq!(update.name, "UPDATE accounts");
    // One row affected, none returned.
    assert_returned_rows(update, None);
    // No literal the client sent reaches the exported text.
    for s in &spans {
        let text = text_of(s);
        assert!(!text.contains('5') && !text.contains("= 1"), "{text}");
    }
    // The trace printer (JSON here) shows the operation too.
    let printed = setup.agent.wait_for_spans(1, |s| {
        s.pointer("/db/query_text")
            .and_then(serde_json::Value::as_str)
            == Some("SELECT name FROM accounts WHERE id = ?")
    });
    assert_eq!(printed[0].str_of("kind"), "client", "{:#}", printed[0]);
    assert_eq!(
        printed[0]
            .pointer("/db/system")
            .and_then(serde_json::Value::as_str),
        Some("postgresql")
    );
    let point = setup.duration_point(
        &[
            ("db.system.name", "postgresql"),
            ("db.operation.name", "SELECT"),
            ("db.collection.name", "accounts"),
            ("db.namespace", "shop"),
            ("server.address", "127.0.0.1"),
        ],
        1,
    );
    assert!(point.sum.unwrap_or(0.0) > 0.0, "{point:?}");
    assert!(
        !attrs_map(&point.attributes).contains_key("db.query.text"),
        "the query text is never a metric attribute: {point:?}"
    );
}

#[test]
fn postgres_errors_carry_their_sqlstate() {
    let setup = Setup::start();
    setup.drive("/pg/errors");
    let spans = setup.db_spans("postgresql", 2);
    let syntax = one_with_text(&spans, "SELEC broken");
    let missing = one_with_text(&spans, "SELECT * FROM missing_table WHERE id = ?");
    for (span, code) in [(syntax, "42601"), (missing, "42P01")] {
        let a = attrs(span);
        assert_eq!(
            a.get("db.response.status_code").map(String::as_str),
            Some(code),
            "{span:#?}"
        );
        assert_eq!(a.get("error.type").map(String::as_str), Some(code));
        assert!(is_error(span), "{span:#?}");
        assert_server(span, setup.servers.postgres);
    }
    assert_eq!(missing.name, "SELECT missing_table");
    setup.duration_point(
        &[("db.system.name", "postgresql"), ("error.type", "42P01")],
        1,
    );
}

#[test]
fn postgres_prepared_statements_carry_their_text() {
    let setup = Setup::start();
    setup.drive("/pg/prepared");
    let spans = setup.db_spans("postgresql", 5);
    // psycopg 3, extended protocol: an unnamed statement, then a named one
    // parsed once and executed twice, each execution with its text.
    let unnamed = one_with_text(&spans, "SELECT name FROM accounts WHERE id = $1");
    assert_eq!(unnamed.name, "SELECT accounts");
    assert_eq!(
        attrs(unnamed).get("db.namespace").map(String::as_str),
        Some("shop")
    );
    let named = with_text(&spans, "SELECT balance FROM accounts WHERE id = $1");
    assert_eq!(named.len(), 2, "{spans:#?}");
    // SQL PREPARE, then EXECUTE carrying the prepared statement's text.
    let prepare = one_with_text(
        &spans,
        "PREPARE byname(text) AS SELECT id FROM accounts WHERE name = $1",
    );
    assert_eq!(
        attrs(prepare).get("db.operation.name").map(String::as_str),
        Some("PREPARE")
    );
    let execute = one_with_text(&spans, "SELECT id FROM accounts WHERE name = $1");
    assert_eq!(
        attrs(execute).get("db.collection.name").map(String::as_str),
        Some("accounts")
    );
    for s in &spans {
        assert!(!is_error(s), "{s:#?}");
    }
}

#[test]
fn postgres_statements_in_one_round_trip_copy_and_pipeline_mode() {
    let setup = Setup::start();
    setup.drive("/pg/batch");
    let spans = setup.db_spans("postgresql", 6);
    // Two statements in one simple query: one span each.
    one_with_text(&spans, "SELECT ? AS one");
    let second = one_with_text(&spans, "SELECT name FROM accounts WHERE id = ?");
    assert_eq!(second.name, "SELECT accounts");
    // COPY is one operation, however many rows it moves.
    let copy = one_with_text(&spans, "COPY accounts TO STDOUT");
    assert_eq!(copy.name, "COPY accounts");
    // psycopg 3's pipeline mode: three statements sent before any answer.
    one_with_text(&spans, "SELECT name FROM accounts WHERE id = $1");
    let update = one_with_text(
        &spans,
        "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
    );
    assert_eq!(update.name, "UPDATE accounts");
    one_with_text(&spans, "SELECT count(*) FROM accounts");
    for s in &spans {
        assert!(!is_error(s), "{s:#?}");
        assert_server(s, setup.servers.postgres);
    }
}

#[test]
fn postgres_over_tls_is_seen_in_plaintext() {
    let setup = Setup::start();
    setup.drive("/pg/tls");
    let spans = setup.db_spans("postgresql", 2);
    let select = one_with_text(&spans, "SELECT balance FROM accounts WHERE name = ?");
    assert_eq!(select.name, "SELECT accounts");
    assert_eq!(
        attrs(select).get("db.namespace").map(String::as_str),
        Some("shop")
    );
    assert_server(select, setup.servers.postgres);
    // The server confirmed the connection was encrypted (db_app.py asserts it).
    let check = one_with_text(
        &spans,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(
        attrs(check).get("db.collection.name").map(String::as_str),
        Some("pg_stat_ssl")
    );
}

#[test]
fn mariadb_over_tls_is_seen_in_plaintext() {
    let setup = Setup::start();
    setup.drive("/mysql/tls");
    let spans = setup.db_spans("mariadb", 3);
    let select = one_with_text(&spans, "SELECT name FROM items WHERE id = ?");
    assert_eq!(select.name, "SELECT items");
    // From the handshake response, sent after the TLS handshake.
    assert_eq!(
        attrs(select).get("db.namespace").map(String::as_str),
        Some("shop")
    );
    assert_server(select, setup.servers.mariadb);
    // The server confirmed the session was encrypted (db_app.py asserts it).
    one_with_text(&spans, "SHOW SESSION STATUS LIKE ?");
    let missing = one_with_text(&spans, "SELECT * FROM missing_table");
    assert!(is_error(missing));
    assert_eq!(
        attrs(missing)
            .get("db.response.status_code")
            .map(String::as_str),
        Some("1146")
    );
}

#[test]
fn mariadb_queries_and_errors_are_client_spans() {
    let setup = Setup::start();
    setup.drive("/mysql/queries");
    let spans = setup.db_spans("mariadb", 4);
    let select = one_with_text(&spans, "SELECT name FROM items WHERE id = ?");
    assert_eq!(select.name, "SELECT items");
    let a = attrs(select);
    assert_eq!(a.get("db.namespace").map(String::as_str), Some("shop"));
    assert_eq!(
        a.get("db.collection.name").map(String::as_str),
        Some("items")
    );
    assert_server(select, setup.servers.mariadb);
    assert_returned_rows(select, Some(1));
    let update = one_with_text(&spans, "UPDATE items SET name = ? WHERE id = ?");
    assert_returned_rows(update, None);
    let missing = one_with_text(&spans, "SELECT * FROM missing_table");
    assert_returned_rows(missing, None);
    let a = attrs(missing);
    assert_eq!(
        a.get("db.response.status_code").map(String::as_str),
        Some("1146")
    );
    assert_eq!(a.get("error.type").map(String::as_str), Some("1146"));
    assert!(is_error(missing));
    // SQL PREPARE/EXECUTE: the statement's literal text is sanitized too.
    let operations: Vec<String> = spans
        .iter()
        .filter_map(|s| attr_str(&s.attributes, "db.operation.name"))
        .collect();
    for operation in ["PREPARE", "EXECUTE"] {
        assert!(
            operations.iter().any(|o| o == operation),
            "{operation}: {spans:#?}"
        );
    }
    setup.duration_point(
        &[
            ("db.system.name", "mariadb"),
            ("db.operation.name", "SELECT"),
            ("db.collection.name", "items"),
        ],
        1,
    );
}

#[test]
fn mariadb_server_side_prepared_statements_carry_their_text() {
    let setup = Setup::start();
    setup.drive("/mysql/prepared");
    let spans = setup.db_spans("mariadb", 3);
    // COM_STMT_PREPARE alone is no operation; each COM_STMT_EXECUTE carries its text.
    let executions = with_text(&spans, "SELECT name FROM items WHERE id = ?");
    assert_eq!(executions.len(), 2, "{spans:#?}");
    for s in &executions {
        assert_eq!(s.name, "SELECT items");
        assert_eq!(
            attrs(s).get("db.namespace").map(String::as_str),
            Some("shop")
        );
        assert!(!is_error(s));
        assert_server(s, setup.servers.mariadb);
    }
    // A prepare the server refuses is an operation, with its error.
    let refused = one_with_text(&spans, "SELECT * FROM nowhere WHERE id = ?");
    assert_eq!(
        attrs(refused).get("error.type").map(String::as_str),
        Some("1146")
    );
    assert!(is_error(refused));
}

/// MariaDB Connector/J (Java), a child of the service, with server-side
/// prepared statements: a COM_QUERY, one COM_STMT_PREPARE and three
/// COM_STMT_EXECUTEs each with the statement's text, and error 1146.
#[test]
fn mariadb_through_connector_j_is_a_span_per_statement() {
    let setup = Setup::start();
    setup.drive("/mariadb-jdbc");
    let spans = setup.db_spans("mariadb", 5);
    let count = one_with_text(&spans, "SELECT count(*) FROM items");
    assert_eq!(count.name, "SELECT items");
    let executions = with_text(&spans, "SELECT name FROM items WHERE id = ?");
    assert_eq!(executions.len(), 3, "one span per execution: {spans:#?}");
    for s in executions.iter().chain([&count]) {
        assert_eq!(
            attrs(s).get("db.namespace").map(String::as_str),
            Some("shop")
        );
        assert!(!is_error(s), "{s:#?}");
        assert_server(s, setup.servers.mariadb);
    }
    let missing = one_with_text(&spans, "SELECT * FROM jdbc_missing_table");
    assert!(is_error(missing), "{missing:#?}");
    assert_eq!(
        attrs(missing).get("error.type").map(String::as_str),
        Some("1146")
    );
    // What the driver asks on its own at connect (session settings) fails nothing.
    let unexpected: Vec<&Span> = spans
        .iter()
        .filter(|s| is_error(s) && s.span_id != missing.span_id)
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[test]
fn redis_commands_select_and_error_replies() {
    let setup = Setup::start();
    setup.drive("/redis/commands");
    let spans = setup.db_spans("redis", 4);
    let by_operation = |operation: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|s| attr_str(&s.attributes, "db.operation.name").as_deref() == Some(operation))
            .collect()
    };
    assert_eq!(by_operation("SELECT").len(), 1, "{spans:#?}");
    let set = by_operation("SET");
    assert_eq!(set.len(), 1, "{spans:#?}");
    assert_eq!(text_of(set[0]), "SET page:home ?");
    // `db=3`: the client's SELECT 3 moves the connection's namespace.
    for s in set.iter().chain(&by_operation("GET")) {
        assert_eq!(
            attr_str(&s.attributes, "db.namespace").as_deref(),
            Some("3"),
            "{s:#?}"
        );
        assert!(!is_error(s));
        assert_server(s, setup.servers.redis);
    }
    let lpush = by_operation("LPUSH");
    assert_eq!(lpush.len(), 1, "{spans:#?}");
    let a = attrs(lpush[0]);
    assert_eq!(
        a.get("db.response.status_code").map(String::as_str),
        Some("WRONGTYPE")
    );
    assert_eq!(a.get("error.type").map(String::as_str), Some("WRONGTYPE"));
    assert!(is_error(lpush[0]));
    setup.duration_point(
        &[
            ("db.system.name", "redis"),
            ("db.operation.name", "SET"),
            ("db.namespace", "3"),
        ],
        1,
    );
}

#[test]
fn each_pipelined_redis_command_is_its_own_span() {
    let setup = Setup::start();
    setup.drive("/redis/pipeline");
    let spans = setup.db_spans("redis", 5);
    let pipelined: Vec<&Span> = spans
        .iter()
        .filter(|s| attr_str(&s.attributes, "db.operation.name").as_deref() != Some("SELECT"))
        .collect();
    // Sent in one write, they share a start: compared without their order.
    let mut texts: Vec<String> = pipelined.iter().map(|s| text_of(s)).collect();
    texts.sort();
    assert_eq!(
        texts,
        ["GET hits", "INCRBY hits ?", "INCRBY hits ?", "SET hits ?"],
        "{spans:#?}"
    );
    // Paired in order: each ends no earlier than the one sent before it.
    let select_end = spans
        .iter()
        .filter(|s| attr_str(&s.attributes, "db.operation.name").as_deref() == Some("SELECT"))
        .map(|s| s.end_time_unix_nano)
        .max()
        .unwrap_or(0);
    assert!(pipelined
        .iter()
        .all(|s| s.start_time_unix_nano >= select_end));
    for s in &pipelined {
        assert_eq!(
            attr_str(&s.attributes, "db.namespace").as_deref(),
            Some("3")
        );
        assert!(!is_error(s));
    }
}

#[test]
fn a_redis_transaction_is_a_span_per_command_up_to_exec() {
    let setup = Setup::start();
    setup.drive("/redis/transaction");
    let spans = setup.db_spans("redis", 6);
    // One write from MULTI to EXEC: compared without their order.
    let mut operations: Vec<String> = spans
        .iter()
        .filter_map(|s| attr_str(&s.attributes, "db.operation.name"))
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        ["EXEC", "EXPIRE", "GET", "INCRBY", "MULTI", "SELECT"],
        "{spans:#?}"
    );
    let in_transaction = spans
        .iter()
        .filter(|s| attr_str(&s.attributes, "db.operation.name").as_deref() != Some("SELECT"));
    for s in in_transaction {
        assert_eq!(
            attr_str(&s.attributes, "db.namespace").as_deref(),
            Some("3")
        );
        assert!(!is_error(s), "{s:#?}");
    }
}

#[test]
fn memcached_sets_gets_and_a_multi_key_get() {
    let metrics_port = free_port().to_string();
    let setup = Setup::start_with(&[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port)]);
    setup.drive("/memcached");
    let spans = setup.db_spans("memcached", 5);
    let operations: Vec<String> = {
        let mut sorted: Vec<&Span> = spans.iter().collect();
        sorted.sort_by_key(|s| s.start_time_unix_nano);
        sorted
            .iter()
            .filter_map(|s| attr_str(&s.attributes, "db.operation.name"))
            .collect()
    };
    assert_eq!(
        operations,
        ["set", "set", "get", "get", "incr"],
        "{spans:#?}"
    );
    assert_returned_rows(one_with_text(&spans, "get user:1"), Some(1));
    let multi = one_with_text(&spans, "get user:1 user:2 user:3");
    // Two of the three keys were found.
    assert_returned_rows(multi, Some(2));
    assert!(!is_error(multi));
    assert_server(multi, setup.servers.memcached);
    for s in with_text(&spans, "set user:1 ? ? ?") {
        assert!(!is_error(s));
    }
    // The server's CLIENT_ERROR (incr of a value that is not a number).
    let incr = one_with_text(&spans, "incr user:1 ?");
    assert!(is_error(incr), "{incr:#?}");
    assert_eq!(
        attrs(incr).get("error.type").map(String::as_str),
        Some("CLIENT_ERROR")
    );
    setup.duration_point(
        &[
            ("db.system.name", "memcached"),
            ("db.operation.name", "get"),
        ],
        2,
    );
    // The same histogram on the Prometheus endpoint, in seconds.
    let scraped = wait_for(Duration::from_secs(10), || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        text.lines()
            .any(|l| {
                l.starts_with("db_client_operation_duration_seconds_count{")
                    && l.contains("db_system_name=\"memcached\"")
                    && l.contains("db_operation_name=\"get\"")
                    && l.ends_with(" 2")
            })
            .then_some(())
    });
    assert!(
        scraped.is_some(),
        "no db_client_operation_duration_seconds_count for memcached get: {}",
        curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")])
    );
}

/// spymemcached (Java), a child of the service, whose own I/O thread writes
/// and reads every command: each is a span, in order, with its keys; the
/// bulk get is one `get` of three keys, two found.
#[test]
fn memcached_through_spymemcached_is_a_span_per_command() {
    let setup = Setup::start();
    setup.drive("/spymemcached");
    let spans = setup.db_spans("memcached", 5);
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| s.start_time_unix_nano);
    let mut texts: Vec<String> = sorted.iter().map(|s| text_of(s)).collect();
    // The bulk get names its keys in the order spymemcached keeps them in.
    if let Some(bulk) = texts.get_mut(3) {
        let mut keys: Vec<&str> = bulk.split(' ').collect();
        keys[1..].sort_unstable();
        *bulk = keys.join(" ");
    }
    assert_eq!(
        texts,
        [
            "set spy:1 ? ? ?",
            "set spy:2 ? ? ?",
            "get spy:1",
            "get spy:1 spy:2 spy:3",
            "delete spy:2"
        ],
        "{spans:#?}"
    );
    assert_returned_rows(sorted[2], Some(1));
    assert_returned_rows(sorted[3], Some(2));
    for span in &sorted {
        assert!(!is_error(span), "{span:#?}");
        assert_server(span, setup.servers.memcached);
    }
}

#[test]
fn psql_mariadb_and_redis_cli_run_by_the_service_are_traced_too() {
    // The command-line clients are the service's children, instrumented with it.
    let setup = Setup::start();
    setup.drive("/cli");
    let postgres = setup.db_spans("postgresql", 1);
    one_with_text(&postgres, "SELECT count(*) FROM accounts");
    let mariadb = setup.db_spans("mariadb", 1);
    one_with_text(&mariadb, "SELECT count(*) FROM items");
    let redis = setup.db_spans("redis", 2);
    // RESP2, then RESP3 (HELLO 3, the hash as a map), both in database 4.
    for text in ["HSET cli:h ? ?", "HGETALL cli:h"] {
        let span = redis
            .iter()
            .find(|s| text_of(s) == text)
            .unwrap_or_else(|| panic!("{text}: {redis:#?}"));
        assert_eq!(
            attr_str(&span.attributes, "db.namespace").as_deref(),
            Some("4"),
            "{span:#?}"
        );
        assert!(!is_error(span), "{span:#?}");
    }
}

/// pgjdbc (Java's PostgreSQL driver, Debian's), a child of the service:
/// every statement is sent with the extended protocol, and the sixth run of
/// a PreparedStatement goes through the named server-side statement pgjdbc
/// switches to at the fifth (`prepareThreshold`); each execution is a span
/// with its text, the transaction's statements too, and the error its SQLSTATE.
#[test]
fn postgres_through_jdbc_is_a_span_per_statement_named_or_not() {
    let setup = Setup::start();
    setup.drive("/jdbc");
    let spans = setup.db_spans("postgresql", 10);
    let count = one_with_text(&spans, "SELECT count(*) FROM accounts");
    assert_eq!(count.name, "SELECT accounts");
    assert_returned_rows(count, Some(1));
    let by_id = with_text(&spans, "SELECT name FROM accounts WHERE id = $1");
    assert_eq!(by_id.len(), 6, "one span per execution: {spans:#?}");
    for span in &by_id {
        assert_eq!(span.name, "SELECT accounts", "{span:#?}");
        assert_eq!(
            attrs(span).get("db.namespace").map(String::as_str),
            Some("shop")
        );
        assert!(!is_error(span), "{span:#?}");
        assert_server(span, setup.servers.postgres);
    }
    let update = one_with_text(
        &spans,
        "UPDATE accounts SET balance = balance WHERE id = $1",
    );
    assert_eq!(update.name, "UPDATE accounts");
    assert!(!is_error(update), "{update:#?}");
    let missing = one_with_text(&spans, "SELECT * FROM jdbc_missing_table");
    assert!(is_error(missing), "{missing:#?}");
    assert_eq!(
        attrs(missing).get("error.type").map(String::as_str),
        Some("42P01")
    );
    let unexpected: Vec<&Span> = spans
        .iter()
        .filter(|s| is_error(s) && s.span_id != missing.span_id)
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[test]
fn query_text_and_protocols_can_be_left_out_of_traces() {
    // OBI's instrumentations list for traces without redis and memcached,
    // and no query text: the other exporters keep everything.
    let setup = Setup::start_with(&[
        ("ZEROTRACE_DB_QUERY_TEXT", "false"),
        ("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,sql"),
    ]);
    setup.drive("/redis/commands");
    setup.drive("/memcached");
    setup.drive("/pg/simple");
    let postgres = setup.db_spans("postgresql", 2);
    for s in &postgres {
        assert!(
            !attrs(s).contains_key("db.query.text"),
            "query text exported: {s:#?}"
        );
    }
    assert!(postgres.iter().any(|s| s.name == "SELECT accounts"));
    // Redis and memcached operations are still counted.
    setup.duration_point(&[("db.system.name", "redis")], 1);
    setup.duration_point(&[("db.system.name", "memcached")], 1);
    let left_out: Vec<_> = setup
        .receiver
        .spans()
        .into_iter()
        .filter(|(_, s)| {
            matches!(
                attr_str(&s.attributes, "db.system.name").as_deref(),
                Some("redis" | "memcached")
            )
        })
        .collect();
    assert!(left_out.is_empty(), "{left_out:#?}");
}

#[test]
fn clean_traffic_of_every_protocol_leaves_no_garbage() {
    // Every byte of these connections belongs to a decoder that claimed it.
    let metrics_port = free_port().to_string();
    let setup = Setup::start_with(&[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port)]);
    for path in [
        "/pg/simple",
        "/mysql/queries",
        "/redis/commands",
        "/memcached",
    ] {
        setup.drive(path);
    }
    for system in ["postgresql", "mariadb", "redis", "memcached"] {
        setup.db_spans(system, 1);
    }
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let value = |name: &str| {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    assert_eq!(
        value("zerotrace_garbage_segments_total "),
        Some(0.0),
        "{scrape}"
    );
}

#[test]
fn the_text_printer_prints_a_line_per_operation_with_its_error() {
    require_root();
    let servers = db_servers();
    let app = start_db_app(servers);
    // The last --trace-printer wins over the helper's json.
    let agent = Agent::start(
        &[
            "--open-port",
            &app.port.to_string(),
            "--trace-printer",
            "text",
        ],
        &[],
    );
    let body = curl(&[&app.url("/pg/errors")]);
    assert_eq!(body, "ok\n");
    let peer = format!("-> 127.0.0.1:{} postgresql ", servers.postgres);
    let process = format!("client python3[{}] 127.0.0.1:", app.pid());
    let line = wait_for(Duration::from_secs(10), || {
        agent.stdout.snapshot().into_iter().find(|l| {
            l.contains(&process)
                && l.contains(&format!("{peer}\"SELECT missing_table\" "))
                && l.contains(" error=42P01")
        })
    });
    assert!(
        line.is_some(),
        "no printed line for the missing table:\n{}",
        agent.stdout.text()
    );
}

#[test]
fn the_live_view_counts_database_operations_as_client_routes() {
    require_root();
    let servers = db_servers();
    let app = start_db_app(servers);
    // 0755, so the worker's user can reach the socket's directory.
    let dir = servers.dir.join(format!("live-{}", app.port));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let socket = dir.join("live").join("live.sock");
    let agent = Agent::start(
        &[
            "--open-port",
            &app.port.to_string(),
            "--live-socket",
            &socket.to_string_lossy(),
        ],
        &[],
    );
    for path in ["/pg/simple", "/pg/errors"] {
        assert_eq!(curl(&[&app.url(path)]), "ok\n", "{path}");
    }
    // `zerotrace-top --once`: one snapshot of what the terminal view shows.
    let route = |snapshot: &serde_json::Value, name: &str| {
        snapshot["routes"].as_array().and_then(|routes| {
            routes
                .iter()
                .find(|r| r["kind"] == "client" && r["route"] == name && r["service"] == "python3")
                .cloned()
        })
    };
    let mut last = String::new();
    let found = wait_for(Duration::from_secs(15), || {
        let output = std::process::Command::new(bin_dir().join("zerotrace-top"))
            .args(["--once", "--socket"])
            .arg(&socket)
            .output()
            .ok()?;
        last = String::from_utf8_lossy(&output.stdout).into_owned();
        let snapshot: serde_json::Value = serde_json::from_str(last.trim()).ok()?;
        let select = route(&snapshot, "SELECT accounts")?;
        let missing = route(&snapshot, "SELECT missing_table")?;
        (select["requests_total"].as_u64() >= Some(1)
            && missing["errors_total"].as_u64() >= Some(1))
        .then_some((select, missing))
    });
    let (select, missing) = found.unwrap_or_else(|| {
        panic!(
            "no client routes for the queries in the live view:\n{last}\nagent stderr:\n{}",
            agent.stderr.text()
        )
    });
    assert_eq!(select["errors_total"].as_u64(), Some(0), "{select}");
    assert_eq!(missing["requests_total"].as_u64(), Some(1), "{missing}");
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_opened_before_the_agent_are_decoded_without_a_database() {
    // A pool opened at the service's start, used once the agent runs: the
    // agent joins those connections mid-stream, without their StartupMessage
    // or SELECT 3.
    require_root();
    let servers = db_servers();
    let app = start_db_app(servers);
    assert_eq!(curl(&[&app.url("/early/open")]), "ok\n");
    let receiver = OtlpReceiver::start_grpc();
    let endpoint = receiver.endpoint();
    let setup = Setup {
        servers,
        agent: Agent::start(
            &["--open-port", &app.port.to_string()],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ],
        ),
        app,
        receiver,
    };
    setup.drive("/early/use");
    // Fresh connections after them: once their spans are in, the early ones would be too.
    setup.drive("/redis/commands");
    setup.drive("/pg/simple");
    let redis = setup.db_spans("redis", 4);
    let postgres = setup.db_spans("postgresql", 2);
    // Decoded all the same, but with no database: the connection is in 3,
    // not the 0 a connection seen from its start would be in.
    let get = one_with_text(&redis, "GET early:key");
    assert_eq!(get.name, "GET");
    assert_eq!(attrs(get).get("db.namespace"), None, "{get:#?}");
    assert!(!is_error(get));
    let select = one_with_text(&postgres, "SELECT id, name FROM accounts WHERE id = ?");
    assert_eq!(select.name, "SELECT accounts");
    assert_eq!(attrs(select).get("db.namespace"), None, "{select:#?}");
    assert_server(select, setup.servers.postgres);
    // The fresh connections know theirs.
    let fresh = one_with_text(&postgres, "SELECT name FROM accounts WHERE id = ?");
    assert_eq!(
        attrs(fresh).get("db.namespace").map(String::as_str),
        Some("shop")
    );
}

#[test]
fn database_calls_are_children_of_the_request_that_made_them() {
    // The service answers each request on the thread that read it
    // (ThreadingHTTPServer) and queries from that thread: issue 15's nesting.
    let setup = Setup::start();
    setup.drive("/pg/simple");
    setup.drive("/redis/pipeline");
    let pg = setup.db_spans("postgresql", 2);
    let redis = setup.db_spans("redis", 1);
    let servers: Vec<Span> = spans_of(&setup.receiver.traces())
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == span::SpanKind::Server as i32)
        .collect();
    for (calls, path) in [(&pg, "/pg/simple"), (&redis, "/redis/pipeline")] {
        let request = servers
            .iter()
            .find(|s| attr_str(&s.attributes, "url.path").as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no server span for {path}: {servers:#?}"));
        for call in calls {
            assert_eq!(call.trace_id, request.trace_id, "{path}: {call:#?}");
            assert_eq!(call.parent_span_id, request.span_id, "{path}: {call:#?}");
        }
    }
}

#[test]
fn instrumented_database_servers_make_no_database_spans() {
    // The servers themselves instrumented (as `OTEL_EBPF_OPEN_PORT` on their
    // ports does), their clients not: the decoders read connections as a
    // client does, and a server's replies must not pass for a client's
    // commands. Redis answers LRANGE and CONFIG GET with arrays of bulk
    // strings, the shape of a command.
    require_root();
    let servers = db_servers();
    let app = start_db_app(servers);
    let ports = [
        servers.postgres,
        servers.mariadb,
        servers.redis,
        servers.memcached,
    ]
    .map(|p| p.to_string())
    .join(",");
    let mut agent = Agent::start(&["--open-port", &ports], &[]);
    for path in [
        "/pg/simple",
        "/mysql/queries",
        "/redis/commands",
        "/memcached",
    ] {
        assert_eq!(curl(&[&app.url(path)]), "ok\n", "scenario {path}");
    }
    let redis_cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &servers.redis.to_string(),
                "-n",
                "5",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli: {e}"));
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    };
    redis_cli(&["RPUSH", "server:list", "a", "b", "c"]);
    redis_cli(&["LRANGE", "server:list", "0", "-1"]);
    redis_cli(&["CONFIG", "GET", "maxmemory"]);
    redis_cli(&["DEL", "server:list"]);
    std::thread::sleep(Duration::from_secs(2));
    agent.stop();
    let database_spans: Vec<Value> = agent
        .spans()
        .into_iter()
        .filter(|s| s.get("db").is_some_and(|db| !db.is_null()))
        .collect();
    assert!(database_spans.is_empty(), "{database_spans:#?}");
    // The servers' bytes were seen: unclaimed, not missing.
    let stderr = agent.stderr.text();
    let records = stderr.lines().find_map(|line| {
        let (before, _) = line.split_once(" records (")?;
        before.rsplit(' ').next()?.parse::<u64>().ok()
    });
    assert!(records.is_some_and(|n| n > 20), "{stderr}");
}

/// Results and commands far past the capture (tests/servers/db_app.py
/// `/large`): each call is one span, a row count is exact or absent, and the
/// small calls after them on the same connections are whole. Reads that began
/// inside a result's rows once resynchronised on text that looked like a
/// message, and the pieces of a long Redis command became commands.
#[test]
fn large_results_and_commands_leave_the_calls_after_them_whole() {
    let setup = Setup::start();
    setup.drive("/large");
    let printed = setup.agent.wait_for_spans(1, |s| {
        s.pointer("/db/query_text").and_then(Value::as_str) == Some("get large:after")
    });
    assert_eq!(printed.len(), 1);
    std::thread::sleep(Duration::from_millis(600));
    let db = |span: &Value, field: &str| span.pointer(&format!("/db/{field}")).cloned();
    let spans: Vec<Value> = setup
        .agent
        .spans()
        .into_iter()
        .filter(|s| s.str_of("kind") == "client" && s.get("db").is_some_and(|d| !d.is_null()))
        .collect();
    let texts: Vec<String> = spans
        .iter()
        .map(|s| format!("{}", db(s, "query_text").unwrap_or_default()))
        .collect();
    let expected = [
        ("SELECT g, ? || g FROM generate_series(?, ?) g", Some(5000)),
        ("SELECT name FROM accounts WHERE id = ?", Some(1)),
        (
            "SELECT seq, CONCAT(?, seq) FROM seq_1_to_20000",
            Some(20000),
        ),
        ("SELECT name FROM items WHERE id = ?", Some(1)),
        ("SELECT 3", None), // redis-py's `db=3`
        ("DEL large:list", None),
        ("LRANGE large:list ? ?", None),
        ("SET large:after ?", None),
        ("GET large:after", None),
    ];
    for (text, rows) in expected {
        let with: Vec<&Value> = spans
            .iter()
            .filter(|s| {
                db(s, "query_text").and_then(|t| t.as_str().map(str::to_string))
                    == Some(text.into())
            })
            .collect();
        assert_eq!(with.len(), 1, "{text}: {texts:#?}");
        let got_rows = db(with[0], "rows").and_then(|r| r.as_u64());
        match rows {
            // Large results: the exact count or none, never the rows captured.
            Some(n) if n > 1 => assert!(
                got_rows.is_none() || got_rows == Some(n),
                "{text}: {:#}",
                with[0]
            ),
            // The small calls after them: exact and whole.
            Some(n) => {
                assert_eq!(got_rows, Some(n), "{:#}", with[0]);
                assert_eq!(
                    with[0].get("partial"),
                    Some(&Value::Bool(false)),
                    "{:#}",
                    with[0]
                );
            }
            None => {}
        }
    }
    let rpush: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            db(s, "operation").and_then(|o| o.as_str().map(str::to_string)) == Some("RPUSH".into())
        })
        .collect();
    assert_eq!(rpush.len(), 1, "{texts:#?}");
    // The whole command was counted, not the 512 bytes captured of it.
    assert!(
        db(rpush[0], "request_bytes").and_then(|b| b.as_u64()) > Some(70_000),
        "{:#}",
        rpush[0]
    );
    // Nothing else: no piece of a long command or reply made a span of its own.
    let redis_and_sql: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            db(s, "system").and_then(|o| o.as_str().map(str::to_string)) != Some("memcached".into())
        })
        .collect();
    assert_eq!(redis_and_sql.len(), expected.len() + 1, "{texts:#?}");
    // memcached: 50 sets, the 50-key get (14 KB), a set and a get after it.
    let memcached: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            db(s, "system").and_then(|o| o.as_str().map(str::to_string)) == Some("memcached".into())
        })
        .collect();
    assert_eq!(memcached.len(), 53, "{texts:#?}");
    let multi_get = memcached[50];
    assert_eq!(
        db(multi_get, "operation"),
        Some(Value::from("get")),
        "{multi_get:#}"
    );
    let hits = db(multi_get, "rows").and_then(|r| r.as_u64());
    assert!(hits.is_none() || hits == Some(50), "{multi_get:#}");
    assert!(
        db(multi_get, "response_bytes").and_then(|b| b.as_u64()) > Some(14_000),
        "{multi_get:#}"
    );
    let after = memcached[52];
    assert_eq!(
        db(after, "query_text"),
        Some(Value::from("get large:after")),
        "{after:#}"
    );
    assert_eq!(
        db(after, "rows").and_then(|r| r.as_u64()),
        Some(1),
        "{after:#}"
    );
    assert_eq!(after.get("partial"), Some(&Value::Bool(false)), "{after:#}");
}

/// Results wider than the capture, as applications read them: the server's
/// row count and the end of its answer come with the kernel's copy of each
/// read's last bytes, so the operation is whole and counted, whatever the
/// protocol (simple, extended, over TLS) and however many reads it took.
#[test]
fn wide_postgres_results_keep_their_row_count_and_are_whole() {
    let setup = Setup::start();
    setup.drive("/pg/wide");
    let (_, spans) =
        setup.printed_db_spans("postgresql", "SELECT name FROM accounts WHERE id = $1");
    let text = |s: &Value| {
        s.pointer("/db/query_text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    for (label, placeholder) in [
        ("simple_row", "?"),
        ("tls_row", "?"),
        ("extended_row", "$1"),
    ] {
        let wanted = format!(
            "SELECT g AS {label}, repeat(?, ?) || g FROM generate_series(?, {placeholder}) g"
        );
        let wide: Vec<&Value> = spans.iter().filter(|s| text(s) == wanted).collect();
        let rows: Vec<Option<u64>> = wide
            .iter()
            .map(|s| s.pointer("/db/rows").and_then(Value::as_u64))
            .collect();
        assert_eq!(
            rows,
            vec![Some(5), Some(60), Some(500), Some(5000)],
            "{wanted}: {wide:#?}"
        );
        for span in wide {
            assert_eq!(span.get("partial"), Some(&Value::Bool(false)), "{span:#}");
            // Every byte of the answer counted: 5000 rows of about 100 bytes.
            let bytes = span.pointer("/db/response_bytes").and_then(Value::as_u64);
            let rows = span
                .pointer("/db/rows")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            assert!(bytes > Some(100 * rows), "{span:#}");
        }
    }
    // A query that failed after sending 4,999 rows: its error, from the
    // ErrorResponse at the end of its last read, and whole.
    let failing: Vec<&Value> = spans
        .iter()
        .filter(|s| text(s).starts_with("SELECT g AS failing_row"))
        .collect();
    assert_eq!(failing.len(), 2, "{spans:#?}");
    for span in failing {
        assert_eq!(
            span.pointer("/db/error_type").and_then(Value::as_str),
            Some("22012"),
            "{span:#}"
        );
        assert_eq!(span.get("partial"), Some(&Value::Bool(false)), "{span:#}");
    }
    // The small queries after them: whole, one row.
    let small: Vec<&Value> = spans
        .iter()
        .filter(|s| text(s).starts_with("SELECT name FROM accounts"))
        .collect();
    assert_eq!(small.len(), 3, "{small:#?}");
    for span in small {
        assert_eq!(span.pointer("/db/rows").and_then(Value::as_u64), Some(1));
        assert_eq!(span.get("partial"), Some(&Value::Bool(false)), "{span:#}");
    }
}

/// The same through MariaDB: the result's end comes with the kernel's copy
/// of the last read's last bytes, so the operation is whole; MySQL reports
/// no row count, so one that took more than the capture is left out rather
/// than guessed from the rows captured.
#[test]
fn wide_mariadb_results_are_whole() {
    let setup = Setup::start();
    setup.drive("/mysql/wide");
    let (small, spans) = setup.printed_db_spans("mariadb", "SELECT name FROM items WHERE id = ?");
    let wide: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s.pointer("/db/query_text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("SELECT seq AS wide_row"))
        })
        .collect();
    assert_eq!(wide.len(), 4, "{spans:#?}");
    for (span, n) in wide.iter().zip([5u64, 60, 500, 5000]) {
        assert_eq!(span.get("partial"), Some(&Value::Bool(false)), "{span:#}");
        let rows = span.pointer("/db/rows").and_then(Value::as_u64);
        assert!(rows.is_none() || rows == Some(n), "{span:#}");
        let bytes = span.pointer("/db/response_bytes").and_then(Value::as_u64);
        assert!(bytes > Some(100 * n), "{span:#}");
    }
    assert_eq!(small.pointer("/db/rows").and_then(Value::as_u64), Some(1));
    assert_eq!(small.get("partial"), Some(&Value::Bool(false)), "{small:#}");
}

/// Batches written at once by real clients (tests/servers/db_app.py
/// `batches`): pipelines of Redis commands (redis-py in 6,000-byte writes,
/// redis.asyncio in one 80 KB write, `redis-cli --pipe` while it reads,
/// Node.js in one writev of 45 KB),
/// psycopg 3's executemany, in clear and over TLS, psycopg2's
/// execute_batch and execute_values and pymysql's executemany (queries of
/// 5 to 6 KB), and pymemcache's set_many and get_many. The
/// kernel copies a write or read that starts such a batch, and those that
/// follow it, up to the head capture, and a longer one in records of its
/// own: every request is its own span, whole. With 512 bytes of each, 82 %
/// of a 100-command pipeline's spans were lost.
#[test]
fn every_request_of_a_batch_written_at_once_is_a_whole_span() {
    let setup = Setup::start();
    setup.drive("/batches");
    let (_, redis) = setup.printed_db_spans("redis", "GET batches:end");
    let spans = setup.agent.spans();
    let text = |s: &Value| {
        s.pointer("/db/query_text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let whole = |s: &&Value| s.get("partial") == Some(&Value::Bool(false));
    let of_system = |system: &str| -> Vec<Value> {
        spans
            .iter()
            .filter(|s| s.pointer("/db/system").and_then(Value::as_str) == Some(system))
            .cloned()
            .collect()
    };
    for (prefix, count) in [
        ("SET batch:", 300),
        ("GET batch:", 300),
        ("SET abatch:", 2000),
        ("SET mass:", 3000),
    ] {
        let found: Vec<&Value> = redis
            .iter()
            .filter(|s| text(s).starts_with(prefix))
            .collect();
        let partial: Vec<&&Value> = found.iter().filter(|s| !whole(s)).collect();
        assert_eq!(
            (found.len(), partial.len()),
            (count, 0),
            "{prefix}: {:#?}\nagent stderr:\n{}",
            partial.iter().take(3).collect::<Vec<_>>(),
            setup.agent.stderr.text()
        );
    }
    // Node.js writes its pipeline with one writev of many buffers.
    if Command::new("node").arg("--version").output().is_ok() {
        let corked: Vec<&Value> = redis
            .iter()
            .filter(|s| text(s).starts_with("SET corked:"))
            .collect();
        let partial = corked.iter().filter(|s| !whole(s)).count();
        assert_eq!((corked.len(), partial), (1000, 0), "{corked:#?}");
    }
    // Every SET answered +OK: no span carries another command's reply.
    assert!(
        redis.iter().all(|s| s
            .pointer("/db/error_type")
            .and_then(Value::as_str)
            .is_none()),
        "{redis:#?}"
    );

    let postgres = of_system("postgresql");
    // In clear, and over TLS (the plaintext of libssl's reads, followed the same way).
    for table in ["batch_rows", "tls_batch_rows"] {
        let inserts: Vec<&Value> = postgres
            .iter()
            .filter(|s| text(s).starts_with(&format!("INSERT INTO {table} ")))
            .collect();
        let partial = inserts.iter().filter(|s| !whole(s)).count();
        assert_eq!((inserts.len(), partial), (1000, 0), "{table}: {inserts:#?}");
        assert!(
            inserts
                .iter()
                .all(|s| s.pointer("/db/rows").and_then(Value::as_u64) == Some(1)),
            "{inserts:#?}"
        );
        let count: Vec<&Value> = postgres
            .iter()
            .filter(|s| text(s) == format!("SELECT count(*) FROM {table}"))
            .collect();
        assert_eq!(count.len(), 1, "{postgres:#?}");
        assert!(whole(&count[0]), "{count:#?}");
    }

    // psycopg2's execute_batch (100 statements in each query) and
    // execute_values (one long INSERT), pymysql's executemany (one long
    // INSERT) and a long IN list: queries the kernel copies whole.
    let joined: Vec<&Value> = postgres
        .iter()
        .filter(|s| text(s).starts_with("INSERT INTO joined_rows"))
        .collect();
    assert_eq!(joined.len(), 301, "{joined:#?}");
    assert!(joined.iter().all(whole), "{joined:#?}");
    let rows = |s: &&Value| s.pointer("/db/rows").and_then(Value::as_u64);
    assert_eq!(
        joined.iter().filter(|s| rows(s) == Some(300)).count(),
        1,
        "{joined:#?}"
    );
    let mariadb = of_system("mariadb");
    for (prefix, expected_rows) in [
        ("INSERT INTO many_items", Some(300)),
        ("SELECT id FROM many_items WHERE id IN", None),
    ] {
        let found: Vec<&Value> = mariadb
            .iter()
            .filter(|s| text(s).starts_with(prefix))
            .collect();
        assert_eq!(found.len(), 1, "{prefix}: {mariadb:#?}");
        assert!(whole(&found[0]), "{found:#?}");
        assert!(
            expected_rows.is_none() || rows(&found[0]) == expected_rows,
            "{found:#?}"
        );
    }

    let memcached = of_system("memcached");
    let sets: Vec<&Value> = memcached
        .iter()
        .filter(|s| text(s).starts_with("set many:"))
        .collect();
    assert_eq!(sets.len(), 300, "{memcached:#?}");
    assert!(sets.iter().all(whole), "{sets:#?}");
    let gets: Vec<&Value> = memcached
        .iter()
        .filter(|s| text(s).starts_with("get many:0 many:1 "))
        .collect();
    assert_eq!(gets.len(), 1, "{memcached:#?}");
    assert!(whole(&gets[0]), "{gets:#?}");
    assert_eq!(
        gets[0].pointer("/db/rows").and_then(Value::as_u64),
        Some(300)
    );
}
