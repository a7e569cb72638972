//! HTTP/1.x message framing for one direction of a captured TCP stream.
//!
//! The kernel hands us one *segment* per read/write syscall: the first bytes of
//! the payload plus a count of bytes that were moved but not captured (a gap).
//! [`Http1Stream`] follows RFC 9112 framing across such segments and emits one
//! [`HttpMessage`] summary per request or response. [`Http1Session`] is
//! HTTP/1 in the protocol registry: both directions' streams, with requests
//! paired to responses in order (`pairing.rs`).
//!
//! The input may be cut anywhere or be hostile, so the parser never panics,
//! keeps every buffer bounded, and when framing is lost it marks the message
//! `truncated` and waits for a segment that starts with a fresh start line.
//!
//! A head longer than the capture (a big cookie or token) is not lost with
//! it: the message is measured by the segments' lengths, its end and header
//! fields are looked for in the captured bytes that follow, and when even
//! that is not enough it ends where the other direction speaks
//! ([`Http1Stream::peer_spoke`]), the next message starts or the connection
//! closes.

#![forbid(unsafe_code)]

mod cut_head;
mod field_name;
mod framing;
mod head;
mod message;
mod near_byte;
mod pairing;
mod queue;
mod session;
mod start_line;
mod stream;
#[cfg(test)]
mod tests;

pub use message::{HttpMessage, MessageHead};
pub use session::Http1Session;
pub use stream::{Http1Stream, MessageSink};

/// Largest head (start line + header fields) buffered before giving up on it.
const MAX_HEAD: usize = 16 * 1024;
/// Longest method token accepted in a request line.
const MAX_METHOD: usize = 16;
/// Request targets and header values are kept up to these many bytes.
const MAX_TARGET: usize = 2048;
const MAX_VALUE: usize = 512;
/// Header fields past this count are ignored.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size plus extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Outstanding `expect_response_to` entries kept; more are ignored.
const MAX_PENDING: usize = 1024;
/// A head cut by a gap is looked for (its end, its fields) over at most this
/// many bytes of the message; past it, its end counts as not seen.
const MAX_CUT_HEAD: u64 = 256 * 1024;
/// Longest header line kept across segments while a cut head is read.
const MAX_CUT_LINE: usize = 4096;

fn len64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
