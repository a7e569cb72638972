//! What an HTTP/2 connection keeps per stream (the exchange so far) and per
//! header block being assembled, and the index of each direction.

use zerotrace_shared::event::Direction;

use super::exchange::Http2Exchange;
use super::grpc::ContentType;

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
pub(super) struct Block {
    pub(super) stream: u32,
    pub(super) end_stream: bool,
    /// PUSH_PROMISE: decoded only to keep the table in sync.
    pub(super) promise: bool,
    /// The block's bytes, or its first bytes when `cut`.
    pub(super) fragment: Vec<u8>,
    /// Some of the block was not captured: `fragment` is only its start.
    pub(super) cut: bool,
}

/// One stream: its exchange so far, and what each direction did.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) ex: Http2Exchange,
    pub(super) ended: [bool; 2],
    pub(super) data: [u64; 2],
    /// Which direction sent the first frame we saw for it.
    pub(super) opener: Direction,
    /// Direction of the client, from this stream's pseudo-headers.
    pub(super) client: Option<Direction>,
    pub(super) request_seen: bool,
    /// A header block (decoded or not) was seen for this stream.
    pub(super) headers_seen: bool,
    /// What the response's content-type says (the request's comes first).
    pub(super) response_content_type: ContentType,
}

pub(super) fn idx(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

pub(super) fn other(direction: Direction) -> Direction {
    match direction {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}
