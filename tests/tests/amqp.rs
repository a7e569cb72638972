//! AMQP 0-9-1 publishes and deliveries as PRODUCER and CONSUMER spans,
//! `messaging.client.operation.duration` and `messaging.process.duration`:
//! a real broker (Debian's RabbitMQ, started once for this file by
//! tests/src/amqp_broker.rs), a real Python service using Debian's pika
//! while it serves HTTP requests (tests/servers/amqp_app.py), and the real
//! agent exporting to an OTLP receiver that decodes with opentelemetry-proto.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::amqp_broker::{amqp_broker, start_amqp_app, AmqpBroker};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The broker, the instrumented service, the receiver and the agent of one test.
struct Setup {
    broker: &'static AmqpBroker,
    app: Server,
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Setup {
    fn start_with(extra: &[(&str, &str)]) -> Setup {
        require_root();
        let broker = amqp_broker();
        let app = start_amqp_app(broker);
        let receiver = OtlpReceiver::start_grpc();
        let agent =
            Agent::start_exporting_to(&["--open-port", &app.port.to_string()], &receiver, extra);
        Setup {
            broker,
            app,
            receiver,
            agent,
        }
    }

    /// Runs the service's scenario at `path`, which must report success.
    fn drive(&self, path: &str) {
        let body = curl(&[&self.app.url(path)]);
        assert_eq!(body, "ok\n", "scenario {path} failed in amqp_app.py");
    }

    /// The RabbitMQ spans whose routing key (or exchange, for a fanout
    /// without one) starts with `destination`, once at least `count`
    /// arrived (and a moment more, so that extra ones would show).
    fn amqp_spans(&self, destination: &str, count: usize) -> Vec<Span> {
        let select = |traces: &[ReceivedTraces]| -> Vec<Span> {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| {
                    attr_str(&s.attributes, "messaging.system").as_deref() == Some("rabbitmq")
                })
                .filter(|s| {
                    attr_str(&s.attributes, "messaging.rabbitmq.destination.routing_key")
                        .or_else(|| attr_str(&s.attributes, "messaging.destination.name"))
                        .is_some_and(|d| d.starts_with(destination))
                })
                .collect()
        };
        let arrived = self
            .receiver
            .wait_for_traces(Duration::from_secs(15), |traces| {
                (select(traces).len() >= count).then_some(())
            });
        assert!(
            arrived.is_some(),
            "fewer than {count} rabbitmq spans for {destination}: {:#?}\nagent stderr:\n{}",
            self.receiver.spans(),
            self.agent.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(600));
        select(&self.receiver.traces())
    }
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    attr_str(&span.attributes, key)
}

#[test]
fn every_scenario_of_the_service_works_against_the_real_broker() {
    // Without the agent: a failure here is the fixture's, not the capture's.
    require_root();
    let app = start_amqp_app(amqp_broker());
    for path in [
        "/publish",
        "/publish/large",
        "/consume",
        "/consume/calling",
        "/consume/calling/batched",
        "/rpc",
    ] {
        assert_eq!(curl(&[&app.url(path)]), "ok\n", "{path}");
    }
}

#[test]
fn publishes_are_producer_spans_and_a_refused_one_is_an_error() {
    let setup = Setup::start_with(&[]);
    setup.drive("/publish");
    let spans = setup.amqp_spans("orders", 5);
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let port = i64::from(setup.broker.port);
    for publish in &spans {
        assert_eq!(publish.kind, span::SpanKind::Producer as i32);
        assert_eq!(
            attr(publish, "messaging.operation.name").as_deref(),
            Some("publish")
        );
        assert_eq!(
            attr(publish, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(attr_int(&publish.attributes, "server.port"), Some(port));
        assert!(publish.end_time_unix_nano >= publish.start_time_unix_nano);
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "publish amq.default",
            "publish amq.default",
            "publish amq.default",
            "publish amq.default",
            "publish missing"
        ],
        "{spans:#?}"
    );
    assert!(spans[..4].iter().all(|s| !is_error(s)), "{spans:#?}");
    // The exchange does not exist: the broker closes the channel with 404.
    assert!(is_error(&spans[4]), "{:#?}", spans[4]);
    assert_eq!(attr(&spans[4], "error.type").as_deref(), Some("NOT_FOUND"));
    setup.receiver.wait_for_histogram_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.name", "publish"),
            ("messaging.destination.name", "missing"),
            ("error.type", "NOT_FOUND"),
        ],
        1,
    );
    // 200 KB in two body frames, confirmed, then a small message.
    setup.drive("/publish/large");
    let blobs = setup.amqp_spans("blobs", 2);
    assert_eq!(blobs.len(), 2, "{blobs:#?}");
    assert!(blobs.iter().all(|s| !is_error(s)), "{blobs:#?}");
}

