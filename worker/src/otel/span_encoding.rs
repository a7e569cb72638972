//! Our spans as OTLP spans: ids, timing and kind from the span; name,
//! attributes and error status from its protocol's semantic conventions
//! (`semconv/`). Nothing here knows a protocol.
//!
//! The trace export does not build these messages: it writes each span's
//! bytes directly (`span_wire.rs`). [`encode_span`] is the readable form of
//! the same mapping, and `span_wire`'s tests compare its bytes with prost's
//! encoding of what `encode_span` builds.

use opentelemetry_proto::tonic::trace::v1::{span, status, Span as OtlpSpan, Status};

use crate::clock::WallClock;
use crate::semconv;
use crate::spans::{Span, SpanKind};

pub(crate) fn otlp_kind(kind: SpanKind) -> span::SpanKind {
    match kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    }
}

/// The status code of a span that failed or not (OK is for applications to set).
pub(crate) fn status_code(error: bool) -> status::StatusCode {
    if error {
        status::StatusCode::Error
    } else {
        status::StatusCode::Unset
    }
}

/// W3C trace flags (sampled) and whether the parent is remote is known
/// (bit 8), and is (bit 9).
pub(crate) fn span_flags(span: &Span) -> u32 {
    0x100 | u32::from(span.ids.parent_span_id.is_some()) << 9 | 1
}

