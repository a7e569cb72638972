//! HTTP/2 (RFC 9113) framing and stream tracking for one captured TCP
//! connection, both directions.
//!
//! Each direction is a sequence of segments (captured bytes plus a count of
//! bytes that moved uncaptured). [`Http2Connection`] follows the frames of
//! each direction, decodes header blocks with one [`HpackDecoder`] per
//! direction, pairs request and response per stream id and emits one
//! [`Http2Exchange`] per stream when it completes. [`Http2Session`] is
//! HTTP/2 in the protocol registry: each exchange becomes a span, a gRPC
//! call's with the call ([`grpc`]).
//!
//! Gap and desync policy (header values are never guessed):
//! - A gap inside a frame *payload* keeps framing (the length is known). In
//!   DATA it only makes the byte count approximate. In a header block
//!   (HEADERS, CONTINUATION, PUSH_PROMISE) the captured bytes before the gap
//!   are still decoded, field by field, up to the first field they do not
//!   hold whole (HPACK is sequential, so these fields are exact: typically
//!   the pseudo-headers, which come first); the rest of the block is lost,
//!   the HPACK decoder of that direction is desynced (the lost part may have
//!   added table entries) and the stream marked `partial`.
//! - A gap that covers a frame *header* loses framing for that direction: its
//!   HPACK decoder is desynced, every open stream is marked `partial`, and the
//!   direction waits for a segment that starts with a plausible frame header
//!   (writes usually carry whole frames).
//! - A desynced HPACK decoder still decodes static-table references, literals
//!   and entries inserted after the desync exactly; fields referring to older
//!   dynamic entries are skipped and make the stream `partial`.
//! - A direction whose first bytes are the client preface or a SETTINGS frame
//!   (the server preface) starts HPACK-synced. Any other start (connection
//!   joined mid-stream) starts desynced; frames are followed if the first
//!   segment starts with a plausible frame header, otherwise the direction
//!   waits as after a lost frame header.
//! - Which direction is the client is learned from the preface or from the
//!   pseudo-headers of each block (`:method` vs `:status`).
//! - Every stream for which a header block was seen (decoded or not) is
//!   emitted, with what is known; streams of which only DATA or control
//!   frames were seen are not, and are counted
//!   ([`Http2Stats::streams_without_headers`]).

#![forbid(unsafe_code)]

mod connection;
mod exchange;
mod frames;
pub mod grpc;
pub mod h2c;
mod session;
mod stream_state;
mod streams;
#[cfg(test)]
mod tests;

pub use crate::protocols::counters::Http2Stats;
pub use connection::Http2Connection;
pub use exchange::Http2Exchange;
pub use session::Http2Session;

/// Client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Streams tracked at once; the oldest is emitted as partial beyond this.
pub const MAX_STREAMS: usize = 1000;
/// Largest header block (all fragments) decoded; larger ones are dropped.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Recently closed stream ids remembered, so late frames do not reopen them.
const MAX_CLOSED: usize = 256;
/// Header values kept up to these many bytes.
const MAX_VALUE: usize = 2048;
/// SETTINGS payload bytes looked at.
const MAX_SETTINGS: usize = 6 * 32;
/// Largest frame accepted when resyncing on a segment start (the default
/// SETTINGS_MAX_FRAME_SIZE); frames in sync may use the full 24-bit length.
const RESYNC_MAX_FRAME: u32 = 16_384;
/// Initial SETTINGS_HEADER_TABLE_SIZE.
const DEFAULT_TABLE_SIZE: usize = 4096;
