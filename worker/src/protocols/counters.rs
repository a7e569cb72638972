//! What the protocols count of what they could not follow or pair, summed
//! over connections: one struct for all, as the agent's self-metrics read it.
//! Below every protocol module, so that each can add to it.

/// What the protocols of every connection could not follow or pair,
/// summed. Counts only grow.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodeCounters {
    /// Segments (or stale partial heads) that no protocol could read.
    pub garbage_segments: u64,
    pub unpaired_responses: u64,
    /// Requests dropped because too many waited for their response.
    pub dropped_requests: u64,
    /// Requests whose connection closed (or was forgotten) before a
    /// response to them was seen.
    pub unanswered_requests: u64,
    /// Times a database or Kafka connection's direction lost its message
    /// boundaries (a message header in bytes the capture did not copy) and
    /// skipped to the next place a message could be read again.
    pub framing_lost: u64,
    /// What HTTP/2 connections could not follow.
    pub http2: Http2Stats,
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
    /// Streams emitted early because of [`MAX_STREAMS`](super::http2::MAX_STREAMS).
    pub streams_evicted: u64,
    /// Header blocks not captured whole (a gap inside, or over
    /// [`MAX_HEADER_BLOCK`](super::http2::MAX_HEADER_BLOCK)): decoded up to the cut, the rest lost.
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
