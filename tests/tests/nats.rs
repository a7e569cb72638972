//! NATS publishes, requests and deliveries as PRODUCER and CONSUMER spans,
//! `messaging.client.operation.duration` and `messaging.process.duration`:
//! a real server (Debian's nats-server, JetStream on,
//! tests/src/nats_server.rs), a real Python service using nats-py while it
//! serves HTTP requests (tests/servers/nats_app.py), and the real agent
//! exporting to an OTLP receiver that decodes with opentelemetry-proto.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::nats_server::{start_nats, start_nats_over_tls, NatsSetup};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The server, the instrumented service, the receiver and the agent of one test.
struct Setup {
    nats: NatsSetup,
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Setup {
    fn start_with(extra: &[(&str, &str)]) -> Setup {
        require_root();
        Setup::around(start_nats(), extra)
    }

    fn around(nats: NatsSetup, extra: &[(&str, &str)]) -> Setup {
        let receiver = OtlpReceiver::start_grpc();
        let agent = Agent::start_exporting_to(
            &["--open-port", &nats.app.port.to_string()],
            &receiver,
            extra,
        );
        Setup {
            nats,
            receiver,
            agent,
        }
    }

    /// Runs the service's scenario at `path`, which must report success.
    fn drive(&self, path: &str) {
        let body = curl(&[&self.nats.app.url(path)]);
        assert_eq!(body, "ok\n", "scenario {path} failed in nats_app.py");
    }

    /// The NATS spans on `subject` once at least `count` arrived (and a
    /// moment more, so that extra ones would show).
    fn nats_spans(&self, subject: &str, count: usize) -> Vec<Span> {
        let select = |traces: &[ReceivedTraces]| -> Vec<Span> {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| attr(s, "messaging.system").as_deref() == Some("nats"))
                .filter(|s| attr(s, "messaging.destination.name").as_deref() == Some(subject))
                .collect()
        };
        let arrived = self
            .receiver
            .wait_for_traces(Duration::from_secs(15), |traces| {
                (select(traces).len() >= count).then_some(())
            });
        assert!(
            arrived.is_some(),
            "fewer than {count} nats spans on {subject}: {:#?}\nagent stderr:\n{}",
            self.receiver.spans(),
            self.agent.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(600));
        select(&self.receiver.traces())
    }

    /// The server span of the service's request for `path`.
    fn server_span(&self, path: &str) -> Span {
        let name = format!("GET {path}");
        spans_of(&self.receiver.traces())
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.kind == span::SpanKind::Server as i32 && s.name == name)
            .unwrap_or_else(|| panic!("no server span for {path}"))
    }
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    attr_str(&span.attributes, key)
}

fn of_kind(spans: &[Span], kind: span::SpanKind) -> Vec<&Span> {
    spans.iter().filter(|s| s.kind == kind as i32).collect()
}

#[test]
fn every_scenario_of_the_service_works_against_the_real_server() {
    // Without the agent: a failure here is the fixture's, not the capture's.
    require_root();
    let nats = start_nats();
    for path in [
        "/publish",
        "/publish/large",
        "/request",
        "/request/refused",
        "/consume",
        "/consume/traced",
        "/jetstream",
        "/request/calling",
    ] {
        assert_eq!(curl(&[&nats.app.url(path)]), "ok\n", "{path}");
    }
}

