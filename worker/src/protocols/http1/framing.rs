//! Body framing (RFC 9112 §6): fixed length, chunked, until close or until
//! the other side speaks, across captured bytes and gaps.

use super::head::Headers;
use super::start_line::is_text;
use super::{MAX_CHUNK_LINE, MAX_TRAILERS};

/// The request properties that change how its response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReqKind {
    Head,
    Connect,
    Other,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    Fixed(u64),
    UntilClose,
    /// The framing header fields may have been in a gap: the body ends where
    /// the other direction speaks, a new message starts or the connection
    /// closes. Every byte is counted, so the size is exact.
    UntilTurn,
    Chunk(Chunk),
    /// A gap hid this many bytes from the start of a chunk-size line: if the
    /// message ends right there, they were the last chunk (`0` CRLF CRLF,
    /// [`LAST_CHUNK`] bytes, the shortest end there is) exactly when there
    /// are that many; any byte after them means the framing is lost.
    ChunkTail(u64),
}

/// `0\r\n\r\n`: the last chunk of a body without trailers.
pub(super) const LAST_CHUNK: u64 = 5;
#[derive(Debug, Clone, Copy)]
pub(super) enum Chunk {
    Size(SizeLine),
    Data(u64),
    /// CRLF after chunk data; holds how many of its bytes are still due.
    DataEnd(u8),
    /// Trailer section; `in_line` is true inside a non-empty line.
    Trailers {
        in_line: bool,
        total: usize,
    },
}

const TRAILERS: Chunk = Chunk::Trailers {
    in_line: false,
    total: 0,
};

/// Incremental parser for `chunk-size [; ext] CRLF`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SizeLine {
    value: u64,
    has_digits: bool,
    in_ext: bool,
    len: usize,
}

enum SizeStep {
    More,
    Done(u64),
    Bad,
}

/// Where a message goes after a head or a piece of body.
pub(super) enum Next {
    Body(Body),
    Done,
    Upgrade,
    Lost,
}
/// Body framing from the header fields (RFC 9112 §6.3), once the
/// status-based no-body cases are ruled out.
pub(super) fn body_framing(headers: &Headers, response: bool) -> Next {
    if headers.transfer_encoding {
        return match (headers.chunked, response) {
            (true, _) => Next::Body(Body::Chunk(Chunk::Size(SizeLine::default()))),
            // A final coding other than chunked is delimited by close.
            (false, true) => Next::Body(Body::UntilClose),
            (false, false) => Next::Lost,
        };
    }
    match headers.content_length {
        _ if headers.bad_length => Next::Lost,
        Some(0) => Next::Done,
        Some(n) => Next::Body(Body::Fixed(n)),
        None if response => Next::Body(Body::UntilClose),
        None => Next::Done,
    }
}

/// Takes up to `n` bytes of a body part whose extent is known without looking
/// at it; returns how many were taken, or `None` for parts that must be read.
pub(super) fn take_counted(body: Body, n: u64, body_size: &mut u64) -> Option<(u64, Next)> {
    let (taken, next) = match body {
        Body::Fixed(left) if n >= left => (left, Next::Done),
        Body::Fixed(left) => (n, Next::Body(Body::Fixed(left - n))),
        Body::UntilClose => (n, Next::Body(Body::UntilClose)),
        Body::UntilTurn => (n, Next::Body(Body::UntilTurn)),
        Body::Chunk(Chunk::Data(left)) if n >= left => (left, chunked(Chunk::DataEnd(2))),
        Body::Chunk(Chunk::Data(left)) => (n, chunked(Chunk::Data(left - n))),
        Body::Chunk(_) | Body::ChunkTail(_) => return None,
    };
    *body_size = body_size.saturating_add(taken);
    Some((taken, next))
}

