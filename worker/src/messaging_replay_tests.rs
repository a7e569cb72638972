//! MQTT, AMQP 0-9-1 and NATS connections through the worker's path — connection
//! tracker, registry, decoder, spans, conventions, metrics, printer: the
//! exchanges recorded between paho-mqtt and a real mosquitto
//! (`worker/testdata/mqtt/`), between pika and a real RabbitMQ
//! (`worker/testdata/amqp/`), and between nats-py and a real nats-server
//! (`worker/testdata/nats/`), found from their bytes on any port, decoded
//! into PRODUCER spans for publishes and CONSUMER spans for deliveries, with
//! the messaging conventions' names and attributes, and into
//! `messaging.client.operation.duration` and `messaging.process.duration`.

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::clock::WallClock;
use crate::config::Temporality;
use crate::db_replay_tests::{
    assert_no_span_from_the_server_or_turned_off, attributes, replay_fixture,
};
use crate::exporters::trace_printer::text_line;
use crate::metrics::red::RedMetrics;
use crate::protocols::db::fixture::{self, Cut};
use crate::protocols::registry::Protocol;
use crate::semconv;
use crate::spans::{Span, SpanKind};

const PUBLISH: &str = include_str!("../testdata/mqtt/paho_publish.txt");
const REFUSED: &str = include_str!("../testdata/mqtt/paho_publish_refused.txt");
const CONSUME: &str = include_str!("../testdata/mqtt/paho_consume.txt");
const AMQP_PUBLISH: &str = include_str!("../testdata/amqp/pika_publish.txt");
const AMQP_CONSUME: &str = include_str!("../testdata/amqp/pika_consume.txt");
const NATS_REQUEST: &str = include_str!("../testdata/nats/nats_request.txt");
const NATS_REFUSED: &str = include_str!("../testdata/nats/nats_request_refused.txt");
const NATS_JETSTREAM: &str = include_str!("../testdata/nats/nats_jetstream.txt");
const NATS_TRACED: &str = include_str!("../testdata/nats/nats_consume_traced.txt");

#[test]
fn publishes_and_deliveries_become_producer_and_consumer_spans_on_any_port() {
    for port in [1883, 8883, 9092, 40001] {
        for cut in [Cut::Whole, Cut::Pieces(3), Cut::Capture(512)] {
            let sent = replay_fixture(PUBLISH, port, cut);
            assert_eq!(sent.len(), 3, "{port} {cut:?}");
            for span in &sent {
                assert_eq!(span.kind, SpanKind::Producer);
                assert_eq!(span.peer.port(), port);
                assert_eq!(semconv::span_name(span), "publish sensors/temp");
            }
            let consumed = replay_fixture(CONSUME, port, cut);
            let kinds: Vec<SpanKind> = consumed.iter().map(|s| s.kind).collect();
            assert_eq!(
                kinds,
                [
                    SpanKind::Consumer,
                    SpanKind::Consumer,
                    SpanKind::Consumer,
                    SpanKind::Producer,
                    SpanKind::Producer,
                    SpanKind::Producer
                ],
                "{port} {cut:?}"
            );
            assert_eq!(semconv::span_name(&consumed[0]), "process alerts/fire");
        }
    }
}