#[test]
fn publishes_are_producer_spans_under_the_request_that_made_them() {
    let setup = Setup::start_with(&[]);
    setup.drive("/publish");
    let spans = setup.nats_spans("orders.created", 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let port = i64::from(setup.nats.server.port);
    // nats-py runs in the thread serving the request: its publishes are
    // that request's children.
    let server = setup.server_span("/publish");
    for publish in &spans {
        assert_eq!(publish.name, "publish orders.created");
        assert_eq!(publish.kind, span::SpanKind::Producer as i32);
        assert_eq!(
            attr(publish, "messaging.operation.name").as_deref(),
            Some("publish")
        );
        assert_eq!(
            attr(publish, "messaging.operation.type").as_deref(),
            Some("send")
        );
        assert_eq!(
            attr(publish, "messaging.client.id").as_deref(),
            Some("zt-publisher")
        );
        assert_eq!(
            attr(publish, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(attr_int(&publish.attributes, "server.port"), Some(port));
        assert!(!is_error(publish), "{publish:#?}");
        assert_eq!(publish.trace_id, server.trace_id, "{publish:#?}");
        assert_eq!(publish.parent_span_id, server.span_id, "{publish:#?}");
    }
    // 200 KB in one publish: followed by its size past the capture, and
    // the publish written after it is whole.
    setup.drive("/publish/large");
    let large = setup.nats_spans("orders.blob", 2);
    assert_eq!(large.len(), 2, "{large:#?}");
    assert!(large.iter().all(|s| !is_error(s)));
    setup.receiver.wait_for_histogram_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.system", "nats"),
            ("messaging.operation.name", "publish"),
            ("messaging.destination.name", "orders.created"),
        ],
        1,
    );
}

#[test]
fn requests_last_until_their_reply_and_a_refusal_or_no_responder_fails_them() {
    let setup = Setup::start_with(&[]);
    setup.drive("/request");
    // The requester's request, and the responder's processing of it.
    let spans = setup.nats_spans("svc.add", 2);
    let requests = of_kind(&spans, span::SpanKind::Producer);
    let processed = of_kind(&spans, span::SpanKind::Consumer);
    assert_eq!((requests.len(), processed.len()), (1, 1), "{spans:#?}");
    let (request, process) = (requests[0], processed[0]);
    assert_eq!(request.name, "publish svc.add");
    assert_eq!(
        attr(request, "messaging.client.id").as_deref(),
        Some("zt-requester")
    );
    assert!(!is_error(request), "{request:#?}");
    assert_eq!(process.name, "process svc.add");
    assert_eq!(
        attr(process, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(process, "messaging.client.id").as_deref(),
        Some("zt-responder")
    );
    // The request is written before the responder reads it and ends after
    // the responder answered.
    assert!(request.start_time_unix_nano <= process.start_time_unix_nano);
    assert!(request.end_time_unix_nano >= process.end_time_unix_nano);
    // The responder's reply is part of its processing: no publish span on
    // the requester's inbox.
    let inbox_spans = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| {
            attr(s, "messaging.destination.name").is_some_and(|d| d.starts_with("_INBOX."))
        })
        .count();
    assert_eq!(inbox_spans, 0);

    let unheard = &setup.nats_spans("svc.none", 1)[0];
    assert!(is_error(unheard), "{unheard:#?}");
    assert_eq!(
        attr(unheard, "error.type").as_deref(),
        Some("NO_RESPONDERS")
    );

    setup.drive("/request/refused");
    let refused = &setup.nats_spans("locked.door", 1)[0];
    assert!(is_error(refused), "{refused:#?}");
    assert_eq!(
        attr(refused, "error.type").as_deref(),
        Some("PERMISSIONS_VIOLATION")
    );
    setup.receiver.wait_for_histogram_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.destination.name", "locked.door"),
            ("error.type", "PERMISSIONS_VIOLATION"),
        ],
        1,
    );
}

#[test]
fn deliveries_are_consumer_spans_and_jetstream_messages_last_until_their_ack() {
    let setup = Setup::start_with(&[]);
    setup.drive("/consume");
    // Two deliveries to the subscriber, two publishes by the emitter.
    let spans = setup.nats_spans("events.login", 4);
    let delivered = of_kind(&spans, span::SpanKind::Consumer);
    assert_eq!(delivered.len(), 2, "{spans:#?}");
    for delivery in &delivered {
        assert_eq!(delivery.name, "process events.login");
        assert_eq!(
            attr(delivery, "messaging.client.id").as_deref(),
            Some("zt-subscriber")
        );
        assert!(!is_error(delivery), "{delivery:#?}");
    }
    setup.receiver.wait_for_histogram_point(
        "messaging.process.duration",
        &[
            ("messaging.system", "nats"),
            ("messaging.operation.name", "process"),
            ("messaging.destination.name", "events.login"),
        ],
        1,
    );

    setup.drive("/jetstream");
    // The stream's acknowledgement ends the publish; the pulled message is
    // processed until the client's `$JS.ACK`.
    let spans = setup.nats_spans("jobs.new", 2);
    let published = of_kind(&spans, span::SpanKind::Producer);
    let pulled = of_kind(&spans, span::SpanKind::Consumer);
    assert_eq!((published.len(), pulled.len()), (1, 1), "{spans:#?}");
    assert!(!is_error(published[0]), "{spans:#?}");
    assert!(!is_error(pulled[0]), "{spans:#?}");
    // The API's answers: the consumer lookup's 404 fails its request.
    let lookup = &setup.nats_spans("$JS.API.CONSUMER.INFO.JOBS.worker", 1)[0];
    assert_eq!(attr(lookup, "error.type").as_deref(), Some("NOT_FOUND"));
    let acks = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| {
            attr(s, "messaging.destination.name").is_some_and(|d| d.starts_with("$JS.ACK."))
        })
        .count();
    assert_eq!(acks, 0);
}