/// Reads the framing parts of a chunked body: size lines, CRLFs and trailers.
pub(super) fn step_chunk(body: Body, rest: &[u8]) -> (usize, Next) {
    match body {
        Body::Chunk(Chunk::Size(mut line)) => {
            for (i, &b) in rest.iter().enumerate() {
                match line.push(b) {
                    SizeStep::More => {}
                    SizeStep::Done(0) => return (i + 1, chunked(TRAILERS)),
                    SizeStep::Done(n) => return (i + 1, chunked(Chunk::Data(n))),
                    SizeStep::Bad => return (i + 1, Next::Lost),
                }
            }
            (rest.len(), chunked(Chunk::Size(line)))
        }
        Body::Chunk(Chunk::DataEnd(left)) => match rest.first() {
            Some(b'\n') => (1, chunked(Chunk::Size(SizeLine::default()))),
            Some(b'\r') if left == 2 => (1, chunked(Chunk::DataEnd(1))),
            _ => (1, Next::Lost),
        },
        Body::Chunk(Chunk::Trailers { in_line, total }) => step_trailers(in_line, total, rest),
        _ => (0, Next::Lost),
    }
}

/// Skips trailer fields up to the blank line that ends the message.
fn step_trailers(mut in_line: bool, mut total: usize, rest: &[u8]) -> (usize, Next) {
    for (i, &b) in rest.iter().enumerate() {
        total += 1;
        match b {
            _ if total > MAX_TRAILERS => return (i + 1, Next::Lost),
            b'\n' if !in_line => return (i + 1, Next::Done),
            b'\n' => in_line = false,
            b'\r' => {}
            _ => in_line = true,
        }
    }
    (rest.len(), chunked(Chunk::Trailers { in_line, total }))
}

/// Accounts for uncaptured bytes inside a body.
pub(super) fn gap_in_body(body: Body, gap: u64, body_size: &mut u64) -> Next {
    match (body, take_counted(body, gap, body_size)) {
        // The CRLF after chunk data may be in the gap too.
        (Body::Chunk(_), Some((taken, Next::Body(Body::Chunk(Chunk::DataEnd(2)))))) => {
            crlf_gap(2, gap - taken)
        }
        // Excess past a fixed body belongs to a next message we cannot see.
        (_, Some((_, next))) => next,
        (Body::Chunk(Chunk::DataEnd(left)), None) => crlf_gap(left, gap),
        // A gap from the start of a size line: the last chunk, if the
        // message ends with it.
        (Body::Chunk(Chunk::Size(line)), None) if line.len == 0 => Next::Body(Body::ChunkTail(gap)),
        (Body::ChunkTail(hidden), None) => Next::Body(Body::ChunkTail(hidden.saturating_add(gap))),
        // A size line or trailer inside a gap hides where the body ends.
        _ => Next::Lost,
    }
}

/// A gap may swallow the CRLF after chunk data; what it hides beyond it
/// starts a size line.
fn crlf_gap(left: u8, gap: u64) -> Next {
    match u64::from(left).checked_sub(gap) {
        Some(0) => chunked(Chunk::Size(SizeLine::default())),
        Some(l) => chunked(Chunk::DataEnd(u8::try_from(l).unwrap_or(2))),
        None => Next::Body(Body::ChunkTail(gap - u64::from(left))),
    }
}

fn chunked(chunk: Chunk) -> Next {
    Next::Body(Body::Chunk(chunk))
}

impl SizeLine {
    fn push(&mut self, b: u8) -> SizeStep {
        self.len += 1;
        let hex = char::from(b).to_digit(16).filter(|_| !self.in_ext);
        match (b, hex) {
            _ if self.len > MAX_CHUNK_LINE => SizeStep::Bad,
            (b'\n', _) if self.has_digits => SizeStep::Done(self.value),
            (_, Some(digit)) => match self
                .value
                .checked_mul(16)
                .and_then(|v| v.checked_add(u64::from(digit)))
            {
                Some(value) => {
                    self.value = value;
                    self.has_digits = true;
                    SizeStep::More
                }
                // Overflow means this cannot be a real chunk size.
                None => SizeStep::Bad,
            },
            (b';' | b' ' | b'\t' | b'\r', None) if self.has_digits => {
                self.in_ext = true;
                SizeStep::More
            }
            // Extensions are skipped, but control bytes mean this is not a size line.
            _ if self.in_ext && (b == b'\r' || is_text(b)) => SizeStep::More,
            _ => SizeStep::Bad,
        }
    }
}