#[test]
fn deliveries_are_consumer_spans_up_to_the_client_s_acknowledgement() {
    let setup = Setup::start_with(&[]);
    setup.drive("/consume");
    // The service's queue of this call: `jobs-…`.
    let spans = setup.amqp_spans("jobs-", 6);
    let delivered: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == span::SpanKind::Consumer as i32)
        .collect();
    assert_eq!(delivered.len(), 3, "{spans:#?}");
    for delivery in &delivered {
        assert_eq!(delivery.name, "process amq.default");
        assert_eq!(
            attr(delivery, "messaging.operation.type").as_deref(),
            Some("process")
        );
        assert!(!is_error(delivery), "{delivery:#?}");
    }
    setup.receiver.wait_for_histogram_point(
        "messaging.process.duration",
        &[
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.name", "process"),
        ],
        3,
    );
}

/// A job's delivery and the HTTP call its consumer made for it
/// (`/noop/{job}`), in the order they were consumed.
fn deliveries_and_their_calls(setup: &Setup) -> (Vec<Span>, Vec<Span>) {
    let mut deliveries: Vec<Span> = setup
        .amqp_spans("calls-", 3)
        .into_iter()
        .filter(|s| s.kind == span::SpanKind::Consumer as i32)
        .collect();
    // No delivery is another's parent (nor the scenario's request's: it
    // ran on another thread).
    for delivery in &deliveries {
        assert_eq!(delivery.parent_span_id, Vec::<u8>::new(), "{delivery:#?}");
    }
    // Read together, they start at once: acknowledged in order.
    deliveries.sort_by_key(|s| (s.start_time_unix_nano, s.end_time_unix_nano));
    let calls = setup.receiver.wait_for_calls_to("/noop/", 3);
    assert_eq!(deliveries.len(), 3, "{deliveries:#?}");
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for (job, call) in calls.iter().enumerate() {
        assert_eq!(attr(call, "url.path"), Some(format!("/noop/{job}")));
    }
    (deliveries, calls)
}

#[test]
fn a_call_made_while_a_delivery_is_processed_is_its_child() {
    let setup = Setup::start_with(&[]);
    // One delivery at a time (prefetch 1, as consumers that acknowledge
    // after their work are told to run).
    setup.drive("/consume/calling");
    let (deliveries, calls) = deliveries_and_their_calls(&setup);
    assert_each_call_under_its_delivery(&deliveries.iter().collect::<Vec<_>>(), &calls);
    // The service's side of each call is the call's child: one trace from
    // the delivery down.
    let served: Vec<Span> = spans_of(&setup.receiver.traces())
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == span::SpanKind::Server as i32)
        .filter(|s| attr(s, "url.path").is_some_and(|p| p.starts_with("/noop/")))
        .collect();
    assert_eq!(served.len(), 3, "{served:#?}");
    for server in &served {
        let call = calls
            .iter()
            .find(|c| attr(c, "url.path") == attr(server, "url.path"));
        let call = call.unwrap_or_else(|| panic!("no call for {server:#?}"));
        assert_eq!(
            (&server.trace_id, &server.parent_span_id),
            (&call.trace_id, &call.span_id),
            "{server:#?}\n{call:#?}"
        );
    }
}