pub fn encode_span(span: &Span, clock: &WallClock) -> OtlpSpan {
    let ids = &span.ids;
    let error = semconv::error(span);
    let attributes = semconv::span_attributes(span, error.as_ref());
    OtlpSpan {
        trace_id: ids.trace_id.to_vec(),
        span_id: ids.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: ids.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: span_flags(span),
        name: semconv::span_name(span),
        kind: otlp_kind(span.kind) as i32,
        start_time_unix_nano: clock.to_unix_ns(span.start_monotonic_ns),
        end_time_unix_nano: clock.to_unix_ns(span.end_monotonic_ns),
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(Status {
            code: status_code(error.is_some()) as i32,
            message: error.map(|e| e.message).unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semconv::http::{normalized_method, server_address_and_port};
    use crate::spans::ids::to_hex;
    use crate::spans::{GrpcCall, GrpcExchange, HttpExchange, Protocol, SpanOrigin};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn origin(kind: SpanKind) -> SpanOrigin {
        SpanOrigin::for_test(kind, 1, "10.0.0.9:40000")
    }

    fn exchange(status: u16, host: Option<&str>, traceparent: Option<&str>) -> HttpExchange {
        HttpExchange {
            method: "GET".into(),
            target: "/users/7?full=1".into(),
            status,
            protocol_version: "1.1",
            request_body_bytes: 0,
            response_body_bytes: 12,
            host: host.map(Into::into),
            traceparent: traceparent.map(str::to_owned),
            user_agent: Some(std::sync::Arc::new("curl/8.4.0".into())),
            route: None,
        }
    }

    fn span(kind: SpanKind, status: u16, host: Option<&str>, traceparent: Option<&str>) -> Span {
        Span::new(
            origin(kind),
            (1_000, 5_000),
            false,
            Protocol::Http(exchange(status, host, traceparent)),
        )
    }

    fn http(span: &mut Span) -> &mut HttpExchange {
        span.http_mut().unwrap_or_else(|| panic!("not HTTP"))
    }

    fn attr<'a>(s: &'a OtlpSpan, key: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|a| a.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()
    }

    #[test]
    fn server_spans_join_the_incoming_trace() {
        let mut s = span(
            SpanKind::Server,
            200,
            Some("shop.example:8443"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        http(&mut s).route = Some("/users/{id}".into());
        let encoded = encode_span(&s, &WallClock::new());
        assert_eq!(
            to_hex(&encoded.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(to_hex(&encoded.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(encoded.span_id, s.ids.span_id.to_vec());
        assert_eq!(encoded.name, "GET /users/{id}");
        assert_eq!(encoded.kind, span::SpanKind::Server as i32);
        assert_eq!(
            attr(&encoded, "server.address"),
            Some(&Value::StringValue("shop.example".into()))
        );
        assert_eq!(attr(&encoded, "server.port"), Some(&Value::IntValue(8443)));
        assert_eq!(
            attr(&encoded, "url.path"),
            Some(&Value::StringValue("/users/7".into()))
        );
        assert_eq!(
            attr(&encoded, "url.query"),
            Some(&Value::StringValue("full=1".into()))
        );
        assert_eq!(
            attr(&encoded, "client.address"),
            Some(&Value::StringValue("10.0.0.9".into()))
        );
        assert_eq!(
            attr(&encoded, "user_agent.original"),
            Some(&Value::StringValue("curl/8.4.0".into()))
        );
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Unset as i32)
        );
        assert_eq!(
            encoded.end_time_unix_nano - encoded.start_time_unix_nano,
            4_000
        );
    }

    #[test]
    fn the_user_agent_is_a_server_span_s_alone() {
        let clock = WallClock::new();
        // Opt-in on client spans in the conventions, as OBI leaves it out.
        let client = encode_span(&span(SpanKind::Client, 200, None, None), &clock);
        assert_eq!(attr(&client, "user_agent.original"), None);
        // Nor an RPC's: not among its conventions.
        let mut grpc = span(SpanKind::Server, 200, None, None);
        let Protocol::Http(http) = grpc.protocol.clone() else {
            panic!("not HTTP")
        };
        grpc.protocol = Protocol::Grpc(GrpcExchange {
            call: GrpcCall {
                service: "shop.Cart".into(),
                method: "Get".into(),
                status_code: Some(0),
                message: None,
            },
            http,
        });
        assert_eq!(
            attr(&encode_span(&grpc, &clock), "user_agent.original"),
            None
        );
    }

    #[test]
    fn error_status_follows_the_span_kind() {
        let clock = WallClock::new();
        let server_404 = encode_span(&span(SpanKind::Server, 404, None, None), &clock);
        assert_eq!(
            server_404.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Unset as i32)
        );
        assert_eq!(server_404.name, "GET");
        let encoded = encode_span(&span(SpanKind::Server, 503, None, None), &clock);
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        let encoded = encode_span(&span(SpanKind::Client, 404, None, None), &clock);
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        assert_eq!(
            attr(&encoded, "server.address"),
            Some(&Value::StringValue("10.0.0.9".into()))
        );
        assert_eq!(attr(&encoded, "server.port"), Some(&Value::IntValue(40000)));
        assert_eq!(
            attr(&encoded, "error.type"),
            Some(&Value::StringValue("404".into()))
        );
    }

    fn grpc_span(kind: SpanKind, status_code: u32) -> Span {
        let http = HttpExchange {
            method: "POST".into(),
            target: "/shop.Catalog/GetItem".into(),
            protocol_version: "2",
            ..exchange(200, None, None)
        };
        let call = GrpcCall {
            service: "shop.Catalog".into(),
            method: "GetItem".into(),
            status_code: Some(status_code),
            message: Some("no such item".into()),
        };
        Span::new(
            origin(kind),
            (1_000, 5_000),
            false,
            Protocol::Grpc(GrpcExchange { call, http }),
        )
    }

    #[test]
    fn grpc_calls_are_named_and_judged_by_the_rpc_conventions() {
        let clock = WallClock::new();
        let encoded = encode_span(&grpc_span(SpanKind::Server, 5), &clock);
        assert_eq!(encoded.name, "shop.Catalog/GetItem");
        assert_eq!(
            attr(&encoded, "rpc.system.name"),
            Some(&Value::StringValue("grpc".into()))
        );
        assert_eq!(
            attr(&encoded, "rpc.method"),
            Some(&Value::StringValue("shop.Catalog/GetItem".into()))
        );
        assert_eq!(
            attr(&encoded, "rpc.response.status_code"),
            Some(&Value::StringValue("NOT_FOUND".into()))
        );
        for deprecated in ["rpc.system", "rpc.service", "rpc.grpc.status_code"] {
            assert_eq!(attr(&encoded, deprecated), None, "{deprecated}");
        }
        // HTTP attributes that still apply stay.
        assert_eq!(
            attr(&encoded, "http.response.status_code"),
            Some(&Value::IntValue(200))
        );
        assert_eq!(
            attr(&encoded, "network.protocol.version"),
            Some(&Value::StringValue("2".into()))
        );
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Unset as i32),
            "NOT_FOUND is the caller's problem, not the server's"
        );
        assert_eq!(attr(&encoded, "error.type"), None);

        let encoded = encode_span(&grpc_span(SpanKind::Client, 5), &clock);
        assert_eq!(encoded.kind, span::SpanKind::Client as i32);
        assert_eq!(
            encoded
                .status
                .as_ref()
                .map(|s| (s.code, s.message.as_str())),
            Some((status::StatusCode::Error as i32, "no such item"))
        );
        assert_eq!(
            attr(&encoded, "error.type"),
            Some(&Value::StringValue("NOT_FOUND".into()))
        );

        let encoded = encode_span(&grpc_span(SpanKind::Server, 14), &clock);
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
    }

    #[test]
    fn host_headers_and_methods_are_normalized() {
        let mut s = span(SpanKind::Server, 200, Some("[::1]:9000"), None);
        let exchange = http(&mut s).clone();
        assert_eq!(
            server_address_and_port(&s, &exchange),
            ("::1".to_string(), 9000)
        );
        http(&mut s).host = Some("example.com".into());
        let exchange = http(&mut s).clone();
        assert_eq!(
            server_address_and_port(&s, &exchange),
            ("example.com".to_string(), 8080)
        );
        assert_eq!(normalized_method("PROPFIND"), ("_OTHER", Some("PROPFIND")));
        http(&mut s).method = "PROPFIND".into();
        assert_eq!(semconv::span_name(&s), "HTTP");
    }
}
