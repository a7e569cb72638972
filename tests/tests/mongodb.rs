//! MongoDB commands as CLIENT spans and `db.client.operation.duration`: a
//! real client (Debian's pymongo 3.11, in `tests/servers/mongo_app.py`,
//! which calls MongoDB while it serves HTTP requests) against a MongoDB
//! stand-in (`tests/servers/mongo_stand_in.py`: MockupDB's wire protocol,
//! mongomock's data; no MongoDB server is installable from the registries
//! reachable here), and the real agent exporting to an OTLP receiver that
//! decodes with opentelemetry-proto.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::mongo_stand_in::{start_mongo, start_mongo_over_tls, MongoSetup};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The stand-in, the instrumented service, the receiver and the agent of one test.
struct Setup {
    mongo: MongoSetup,
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Setup {
    fn start_with(extra: &[(&str, &str)]) -> Setup {
        require_root();
        Self::around(start_mongo(), extra)
    }

    /// The agent instrumenting `mongo`'s service.
    fn around(mongo: MongoSetup, extra: &[(&str, &str)]) -> Setup {
        let receiver = OtlpReceiver::start_grpc();
        let agent = Agent::start_exporting_to(
            &["--open-port", &mongo.app.port.to_string()],
            &receiver,
            extra,
        );
        Setup {
            mongo,
            receiver,
            agent,
        }
    }

    /// Runs the service's scenario at `path`, which must report success.
    fn drive(&self, path: &str) {
        let body = curl(&[&self.mongo.app.url(path)]);
        assert_eq!(body, "ok\n", "scenario {path} failed in mongo_app.py");
    }

    /// The MongoDB CLIENT spans once at least `count` arrived (and a moment
    /// more, so that extra ones would show).
    fn mongo_spans(&self, count: usize) -> Vec<Span> {
        let of_mongo = |traces: &[ReceivedTraces]| -> Vec<Span> {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.kind == span::SpanKind::Client as i32)
                .filter(|s| attr_str(&s.attributes, "db.system.name").as_deref() == Some("mongodb"))
                .collect()
        };
        let arrived = self
            .receiver
            .wait_for_traces(Duration::from_secs(15), |traces| {
                (of_mongo(traces).len() >= count).then_some(())
            });
        assert!(
            arrived.is_some(),
            "fewer than {count} mongodb client spans arrived: {:#?}\nagent stderr:\n{}",
            self.receiver.spans(),
            self.agent.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(600));
        of_mongo(&self.receiver.traces())
    }

    /// The SERVER span of the request for `path`.
    fn request_span(&self, path: &str) -> Span {
        spans_of(&self.receiver.traces())
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| {
                s.kind == span::SpanKind::Server as i32
                    && attr_str(&s.attributes, "url.path").as_deref() == Some(path)
            })
            .unwrap_or_else(|| panic!("no server span for {path}"))
    }

    /// A data point of `db.client.operation.duration` with `attributes`.
    fn duration_point(&self, attributes: &[(&str, &str)]) -> HistogramDataPoint {
        self.receiver
            .wait_for_histogram_point("db.client.operation.duration", attributes, 1)
    }
}

fn attrs(span: &Span) -> BTreeMap<String, String> {
    attrs_map(&span.attributes)
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32)
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn every_scenario_of_the_service_works_against_the_stand_in() {
    // Without the agent: a failure here is the fixture's, not the capture's.
    require_root();
    let mongo = start_mongo();
    for path in ["/crud", "/errors", "/large", "/unacknowledged"] {
        assert_eq!(curl(&[&mongo.app.url(path)]), "ok\n", "{path}");
    }
}

#[test]
fn commands_are_client_spans_under_the_request_that_made_them() {
    let setup = Setup::start_with(&[]);
    setup.drive("/crud");
    let spans = setup.mongo_spans(5);
    // pymongo's handshake and its monitor's `isMaster`s are no spans.
    assert_eq!(
        names(&spans),
        [
            "insert users",
            "insert users",
            "find users",
            "update users",
            "delete users"
        ],
        "{spans:#?}"
    );
    let port = i64::from(setup.mongo.stand_in.port);
    for call in &spans {
        let a = attrs(call);
        assert_eq!(a.get("db.namespace").map(String::as_str), Some("shop"));
        assert_eq!(
            a.get("db.collection.name").map(String::as_str),
            Some("users")
        );
        assert_eq!(
            a.get("server.address").map(String::as_str),
            Some("127.0.0.1")
        );
        assert_eq!(attr_int(&call.attributes, "server.port"), Some(port));
        assert!(!a.contains_key("db.query.text"), "{call:#?}");
        assert!(!is_error(call), "{call:#?}");
        assert!(call.end_time_unix_nano >= call.start_time_unix_nano);
    }
    assert_eq!(
        attr_int(&spans[2].attributes, "db.response.returned_rows"),
        Some(3),
        "{:#?}",
        spans[2]
    );
    // The service calls from the thread that serves the request.
    let request = setup.request_span("/crud");
    for call in &spans {
        assert_eq!(call.trace_id, request.trace_id, "{call:#?}");
        assert_eq!(call.parent_span_id, request.span_id, "{call:#?}");
    }
    let point = setup.duration_point(&[
        ("db.system.name", "mongodb"),
        ("db.operation.name", "find"),
        ("db.collection.name", "users"),
        ("db.namespace", "shop"),
    ]);
    assert_eq!(point.count, 1);
}

