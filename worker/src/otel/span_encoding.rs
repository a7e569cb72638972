//! Our HTTP spans as OTLP spans, with the stable HTTP semantic conventions
//! (and the RPC ones on top for gRPC calls).

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{span, status, Span, Status};

use super::ids::{new_span_id, new_trace_id, TraceParent};
use super::resource::{int_attribute, string_attribute};
use super::rpc_conventions;
use crate::clock::WallClock;
use crate::spans::{HttpSpan, SpanKind};

/// Methods the HTTP semantic conventions know; others become `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// Identity of one span in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// The sampled flag of the incoming context, for parent-based samplers.
    pub parent_sampled: Option<bool>,
}

impl SpanIds {
    /// A server span joins the caller's trace as its child. A client span
    /// whose request carries a traceparent *is* the span that header names
    /// (the callee will see it as its parent), so it takes those ids.
    pub fn for_span(span: &HttpSpan) -> Self {
        let context = span.traceparent.as_deref().and_then(TraceParent::parse);
        match (span.kind, context) {
            (SpanKind::Server, Some(tp)) => Self {
                trace_id: tp.trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(tp.parent_span_id),
                parent_sampled: Some(tp.sampled),
            },
            (SpanKind::Client, Some(tp)) => Self {
                trace_id: tp.trace_id,
                span_id: tp.parent_span_id,
                parent_span_id: None,
                parent_sampled: Some(tp.sampled),
            },
            (_, None) => Self {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent_span_id: None,
                parent_sampled: None,
            },
        }
    }
}

/// The method as the conventions want it, and the original when it was not known.
pub fn normalized_method(method: &str) -> (&str, Option<&str>) {
    if KNOWN_METHODS.contains(&method) {
        (method, None)
    } else {
        ("_OTHER", Some(method))
    }
}

/// Whether the exchange failed, per the conventions: 5xx for servers, 4xx/5xx
/// for clients; for gRPC calls, the RPC conventions' rule on the status code.
pub fn is_error(span: &HttpSpan) -> bool {
    if let Some(call) = &span.grpc {
        return rpc_conventions::is_error(span.kind, call);
    }
    match span.kind {
        SpanKind::Server => span.status >= 500,
        SpanKind::Client => span.status >= 400,
    }
}

/// `server.address`/`server.port`: from the Host header when present, else the socket.
pub fn server_address_and_port(span: &HttpSpan) -> (String, u16) {
    let socket = match span.kind {
        SpanKind::Server => span.local,
        SpanKind::Client => span.peer,
    };
    let Some(host) = span.host.as_deref().filter(|h| !h.is_empty()) else {
        return (socket.ip().to_string(), socket.port());
    };
    // "[::1]:8080", "example.com:8080", "example.com"
    let (name, port) = match host.rsplit_once(':') {
        Some((name, _)) if !name.ends_with(']') && name.contains(':') => (host, None),
        Some((name, port)) => (name, port.parse::<u16>().ok()),
        None => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    (name.to_owned(), port.unwrap_or(socket.port()))
}

/// `METHOD /route`, or `METHOD` when no route is known; a gRPC call is
/// `package.Service/Method`.
pub fn span_name(span: &HttpSpan, route: Option<&str>) -> String {
    if let Some(call) = &span.grpc {
        return rpc_conventions::span_name(call);
    }
    let method = match normalized_method(&span.method).0 {
        "_OTHER" => "HTTP",
        known => known,
    };
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    }
}

