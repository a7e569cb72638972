//! MQTT publishes and deliveries as PRODUCER and CONSUMER spans,
//! `messaging.client.operation.duration` and `messaging.process.duration`:
//! a real broker (Debian's mosquitto, tests/src/mqtt_broker.rs), a real
//! Python service using Debian's paho-mqtt while it serves HTTP requests
//! (tests/servers/mqtt_app.py), and the real agent exporting to an OTLP
//! receiver that decodes with opentelemetry-proto.

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use zerotrace_integration_tests::mqtt_broker::{start_mqtt, MqttSetup};
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;

/// The broker, the instrumented service, the receiver and the agent of one test.
struct Setup {
    mqtt: MqttSetup,
    receiver: OtlpReceiver,
    agent: Agent,
}

impl Setup {
    fn start_with(extra: &[(&str, &str)]) -> Setup {
        require_root();
        let mqtt = start_mqtt();
        let receiver = OtlpReceiver::start_grpc();
        let agent = Agent::start_exporting_to(
            &["--open-port", &mqtt.app.port.to_string()],
            &receiver,
            extra,
        );
        Setup {
            mqtt,
            receiver,
            agent,
        }
    }

    /// Runs the service's scenario at `path`, which must report success.
    fn drive(&self, path: &str) {
        let body = curl(&[&self.mqtt.app.url(path)]);
        assert_eq!(body, "ok\n", "scenario {path} failed in mqtt_app.py");
    }

    /// The MQTT spans on `topic` once at least `count` arrived (and a
    /// moment more, so that extra ones would show).
    fn mqtt_spans(&self, topic: &str, count: usize) -> Vec<Span> {
        let select = |traces: &[ReceivedTraces]| -> Vec<Span> {
            spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| attr_str(&s.attributes, "messaging.system").as_deref() == Some("mqtt"))
                .filter(|s| {
                    attr_str(&s.attributes, "messaging.destination.name").as_deref() == Some(topic)
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
            "fewer than {count} mqtt spans on {topic}: {:#?}\nagent stderr:\n{}",
            self.receiver.spans(),
            self.agent.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(600));
        select(&self.receiver.traces())
    }

    /// A data point of the histogram `name` with `attributes`.
    fn duration_point(&self, name: &str, attributes: &[(&str, &str)]) -> HistogramDataPoint {
        self.receiver.wait_for_histogram_point(name, attributes, 1)
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
    let mqtt = start_mqtt();
    for path in [
        "/publish",
        "/publish/large",
        "/publish/refused",
        "/consume",
        "/consume/calling",
        "/request",
    ] {
        assert_eq!(curl(&[&mqtt.app.url(path)]), "ok\n", "{path}");
    }
}

#[test]
fn publishes_are_producer_spans_with_their_topic_and_client_id() {
    let setup = Setup::start_with(&[]);
    setup.drive("/publish");
    let spans = setup.mqtt_spans("sensors/temp", 3);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let port = i64::from(setup.mqtt.broker.port);
    for publish in &spans {
        assert_eq!(publish.name, "publish sensors/temp");
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
        assert!(publish.end_time_unix_nano >= publish.start_time_unix_nano);
    }
    // 100 KB in one publish: followed by its length past the capture, and
    // the publish after it is whole.
    setup.drive("/publish/large");
    let large = setup.mqtt_spans("sensors/blob", 2);
    assert_eq!(large.len(), 2, "{large:#?}");
    assert!(large.iter().all(|s| !is_error(s)));
    setup.duration_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.system", "mqtt"),
            ("messaging.operation.name", "publish"),
            ("messaging.destination.name", "sensors/temp"),
        ],
    );
}

#[test]
fn a_publish_the_broker_refuses_is_an_error_span() {
    let setup = Setup::start_with(&[]);
    setup.drive("/publish/refused");
    let spans = setup.mqtt_spans("locked/door", 1);
    let refused = &spans[0];
    assert_eq!(refused.name, "publish locked/door");
    assert!(is_error(refused), "{refused:#?}");
    assert_eq!(
        attr(refused, "error.type").as_deref(),
        Some("NOT_AUTHORIZED")
    );
    assert_eq!(
        attr(refused, "messaging.client.id").as_deref(),
        Some("zt-v5-publisher")
    );
    setup.duration_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.destination.name", "locked/door"),
            ("error.type", "NOT_AUTHORIZED"),
        ],
    );
}

