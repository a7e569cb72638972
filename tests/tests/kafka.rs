//! Kafka produce and fetch as PRODUCER and CONSUMER spans and
//! `messaging.client.operation.duration`: a real broker (tansu, started once
//! for this file by tests/src/kafka_broker.rs), a real Python service using
//! kafka-python while it serves HTTP requests (tests/servers/kafka_app.py),
//! and the real agent exporting to an OTLP receiver that decodes with
//! opentelemetry-proto.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::kafka_broker::{kafka_broker, start_kafka_app, KafkaBroker};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The broker, the instrumented service, the receiver and the agent of one test.
struct Setup {
    broker: &'static KafkaBroker,
    app: Server,
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Setup {
    fn start_with(extra: &[(&str, &str)]) -> Setup {
        require_root();
        let broker = kafka_broker();
        let app = start_kafka_app(broker);
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
        assert_eq!(body, "ok\n", "scenario {path} failed in kafka_app.py");
    }

    /// The spans of `kind` whose `messaging.destination.name` is `topic`,
    /// once `enough` says they are enough (and a moment more).
    fn kafka_spans(
        &self,
        kind: span::SpanKind,
        topic: &str,
        enough: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let select = |traces: &[ReceivedTraces]| -> Vec<Span> {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.kind == kind as i32)
                .filter(|s| attr_str(&s.attributes, "messaging.system").as_deref() == Some("kafka"))
                .filter(|s| {
                    attr_str(&s.attributes, "messaging.destination.name").as_deref() == Some(topic)
                })
                .collect()
        };
        let arrived = self
            .receiver
            .wait_for_traces(Duration::from_secs(20), |traces| {
                enough(&select(traces)).then_some(())
            });
        assert!(
            arrived.is_some(),
            "not enough {kind:?} spans for {topic}: {:#?}\nagent stderr:\n{}",
            self.receiver.spans(),
            self.agent.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(600));
        select(&self.receiver.traces())
    }

    /// A data point of `messaging.client.operation.duration` with `attributes`.
    fn duration_point(&self, attributes: &[(&str, &str)]) -> HistogramDataPoint {
        self.receiver
            .wait_for_histogram_point("messaging.client.operation.duration", attributes, 1)
    }
}

fn attrs(span: &Span) -> BTreeMap<String, String> {
    attrs_map(&span.attributes)
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32)
}

fn get<'a>(attributes: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    attributes.get(key).map(String::as_str)
}

#[test]
fn every_scenario_of_the_service_works_against_the_real_broker() {
    // Without the agent: a failure here is the fixture's, not the capture's.
    require_root();
    let app = start_kafka_app(kafka_broker());
    for path in ["/produce", "/consume", "/produce/invalid", "/tansu-cat"] {
        let body = curl(&[&app.url(path)]);
        assert_eq!(body, "ok\n", "{path}");
    }
}

#[test]
fn produce_and_fetch_are_producer_and_consumer_spans_with_their_topic() {
    let metrics_port = free_port().to_string();
    let setup = Setup::start_with(&[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port)]);
    setup.drive("/produce");
    let producers = setup.kafka_spans(span::SpanKind::Producer, "orders", |s| {
        s.iter().any(|s| {
            attr_str(&s.attributes, "messaging.client.id").as_deref() == Some("zt-order-producer")
        })
    });
    let send = producers
        .iter()
        .find(|s| {
            attr_str(&s.attributes, "messaging.client.id").as_deref() == Some("zt-order-producer")
        })
        .unwrap_or_else(|| panic!("{producers:#?}"));
    assert_eq!(send.name, "send orders");
    let a = attrs(send);
    assert_eq!(get(&a, "messaging.operation.name"), Some("send"));
    assert_eq!(get(&a, "messaging.operation.type"), Some("send"));
    assert_eq!(get(&a, "messaging.destination.partition.id"), Some("0"));
    assert_eq!(
        get(&a, "messaging.batch.message_count"),
        Some("3"),
        "{send:#?}"
    );
    assert_eq!(get(&a, "server.address"), Some("127.0.0.1"));
    assert_eq!(
        attr_int(&send.attributes, "server.port"),
        Some(i64::from(setup.broker.port))
    );
    assert!(!is_error(send), "{send:#?}");
    assert!(send.end_time_unix_nano >= send.start_time_unix_nano);

    setup.drive("/consume");
    let consumers = setup.kafka_spans(span::SpanKind::Consumer, "orders", |s| {
        s.iter().any(|s| {
            attr_int(&s.attributes, "messaging.batch.message_count").is_some_and(|n| n >= 3)
        })
    });
    for poll in &consumers {
        assert_eq!(poll.name, "poll orders");
        let a = attrs(poll);
        assert_eq!(get(&a, "messaging.operation.name"), Some("poll"));
        assert_eq!(get(&a, "messaging.operation.type"), Some("receive"));
        assert_eq!(get(&a, "messaging.client.id"), Some("zt-order-consumer"));
        assert_eq!(get(&a, "messaging.destination.partition.id"), Some("0"));
        assert!(!is_error(poll), "{poll:#?}");
    }

    // kafka-python polls in the calling thread: the polls are children of
    // the request being served (its producer sends from a thread of its own,
    // so a send has no parent: threads do not tie it to a request).
    let server = spans_of(&setup.receiver.traces())
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == span::SpanKind::Server as i32 && s.name == "GET /consume")
        .unwrap_or_else(|| panic!("no server span for /consume"));
    for poll in &consumers {
        assert_eq!(poll.trace_id, server.trace_id, "{poll:#?}");
        assert_eq!(poll.parent_span_id, server.span_id, "{poll:#?}");
    }

    for operation in ["send", "poll"] {
        let point = setup.duration_point(&[
            ("messaging.system", "kafka"),
            ("messaging.operation.name", operation),
            ("messaging.destination.name", "orders"),
        ]);
        let map = attrs_map(&point.attributes);
        assert!(!map.contains_key("messaging.client.id"), "{map:?}");
    }
    // The same histogram on the Prometheus endpoint, in seconds.
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let scraped = wait_for(Duration::from_secs(10), || {
        curl(&[&url])
            .lines()
            .any(|l| {
                l.starts_with("messaging_client_operation_duration_seconds_count{")
                    && l.contains("messaging_operation_name=\"send\"")
                    && l.contains("messaging_destination_name=\"orders\"")
            })
            .then_some(())
    });
    assert!(scraped.is_some(), "{}", curl(&[&url]));
}