#[test]
fn commands_over_tls_are_decoded_from_the_tls_library_s_plaintext() {
    require_root();
    let setup = Setup::around(start_mongo_over_tls(), &[]);
    setup.agent.wait_for_tls_hooks(setup.mongo.app.pid());
    setup.drive("/crud");
    let spans = setup.mongo_spans(5);
    assert_eq!(
        names(&spans),
        [
            "insert users",
            "insert users",
            "find users",
            "update users",
            "delete users"
        ],
        "{spans:#?}"
    );
    assert_eq!(
        attr_int(&spans[2].attributes, "db.response.returned_rows"),
        Some(3)
    );
    let request = setup.request_span("/crud");
    assert!(spans.iter().all(|s| s.parent_span_id == request.span_id));
}

#[test]
fn failed_commands_carry_the_server_s_code() {
    let setup = Setup::start_with(&[]);
    setup.drive("/errors");
    let spans = setup.mongo_spans(3);
    assert_eq!(
        names(&spans),
        ["insert orders", "insert orders", "ztNoSuchCommand shop"],
        "{spans:#?}"
    );
    assert!(!is_error(&spans[0]));
    // A duplicate `_id`: a write error in a reply that says `ok: 1`.
    let duplicate = attrs(&spans[1]);
    assert!(is_error(&spans[1]), "{:#?}", spans[1]);
    assert_eq!(duplicate["error.type"], "11000");
    assert_eq!(duplicate["db.response.status_code"], "11000");
    let message = spans[1].status.as_ref().map(|s| s.message.as_str());
    assert!(
        message.is_some_and(|m| m.starts_with("DuplicateKey: E11000")),
        "{:#?}",
        spans[1]
    );
    // A command the server does not know: `ok: 0`, code 59.
    assert!(is_error(&spans[2]), "{:#?}", spans[2]);
    assert_eq!(attrs(&spans[2])["error.type"], "59");
    setup.duration_point(&[("db.operation.name", "insert"), ("error.type", "11000")]);
}

#[test]
fn large_batches_and_unacknowledged_writes_leave_every_command_whole() {
    let setup = Setup::start_with(&[]);
    // 41 KB written in one insert, 13 KB batches read back: the kernel
    // copies 512 bytes of each write and read; the messages are followed by
    // their lengths.
    setup.drive("/large");
    let spans = setup.mongo_spans(5);
    assert_eq!(
        names(&spans),
        [
            "insert items",
            "find items",
            "getMore items",
            "getMore items",
            "find items"
        ],
        "{spans:#?}"
    );
    // The batches are larger than the capture: no row count, never a wrong one.
    for batch in &spans[1..4] {
        assert_eq!(
            attr_int(&batch.attributes, "db.response.returned_rows"),
            None
        );
    }
    assert_eq!(
        attr_int(&spans[4].attributes, "db.response.returned_rows"),
        Some(1)
    );
    // A `w: 0` insert gets no reply: it ends when written, and the find
    // after it on the same connection is paired with its own reply.
    setup.drive("/unacknowledged");
    let spans = setup.mongo_spans(7);
    let events: Vec<&Span> = spans
        .iter()
        .filter(|s| attr_str(&s.attributes, "db.collection.name").as_deref() == Some("events"))
        .collect();
    assert_eq!(
        events.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["insert events", "find events"],
        "{spans:#?}"
    );
    assert_eq!(
        attr_int(&events[1].attributes, "db.response.returned_rows"),
        Some(1)
    );
    assert!(events.iter().all(|s| !is_error(s)), "{events:#?}");
}

#[test]
fn mongo_left_out_of_the_traces_list_still_feeds_the_metric() {
    let setup = Setup::start_with(&[("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,sql")]);
    setup.drive("/crud");
    setup.duration_point(&[
        ("db.system.name", "mongodb"),
        ("db.operation.name", "delete"),
    ]);
    let mongo_spans = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| attr_str(&s.attributes, "db.system.name").as_deref() == Some("mongodb"))
        .count();
    assert_eq!(mongo_spans, 0, "{:#?}", setup.receiver.spans());
    // The request itself is still traced.
    setup.request_span("/crud");
}
