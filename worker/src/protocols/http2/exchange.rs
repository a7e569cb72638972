//! What the HTTP/2 decoder emits: one exchange per stream, and counters of
//! what it could not follow.

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
    /// The request's content-type, else the response's.
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
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

/// Counters for what could not be followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Http2Stats {
    pub frames: u64,
    /// Times a direction lost its frame boundaries.
    pub framing_lost: u64,
    /// Header blocks dropped (gap, size, HPACK error).
    pub blocks_lost: u64,
    /// Header fields skipped as unknown dynamic table references.
    pub unknown_fields: u64,
    /// Streams emitted early because of [`MAX_STREAMS`].
    pub streams_evicted: u64,
    /// Header blocks not captured whole (a gap inside, or over
    /// [`MAX_HEADER_BLOCK`]): decoded up to the cut, the rest lost.
    pub headers_truncated: u64,
    /// Header blocks decoded with fields left out because they referred to
    /// dynamic table entries the decoder lost (HPACK state lost).
    pub hpack_lost_blocks: u64,
    /// Streams that ended without any header block seen (only DATA or
    /// control frames): not emitted.
    pub streams_without_headers: u64,
    /// Streams emitted without their request's `:method` or `:path`.
    pub streams_unnamed: u64,
}

impl Http2Stats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Http2Stats) {
        self.frames += other.frames;
        self.framing_lost += other.framing_lost;
        self.blocks_lost += other.blocks_lost;
        self.unknown_fields += other.unknown_fields;
        self.streams_evicted += other.streams_evicted;
        self.headers_truncated += other.headers_truncated;
        self.hpack_lost_blocks += other.hpack_lost_blocks;
        self.streams_without_headers += other.streams_without_headers;
        self.streams_unnamed += other.streams_unnamed;
    }
}
