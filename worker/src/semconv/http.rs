//! The stable HTTP semantic conventions: span name, attributes, error rule,
//! and the `http.{server,client}.*` histograms with their attributes.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::attribute::{int_attribute, string_attribute, AttributeSink, ConnectionKey, IpString};
use super::{
    BucketKind, Conventions, Instrument, SpanError, DURATION_BOUNDS_SECONDS, SIZE_BOUNDS_BYTES,
};
use crate::spans::http::{known_method, UNKNOWN_REQUEST_FIELD};
use crate::spans::{HttpExchange, Protocol, Span, SpanKind};

/// The histograms of server spans, then of client spans: duration, request
/// body size, response body size.
pub static INSTRUMENTS: [Instrument; 6] = [
    Instrument {
        name: "http.server.request.duration",
        prometheus_name: "http_server_request_duration_seconds",
        unit: "s",
        prometheus_unit: "seconds",
        description: "Duration of HTTP server requests.",
        bounds: &DURATION_BOUNDS_SECONDS,
        buckets: BucketKind::Duration,
    },
    Instrument {
        name: "http.server.request.body.size",
        prometheus_name: "http_server_request_body_size_bytes",
        unit: "By",
        prometheus_unit: "bytes",
        description: "Size of HTTP server request bodies.",
        bounds: &SIZE_BOUNDS_BYTES,
        buckets: BucketKind::RequestSize,
    },
    Instrument {
        name: "http.server.response.body.size",
        prometheus_name: "http_server_response_body_size_bytes",
        unit: "By",
        prometheus_unit: "bytes",
        description: "Size of HTTP server response bodies.",
        bounds: &SIZE_BOUNDS_BYTES,
        buckets: BucketKind::ResponseSize,
    },
    Instrument {
        name: "http.client.request.duration",
        prometheus_name: "http_client_request_duration_seconds",
        unit: "s",
        prometheus_unit: "seconds",
        description: "Duration of HTTP client requests.",
        bounds: &DURATION_BOUNDS_SECONDS,
        buckets: BucketKind::Duration,
    },
    Instrument {
        name: "http.client.request.body.size",
        prometheus_name: "http_client_request_body_size_bytes",
        unit: "By",
        prometheus_unit: "bytes",
        description: "Size of HTTP client request bodies.",
        bounds: &SIZE_BOUNDS_BYTES,
        buckets: BucketKind::RequestSize,
    },
    Instrument {
        name: "http.client.response.body.size",
        prometheus_name: "http_client_response_body_size_bytes",
        unit: "By",
        prometheus_unit: "bytes",
        description: "Size of HTTP client response bodies.",
        bounds: &SIZE_BOUNDS_BYTES,
        buckets: BucketKind::ResponseSize,
    },
];

/// The duration, request size and response size instruments of a span kind.
pub fn instruments(kind: SpanKind) -> &'static [Instrument] {
    let (server, client) = INSTRUMENTS.split_at(3);
    if kind.is_outgoing() {
        client
    } else {
        server
    }
}

/// The method as the conventions want it, and the original when it was not known.
pub fn normalized_method(method: &str) -> (&str, Option<&str>) {
    if known_method(method).is_some() {
        (method, None)
    } else {
        ("_OTHER", Some(method))
    }
}

/// 5xx for servers, 4xx/5xx for clients.
pub fn is_error_status(kind: SpanKind, status: u16) -> bool {
    if kind.is_outgoing() {
        status >= 400
    } else {
        status >= 500
    }
}

/// `server.address` as a span names it: the Host header's name, or the socket's address.
pub enum ServerName<'a> {
    Host(&'a str),
    Ip(IpString),
}

impl ServerName<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Host(name) => name,
            Self::Ip(ip) => ip.as_str(),
        }
    }
}