#[test]
fn deliveries_read_together_never_give_a_call_another_job_s_delivery() {
    let setup = Setup::start_with(&[]);
    // No prefetch limit: the broker pushes the three jobs at once, and
    // the consumer processes them one after the other. A call that lies
    // in two unacknowledged deliveries cannot be told; one that lies in
    // its own alone is nested.
    setup.drive("/consume/calling/batched");
    let (deliveries, calls) = deliveries_and_their_calls(&setup);
    for (job, call) in calls.iter().enumerate() {
        if call.parent_span_id.is_empty() {
            continue;
        }
        assert_eq!(
            (&call.trace_id, &call.parent_span_id),
            (&deliveries[job].trace_id, &deliveries[job].span_id),
            "job {job}'s call under another's delivery:\n{call:#?}\n{deliveries:#?}"
        );
    }
    // The last job's delivery is the only one left unacknowledged around its call.
    assert!(!calls[2].parent_span_id.is_empty(), "{calls:#?}");
}

#[test]
fn an_rpc_request_s_delivery_to_the_responder_is_its_child_and_the_parent_of_its_calls() {
    let setup = Setup::start_with(&[]);
    setup.drive("/rpc");
    // Each job's request (published to `rpc-…`) and its delivery to the responder.
    let spans = setup.amqp_spans("rpc-", 4);
    let of_kind = |kind: span::SpanKind| {
        let mut found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind as i32).collect();
        found.sort_by_key(|s| s.start_time_unix_nano);
        found
    };
    let (requests, deliveries) = (
        of_kind(span::SpanKind::Producer),
        of_kind(span::SpanKind::Consumer),
    );
    assert_eq!((requests.len(), deliveries.len()), (2, 2), "{spans:#?}");
    let calls = setup.receiver.wait_for_calls_to("/noop/", 2);
    for (job, call) in calls.iter().enumerate() {
        assert_eq!(attr(call, "url.path"), Some(format!("/noop/{job}")));
    }
    assert_each_call_under_its_delivery(&deliveries, &calls);
    // Job 0's delivery to the responder is its request's child (the
    // correlation id names it), under the scenario's HTTP request; job 1's
    // headers carried its SDK's traceparent.
    let scenario = spans_of(&setup.receiver.traces())
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == span::SpanKind::Server as i32 && s.name == "GET /rpc")
        .unwrap_or_else(|| panic!("no server span for /rpc"));
    assert_request_chains(Some(&scenario), &requests, &deliveries, &calls);
}

#[test]
fn a_connection_opened_before_the_agent_is_decoded_from_its_next_frame() {
    require_root();
    let broker = amqp_broker();
    let app = start_amqp_app(broker);
    let open = curl(&[&app.url("/long-lived/open")]);
    assert_eq!(open, "ok\n");
    let receiver = OtlpReceiver::start_grpc();
    let agent = Agent::start_exporting_to(&["--open-port", &app.port.to_string()], &receiver, &[]);
    let setup = Setup {
        broker,
        app,
        receiver,
        agent,
    };
    setup.drive("/long-lived/publish");
    let spans = setup.amqp_spans("long-lived", 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for publish in &spans {
        assert_eq!(publish.name, "publish amq.default");
        assert!(!is_error(publish), "{publish:#?}");
    }
}

#[test]
fn amqp_left_out_of_the_traces_list_still_feeds_the_metric() {
    let setup = Setup::start_with(&[("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,mqtt")]);
    setup.drive("/consume");
    setup.receiver.wait_for_histogram_point(
        "messaging.client.operation.duration",
        &[("messaging.system", "rabbitmq")],
        3,
    );
    let amqp_spans = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| attr_str(&s.attributes, "messaging.system").as_deref() == Some("rabbitmq"))
        .count();
    assert_eq!(amqp_spans, 0, "{:#?}", setup.receiver.spans());
}
