//! Frames on the wire (RFC 9113 §4, §6): types, flags, headers, and where a
//! frame boundary can be found again after framing was lost.

use super::{MAX_HEADER_BLOCK, MAX_SETTINGS, RESYNC_MAX_FRAME};

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

/// The RST_STREAM/GOAWAY error code of a stream the peer did not process.
pub(super) const REFUSED_STREAM_CODE: u32 = 0x7;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;
#[derive(Debug)]
pub(super) enum Framing {
    /// Nothing seen yet in this direction.
    Start,
    /// Matched this many bytes of the client preface.
    Preface(usize),
    /// Collecting a frame header.
    Header {
        buf: [u8; 9],
        len: usize,
    },
    Payload(Payload),
    /// Frame boundaries unknown.
    Lost,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FrameHeader {
    pub(super) length: u32,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

#[derive(Debug)]
pub(super) struct Payload {
    pub(super) frame: FrameHeader,
    /// Payload bytes still to come.
    pub(super) left: u32,
    /// Leading payload bytes kept (up to `keep`).
    pub(super) buf: Vec<u8>,
    pub(super) keep: usize,
    /// Some payload bytes were in a gap.
    pub(super) gap: bool,
}
pub(super) fn header_state() -> Framing {
    Framing::Header {
        buf: [0; 9],
        len: 0,
    }
}

pub(super) fn parse_header(buf: &[u8; 9]) -> FrameHeader {
    let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *buf;
    FrameHeader {
        length: u32::from_be_bytes([0, l0, l1, l2]),
        kind,
        flags,
        stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
    }
}

/// Whether a frame header can be right (RFC 9113 §6): stream id and fixed
/// lengths per type. Unknown types are allowed (and skipped).
pub(super) fn plausible(frame: &FrameHeader) -> bool {
    let on_stream = frame.stream != 0;
    match frame.kind {
        DATA | HEADERS | CONTINUATION => on_stream,
        PUSH_PROMISE => on_stream && frame.length >= 4,
        PRIORITY => on_stream && frame.length == 5,
        RST_STREAM => on_stream && frame.length == 4,
        SETTINGS => !on_stream && frame.length.is_multiple_of(6),
        PING => !on_stream && frame.length == 8,
        GOAWAY => !on_stream && frame.length >= 8,
        WINDOW_UPDATE => frame.length == 4,
        _ => true,
    }
}

/// Whether a segment can be taken to start at a frame boundary: a known,
/// plausible, not-too-large frame that is not a CONTINUATION, followed within
/// the capture by nothing or by another plausible frame header.
pub(super) fn resync_point(captured: &[u8]) -> bool {
    let check = |bytes: &[u8]| -> Option<FrameHeader> {
        let buf: &[u8; 9] = bytes.get(..9)?.try_into().ok()?;
        let frame = parse_header(buf);
        let reserved = buf.get(5).is_some_and(|b| b & 0x80 != 0);
        let ok = frame.kind < CONTINUATION
            && !reserved
            && frame.length <= RESYNC_MAX_FRAME
            && plausible(&frame);
        ok.then_some(frame)
    };
    let Some(first) = check(captured) else {
        return false;
    };
    let next = 9 + first.length as usize;
    match captured.get(next..) {
        Some(rest) if rest.len() >= 9 => check(rest).is_some(),
        _ => true,
    }
}

/// Whether a direction's first segment starts with the server preface, a
/// SETTINGS frame: a frame boundary whatever follows it (servers may send
/// extension frames such as ORIGIN or ALTSVC in the same write).
pub(super) fn server_preface(captured: &[u8]) -> bool {
    let Some(buf) = captured.get(..9).and_then(|b| <&[u8; 9]>::try_from(b).ok()) else {
        return false;
    };
    let frame = parse_header(buf);
    frame.kind == SETTINGS
        && frame.flags & ACK == 0
        && frame.length <= RESYNC_MAX_FRAME
        && plausible(&frame)
}

/// How many payload bytes of a frame are worth keeping.
pub(super) fn keep_len(frame: &FrameHeader) -> usize {
    let len = frame.length as usize;
    match frame.kind {
        HEADERS | PUSH_PROMISE | CONTINUATION => len.min(MAX_HEADER_BLOCK),
        SETTINGS => len.min(MAX_SETTINGS),
        DATA => 1,
        RST_STREAM | GOAWAY => 4,
        _ => 0,
    }
}

/// The header block fragment of a HEADERS or PUSH_PROMISE payload, without
/// padding, priority or promised stream id. `payload` is the whole payload
/// when `whole`, else only its first bytes (then so is the fragment). None
/// when the payload is malformed or too little of it was captured.
pub(super) fn block_fragment<'a>(
    frame: &FrameHeader,
    payload: &'a [u8],
    whole: bool,
) -> Option<&'a [u8]> {
    let (pad, padded) = if frame.flags & PADDED != 0 {
        (usize::from(*payload.first()?), 1)
    } else {
        (0, 0)
    };
    let skip = match frame.kind {
        PUSH_PROMISE => 4,
        _ if frame.flags & PRIORITY_FLAG != 0 => 5,
        _ => 0,
    };
    let start = padded + skip;
    // Where the fragment ends in the full payload (padding follows it).
    let end = (frame.length as usize).checked_sub(pad)?;
    if end < start {
        return None;
    }
    if whole {
        return payload.get(start..end);
    }
    payload.get(start..end.min(payload.len()))
}