#[test]
fn a_subscriber_s_calls_are_children_of_the_message_it_was_processing() {
    let setup = Setup::start_with(&[]);
    setup.drive("/consume/calling");
    // Two publishes by the dispatcher, two deliveries to the subscriber.
    let spans = setup.mqtt_spans("alerts/jobs", 4);
    let mut deliveries: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == span::SpanKind::Consumer as i32)
        .collect();
    deliveries.sort_by_key(|s| s.start_time_unix_nano);
    let calls = setup.receiver.wait_for_calls_to("/noop/", 2);
    for (job, call) in calls.iter().enumerate() {
        assert_eq!(attr(call, "url.path"), Some(format!("/noop/{job}")));
    }
    // paho acknowledges once `on_message` returned, on its network thread.
    assert_each_call_under_its_delivery(&deliveries, &calls);
}

#[test]
fn an_mqtt_5_request_s_delivery_to_the_responder_is_its_child_and_the_parent_of_its_calls() {
    let setup = Setup::start_with(&[]);
    setup.drive("/request");
    // Each job's request and its delivery to the responder.
    let spans = setup.mqtt_spans("sensors/work", 4);
    let of_kind = |kind: span::SpanKind| {
        let mut found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind as i32).collect();
        found.sort_by_key(|s| s.start_time_unix_nano);
        found
    };
    let requests = of_kind(span::SpanKind::Producer);
    let deliveries = of_kind(span::SpanKind::Consumer);
    assert_eq!((requests.len(), deliveries.len()), (2, 2), "{spans:#?}");
    let calls = setup.receiver.wait_for_calls_to("/noop/", 2);
    for (job, call) in calls.iter().enumerate() {
        assert_eq!(attr(call, "url.path"), Some(format!("/noop/{job}")));
    }
    assert_each_call_under_its_delivery(&deliveries, &calls);
    // The response topic and correlation data name each request. paho
    // writes a publish from its network thread, not the scenario's: the
    // request is not nested under the HTTP request.
    assert_request_chains(None, &requests, &deliveries, &calls);
}

#[test]
fn deliveries_are_consumer_spans_up_to_the_client_s_acknowledgement() {
    let setup = Setup::start_with(&[]);
    setup.drive("/consume");
    // Three deliveries to the subscriber, three publishes by the alerter.
    let spans = setup.mqtt_spans("alerts/fire", 6);
    let delivered: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == span::SpanKind::Consumer as i32)
        .collect();
    assert_eq!(delivered.len(), 3, "{spans:#?}");
    for delivery in &delivered {
        assert_eq!(delivery.name, "process alerts/fire");
        assert_eq!(
            attr(delivery, "messaging.operation.type").as_deref(),
            Some("process")
        );
        assert_eq!(
            attr(delivery, "messaging.client.id").as_deref(),
            Some("zt-subscriber")
        );
        assert!(!is_error(delivery), "{delivery:#?}");
    }
    let published = spans
        .iter()
        .filter(|s| attr(s, "messaging.client.id").as_deref() == Some("zt-alerter"))
        .count();
    assert_eq!(published, 3, "{spans:#?}");
    setup.duration_point(
        "messaging.process.duration",
        &[
            ("messaging.system", "mqtt"),
            ("messaging.operation.name", "process"),
            ("messaging.destination.name", "alerts/fire"),
        ],
    );
}

#[test]
fn a_connection_opened_before_the_agent_is_decoded_from_the_client_s_next_packet() {
    require_root();
    let mqtt = start_mqtt();
    assert_eq!(curl(&[&mqtt.app.url("/long-lived/open")]), "ok\n");
    let receiver = OtlpReceiver::start_grpc();
    let agent =
        Agent::start_exporting_to(&["--open-port", &mqtt.app.port.to_string()], &receiver, &[]);
    let setup = Setup {
        mqtt,
        receiver,
        agent,
    };
    setup.drive("/long-lived/publish");
    let spans = setup.mqtt_spans("sensors/kept", 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for publish in &spans {
        assert_eq!(publish.name, "publish sensors/kept");
        assert!(!is_error(publish), "{publish:#?}");
        // CONNECT came before the agent: no client id.
        assert_eq!(attr(publish, "messaging.client.id"), None);
    }
}

#[test]
fn mqtt_left_out_of_the_traces_list_still_feeds_the_metric() {
    let setup = Setup::start_with(&[("OTEL_EBPF_OTEL_TRACES_INSTRUMENTATIONS", "http,kafka")]);
    setup.drive("/publish");
    setup.duration_point(
        "messaging.client.operation.duration",
        &[
            ("messaging.system", "mqtt"),
            ("messaging.operation.name", "publish"),
        ],
    );
    let mqtt_spans = spans_of(&setup.receiver.traces())
        .into_iter()
        .filter(|(_, s)| attr_str(&s.attributes, "messaging.system").as_deref() == Some("mqtt"))
        .count();
    assert_eq!(mqtt_spans, 0, "{:#?}", setup.receiver.spans());
}