/// A message whose headers carry a traceparent (as an OpenTelemetry SDK's
/// NATS instrumentation writes it): the subscriber's processing is the child
/// of the span the header names, in its trace, and the publish that carried
/// it is that span.
#[test]
fn a_message_s_traceparent_header_places_its_spans_in_the_publisher_s_trace() {
    let setup = Setup::start_with(&[]);
    setup.drive("/consume/traced");
    let spans = setup.nats_spans("events.traced", 2);
    let trace_id = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];
    let span_id = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];
    let delivery = of_kind(&spans, span::SpanKind::Consumer)[0];
    assert_eq!(delivery.trace_id, trace_id, "{delivery:#?}");
    assert_eq!(delivery.parent_span_id, span_id, "{delivery:#?}");
    let publish = of_kind(&spans, span::SpanKind::Producer)[0];
    assert_eq!(publish.trace_id, trace_id, "{publish:#?}");
    assert_eq!(publish.span_id, span_id, "{publish:#?}");
}

#[test]
fn a_responder_s_delivery_is_its_request_s_child_and_the_parent_of_its_calls() {
    let setup = Setup::start_with(&[]);
    setup.drive("/request/calling");
    // Each job's request (the requester's) and its delivery (the responder's).
    let spans = setup.nats_spans("svc.work", 4);
    let mut requests = of_kind(&spans, span::SpanKind::Producer);
    let mut deliveries = of_kind(&spans, span::SpanKind::Consumer);
    requests.sort_by_key(|s| s.start_time_unix_nano);
    deliveries.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!((requests.len(), deliveries.len()), (2, 2), "{spans:#?}");
    let calls = setup.receiver.wait_for_calls_to("/noop/", 2);
    for (job, call) in calls.iter().enumerate() {
        assert_eq!(attr(call, "url.path"), Some(format!("/noop/{job}")));
    }
    // The responder's calls are made while it processes each request.
    assert_each_call_under_its_delivery(&deliveries, &calls);
    // Job 0's delivery to the responder is its request's child (the reply
    // subject names it), under the scenario's HTTP request; job 1's
    // headers carried its SDK's traceparent.
    let scenario = setup.server_span("/request/calling");
    assert_request_chains(Some(&scenario), &requests, &deliveries, &calls);
}

/// nats-server writes INFO in the clear, then the client upgrades the
/// connection to TLS: the greeting is read from the socket, the rest from
/// the TLS library's plaintext, one NATS connection throughout.
#[test]
fn a_connection_upgraded_to_tls_is_decoded_from_the_tls_library_s_plaintext() {
    require_root();
    let setup = Setup::around(start_nats_over_tls(), &[]);
    setup.agent.wait_for_tls_hooks(setup.nats.app.pid());
    setup.drive("/request");
    let spans = setup.nats_spans("svc.add", 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let request = of_kind(&spans, span::SpanKind::Producer)[0];
    // The client id comes from CONNECT, written after the upgrade.
    assert_eq!(
        attr(request, "messaging.client.id").as_deref(),
        Some("zt-requester")
    );
    assert!(!is_error(request), "{request:#?}");
    let unheard = &setup.nats_spans("svc.none", 1)[0];
    assert_eq!(
        attr(unheard, "error.type").as_deref(),
        Some("NO_RESPONDERS")
    );
    let server = setup.server_span("/request");
    assert_eq!(request.parent_span_id, server.span_id, "{request:#?}");
}

#[test]
fn a_connection_opened_before_the_agent_is_decoded_from_its_next_message() {
    require_root();
    let nats = start_nats();
    assert_eq!(curl(&[&nats.app.url("/long-lived/open")]), "ok\n");
    let receiver = OtlpReceiver::start_grpc();
    let agent =
        Agent::start_exporting_to(&["--open-port", &nats.app.port.to_string()], &receiver, &[]);
    let setup = Setup {
        nats,
        receiver,
        agent,
    };
    setup.drive("/long-lived/publish");
    let spans = setup.nats_spans("orders.kept", 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for publish in &spans {
        assert_eq!(publish.name, "publish orders.kept");
        assert!(!is_error(publish), "{publish:#?}");
        // CONNECT came before the agent: no client id.
        assert_eq!(attr(publish, "messaging.client.id"), None);
    }
}

#[test]
fn nats_left_out_of_the_traces_list_still_feeds_the_metric() {
    let setup = Setup::start_with(&[("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,kafka")]);
    setup.drive("/publish");
    setup.receiver.wait_for_histogram_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.system", "nats"),
            ("messaging.operation.name", "publish"),
        ],
        1,
    );
    let nats_spans = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| attr(s, "messaging.system").as_deref() == Some("nats"))
        .count();
    assert_eq!(nats_spans, 0, "{:#?}", setup.receiver.spans());
}