#[test]
fn spans_follow_the_messaging_conventions() {
    let sent = &replay_fixture(PUBLISH, 1883, Cut::Whole)[1];
    assert!(!semconv::is_error(sent));
    let attributes = attributes(sent);
    for (key, value) in [
        ("messaging.system", "mqtt"),
        ("messaging.operation.name", "publish"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", "sensors/temp"),
        ("messaging.client.id", "zt-publisher"),
        ("server.address", "127.0.0.1"),
        ("server.port", "1883"),
    ] {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(!attributes.contains_key("error.type"));
    assert!(!attributes.contains_key("messaging.destination.partition.id"));

    let delivered = &replay_fixture(CONSUME, 1883, Cut::Whole)[1];
    let attributes = self::attributes(delivered);
    assert_eq!(attributes["messaging.operation.name"], "process");
    assert_eq!(attributes["messaging.operation.type"], "process");
    assert_eq!(attributes["messaging.client.id"], "zt-subscriber");

    let refused = &replay_fixture(REFUSED, 1883, Cut::Whole)[0];
    let error = semconv::error(refused).unwrap_or_else(|| panic!("not an error"));
    assert_eq!(error.error_type, "NOT_AUTHORIZED");
    assert_eq!(error.message, "MQTT reason NOT_AUTHORIZED");
    let clock = WallClock::new();
    let line = text_line(refused, &clock);
    assert!(
        line.contains(" mqtt \"publish locked/door\" ") && line.contains(" error=NOT_AUTHORIZED "),
        "{line}"
    );
}

#[test]
fn publishes_and_deliveries_feed_their_own_duration_histograms() {
    let spans: Vec<Span> = [PUBLISH, REFUSED, CONSUME]
        .iter()
        .flat_map(|f| replay_fixture(f, 1883, Cut::Whole))
        .collect();
    let resource = Arc::new(Resource::default());
    let mut red = RedMetrics::new(Temporality::Cumulative);
    for span in &spans {
        red.record(span, &resource, 1);
    }
    let request = red.export(10).unwrap_or_default();
    let mut counts: Vec<(String, u64)> = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter_map(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => Some((
                m.name.clone(),
                h.data_points.iter().map(|p| p.count).sum::<u64>(),
            )),
            _ => None,
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("messaging.client.operation.duration".to_owned(), 7),
            ("messaging.process.duration".to_owned(), 3)
        ]
    );
}

#[test]
fn a_broker_process_and_a_protocol_turned_off_make_no_span() {
    let chunks = &fixture::connections(PUBLISH)[0];
    assert_no_span_from_the_server_or_turned_off(chunks, 1883, Protocol::Mqtt);
    let chunks = &fixture::connections(AMQP_PUBLISH)[0];
    assert_no_span_from_the_server_or_turned_off(chunks, 5672, Protocol::Amqp);
    let chunks = &fixture::connections(NATS_REQUEST)[1];
    assert_no_span_from_the_server_or_turned_off(chunks, 4222, Protocol::Nats);
}

/// NATS, found from the server's greeting on any port: requests are
/// PRODUCER spans up to their reply, deliveries CONSUMER spans up to the
/// client's reply or acknowledgement.
#[test]
fn nats_requests_and_deliveries_follow_the_conventions_on_any_port() {
    for port in [4222, 6222, 40001] {
        for cut in [Cut::Whole, Cut::Pieces(5), Cut::Capture(512)] {
            let spans = replay_fixture(NATS_REQUEST, port, cut);
            let kinds: Vec<SpanKind> = spans.iter().map(|s| s.kind).collect();
            assert_eq!(
                kinds,
                [SpanKind::Consumer, SpanKind::Producer, SpanKind::Producer],
                "{port} {cut:?}"
            );
            assert_eq!(replay_fixture(NATS_JETSTREAM, port, cut).len(), 8);
        }
    }
    let spans = replay_fixture(NATS_REQUEST, 4222, Cut::Whole);
    assert_eq!(semconv::span_name(&spans[0]), "process svc.add");
    let attributes = attributes(&spans[1]);
    for (key, value) in [
        ("messaging.system", "nats"),
        ("messaging.operation.name", "publish"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", "svc.add"),
        ("messaging.client.id", "zt-requester"),
        ("server.port", "4222"),
    ] {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    let unheard = &spans[2];
    let error = semconv::error(unheard).unwrap_or_else(|| panic!("not an error"));
    assert_eq!(error.error_type, "NO_RESPONDERS");
    assert_eq!(error.message, "NATS NO_RESPONDERS");
    let refused = &replay_fixture(NATS_REFUSED, 4222, Cut::Whole)[0];
    let line = text_line(refused, &WallClock::new());
    assert!(
        line.contains(" nats \"publish locked.door\" ")
            && line.contains(" error=PERMISSIONS_VIOLATION "),
        "{line}"
    );
}

#[test]
fn amqp_publishes_and_deliveries_follow_the_rabbitmq_conventions_on_any_port() {
    for port in [5672, 15672, 40001] {
        for cut in [Cut::Whole, Cut::Pieces(5), Cut::Capture(512)] {
            let sent = replay_fixture(AMQP_PUBLISH, port, cut);
            assert_eq!(sent.len(), 5, "{port} {cut:?}");
            assert!(sent.iter().all(|s| s.kind == SpanKind::Producer));
            let consumed = replay_fixture(AMQP_CONSUME, port, cut);
            let kinds: Vec<SpanKind> = consumed.iter().map(|s| s.kind).collect();
            assert_eq!(kinds[3..], [SpanKind::Consumer; 3], "{port} {cut:?}");
        }
    }
    let sent = replay_fixture(AMQP_PUBLISH, 5672, Cut::Whole);
    assert_eq!(semconv::span_name(&sent[0]), "publish amq.default");
    let attributes = attributes(&sent[0]);
    for (key, value) in [
        ("messaging.system", "rabbitmq"),
        ("messaging.operation.name", "publish"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", "amq.default"),
        ("messaging.rabbitmq.destination.routing_key", "orders"),
        ("server.port", "5672"),
    ] {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    // The publish to a missing exchange: the broker closed its channel with 404.
    let refused = &sent[4];
    assert_eq!(semconv::span_name(refused), "publish missing");
    let error = semconv::error(refused).unwrap_or_else(|| panic!("not an error"));
    assert_eq!(error.error_type, "NOT_FOUND");
    assert_eq!(error.message, "AMQP NOT_FOUND");
    let delivered = &replay_fixture(AMQP_CONSUME, 5672, Cut::Whole)[3];
    let attributes = self::attributes(delivered);
    assert_eq!(attributes["messaging.operation.name"], "process");
    assert_eq!(
        attributes["messaging.rabbitmq.destination.routing_key"],
        "jobs"
    );
}

/// A NATS message whose headers carry a traceparent: the delivery is the
/// child of the span the header names, in its trace; the publish that
/// carried it is that span (as an HTTP request carrying one is).
#[test]
fn a_nats_message_s_traceparent_places_its_spans_in_the_publisher_s_trace() {
    let trace_id: [u8; 16] = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];
    let span_id: [u8; 8] = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];
    let spans = replay_fixture(NATS_TRACED, 4222, Cut::Capture(512));
    let (delivery, publish) = (&spans[0], &spans[1]);
    assert_eq!(delivery.kind, SpanKind::Consumer);
    assert_eq!(delivery.ids.trace_id, trace_id);
    assert_eq!(delivery.ids.parent_span_id, Some(span_id));
    assert_eq!(delivery.ids.parent_sampled, Some(true));
    assert_eq!(publish.kind, SpanKind::Producer);
    assert_eq!(publish.ids.trace_id, trace_id);
    assert_eq!(publish.ids.span_id, span_id);
    // Without the header, each is a root of its own.
    let plain = replay_fixture(NATS_REQUEST, 4222, Cut::Whole);
    assert!(plain.iter().all(|s| s.ids.parent_span_id.is_none()));
}
