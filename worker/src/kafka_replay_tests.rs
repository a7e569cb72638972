//! Kafka connections through the worker's path — connection tracker,
//! registry, decoder, spans, conventions, metrics, printer: the exchanges
//! recorded between kafka-python or `tansu cat` and a real tansu broker
//! (`worker/testdata/kafka/`), found from their bytes on any port, decoded
//! into PRODUCER and CONSUMER spans with the messaging conventions' names
//! and attributes, and into `messaging.client.operation.duration`.

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use zerotrace_shared::event::ConnectionRole;

use crate::clock::WallClock;
use crate::config::Temporality;
use crate::connections::ConnectionTracker;
use crate::db_replay_tests::{
    assert_no_span_from_the_server_or_turned_off, attributes, replay, replay_fixture,
};
use crate::exporters::trace_printer::{json_value, text_line};
use crate::metrics::red::RedMetrics;
use crate::protocols::db::fixture::{self, Cut};
use crate::protocols::registry::Protocol;
use crate::semconv;
use crate::spans::{MessagingExchange, Protocol as SpanProtocol, Span, SpanKind};

const PRODUCE: &str = include_str!("../testdata/kafka/kafka_python_produce.txt");
const CONSUME: &str = include_str!("../testdata/kafka/kafka_python_consume.txt");
const INVALID: &str = include_str!("../testdata/kafka/kafka_python_invalid_record.txt");
const TANSU_CAT: &str = include_str!("../testdata/kafka/tansu_cat_consume.txt");

fn messaging(span: &Span) -> &MessagingExchange {
    match &span.protocol {
        SpanProtocol::Messaging(messaging) => messaging,
        other => panic!("not a messaging span: {other:?}"),
    }
}

#[test]
fn produce_and_fetch_become_producer_and_consumer_spans_on_any_port() {
    for port in [9092, 19092, 5432, 40001] {
        for cut in [Cut::Whole, Cut::Pieces(7), Cut::Capture(512)] {
            let sends = replay_fixture(PRODUCE, port, cut);
            assert_eq!(sends.len(), 1, "{port} {cut:?}");
            assert_eq!(sends[0].kind, SpanKind::Producer);
            assert_eq!(sends[0].peer.port(), port);
            assert_eq!(semconv::span_name(&sends[0]), "send orders");
            let polls = replay_fixture(CONSUME, port, cut);
            assert!(!polls.is_empty(), "{port} {cut:?}");
            for poll in &polls {
                assert_eq!(poll.kind, SpanKind::Consumer);
                assert_eq!(semconv::span_name(poll), "poll orders");
            }
            let by_id = replay_fixture(TANSU_CAT, port, cut);
            assert_eq!(by_id.len(), 1);
            assert_eq!(semconv::span_name(&by_id[0]), "poll orders");
        }
    }
}

