//! Heads cut by a gap or longer than the buffer: their end and framing
//! fields are looked for in the captured bytes that follow.

use memchr::{memchr, memchr_iter};

use super::framing::ReqKind;
use super::head::{Headers, LastRequest};
use super::message::HttpMessage;
use super::{len64, MAX_CUT_HEAD, MAX_CUT_LINE};

/// What is known of a message whose head a gap cut.
#[derive(Debug, Default)]
pub(super) struct CutHead {
    /// Bytes of the message so far, captured or not, head included.
    pub(super) wire: u64,
    /// Head bytes captured before the cut: the head is at least this long.
    pub(super) seen: u64,
    /// Framing fields read from the captured parts of the head.
    pub(super) headers: Headers,
    /// For a final response: what its request was.
    pub(super) answers: Option<ReqKind>,
    /// The next captured byte follows a gap.
    pub(super) after_gap: bool,
    /// Inside a line whose start was not captured.
    pub(super) in_unknown_line: bool,
    /// The current line so far, when it spans segments.
    pub(super) line: Vec<u8>,
    /// The head's end can no longer be told apart (it may have been in a gap).
    pub(super) end_lost: bool,
    /// A whole field line was read since the last gap: a blank line after
    /// it ends the head (and not, say, a body the gap led into).
    pub(super) field_since_gap: bool,
}
/// Reads the captured bytes of a cut head: header fields on complete lines,
/// and the blank line that ends it. Returns the offset in `rest` just past
/// that line, or None when all of `rest` belongs to the head (so far).
///
/// Right after a gap, a blank line could as well be in a body the gap led
/// into: it ends the head only after a whole field line, or when it ends a
/// segment that was captured to its end (as a request without a body does).
pub(super) fn read_cut_head(cut: &mut CutHead, rest: &[u8], whole_segment: bool) -> Option<usize> {
    if std::mem::take(&mut cut.after_gap) && matches!(rest.first(), Some(b'\r' | b'\n')) {
        // The gap may have ended just before the blank line: it cannot be
        // told from the end of a field line any more.
        cut.end_lost = true;
    }
    if cut.wire > MAX_CUT_HEAD {
        cut.end_lost = true;
    }
    let before = cut.wire;
    cut.wire = cut.wire.saturating_add(len64(rest));
    if cut.end_lost {
        return None;
    }
    let mut pos = 0;
    for nl in memchr_iter(b'\n', rest) {
        let piece = rest.get(pos..nl).unwrap_or_default();
        pos = nl + 1;
        if std::mem::take(&mut cut.in_unknown_line) {
            cut.line.clear();
            continue;
        }
        let blank = matches!(piece, [] | [b'\r']) && cut.line.is_empty();
        if blank && !cut.field_since_gap && !(whole_segment && pos == rest.len()) {
            cut.end_lost = true;
            return None;
        }
        let line: &[u8] = if cut.line.is_empty() {
            piece
        } else {
            cut.line.extend_from_slice(piece);
            &cut.line
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            cut.line.clear();
            cut.wire = before.saturating_add(len64(rest.get(..pos).unwrap_or_default()));
            return Some(pos);
        }
        if !is_field_line(line) {
            // Not a header field: this is past the head, whose end was not seen.
            cut.end_lost = true;
            cut.line.clear();
            return None;
        }
        cut.headers.field(line, &LastRequest::NONE);
        cut.field_since_gap = true;
        cut.line.clear();
    }
    let tail = rest.get(pos..).unwrap_or_default();
    if !cut.in_unknown_line {
        if cut.line.len() + tail.len() <= MAX_CUT_LINE {
            cut.line.extend_from_slice(tail);
        } else {
            cut.line.clear();
            cut.in_unknown_line = true;
        }
    }
    None
}

/// A header field line (`name: value`) or the continuation of one.
fn is_field_line(line: &[u8]) -> bool {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return true;
    }
    match memchr(b':', line) {
        Some(colon) if colon > 0 => line
            .get(..colon)
            .unwrap_or_default()
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
        _ => false,
    }
}

/// Moves the fields read after a cut into the message (those read before win).
pub(super) fn take_fields(msg: &mut HttpMessage, headers: &mut Headers) {
    msg.host = msg.host.take().or(headers.host.take());
    msg.traceparent = msg.traceparent.take().or(headers.traceparent.take());
    msg.user_agent = msg.user_agent.take().or(headers.user_agent.take());
    msg.content_type = msg.content_type.or(headers.content_type);
    msg.chunked = msg.chunked || headers.chunked;
}