#[test]
fn a_produce_the_broker_refuses_is_an_error_span() {
    let setup = Setup::start_with(&[]);
    setup.drive("/produce/invalid");
    let spans = setup.kafka_spans(span::SpanKind::Producer, "payments", |s| !s.is_empty());
    let refused = &spans[0];
    assert_eq!(refused.name, "send payments");
    assert!(is_error(refused), "{refused:#?}");
    let a = attrs(refused);
    assert_eq!(
        get(&a, "error.type"),
        Some("INVALID_RECORD"),
        "{refused:#?}"
    );
    assert_eq!(get(&a, "messaging.client.id"), Some("zt-payment-producer"));
    setup.duration_point(&[
        ("messaging.destination.name", "payments"),
        ("error.type", "INVALID_RECORD"),
    ]);
}

#[test]
fn kafka_left_out_of_the_traces_list_still_feeds_the_metric() {
    let setup = Setup::start_with(&[("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http")]);
    setup.drive("/produce");
    setup.duration_point(&[
        ("messaging.operation.name", "send"),
        ("messaging.destination.name", "orders"),
    ]);
    let kafka_spans = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| attr_str(&s.attributes, "messaging.system").is_some())
        .count();
    assert_eq!(kafka_spans, 0, "{:#?}", setup.receiver.spans());
}

#[test]
fn the_text_printer_prints_a_line_per_operation_with_its_error() {
    require_root();
    let broker = kafka_broker();
    let app = start_kafka_app(broker);
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
    let body = curl(&[&app.url("/produce/invalid")]);
    assert_eq!(body, "ok\n");
    let process = format!("producer python3[{}] 127.0.0.1:", app.pid());
    let peer = format!("-> 127.0.0.1:{} kafka \"send payments\" ", broker.port);
    let line = wait_for(Duration::from_secs(10), || {
        agent.stdout.snapshot().into_iter().find(|l| {
            l.contains(&process) && l.contains(&peer) && l.contains(" error=INVALID_RECORD")
        })
    });
    assert!(
        line.is_some(),
        "no printed line for the refused produce:\n{}",
        agent.stdout.text()
    );
}

#[test]
fn a_fetch_by_topic_id_is_named_from_the_metadata_before_it() {
    // `tansu cat consume`, the service's child: Metadata v12 gives the
    // topic id, Fetch v17 asks by id on the same connection.
    let setup = Setup::start_with(&[]);
    setup.drive("/produce");
    setup.drive("/tansu-cat");
    let polls = setup.kafka_spans(span::SpanKind::Consumer, "orders", |s| {
        s.iter()
            .any(|s| attr_str(&s.attributes, "messaging.client.id").as_deref() == Some("tansu-cat"))
    });
    let poll = polls
        .iter()
        .find(|s| attr_str(&s.attributes, "messaging.client.id").as_deref() == Some("tansu-cat"))
        .unwrap_or_else(|| panic!("{polls:#?}"));
    assert_eq!(poll.name, "poll orders");
    assert!(!is_error(poll), "{poll:#?}");
    // From offset 0: every test's messages, a response larger than the
    // capture of a read, so the count may be unknown; never a wrong one.
    if let Some(count) = attr_int(&poll.attributes, "messaging.batch.message_count") {
        assert!(count >= 3, "{poll:#?}");
    }
}
