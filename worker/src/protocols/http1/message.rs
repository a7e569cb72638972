//! What the HTTP/1 decoder emits: one summary per request or response.

use crate::protocols::http2::grpc::ContentType;
use crate::spans::{HttpMethod, HttpText};

/// The start line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageHead {
    Request {
        method: HttpMethod,
        target: HttpText,
    },
    Response {
        status: u16,
    },
}

/// Summary of one HTTP/1.x message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpMessage {
    pub head: MessageHead,
    /// HTTP/1.0 -> 0, HTTP/1.1 -> 1 (1 when the version was cut off).
    pub version_minor: u8,
    pub host: Option<HttpText>,
    /// Boxed, and the user agent a thin pointer: a message of 128 bytes or
    /// less moves without a call to `memcpy` (callgrind: 122 instructions
    /// per nginx exchange when it grew past).
    pub traceparent: Option<Box<str>>,
    /// A request's `User-Agent` (shared with the connection's next request
    /// when it repeats it).
    pub user_agent: Option<std::sync::Arc<String>>,
    /// What the request's content-type says: an h2c upgrade hands it to
    /// the HTTP/2 exchange, to tell a gRPC call.
    pub content_type: ContentType,
    /// `Transfer-Encoding` names `chunked` as the final coding.
    pub chunked: bool,
    /// Body bytes seen (captured + gap), chunk payload only for chunked bodies;
    /// in a truncated message, every byte after the point its framing was
    /// lost, chunk framing included (the bytes sent).
    pub body_size: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub truncated: bool,
}
