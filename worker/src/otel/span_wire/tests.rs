//! The bytes written here against prost's encoding of the messages
//! `encode_span` builds, and decoded back by prost.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use proptest::prelude::*;
use prost::Message;

use super::{append_span, export_request, scope_bytes, ProcessSpans};
use crate::clock::WallClock;
use crate::otel::attribute_blocks::AttributeBlocks;
use crate::otel::resource::string_attribute;
use crate::otel::span_encoding::encode_span;
use crate::spans::{
    DbExchange, DbSystem, GrpcCall, GrpcExchange, HttpExchange, MessagingExchange,
    MessagingOperation, MessagingSystem, Protocol, Span, SpanKind, SpanOrigin,
};

fn origin(kind: SpanKind, pid: u32, local: &str, peer: &str) -> SpanOrigin {
    SpanOrigin {
        kind,
        pid,
        process_name: "app".into(),
        local: local.parse().unwrap_or_else(|e| panic!("{local}: {e}")),
        peer: peer.parse().unwrap_or_else(|e| panic!("{peer}: {e}")),
        tls: false,
    }
}

fn exchange(method: &str, target: &str, status: u16) -> HttpExchange {
    HttpExchange {
        method: method.to_owned().into(),
        target: target.into(),
        status,
        protocol_version: "1.1",
        request_body_bytes: 0,
        response_body_bytes: 17,
        host: None,
        traceparent: None,
        user_agent: Some(std::sync::Arc::new(
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
        )),
        route: None,
    }
}

fn http_span(origin: SpanOrigin, http: HttpExchange, times: (u64, u64)) -> Span {
    Span::new(origin, times, false, Protocol::Http(http))
}

