//! What the HTTP/2 decoder emits: one exchange per stream.

use super::grpc::ContentType;

/// One completed (or abandoned) stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Http2Exchange {
    pub stream_id: u32,
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    /// Final (non-1xx) `:status`, else the last interim one.
    pub status: Option<u16>,
    /// From trailers or a trailers-only response.
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    /// What the request's content-type says, else the response's.
    pub content_type: ContentType,
    pub traceparent: Option<String>,
    /// The request's `user-agent`.
    pub user_agent: Option<String>,
    /// DATA payload bytes without padding (approximate after gaps).
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub start_ts_ns: u64,
    pub end_ts_ns: u64,
    /// Ended by RST_STREAM, or refused by GOAWAY.
    pub reset: bool,
    /// The RST_STREAM error code when it was captured (REFUSED_STREAM for
    /// streams refused by GOAWAY).
    pub reset_code: Option<u32>,
    /// The RST_STREAM came from the client (it gave up on the stream).
    pub reset_by_client: bool,
    /// The request's `grpc-timeout` as sent (`200m`, `5S`...).
    pub grpc_timeout: Option<String>,
    /// Some of the stream was not seen or could not be decoded: fields may be
    /// missing (never wrong).
    pub partial: bool,
}