/// `server.address`/`server.port`: from the Host header when present, else the socket.
pub fn server_name_and_port<'a>(span: &Span, http: &'a HttpExchange) -> (ServerName<'a>, u16) {
    let socket = if span.kind.is_outgoing() {
        span.peer
    } else {
        span.local
    };
    let Some(host) = http.host.as_deref().filter(|h| !h.is_empty()) else {
        return (ServerName::Ip(IpString::of(socket.ip())), socket.port());
    };
    // "[::1]:8080", "example.com:8080", "example.com"
    let (name, port) = match host.rsplit_once(':') {
        Some((name, _)) if !name.ends_with(']') && name.contains(':') => (host, None),
        Some((name, port)) => (name, port.parse::<u16>().ok()),
        None => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    (ServerName::Host(name), port.unwrap_or(socket.port()))
}

/// [`server_name_and_port`] with the name owned.
pub fn server_address_and_port(span: &Span, http: &HttpExchange) -> (String, u16) {
    let (name, port) = server_name_and_port(span, http);
    (name.as_str().to_owned(), port)
}

/// `METHOD /route`, or `METHOD` when no route is known.
pub fn span_name_parts(http: &HttpExchange) -> [&str; 3] {
    let method = match normalized_method(&http.method).0 {
        "_OTHER" => "HTTP",
        known => known,
    };
    match &http.route {
        Some(route) => [method, " ", route],
        None => [method, "", ""],
    }
}

/// The HTTP span attributes (also those of a gRPC call's HTTP/2 exchange):
/// the request's, then its connection's, which are the same for every
/// request on it, so that an exporter may write them once per connection.
pub fn span_attributes(span: &Span, http: &HttpExchange, out: &mut dyn AttributeSink) {
    let (method, original_method) = normalized_method(&http.method);
    out.string("http.request.method", method);
    out.int("http.response.status_code", i64::from(http.status));
    out.string("url.path", http.path());
    out.int("http.request.body.size", http.request_body_bytes as i64);
    out.int("http.response.body.size", http.response_body_bytes as i64);
    // A method the capture did not show (`*`) was not sent as such.
    if let Some(original) = original_method.filter(|m| *m != UNKNOWN_REQUEST_FIELD) {
        out.string("http.request.method_original", original);
    }
    if let Some(route) = &http.route {
        out.string("http.route", route);
    }
    // Recommended on server spans, opt-in on client spans (as OBI does);
    // not part of an RPC's conventions.
    if let (SpanKind::Server, Protocol::Http(_), Some(user_agent)) =
        (span.kind, &span.protocol, &http.user_agent)
    {
        out.string("user_agent.original", user_agent);
    }
    if let Some((_, query)) = http.target.split_once('?') {
        out.string("url.query", query);
    }
    if span.kind.is_outgoing() {
        let (server_name, server_port) = server_name_and_port(span, http);
        let server_address = server_name.as_str();
        let url = if server_address.contains(':') {
            format!("http://[{server_address}]:{server_port}{}", http.target)
        } else {
            format!("http://{server_address}:{server_port}{}", http.target)
        };
        out.string("url.full", &url);
    }
    let key = ConnectionKey {
        outgoing: span.kind.is_outgoing(),
        tls: span.tls,
        local: span.local,
        peer: span.peer,
        host: http.host.as_deref(),
        protocol_version: http.protocol_version,
    };
    out.connection_block(&key, &mut |out| connection_attributes(span, http, out));
}

/// The attributes [`ConnectionKey`] decides: the scheme, the server, the
/// protocol and the peer (and, on the server side, the client).
fn connection_attributes(span: &Span, http: &HttpExchange, out: &mut dyn AttributeSink) {
    let (server_name, server_port) = server_name_and_port(span, http);
    let peer_text = IpString::of(span.peer.ip());
    let peer = peer_text.as_str();
    out.string("url.scheme", HttpExchange::scheme(span.tls));
    out.string("server.address", server_name.as_str());
    out.int("server.port", i64::from(server_port));
    out.string("network.protocol.name", "http");
    out.string("network.protocol.version", http.protocol_version);
    out.string("network.peer.address", peer);
    out.int("network.peer.port", i64::from(span.peer.port()));
    if !span.kind.is_outgoing() {
        out.string("client.address", peer);
        out.int("client.port", i64::from(span.peer.port()));
    }
}

impl Conventions for HttpExchange {
    fn span_name_parts<'a>(&'a self, _span: &'a Span) -> [&'a str; 3] {
        span_name_parts(self)
    }

    fn span_attributes(&self, span: &Span, out: &mut dyn AttributeSink) {
        span_attributes(span, self, out);
    }

    fn error(&self, span: &Span) -> Option<SpanError> {
        self.is_error(span).then(|| SpanError {
            error_type: self.status.to_string(),
            message: String::new(),
        })
    }

    fn is_error(&self, span: &Span) -> bool {
        is_error_status(span.kind, self.status)
    }
}

/// The attributes of one `http.*` metric series.
pub fn metric_attributes(
    method: &str,
    status: u16,
    scheme: &str,
    protocol_version: &str,
    server: (&str, u16),
    route: Option<&str>,
    error: bool,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        string_attribute("http.request.method", method),
        int_attribute("http.response.status_code", i64::from(status)),
        string_attribute("url.scheme", scheme),
        string_attribute("network.protocol.name", "http"),
        string_attribute("network.protocol.version", protocol_version),
        string_attribute("server.address", server.0),
        int_attribute("server.port", i64::from(server.1)),
    ];
    if let Some(route) = route {
        attributes.push(string_attribute("http.route", route));
    }
    if error {
        attributes.push(string_attribute("error.type", status.to_string()));
    }
    attributes
}