pub fn encode_span(span: &HttpSpan, ids: &SpanIds, route: Option<&str>, clock: &WallClock) -> Span {
    let (method, original_method) = normalized_method(&span.method);
    let (server_address, server_port) = server_address_and_port(span);
    let mut attributes: Vec<KeyValue> = vec![
        string_attribute("http.request.method", method),
        int_attribute("http.response.status_code", i64::from(span.status)),
        string_attribute("url.path", span.path()),
        string_attribute("url.scheme", span.scheme()),
        string_attribute("server.address", server_address.clone()),
        int_attribute("server.port", i64::from(server_port)),
        string_attribute("network.protocol.name", "http"),
        string_attribute("network.protocol.version", span.protocol_version),
        string_attribute("network.peer.address", span.peer.ip().to_string()),
        int_attribute("network.peer.port", i64::from(span.peer.port())),
        int_attribute("http.request.body.size", span.request_body_bytes as i64),
        int_attribute("http.response.body.size", span.response_body_bytes as i64),
    ];
    // A method the capture did not show (`*`) was not sent as such.
    if let Some(original) =
        original_method.filter(|m| *m != crate::connections::UNKNOWN_REQUEST_FIELD)
    {
        attributes.push(string_attribute("http.request.method_original", original));
    }
    if let Some(route) = route {
        attributes.push(string_attribute("http.route", route));
    }
    if let Some((_, query)) = span.target.split_once('?') {
        attributes.push(string_attribute("url.query", query));
    }
    match span.kind {
        SpanKind::Server => {
            attributes.push(string_attribute(
                "client.address",
                span.peer.ip().to_string(),
            ));
            attributes.push(int_attribute("client.port", i64::from(span.peer.port())));
        }
        SpanKind::Client => {
            let host = if server_address.contains(':') {
                format!("[{server_address}]")
            } else {
                server_address
            };
            attributes.push(string_attribute(
                "url.full",
                format!("http://{host}:{server_port}{}", span.target),
            ));
        }
    }
    let error = is_error(span);
    let mut status_message = String::new();
    match &span.grpc {
        Some(call) => {
            attributes.extend(rpc_conventions::attributes(call));
            if let Some(error_type) = rpc_conventions::error_type(call).filter(|_| error) {
                attributes.push(string_attribute("error.type", error_type));
                status_message = call.message.clone().unwrap_or_default();
            }
        }
        None if error => {
            attributes.push(string_attribute("error.type", span.status.to_string()));
        }
        None => {}
    }
    Span {
        trace_id: ids.trace_id.to_vec(),
        span_id: ids.span_id.to_vec(),
        trace_state: String::new(),
        parent_span_id: ids.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x100 | u32::from(ids.parent_span_id.is_some()) << 9 | 1,
        name: span_name(span, route),
        kind: match span.kind {
            SpanKind::Server => span::SpanKind::Server as i32,
            SpanKind::Client => span::SpanKind::Client as i32,
        },
        start_time_unix_nano: clock.to_unix_ns(span.start_monotonic_ns),
        end_time_unix_nano: clock.to_unix_ns(span.end_monotonic_ns),
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(Status {
            message: status_message,
            code: if error {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::ids::to_hex;
    use std::net::SocketAddr;

    fn span(
        kind: SpanKind,
        status: u16,
        host: Option<&str>,
        traceparent: Option<&str>,
    ) -> HttpSpan {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
        let peer: SocketAddr = "10.0.0.9:40000".parse().unwrap_or_else(|e| panic!("{e}"));
        HttpSpan {
            kind,
            pid: 1,
            process_name: "app".into(),
            local,
            peer,
            method: "GET".into(),
            target: "/users/7?full=1".into(),
            status,
            protocol_version: "1.1",
            start_monotonic_ns: 1_000,
            end_monotonic_ns: 5_000,
            request_body_bytes: 0,
            response_body_bytes: 12,
            host: host.map(str::to_owned),
            traceparent: traceparent.map(str::to_owned),
            truncated: false,
            route: None,
            grpc: None,
            tls: false,
        }
    }

    fn attr<'a>(
        s: &'a Span,
        key: &str,
    ) -> Option<&'a opentelemetry_proto::tonic::common::v1::any_value::Value> {
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
        let s = span(
            SpanKind::Server,
            200,
            Some("shop.example:8443"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let ids = SpanIds::for_span(&s);
        assert_eq!(to_hex(&ids.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ids.parent_span_id.map(|p| to_hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        let encoded = encode_span(&s, &ids, Some("/users/{id}"), &WallClock::new());
        assert_eq!(encoded.name, "GET /users/{id}");
        assert_eq!(encoded.kind, span::SpanKind::Server as i32);
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
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
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Unset as i32)
        );
        assert_eq!(
            encoded.end_time_unix_nano - encoded.start_time_unix_nano,
            4_000
        );
    }

    #[test]
    fn error_status_follows_the_span_kind() {
        let server_404 = encode_span(
            &span(SpanKind::Server, 404, None, None),
            &SpanIds::for_span(&span(SpanKind::Server, 404, None, None)),
            None,
            &WallClock::new(),
        );
        assert_eq!(
            server_404.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Unset as i32)
        );
        assert_eq!(server_404.name, "GET");
        let server_503 = span(SpanKind::Server, 503, None, None);
        let encoded = encode_span(
            &server_503,
            &SpanIds::for_span(&server_503),
            None,
            &WallClock::new(),
        );
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        let client_404 = span(SpanKind::Client, 404, None, None);
        let encoded = encode_span(
            &client_404,
            &SpanIds::for_span(&client_404),
            None,
            &WallClock::new(),
        );
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
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

    fn grpc_span(kind: SpanKind, status_code: u32) -> HttpSpan {
        HttpSpan {
            method: "POST".into(),
            target: "/shop.Catalog/GetItem".into(),
            protocol_version: "2",
            grpc: Some(crate::spans::GrpcCall {
                service: "shop.Catalog".into(),
                method: "GetItem".into(),
                status_code: Some(status_code),
                message: Some("no such item".into()),
            }),
            ..span(kind, 200, None, None)
        }
    }

    #[test]
    fn grpc_calls_are_named_and_judged_by_the_rpc_conventions() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let clock = WallClock::new();
        let server = grpc_span(SpanKind::Server, 5);
        let encoded = encode_span(&server, &SpanIds::for_span(&server), None, &clock);
        assert_eq!(encoded.name, "shop.Catalog/GetItem");
        assert_eq!(
            attr(&encoded, "rpc.system"),
            Some(&Value::StringValue("grpc".into()))
        );
        assert_eq!(
            attr(&encoded, "rpc.service"),
            Some(&Value::StringValue("shop.Catalog".into()))
        );
        assert_eq!(
            attr(&encoded, "rpc.method"),
            Some(&Value::StringValue("GetItem".into()))
        );
        assert_eq!(
            attr(&encoded, "rpc.grpc.status_code"),
            Some(&Value::IntValue(5))
        );
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

        let client = grpc_span(SpanKind::Client, 5);
        let encoded = encode_span(&client, &SpanIds::for_span(&client), None, &clock);
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

        let unavailable = grpc_span(SpanKind::Server, 14);
        let encoded = encode_span(&unavailable, &SpanIds::for_span(&unavailable), None, &clock);
        assert_eq!(
            encoded.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
    }

    #[test]
    fn host_headers_and_methods_are_normalized() {
        let mut s = span(SpanKind::Server, 200, Some("[::1]:9000"), None);
        assert_eq!(server_address_and_port(&s), ("::1".to_string(), 9000));
        s.host = Some("example.com".into());
        assert_eq!(
            server_address_and_port(&s),
            ("example.com".to_string(), 8080)
        );
        assert_eq!(normalized_method("PROPFIND"), ("_OTHER", Some("PROPFIND")));
        s.method = "PROPFIND".into();
        assert_eq!(span_name(&s, None), "HTTP");
    }
}