/// Spans of every protocol and shape the conventions tell apart.
fn spans() -> Vec<Span> {
    let server = origin(SpanKind::Server, 7, "127.0.0.1:8080", "127.0.0.1:40000");
    let client = origin(SpanKind::Client, 8, "10.0.0.2:50000", "[2001:db8::1]:443");
    let mut spans = vec![
        http_span(server.clone(), exchange("GET", "/", 200), (1_000, 5_000)),
        http_span(
            server.clone(),
            HttpExchange {
                host: Some("shop.example:8443".into()),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
                route: Some("/users/{id}".into()),
                request_body_bytes: 1 << 40,
                ..exchange("POST", "/users/7?full=1", 503)
            },
            (0, u64::MAX / 2),
        ),
        http_span(server.clone(), exchange("BREW", "*", 418), (5, 5)),
        // Longer than 16 KiB: its length takes three bytes, not the two kept for it.
        http_span(
            server.clone(),
            exchange("GET", &format!("/{}", "a".repeat(20_000)), 200),
            (5, 6),
        ),
        http_span(client.clone(), exchange("GET", "/a?b=c", 404), (9, 99)),
        http_span(
            client.clone(),
            HttpExchange {
                host: Some("[::1]:9000".into()),
                ..exchange("PUT", "/x", 201)
            },
            (9, 99),
        ),
        Span::new(
            server.clone(),
            (1, 2),
            true,
            Protocol::Grpc(GrpcExchange {
                call: GrpcCall {
                    service: "shop.Catalog".into(),
                    method: "GetItem".into(),
                    status_code: Some(14),
                    message: Some("unavailable: é".into()),
                },
                http: HttpExchange {
                    protocol_version: "2",
                    ..exchange("POST", "/shop.Catalog/GetItem", 200)
                },
            }),
        ),
    ];
    let db = DbExchange {
        system: DbSystem::Postgresql,
        operation: "SELECT".into(),
        collection: Some("users".into()),
        namespace: Some("shop".into()),
        query_text: Some("SELECT * FROM users WHERE id = ?".into()),
        status_code: Some("42P01".into()),
        error_type: Some("42P01".into()),
        error_message: Some("relation does not exist".into()),
        rows: None,
        rows_returned: false,
        request_bytes: 40,
        response_bytes: 90,
        name: String::new(),
    }
    .named();
    spans.push(Span::new(client.clone(), (3, 4), false, Protocol::Db(db)));
    let mut produce = MessagingExchange::new(MessagingSystem::Kafka, MessagingOperation::Send);
    produce.destination = Some("orders".into());
    produce.partition = Some(-1);
    produce.client_id = Some("".into());
    produce.message_count = Some(3);
    produce.name = produce.summary();
    spans.push(Span::new(
        client,
        (3, 4),
        false,
        Protocol::Messaging(produce),
    ));
    spans
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "zerotrace".into(),
        version: "0.1.0".into(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// The span as written here, and as prost serialises `encode_span`'s
/// message, both as the one span of a `ScopeSpans`.
fn written_and_expected(span: &Span, clock: &WallClock) -> (Vec<u8>, Vec<u8>) {
    let mut written = Vec::new();
    append_span(span, clock, &mut AttributeBlocks::default(), &mut written);
    let expected = ScopeSpans {
        scope: None,
        spans: vec![encode_span(span, clock)],
        schema_url: String::new(),
    };
    (written, expected.encode_to_vec())
}

#[test]
fn each_span_is_written_as_prost_serialises_encode_span() {
    let clock = WallClock::new();
    for span in spans() {
        let (written, expected) = written_and_expected(&span, &clock);
        assert_eq!(written, expected, "{span:?}");
        let decoded = ScopeSpans::decode(written.as_slice())
            .unwrap_or_else(|e| panic!("prost cannot read {span:?}: {e}"));
        assert_eq!(decoded.spans, vec![encode_span(&span, &clock)]);
    }
}

#[test]
fn a_batch_is_one_request_with_a_resource_per_process() {
    let clock = WallClock::new();
    let resource = |name: &str| Resource {
        attributes: vec![string_attribute("service.name", name)],
        ..Resource::default()
    };
    let mut first = ProcessSpans::new(Arc::new(resource("shop")));
    let mut second = ProcessSpans::new(Arc::new(Resource::default()));
    let spans = spans();
    let (some, others) = spans.split_at(3);
    let mut blocks = AttributeBlocks::default();
    for span in some {
        append_span(span, &clock, &mut blocks, &mut first.spans);
    }
    for span in others {
        append_span(span, &clock, &mut blocks, &mut second.spans);
    }
    let written = export_request([&first, &second], &scope_bytes(&scope()));
    let resource_spans = |resource: Resource, spans: &[Span]| ResourceSpans {
        resource: Some(resource),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope()),
            spans: spans.iter().map(|s| encode_span(s, &clock)).collect(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    let expected = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(resource("shop"), some),
            resource_spans(Resource::default(), others),
        ],
    };
    assert_eq!(written, expected.encode_to_vec());
    assert_eq!(
        ExportTraceServiceRequest::decode(written.as_slice()).ok(),
        Some(expected)
    );
    assert!(export_request([], &scope_bytes(&scope())).is_empty());
}

/// One span of a small pool of connections (so that their attributes are
/// copied, and slots taken over), as written with `blocks`, against prost.
fn written_with_blocks_as_prost_serialises(
    blocks: &mut AttributeBlocks,
    (kind, tls, peer, host, version): (u8, bool, u8, u8, u8),
    status: u16,
) -> Result<(), TestCaseError> {
    let kind = [SpanKind::Server, SpanKind::Client][usize::from(kind % 2)];
    let peer = format!("10.0.0.{}:{}", peer % 3, 40000 + u16::from(peer % 2));
    let mut origin = origin(kind, 1, "127.0.0.1:8080", &peer);
    origin.tls = tls;
    let host = [
        None,
        Some(""),
        Some("shop"),
        Some("shop:81"),
        Some("[::1]:82"),
    ][usize::from(host % 5)];
    let span = http_span(
        origin,
        HttpExchange {
            host: host.map(Into::into),
            protocol_version: ["1.0", "1.1", "2"][usize::from(version % 3)],
            ..exchange("GET", "/a?b", status)
        },
        (1, 2),
    );
    let clock = WallClock::new();
    let mut written = Vec::new();
    append_span(&span, &clock, blocks, &mut written);
    let expected = ScopeSpans {
        scope: None,
        spans: vec![encode_span(&span, &clock)],
        schema_url: String::new(),
    };
    prop_assert_eq!(written, expected.encode_to_vec(), "{:?}", span);
    Ok(())
}

proptest! {
    #[test]
    fn spans_sharing_a_connections_attributes_are_written_as_prost_serialises_them(
        spans in proptest::collection::vec(
            ((any::<u8>(), any::<bool>(), any::<u8>(), any::<u8>(), any::<u8>()), 100u16..600),
            1..200,
        ),
    ) {
        let mut blocks = AttributeBlocks::default();
        for (connection, status) in spans {
            written_with_blocks_as_prost_serialises(&mut blocks, connection, status)?;
        }
    }

    #[test]
    fn any_http_exchange_is_written_as_prost_serialises_it(
        method in "[A-Z]{1,8}|_OTHER|\\*",
        target in "/[ -~]{0,300}",
        status in 100u16..600,
        host in proptest::option::of("[a-z.:\\[\\]0-9]{0,20}"),
        route in proptest::option::of("/[a-z{}/]{0,40}"),
        sizes in (any::<u64>(), any::<u64>()),
        times in (any::<u64>(), any::<u64>()),
        client in any::<bool>(),
        peer in any::<[u8; 4]>(),
    ) {
        let kind = if client { SpanKind::Client } else { SpanKind::Server };
        let peer = format!("{}:{}", std::net::Ipv4Addr::from(peer), 1 + u16::from(peer[0]));
        let span = http_span(
            origin(kind, 1, "127.0.0.1:8080", &peer),
            HttpExchange {
                host: host.map(Into::into),
                route: route.map(Into::into),
                request_body_bytes: sizes.0,
                response_body_bytes: sizes.1,
                ..exchange(&method, &target, status)
            },
            times,
        );
        let (written, expected) = written_and_expected(&span, &WallClock::new());
        prop_assert_eq!(written, expected);
    }
}
