//! The span model: one HTTP exchange (possibly a gRPC call) as observed on
//! one socket of one process.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// The process answered the request (accepted socket).
    Server,
    /// The process sent the request (connected socket).
    Client,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        }
    }
}

/// One request/response exchange, with kernel timestamps (CLOCK_MONOTONIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpan {
    pub kind: SpanKind,
    pub pid: u32,
    pub process_name: String,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub method: String,
    /// Request target as sent (path and query).
    pub target: String,
    pub status: u16,
    /// "1.0" or "1.1".
    pub protocol_version: &'static str,
    pub start_monotonic_ns: u64,
    pub end_monotonic_ns: u64,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub host: Option<String>,
    pub traceparent: Option<String>,
    /// Part of the exchange was not captured (framing lost); sizes are lower bounds.
    pub truncated: bool,
    /// `http.route`, set by the pipeline from the `routes` configuration.
    pub route: Option<String>,
    /// Set when the exchange is a gRPC call (HTTP/2, `application/grpc*`).
    pub grpc: Option<GrpcCall>,
    /// Captured as plaintext from a TLS library: `url.scheme` is https.
    pub tls: bool,
}

/// What a gRPC call adds to its HTTP/2 exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// Fully qualified service, `package.Service` (from `:path`).
    pub service: String,
    /// The method's name within the service.
    pub method: String,
    /// The call's status code: `grpc-status` from the trailers (or a
    /// trailers-only response), else derived from a non-200 `:status`;
    /// None when the call ended without either (reset, not captured).
    pub status_code: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub message: Option<String>,
}

impl HttpSpan {
    /// The path part of the target (no query string).
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// `url.scheme`: what the client typed, as far as the capture can tell.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_monotonic_ns
            .saturating_sub(self.start_monotonic_ns)
    }
}