#[test]
fn spans_follow_the_messaging_conventions() {
    let send = &replay_fixture(PRODUCE, 9092, Cut::Whole)[0];
    assert!(!semconv::is_error(send));
    let attributes = attributes(send);
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.name", "send"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", "orders"),
        ("messaging.destination.partition.id", "0"),
        ("messaging.client.id", "zt-order-producer"),
        ("messaging.batch.message_count", "3"),
        ("server.address", "127.0.0.1"),
        ("server.port", "9092"),
        ("network.peer.address", "127.0.0.1"),
        ("network.peer.port", "9092"),
    ] {
        assert_eq!(
            attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(!attributes.contains_key("error.type"));

    let poll = replay_fixture(CONSUME, 9092, Cut::Whole)
        .into_iter()
        .find(|s| messaging(s).message_count == Some(3))
        .unwrap_or_else(|| panic!("no poll delivering 3"));
    let attributes = self::attributes(&poll);
    assert_eq!(attributes["messaging.operation.name"], "poll");
    assert_eq!(attributes["messaging.operation.type"], "receive");
    assert_eq!(attributes["messaging.client.id"], "zt-order-consumer");

    let refused = &replay_fixture(INVALID, 9092, Cut::Whole)[0];
    let error = semconv::error(refused).unwrap_or_else(|| panic!("not an error"));
    assert_eq!(error.error_type, "INVALID_RECORD");
    assert_eq!(self::attributes(refused)["error.type"], "INVALID_RECORD");
}

#[test]
fn the_printers_show_one_line_per_operation_with_its_error() {
    let clock = WallClock::new();
    let send = &replay_fixture(PRODUCE, 9092, Cut::Whole)[0];
    let line = text_line(send, &clock);
    assert!(
        line.contains(
            " producer python3[123] 127.0.0.1:41234 -> 127.0.0.1:9092 kafka \"send orders\" "
        ),
        "{line}"
    );
    assert!(line.contains(" messages=3 trace="), "{line}");
    let refused = &replay_fixture(INVALID, 9092, Cut::Whole)[0];
    assert!(
        text_line(refused, &clock).contains(" error=INVALID_RECORD trace="),
        "{}",
        text_line(refused, &clock)
    );
    let json = json_value(send, &clock);
    assert_eq!(json["kind"], "producer");
    assert_eq!(json["messaging"]["destination"], "orders");
    assert_eq!(json["messaging"]["client_id"], "zt-order-producer");
    assert_eq!(json["messaging"]["message_count"], 3);
}

#[test]
fn operations_feed_the_duration_histogram_with_low_cardinality_attributes() {
    let spans: Vec<Span> = [PRODUCE, CONSUME, INVALID]
        .iter()
        .flat_map(|f| replay_fixture(f, 9092, Cut::Whole))
        .collect();
    let resource = Arc::new(Resource::default());
    let mut red = RedMetrics::new(Temporality::Cumulative);
    for span in &spans {
        red.record(span, &resource, 1);
    }
    let request = red.export(10).unwrap_or_default();
    let metrics: Vec<_> = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].name, "messaging.client.operation.duration");
    assert_eq!(metrics[0].unit, "s");
    let Some(metric::Data::Histogram(histogram)) = &metrics[0].data else {
        panic!("not a histogram");
    };
    let count: u64 = histogram.data_points.iter().map(|p| p.count).sum();
    assert_eq!(count, spans.len() as u64);
    let mut errors = 0;
    for point in &histogram.data_points {
        let keys: Vec<&str> = point.attributes.iter().map(|kv| kv.key.as_str()).collect();
        for key in ["messaging.client.id", "messaging.destination.partition.id"] {
            assert!(!keys.contains(&key), "{key} in {keys:?}");
        }
        for key in [
            "messaging.system",
            "messaging.operation.name",
            "messaging.destination.name",
            "server.address",
            "server.port",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        errors += u64::from(keys.contains(&"error.type"));
    }
    assert_eq!(errors, 1, "INVALID_RECORD, one series");
}

#[test]
fn a_broker_process_and_a_protocol_turned_off_make_no_span() {
    let chunks = &fixture::connections(PRODUCE)[1];
    assert_no_span_from_the_server_or_turned_off(chunks, 9092, Protocol::Kafka);
}

#[test]
fn half_captured_and_mid_stream_connections_never_invent_operations() {
    for recording in [PRODUCE, CONSUME, TANSU_CAT] {
        let whole = replay_fixture(recording, 9092, Cut::Whole).len();
        for chunks in fixture::connections(recording) {
            for skip in 1..chunks.len() {
                let mut tracker = ConnectionTracker::new();
                let spans = replay(
                    &mut tracker,
                    1,
                    ConnectionRole::Unknown,
                    9092,
                    &chunks[skip..],
                    Cut::Whole,
                );
                assert!(spans.len() <= whole, "skip {skip}");
            }
        }
        for capture in [1, 5, 16, 64] {
            let spans = replay_fixture(recording, 9092, Cut::Capture(capture));
            assert!(spans.len() <= whole, "capture {capture}");
        }
    }
}
