//! The HTTP part of a span (HTTP/1.x and HTTP/2), and how the trace printer
//! shows it.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

/// What a span says for a request's method or path the capture did not
/// show (lost to a gap or to lost HPACK state), as OBI does.
pub const UNKNOWN_REQUEST_FIELD: &str = "*";

/// A request's method: the known ones (`GET`, `POST`...) as static text, so
/// that the common case allocates nothing; any other as sent.
pub type HttpMethod = Cow<'static, str>;

/// Text a request carries (target, host) and the route made of it: up to 24
/// bytes inline, so the usual span allocates none of it.
pub type HttpText = compact_str::CompactString;

/// Methods the HTTP semantic conventions know; others become `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// The known method equal to `method`, as static text.
pub fn known_method(method: &str) -> Option<&'static str> {
    known_method_of_bytes(method.as_bytes())
}

/// [`known_method`] of bytes as captured: no UTF-8 check for the usual case.
pub fn known_method_of_bytes(method: &[u8]) -> Option<&'static str> {
    KNOWN_METHODS
        .iter()
        .copied()
        .find(|known| known.as_bytes() == method)
}

/// What an HTTP request/response exchange adds to its span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpExchange {
    pub method: HttpMethod,
    /// Request target as sent (path and query).
    pub target: HttpText,
    pub status: u16,
    /// "1.0", "1.1" or "2".
    pub protocol_version: &'static str,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub host: Option<HttpText>,
    pub traceparent: Option<String>,
    /// The request's `User-Agent` (`user_agent.original` of server spans),
    /// shared by a connection's requests that repeat it.
    pub user_agent: Option<std::sync::Arc<String>>,
    /// `http.route`, set by the pipeline from the `routes` configuration.
    pub route: Option<HttpText>,
}

impl HttpExchange {
    /// The path part of the target (no query string).
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// `url.scheme`: what the client typed, as far as the capture can tell
    /// (https when the plaintext came from a TLS library).
    pub fn scheme(tls: bool) -> &'static str {
        if tls {
            "https"
        } else {
            "http"
        }
    }

    pub fn route_or_path(&self) -> &str {
        self.route.as_deref().unwrap_or_else(|| self.path())
    }

    /// The printer's text: `"GET /hello HTTP/1.1" 404 185B` before the
    /// duration, ` req=7B` after it.
    pub fn printer_text(&self) -> (String, String) {
        let summary = format!(
            "\"{} {} HTTP/{}\" {} {}B",
            self.method,
            self.target.escape_debug(),
            self.protocol_version,
            self.status,
            self.response_body_bytes,
        );
        let details = if self.request_body_bytes > 0 {
            format!(" req={}B", self.request_body_bytes)
        } else {
            String::new()
        };
        (summary, details)
    }

    /// The printer's JSON fields of an HTTP exchange.
    pub fn printer_json(&self, tls: bool, out: &mut Map<String, Value>) {
        let fields = json!({
            "method": self.method,
            "target": self.target,
            "scheme": Self::scheme(tls),
            "path": self.path(),
            "route": self.route,
            "status": self.status,
            "protocol_version": self.protocol_version,
            "request_body_bytes": self.request_body_bytes,
            "response_body_bytes": self.response_body_bytes,
            "host": self.host,
            "traceparent": self.traceparent,
            "user_agent": self.user_agent.as_deref(),
            "grpc": null,
        });
        if let Value::Object(fields) = fields {
            out.extend(fields);
        }
    }
}
