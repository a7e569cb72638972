//! HTTP/1.x message framing for one direction of a captured TCP stream.
//!
//! The kernel hands us one *segment* per read/write syscall: the first bytes of
//! the payload plus a count of bytes that were moved but not captured (a gap).
//! [`Http1Stream`] follows RFC 9112 framing across such segments and emits one
//! [`HttpMessage`] summary per request or response. Pairing requests with
//! responses is left to the caller.
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

use std::collections::VecDeque;

use memchr::{memchr, memchr_iter, memrchr};

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

/// The start line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageHead {
    Request { method: String, target: String },
    Response { status: u16 },
}

/// Summary of one HTTP/1.x message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpMessage {
    pub head: MessageHead,
    /// HTTP/1.0 -> 0, HTTP/1.1 -> 1 (1 when the version was cut off).
    pub version_minor: u8,
    pub host: Option<String>,
    pub traceparent: Option<String>,
    pub content_type: Option<String>,
    /// `Transfer-Encoding` names `chunked` as the final coding.
    pub chunked: bool,
    /// Body bytes seen (captured + gap), chunk payload only for chunked bodies.
    /// A lower bound for truncated messages.
    pub body_size: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub truncated: bool,
}

/// Turns one direction of a TCP stream into HTTP/1.x messages.
#[derive(Debug, Default)]
pub struct Http1Stream {
    state: State,
    /// Bytes of the segment being fed that were not captured.
    missing: u64,
    /// What the next final responses answer, oldest first.
    expected: VecDeque<ReqKind>,
    garbage: u64,
}

/// The request properties that change how its response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqKind {
    Head,
    Connect,
    Other,
}

#[derive(Debug, Default)]
enum State {
    /// Between messages.
    #[default]
    Idle,
    /// Collecting the start line and header fields.
    Head(HeadBuf),
    /// Head done; following the body framing.
    Body(Box<HttpMessage>, Body),
    /// Framing lost: segments belong to this message until one starts a new
    /// one, the other direction speaks or the connection closes.
    Resync(Box<HttpMessage>),
    /// The head was cut by a gap (or outgrew [`MAX_HEAD`]): the rest of it is
    /// read from what is captured next, and the message measured by the
    /// segments' lengths.
    CutHead(Box<HttpMessage>, Box<CutHead>),
    /// 101 or successful CONNECT: the rest of the stream is not HTTP/1.
    Upgraded,
}

#[derive(Debug)]
struct HeadBuf {
    /// The head so far, when it spans segments; a head that arrives in one
    /// segment is read in place and never copied here.
    bytes: Vec<u8>,
    first_ts: u64,
    last_ts: u64,
    /// The start line, once it is complete and valid (it is parsed once).
    start: Option<StartLine>,
    /// Where the search for the blank line resumes.
    scanned: usize,
}

#[derive(Debug, Clone, Copy)]
enum Body {
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
const LAST_CHUNK: u64 = 5;

/// What is known of a message whose head a gap cut.
#[derive(Debug, Default)]
struct CutHead {
    /// Bytes of the message so far, captured or not, head included.
    wire: u64,
    /// Head bytes captured before the cut: the head is at least this long.
    seen: u64,
    /// Framing fields read from the captured parts of the head.
    headers: Headers,
    /// For a final response: what its request was.
    answers: Option<ReqKind>,
    /// The next captured byte follows a gap.
    after_gap: bool,
    /// Inside a line whose start was not captured.
    in_unknown_line: bool,
    /// The current line so far, when it spans segments.
    line: Vec<u8>,
    /// The head's end can no longer be told apart (it may have been in a gap).
    end_lost: bool,
    /// A whole field line was read since the last gap: a blank line after
    /// it ends the head (and not, say, a body the gap led into).
    field_since_gap: bool,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
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
struct SizeLine {
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
enum Next {
    Body(Body),
    Done,
    Upgrade,
    Lost,
}

/// Result of feeding bytes to the current state.
enum Step {
    Took(usize),
    /// The rest of the segment, gap included, has been dealt with.
    DropRest,
}

/// A parsed start line, as positions in the head (the line begins at 0):
/// nothing is copied until the message is built.
#[derive(Debug, Clone, Copy)]
struct StartLine {
    kind: LineKind,
    minor: u8,
}

#[derive(Debug, Clone, Copy)]
enum LineKind {
    /// The method is `head[..method_len]`, the target the `target_len`
    /// bytes after the space that follows it.
    Request {
        method_len: usize,
        target_len: usize,
    },
    Response {
        status: u16,
    },
}

/// What the bytes of a head so far amount to.
enum HeadScan {
    /// The start line is not one.
    Bad,
    /// The head ends (just past its blank line) at this offset; its header
    /// fields, when they were read on the way.
    Complete(usize, Option<Headers>),
    /// Valid so far; more bytes are needed.
    Partial,
}

/// Verdict on a (possibly partial) start line.
enum Parse {
    Bad,
    /// Valid so far; carries what is known once method+target or status are in.
    More(Option<StartLine>),
    Line(StartLine),
}

enum Version {
    Bad,
    Prefix,
    Minor(u8),
}

/// The header fields we care about.
#[derive(Debug, Default)]
struct Headers {
    host: Option<String>,
    traceparent: Option<String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    bad_length: bool,
    transfer_encoding: bool,
    chunked: bool,
}

impl Http1Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one segment observed at `ts_ns`. Completed messages are pushed to `out`.
    pub fn feed(&mut self, captured: &[u8], missing: u64, ts_ns: u64, out: &mut Vec<HttpMessage>) {
        let ends_waiting = match &mut self.state {
            State::Resync(msg) => {
                if !starts_message(captured, missing) {
                    // Anything but a fresh start line belongs to the lost message.
                    msg.last_ts_ns = ts_ns;
                    return;
                }
                true
            }
            State::CutHead(..) | State::Body(_, Body::UntilTurn | Body::ChunkTail(_)) => {
                starts_message(captured, missing)
            }
            _ => false,
        };
        if ends_waiting {
            self.complete_waiting(out);
        }
        if captured.is_empty() && missing > 0 && matches!(self.state, State::Idle) {
            // Nothing captured means nothing that could start a message.
            self.garbage += 1;
            return;
        }
        self.missing = missing;
        let mut rest = captured;
        while !rest.is_empty() {
            match self.step(rest, ts_ns, out) {
                Step::Took(n) => rest = rest.get(n..).unwrap_or_default(),
                Step::DropRest => return,
            }
        }
        if missing > 0 {
            self.on_gap(missing, ts_ns, out);
        }
    }

    /// The other direction of the connection carries data now (`peer` is the
    /// start of its segment). A message here that waits only for an end the
    /// capture cannot show (its head or its framing was cut) is complete:
    /// neither side of HTTP/1 speaks before the other is done, except for
    /// interim responses, after which the request goes on.
    pub fn peer_spoke(&mut self, peer: &[u8], out: &mut Vec<HttpMessage>) {
        let waiting = matches!(
            self.state,
            State::CutHead(..)
                | State::Resync(_)
                | State::Body(_, Body::UntilTurn | Body::ChunkTail(_))
        );
        if waiting && !is_interim_response(peer) {
            self.complete_waiting(out);
        }
    }

    /// For a stream carrying responses: the next final response answers a
    /// request with this method. Call once per request, in request order.
    pub fn expect_response_to(&mut self, method: &str) {
        let kind = match method {
            "HEAD" => ReqKind::Head,
            "CONNECT" => ReqKind::Connect,
            _ => ReqKind::Other,
        };
        if self.expected.len() < MAX_PENDING {
            self.expected.push_back(kind);
        }
    }

    /// Connection closed: complete a read-until-close body, or emit the
    /// in-progress message as truncated.
    ///
    /// `ts_ns` is the close time. It is not copied into any message: a
    /// message ends at the last segment that carried its bytes.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<HttpMessage>) {
        let _ = ts_ns;
        match std::mem::take(&mut self.state) {
            State::Head(head) => self.lose_head(&head, &head.bytes),
            State::Body(mut msg, body) => {
                msg.truncated = match body {
                    Body::UntilClose | Body::UntilTurn => false,
                    Body::ChunkTail(hidden) => hidden != LAST_CHUNK,
                    _ => true,
                };
                out.push(*msg);
            }
            other => self.state = other,
        }
        self.complete_waiting(out);
    }

    /// Whether a message is being read (its first bytes came, it is not done).
    pub fn in_message(&self) -> bool {
        !matches!(self.state, State::Idle | State::Upgraded)
    }

    /// Segments (or stale partial start lines) dropped as not HTTP.
    pub fn garbage_segments(&self) -> u64 {
        self.garbage
    }

    /// True after a 101 Switching Protocols response or a successful CONNECT.
    pub fn is_upgraded(&self) -> bool {
        matches!(self.state, State::Upgraded)
    }

    /// Emits the message that waits only for its end, if any: one being
    /// resynced, one whose head was cut, one whose body ends where the
    /// other direction speaks.
    fn complete_waiting(&mut self, out: &mut Vec<HttpMessage>) {
        match std::mem::take(&mut self.state) {
            State::Resync(msg) | State::Body(msg, Body::UntilTurn) => out.push(*msg),
            State::Body(mut msg, Body::ChunkTail(hidden)) => {
                msg.truncated = hidden != LAST_CHUNK;
                out.push(*msg);
            }
            State::CutHead(msg, cut) => self.end_cut_head(msg, *cut, out),
            other => self.state = other,
        }
    }

    /// A message whose head's end was never seen is over: its body size is
    /// what its `Content-Length` says when the segments' lengths agree (the
    /// head then ended beyond what was captured), else unknown.
    fn end_cut_head(
        &mut self,
        mut msg: Box<HttpMessage>,
        mut cut: CutHead,
        out: &mut Vec<HttpMessage>,
    ) {
        take_fields(&mut msg, &mut cut.headers);
        let (no_body, upgrade) = match msg.head {
            MessageHead::Response { status } => {
                let connected =
                    cut.answers == Some(ReqKind::Connect) && (200..300).contains(&status);
                let bodiless = status < 200
                    || status == 204
                    || status == 304
                    || cut.answers == Some(ReqKind::Head);
                (bodiless || connected, status == 101 || connected)
            }
            MessageHead::Request { .. } => (false, false),
        };
        let headers = &cut.headers;
        let counted = headers.content_length.filter(|&n| {
            !headers.bad_length
                && !headers.transfer_encoding
                && cut.wire.saturating_sub(n) > cut.seen
        });
        (msg.body_size, msg.truncated) = match counted {
            _ if no_body => (0, false),
            Some(n) => (n, false),
            None => (0, true),
        };
        out.push(*msg);
        if upgrade {
            self.state = State::Upgraded;
        }
    }

    /// Where a message goes once the end of its cut head was found.
    fn cut_head_framing(&mut self, msg: &HttpMessage, cut: &CutHead) -> Next {
        let headers = &cut.headers;
        let framed =
            headers.transfer_encoding || headers.content_length.is_some() || headers.bad_length;
        let response = match msg.head {
            MessageHead::Response { status } => {
                if status == 101 {
                    return Next::Upgrade;
                }
                if status < 200 {
                    return Next::Done;
                }
                match cut.answers {
                    Some(ReqKind::Head) => return Next::Done,
                    Some(ReqKind::Connect) if status < 300 => return Next::Upgrade,
                    _ if status == 204 || status == 304 => return Next::Done,
                    _ => true,
                }
            }
            MessageHead::Request { .. } => false,
        };
        if framed {
            body_framing(headers, response)
        } else {
            // The framing fields may have been in the gap.
            Next::Body(Body::UntilTurn)
        }
    }

    fn step(&mut self, rest: &[u8], ts: u64, out: &mut Vec<HttpMessage>) -> Step {
        match std::mem::take(&mut self.state) {
            State::Idle => {
                // Stray CRLFs between messages are allowed (RFC 9112 §2.2).
                let blank = rest.len() - skip_blank_lines(rest).len();
                if blank == 0 {
                    let head = HeadBuf {
                        bytes: Vec::new(),
                        first_ts: ts,
                        last_ts: ts,
                        start: None,
                        scanned: 0,
                    };
                    self.state = State::Head(head);
                }
                Step::Took(blank)
            }
            State::Head(mut head) => {
                head.last_ts = ts;
                self.step_head(head, rest, out)
            }
            State::Body(mut msg, body) => {
                msg.last_ts_ns = ts;
                let (taken, next) = match take_counted(body, len64(rest), &mut msg.body_size) {
                    Some((n, next)) => (to_usize(n), next),
                    None => step_chunk(body, rest),
                };
                self.settle(msg, next, out);
                Step::Took(taken)
            }
            State::CutHead(mut msg, mut cut) => {
                msg.last_ts_ns = ts;
                match read_cut_head(&mut cut, rest, self.missing == 0) {
                    None => {
                        self.state = State::CutHead(msg, cut);
                        Step::Took(rest.len())
                    }
                    Some(end) => {
                        take_fields(&mut msg, &mut cut.headers);
                        let next = self.cut_head_framing(&msg, &cut);
                        self.settle(msg, next, out);
                        Step::Took(end)
                    }
                }
            }
            // Resyncing (the message already owns this segment) or upgraded.
            other => {
                self.state = other;
                Step::DropRest
            }
        }
    }

    fn step_head(&mut self, mut head: HeadBuf, rest: &[u8], out: &mut Vec<HttpMessage>) -> Step {
        let old = head.bytes.len();
        let take = rest.len().min(MAX_HEAD.saturating_sub(old));
        let fresh = rest.get(..take).unwrap_or_default();
        // A head that starts in this segment is read in place; only one that
        // spans segments is copied, so that its parts are contiguous.
        let buffered = old > 0;
        let mut bytes = std::mem::take(&mut head.bytes);
        if buffered {
            bytes.extend_from_slice(fresh);
        }
        let view: &[u8] = if buffered { &bytes } else { fresh };
        match scan_head(&mut head, view) {
            HeadScan::Bad if buffered => {
                // Drop only the stale partial line; this segment gets its own chance.
                self.garbage += 1;
                Step::Took(0)
            }
            HeadScan::Bad => {
                self.garbage += 1;
                Step::DropRest
            }
            HeadScan::Complete(end, headers) => {
                let taken = end.saturating_sub(old);
                let Some((mut msg, next)) =
                    self.complete_head(&head, view.get(..end).unwrap_or(view), headers)
                else {
                    return Step::Took(taken);
                };
                // The body often follows in the same segment: take its counted
                // part now (as the next step would), so that a message done
                // within the segment is never boxed.
                let after = rest.get(taken..).unwrap_or_default();
                if let (Next::Body(body), false) = (&next, after.is_empty()) {
                    if let Some((n, next)) = take_counted(*body, len64(after), &mut msg.body_size) {
                        self.settle_new(msg, next, out);
                        return Step::Took(taken.saturating_add(to_usize(n)));
                    }
                }
                self.settle_new(msg, next, out);
                Step::Took(taken)
            }
            HeadScan::Partial if view.len() >= MAX_HEAD => {
                self.lose_head(&head, view);
                if let State::CutHead(_, cut) = &mut self.state {
                    // No gap: the last line goes on in the bytes that follow.
                    let tail = memrchr(b'\n', view)
                        .map_or(view, |i| view.get(i + 1..).unwrap_or_default());
                    cut.field_since_gap = true;
                    if tail.len() <= MAX_CUT_LINE {
                        cut.in_unknown_line = false;
                        cut.line.extend_from_slice(tail);
                    }
                }
                Step::Took(take)
            }
            HeadScan::Partial => {
                if !buffered {
                    bytes.extend_from_slice(fresh);
                }
                head.bytes = bytes;
                self.state = State::Head(head);
                Step::Took(take)
            }
        }
    }

    /// The message of a complete head, and where it goes next.
    fn complete_head(
        &mut self,
        head: &HeadBuf,
        bytes: &[u8],
        headers: Option<Headers>,
    ) -> Option<(HttpMessage, Next)> {
        let Some(start) = head.start else {
            self.garbage += 1;
            return None;
        };
        let headers = headers.unwrap_or_else(|| parse_headers(bytes));
        let next = match start.kind {
            LineKind::Request { .. } => body_framing(&headers, false),
            LineKind::Response { status } => self.response_framing(status, &headers),
        };
        Some((new_message(start, bytes, headers, head), next))
    }

    fn response_framing(&mut self, status: u16, headers: &Headers) -> Next {
        if status == 101 {
            return Next::Upgrade;
        }
        if status < 200 {
            // Interim response: the final one is still to come for the same request.
            return Next::Done;
        }
        match self.expected.pop_front() {
            Some(ReqKind::Head) => Next::Done,
            Some(ReqKind::Connect) if status < 300 => Next::Upgrade,
            _ if status == 204 || status == 304 => Next::Done,
            _ => body_framing(headers, true),
        }
    }

    /// The head cannot be completed from what was buffered: keep what is
    /// known and read on in what follows, or drop it when not even the start
    /// line is known.
    fn lose_head(&mut self, head: &HeadBuf, bytes: &[u8]) {
        let start = match check_start(bytes) {
            Parse::Line(start) | Parse::More(Some(start)) => start,
            _ => {
                self.garbage += 1;
                return;
            }
        };
        let answers = match start.kind {
            // A final response consumes its request even when cut.
            LineKind::Response { status } if status >= 200 => self.expected.pop_front(),
            _ => None,
        };
        let headers = parse_headers(bytes);
        let framing = Headers {
            content_length: headers.content_length,
            bad_length: headers.bad_length,
            transfer_encoding: headers.transfer_encoding,
            chunked: headers.chunked,
            ..Headers::default()
        };
        let msg = Box::new(new_message(start, bytes, headers, head));
        let cut = CutHead {
            wire: len64(bytes),
            seen: len64(bytes),
            headers: framing,
            answers,
            in_unknown_line: true,
            ..CutHead::default()
        };
        self.state = State::CutHead(msg, Box::new(cut));
    }

    fn on_gap(&mut self, gap: u64, ts: u64, out: &mut Vec<HttpMessage>) {
        match std::mem::take(&mut self.state) {
            State::Head(mut head) => {
                head.last_ts = ts;
                self.lose_head(&head, &head.bytes);
                if matches!(self.state, State::CutHead(..)) {
                    self.on_gap(gap, ts, out);
                }
            }
            State::Body(mut msg, body) => {
                msg.last_ts_ns = ts;
                let next = gap_in_body(body, gap, &mut msg.body_size);
                self.settle(msg, next, out);
            }
            State::CutHead(mut msg, mut cut) => {
                msg.last_ts_ns = ts;
                cut.wire = cut.wire.saturating_add(gap);
                cut.after_gap = true;
                cut.field_since_gap = false;
                cut.in_unknown_line = true;
                cut.line.clear();
                self.state = State::CutHead(msg, cut);
            }
            // Idle: the gap holds the start of something we cannot see.
            other => self.state = other,
        }
    }

    /// Like [`Self::settle`] for a message not boxed yet: it gets a box only
    /// if it has to wait in the state.
    fn settle_new(&mut self, msg: HttpMessage, next: Next, out: &mut Vec<HttpMessage>) {
        match next {
            Next::Done => out.push(msg),
            Next::Upgrade => {
                out.push(msg);
                self.state = State::Upgraded;
            }
            Next::Body(_) | Next::Lost => self.settle(Box::new(msg), next, out),
        }
    }

    /// Moves a message on to its next state, emitting it when it is done.
    fn settle(&mut self, mut msg: Box<HttpMessage>, next: Next, out: &mut Vec<HttpMessage>) {
        match next {
            Next::Body(body) => self.state = State::Body(msg, body),
            Next::Done => out.push(*msg),
            Next::Upgrade => {
                out.push(*msg);
                self.state = State::Upgraded;
            }
            Next::Lost => {
                msg.truncated = true;
                self.state = State::Resync(msg);
            }
        }
    }
}

/// Whether a segment seen while resyncing visibly begins a new message.
fn starts_message(captured: &[u8], missing: u64) -> bool {
    match check_start(skip_blank_lines(captured)) {
        Parse::Line(_) => true,
        // A start line longer than the capture still counts.
        Parse::More(Some(_)) => missing > 0,
        _ => false,
    }
}

/// Whether bytes start with an interim (1xx but not 101) status line.
fn is_interim_response(bytes: &[u8]) -> bool {
    match check_start(bytes) {
        Parse::Line(start) | Parse::More(Some(start)) => matches!(
            start.kind,
            LineKind::Response { status } if status < 200 && status != 101
        ),
        _ => false,
    }
}

/// Reads the captured bytes of a cut head: header fields on complete lines,
/// and the blank line that ends it. Returns the offset in `rest` just past
/// that line, or None when all of `rest` belongs to the head (so far).
///
/// Right after a gap, a blank line could as well be in a body the gap led
/// into: it ends the head only after a whole field line, or when it ends a
/// segment that was captured to its end (as a request without a body does).
fn read_cut_head(cut: &mut CutHead, rest: &[u8], whole_segment: bool) -> Option<usize> {
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
        cut.headers.field(line);
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
fn take_fields(msg: &mut HttpMessage, headers: &mut Headers) {
    msg.host = msg.host.take().or(headers.host.take());
    msg.traceparent = msg.traceparent.take().or(headers.traceparent.take());
    msg.content_type = msg.content_type.take().or(headers.content_type.take());
    msg.chunked = msg.chunked || headers.chunked;
}

/// Checks the start line (until it is complete) and looks for the end of the
/// head in `bytes`, the head so far.
fn scan_head(head: &mut HeadBuf, bytes: &[u8]) -> HeadScan {
    if head.start.is_none() {
        match check_start(bytes) {
            Parse::Bad => return HeadScan::Bad,
            Parse::Line(start) => head.start = Some(start),
            // The start line is still incomplete: no blank line yet either.
            Parse::More(_) => {}
        }
    }
    if head.start.is_some() && head.scanned == 0 {
        // Usually the whole head is here: one pass finds its end and reads
        // its fields.
        if let Some((end, headers)) = read_head(bytes) {
            return HeadScan::Complete(end, Some(headers));
        }
    }
    match find_head_end(bytes, head.scanned) {
        Some(end) => HeadScan::Complete(end, None),
        None => {
            head.scanned = bytes.len().saturating_sub(2);
            HeadScan::Partial
        }
    }
}

/// The message of a head; `bytes` starts with the start line `start` was
/// parsed from.
fn new_message(start: StartLine, bytes: &[u8], headers: Headers, head: &HeadBuf) -> HttpMessage {
    let head_kind = match start.kind {
        LineKind::Request {
            method_len,
            target_len,
        } => {
            let (method, rest) = bytes.split_at_checked(method_len).unwrap_or((bytes, &[]));
            let target = rest.get(1..).unwrap_or_default();
            MessageHead::Request {
                method: lossy_truncated(method, MAX_METHOD),
                target: lossy_truncated(target.get(..target_len).unwrap_or(target), MAX_TARGET),
            }
        }
        LineKind::Response { status } => MessageHead::Response { status },
    };
    HttpMessage {
        head: head_kind,
        version_minor: start.minor,
        host: headers.host,
        traceparent: headers.traceparent,
        content_type: headers.content_type,
        chunked: headers.chunked,
        body_size: 0,
        first_ts_ns: head.first_ts,
        last_ts_ns: head.last_ts,
        truncated: false,
    }
}

/// Body framing from the header fields (RFC 9112 §6.3), once the
/// status-based no-body cases are ruled out.
fn body_framing(headers: &Headers, response: bool) -> Next {
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
fn take_counted(body: Body, n: u64, body_size: &mut u64) -> Option<(u64, Next)> {
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
fn step_chunk(body: Body, rest: &[u8]) -> (usize, Next) {
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
fn gap_in_body(body: Body, gap: u64, body_size: &mut u64) -> Next {
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

/// Finds the end of the head (just past the blank line), searching from `from`.
fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    memchr_iter(b'\n', tail).find_map(|i| match tail.get(i + 1..) {
        Some([b'\n', ..]) => Some(from + i + 2),
        Some([b'\r', b'\n', ..]) => Some(from + i + 3),
        _ => None,
    })
}

fn skip_blank_lines(bytes: &[u8]) -> &[u8] {
    let blank = bytes
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    bytes.get(blank..).unwrap_or_default()
}

/// Judges the start line at the beginning of `buf`, which may be incomplete.
fn check_start(buf: &[u8]) -> Parse {
    let (line, complete) = match memchr(b'\n', buf) {
        Some(i) => (buf.get(..i).unwrap_or_default(), true),
        None => (buf, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match (request_line(line, complete), status_line(line, complete)) {
        (Parse::Line(start), _) | (_, Parse::Line(start)) => Parse::Line(start),
        (Parse::More(a), Parse::More(b)) => Parse::More(a.or(b)),
        (Parse::More(known), Parse::Bad) | (Parse::Bad, Parse::More(known)) => Parse::More(known),
        (Parse::Bad, Parse::Bad) => Parse::Bad,
    }
}

/// Running out of bytes is fine for a line still arriving, fatal for a whole one.
fn cut_short(complete: bool, known: Option<StartLine>) -> Parse {
    if complete {
        Parse::Bad
    } else {
        Parse::More(known)
    }
}

/// A start line that parsed fully, though more bytes of it may still come.
fn parsed(complete: bool, start: StartLine) -> Parse {
    if complete {
        Parse::Line(start)
    } else {
        Parse::More(Some(start))
    }
}

/// `METHOD SP target SP HTTP/1.x`
fn request_line(line: &[u8], complete: bool) -> Parse {
    let method_len = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let (method, rest) = line.split_at_checked(method_len).unwrap_or((line, &[]));
    if method_len > MAX_METHOD {
        return Parse::Bad;
    }
    if rest.is_empty() {
        return cut_short(complete, None);
    }
    let Some(rest) = rest.strip_prefix(b" ").filter(|_| !method.is_empty()) else {
        return Parse::Bad;
    };
    let target_len = rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count();
    let (target, rest) = rest.split_at_checked(target_len).unwrap_or((rest, &[]));
    match (target.is_empty(), rest.is_empty()) {
        (true, true) => return cut_short(complete, None),
        (true, false) => return Parse::Bad,
        _ => {}
    }
    let start = StartLine {
        kind: LineKind::Request {
            method_len: method.len(),
            target_len: target.len(),
        },
        minor: 1,
    };
    if rest.is_empty() {
        return cut_short(complete, Some(start));
    }
    match rest.strip_prefix(b" ").map(match_version) {
        Some(Version::Minor(minor)) => parsed(complete, StartLine { minor, ..start }),
        Some(Version::Prefix) => cut_short(complete, Some(start)),
        _ => Parse::Bad,
    }
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`
fn status_line(line: &[u8], complete: bool) -> Parse {
    let (version, rest) = line.split_at_checked(8).unwrap_or((line, &[]));
    let minor = match match_version(version) {
        Version::Minor(minor) => minor,
        Version::Prefix => return cut_short(complete, None),
        Version::Bad => return Parse::Bad,
    };
    if rest.is_empty() {
        return cut_short(complete, None);
    }
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Parse::Bad;
    };
    let digits = rest
        .iter()
        .take(3)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let (code, reason) = rest.split_at_checked(digits).unwrap_or((rest, &[]));
    match (digits, reason.is_empty()) {
        (3, _) => {}
        (_, true) => return cut_short(complete, None),
        (_, false) => return Parse::Bad,
    }
    // Three digits cannot overflow u16.
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    let reason_ok = reason.is_empty()
        || reason
            .strip_prefix(b" ")
            .is_some_and(|r| r.iter().all(|&b| is_text(b)));
    if !(100..=599).contains(&status) || !reason_ok {
        return Parse::Bad;
    }
    parsed(
        complete,
        StartLine {
            kind: LineKind::Response { status },
            minor,
        },
    )
}

/// Matches `HTTP/1.0` or `HTTP/1.1`, or a prefix of them.
fn match_version(v: &[u8]) -> Version {
    const NAME: &[u8] = b"HTTP/1.";
    match v.split_at_checked(NAME.len()) {
        Some((name, [d @ (b'0' | b'1')])) if name == NAME => Version::Minor(d - b'0'),
        _ if v.len() <= NAME.len() && NAME.starts_with(v) => Version::Prefix,
        _ => Version::Bad,
    }
}

/// Visible characters, spaces and tabs.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

/// Reads the header fields after the start line, up to the blank line or,
/// in a cut head, up to the last complete line.
fn parse_headers(head: &[u8]) -> Headers {
    let mut headers = Headers::default();
    let mut lines = HeadLines::new(head);
    for _ in 0..MAX_HEADERS {
        // None: cut mid-line, the value may be incomplete.
        match lines.next() {
            Some((line, _)) if !line.is_empty() => headers.field(line),
            _ => break,
        }
    }
    headers
}

/// One pass over a head that may be complete: where it ends (just past its
/// blank line, as [`find_head_end`] from 0) and its header fields (as
/// [`parse_headers`]); None when the blank line is not there yet.
fn read_head(head: &[u8]) -> Option<(usize, Headers)> {
    let mut headers = Headers::default();
    let mut lines = HeadLines::new(head);
    let mut count = 0;
    loop {
        let (line, end) = lines.next()?;
        if line.is_empty() {
            return Some((end, headers));
        }
        if count < MAX_HEADERS {
            headers.field(line);
        }
        count += 1;
    }
}

/// The complete lines after the start line, without their line ending,
/// each with the offset just past it.
struct HeadLines<'a> {
    head: &'a [u8],
    pos: Option<usize>,
}

impl<'a> HeadLines<'a> {
    fn new(head: &'a [u8]) -> Self {
        Self {
            head,
            pos: memchr(b'\n', head).map(|i| i + 1),
        }
    }
}

impl<'a> Iterator for HeadLines<'a> {
    type Item = (&'a [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.pos?;
        let rest = self.head.get(pos..)?;
        let Some(len) = memchr(b'\n', rest) else {
            self.pos = None;
            return None;
        };
        let end = pos + len + 1;
        self.pos = Some(end);
        let line = rest.get(..len).unwrap_or_default();
        Some((line.strip_suffix(b"\r").unwrap_or(line), end))
    }
}

impl Headers {
    /// One `name: value` line; lines without a colon are ignored.
    fn field(&mut self, line: &[u8]) {
        let Some(colon) = memchr(b':', line) else {
            return;
        };
        let (name, value) = line.split_at_checked(colon).unwrap_or((line, &[]));
        self.apply(name, value.get(1..).unwrap_or_default().trim_ascii());
    }

    fn apply(&mut self, name: &[u8], value: &[u8]) {
        // The length rules out most fields before any comparison.
        let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
        match name.len() {
            4 if is(b"host") => keep_first(&mut self.host, value),
            11 if is(b"traceparent") => keep_first(&mut self.traceparent, value),
            12 if is(b"content-type") => keep_first(&mut self.content_type, value),
            14 if is(b"content-length") => self.add_length(value),
            17 if is(b"transfer-encoding") => {
                // Only the final coding decides the framing.
                self.transfer_encoding = true;
                let mut codings = value.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii);
                let last = codings.find(|t| !t.is_empty());
                self.chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            }
            _ => {}
        }
    }

    /// Accepts `n` or a list of identical `n`s (RFC 9110 §8.6); anything else is fatal.
    fn add_length(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii());
            if n.is_none() || self.content_length.is_some_and(|old| Some(old) != n) {
                self.bad_length = true;
            }
            self.content_length = self.content_length.or(n);
        }
    }
}

fn keep_first(slot: &mut Option<String>, value: &[u8]) {
    if slot.is_none() {
        *slot = Some(lossy_truncated(value, MAX_VALUE));
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let digit = char::from(d).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Lossy UTF-8 text cut to at most `max` bytes on a char boundary.
fn lossy_truncated(bytes: &[u8], max: usize) -> String {
    // Lossy decoding never shrinks text, and only the last 3 input bytes of a
    // prefix can decode differently, so `max + 4` input bytes are enough.
    let prefix = bytes.get(..max.saturating_add(4)).unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(prefix) {
        // Valid UTF-8 (the usual case) decodes to itself: one copy.
        return text
            .get(..floor_char_boundary(text, max))
            .unwrap_or_default()
            .to_owned();
    }
    let mut text = String::from_utf8_lossy(prefix).into_owned();
    if text.len() > max {
        text.truncate(floor_char_boundary(&text, max));
    }
    text
}

/// The largest char boundary of `text` at or below `max`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    if max >= text.len() {
        return text.len();
    }
    (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

fn len64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Segment<'a> = (&'a [u8], u64);

    /// Feeds segments with timestamps 1, 2, 3, ... and returns what came out.
    fn run(stream: &mut Http1Stream, segments: &[Segment]) -> Vec<HttpMessage> {
        let mut out = Vec::new();
        for (ts, (captured, missing)) in (1u64..).zip(segments) {
            stream.feed(captured, *missing, ts, &mut out);
        }
        out
    }

    fn parse(segments: &[Segment]) -> (Vec<HttpMessage>, Http1Stream) {
        let mut stream = Http1Stream::new();
        let out = run(&mut stream, segments);
        (out, stream)
    }

    fn request(method: &str, target: &str) -> MessageHead {
        MessageHead::Request {
            method: method.into(),
            target: target.into(),
        }
    }

    fn response(status: u16) -> MessageHead {
        MessageHead::Response { status }
    }

    fn without_ts(mut msg: HttpMessage) -> HttpMessage {
        msg.first_ts_ns = 0;
        msg.last_ts_ns = 0;
        msg
    }

    fn msg(head: MessageHead, body_size: u64) -> HttpMessage {
        HttpMessage {
            head,
            version_minor: 1,
            host: None,
            traceparent: None,
            content_type: None,
            chunked: false,
            body_size,
            first_ts_ns: 0,
            last_ts_ns: 0,
            truncated: false,
        }
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn simple_get_and_200_with_content_length() {
        let req = format!(
            "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\
            traceparent: {TRACEPARENT}\r\n\r\n"
        );
        let (out, _) = parse(&[(req.as_bytes(), 0)]);
        let mut want = msg(request("GET", "/index.html?q=1"), 0);
        want.host = Some("example.com".into());
        want.traceparent = Some(TRACEPARENT.into());
        want.first_ts_ns = 1;
        want.last_ts_ns = 1;
        assert_eq!(out, vec![want]);

        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        let resp: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";
        let out = run(&mut stream, &[(resp, 0)]);
        let mut want = msg(response(200), 5);
        want.content_type = Some("text/html".into());
        want.first_ts_ns = 1;
        want.last_ts_ns = 1;
        assert_eq!(out, vec![want]);
        assert_eq!(stream.garbage_segments(), 0);
    }

    #[test]
    fn keep_alive_three_exchanges() {
        let mut requests = Http1Stream::new();
        let mut responses = Http1Stream::new();
        let mut reqs = Vec::new();
        let mut resps = Vec::new();
        for (i, path) in ["/a", "/b", "/c"].iter().enumerate() {
            let ts = 10 * (i as u64 + 1);
            let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
            requests.feed(req.as_bytes(), 0, ts, &mut reqs);
            responses.expect_response_to("GET");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            );
            responses.feed(&resp.as_bytes()[..20], 0, ts + 1, &mut resps);
            responses.feed(&resp.as_bytes()[20..], 0, ts + 2, &mut resps);
        }
        let targets: Vec<_> = reqs.iter().map(|m| m.head.clone()).collect();
        assert_eq!(
            targets,
            vec![
                request("GET", "/a"),
                request("GET", "/b"),
                request("GET", "/c")
            ]
        );
        assert_eq!(resps.len(), 3);
        for (i, resp) in resps.iter().enumerate() {
            let ts = 10 * (i as u64 + 1);
            assert_eq!((resp.head.clone(), resp.body_size), (response(200), 2));
            assert_eq!((resp.first_ts_ns, resp.last_ts_ns), (ts + 1, ts + 2));
        }
    }

    #[test]
    fn pipelining_two_requests_in_one_segment() {
        let bytes: &[u8] =
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.0\r\n\r\n";
        let (out, _) = parse(&[(bytes, 0)]);
        let mut second = msg(request("GET", "/b"), 0);
        second.version_minor = 0;
        let out: Vec<_> = out.into_iter().map(without_ts).collect();
        assert_eq!(out, vec![msg(request("POST", "/a"), 3), second]);
    }

    const POST: &[u8] = b"POST /upload?id=7 HTTP/1.1\r\nHost: api.local\r\n\
        Content-Type: application/json\r\n\
        traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
        Content-Length: 11\r\n\r\n{\"a\":12345}";

    fn expected_post() -> HttpMessage {
        let mut want = msg(request("POST", "/upload?id=7"), 11);
        want.host = Some("api.local".into());
        want.content_type = Some("application/json".into());
        want.traceparent = Some(TRACEPARENT.into());
        want
    }

    #[test]
    fn every_split_point_yields_the_same_message() {
        let stream_bytes = [POST, b"GET / HTTP/1.1\r\n\r\n"].concat();
        let want = vec![expected_post(), msg(request("GET", "/"), 0)];

        let bytewise: Vec<Segment> = stream_bytes.chunks(1).map(|c| (c, 0)).collect();
        let (out, _) = parse(&bytewise);
        assert_eq!(
            out.iter().cloned().map(without_ts).collect::<Vec<_>>(),
            want
        );
        assert_eq!(
            (out[0].first_ts_ns, out[0].last_ts_ns),
            (1, POST.len() as u64)
        );

        for cut in 0..=stream_bytes.len() {
            let (a, b) = stream_bytes.split_at(cut);
            let (out, stream) = parse(&[(a, 0), (b, 0)]);
            assert_eq!(
                out.into_iter().map(without_ts).collect::<Vec<_>>(),
                want,
                "cut at {cut}"
            );
            assert_eq!(stream.garbage_segments(), 0);
        }
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
        5;name=\"v\"\r\nhello\r\nA ; x\r\n0123456789\r\n\
        0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";

    #[test]
    fn chunked_with_extensions_and_trailers_split_arbitrarily() {
        let mut want = msg(response(200), 15);
        want.chunked = true;
        let bytewise: Vec<Segment> = CHUNKED.chunks(1).map(|c| (c, 0)).collect();
        let (out, _) = parse(&bytewise);
        assert_eq!(
            out.into_iter().map(without_ts).collect::<Vec<_>>(),
            vec![want.clone()]
        );
        for cut in 0..=CHUNKED.len() {
            for cut2 in cut..=CHUNKED.len() {
                let segs = [
                    (&CHUNKED[..cut], 0),
                    (&CHUNKED[cut..cut2], 0),
                    (&CHUNKED[cut2..], 0),
                ];
                let (out, _) = parse(&segs);
                assert_eq!(
                    out.into_iter().map(without_ts).collect::<Vec<_>>(),
                    vec![want.clone()]
                );
            }
        }
    }

    #[test]
    fn content_length_body_with_gap() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5010\r\n\r\n0123456789";
        let next: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        stream.expect_response_to("GET");
        let out = run(&mut stream, &[(head, 5000), (next, 0)]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
            (5010, false, 1)
        );
        assert_eq!(out[1].head, response(204));
    }

    #[test]
    fn head_cut_by_gap_is_read_on_past_the_gap() {
        let cut: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nCookie: abc";
        let tail: &[u8] = b"more-cookie\r\n\r\n";
        let next: &[u8] = b"GET /b HTTP/1.1\r\n\r\n";
        let (out, stream) = parse(&[(cut, 3000), (tail, 0), (next, 0)]);
        // The head's end was seen after the gap: every byte is accounted for.
        let mut whole = msg(request("GET", "/a"), 0);
        whole.host = Some("x".into());
        whole.first_ts_ns = 1;
        whole.last_ts_ns = 2;
        let mut fresh = msg(request("GET", "/b"), 0);
        fresh.first_ts_ns = 3;
        fresh.last_ts_ns = 3;
        assert_eq!(out, vec![whole, fresh]);
        assert_eq!(stream.garbage_segments(), 0);
    }

    /// A head of `len` bytes with a big cookie between `before` and `after`
    /// header lines, then `body`.
    fn big_head(start: &str, before: &str, len: usize, after: &str, body: &[u8]) -> Vec<u8> {
        let fixed = start.len() + before.len() + after.len() + "Cookie: \r\n\r\n".len();
        let cookie = "c".repeat(len.saturating_sub(fixed));
        [
            format!("{start}{before}Cookie: {cookie}\r\n{after}\r\n").as_bytes(),
            body,
        ]
        .concat()
    }

    /// Feeds `bytes` as segments of these lengths, each captured up to `cap`.
    fn feed_capped(
        stream: &mut Http1Stream,
        bytes: &[u8],
        lengths: &[usize],
        cap: usize,
        ts: u64,
        out: &mut Vec<HttpMessage>,
    ) {
        let mut rest = bytes;
        for &len in lengths {
            let (segment, tail) = rest.split_at(len.min(rest.len()));
            let captured = &segment[..segment.len().min(cap)];
            stream.feed(captured, (segment.len() - captured.len()) as u64, ts, out);
            rest = tail;
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn request_head_beyond_the_capture_ends_when_the_response_comes() {
        // 2 KB of head in one read, 512 bytes captured: the end is never seen.
        let req = big_head(
            "GET /big HTTP/1.1\r\n",
            "Host: h\r\n",
            2000,
            &format!("traceparent: {TRACEPARENT}\r\n"),
            b"",
        );
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        feed_capped(&mut stream, &req, &[req.len()], 512, 1, &mut out);
        assert!(out.is_empty());
        // An interim response does not end it; a final one does.
        stream.peer_spoke(b"HTTP/1.1 100 Continue\r\n\r\n", &mut out);
        assert!(out.is_empty());
        stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m.head, request("GET", "/big"));
        assert_eq!(
            (m.host.as_deref(), m.traceparent.as_deref()),
            (Some("h"), None)
        );
        // Nothing told where the head ended: the body size is not known.
        assert_eq!((m.body_size, m.truncated), (0, true));
        assert_eq!(stream.garbage_segments(), 0);

        // The same head read in 1 KB pieces, each captured up to 512 bytes:
        // the end and the traceparent are in the last piece's capture.
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        feed_capped(&mut stream, &req, &[1024, 600, 376], 512, 1, &mut out);
        stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m.traceparent.as_deref(), Some(TRACEPARENT));
        assert_eq!((m.body_size, m.truncated), (0, false));
    }

    #[test]
    fn post_with_a_cut_head_counts_its_body_by_segment_lengths() {
        // Content-Length before the cookie: read before the cut.
        let body = vec![b'b'; 1000];
        let req = big_head(
            "POST /up HTTP/1.1\r\n",
            "Content-Length: 1000\r\n",
            1500,
            "",
            &body,
        );
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        feed_capped(&mut stream, &req, &[req.len()], 512, 1, &mut out);
        stream.peer_spoke(b"HTTP/1.1 201 Created\r\n", &mut out);
        assert_eq!(
            (out[0].head.clone(), out[0].body_size, out[0].truncated),
            (request("POST", "/up"), 1000, false)
        );

        // Content-Length after the cookie, in the gap; the head's end in a
        // later capture: the body is what follows it up to the response.
        let req = big_head(
            "POST /up HTTP/1.1\r\n",
            "",
            1500,
            "Content-Length: 1000\r\n",
            &body,
        );
        for lengths in [
            vec![1024, 1476],
            vec![1024, 476, 1000],
            vec![700, 700, 1100],
        ] {
            let mut stream = Http1Stream::new();
            let mut out = Vec::new();
            feed_capped(&mut stream, &req, &lengths, 512, 1, &mut out);
            stream.peer_spoke(b"HTTP/1.1 201 Created\r\n", &mut out);
            stream.finish(9, &mut out);
            assert_eq!(out.len(), 1, "{lengths:?}");
            assert_eq!(
                (out[0].body_size, out[0].truncated),
                (1000, false),
                "{lengths:?}"
            );
        }
    }

    #[test]
    fn response_head_beyond_the_capture_keeps_its_body_size() {
        let body = vec![b'x'; 300_000];
        // Python writes the head, then the body: each captured up to 512 bytes.
        for (before, after) in [
            ("Content-Length: 300000\r\n", "Set-Cookie: a=b\r\n"),
            ("", "Content-Length: 300000\r\n"),
        ] {
            let head = big_head("HTTP/1.1 200 OK\r\n", before, 1400, after, b"");
            let mut stream = Http1Stream::new();
            stream.expect_response_to("GET");
            stream.expect_response_to("GET");
            let mut out = Vec::new();
            feed_capped(&mut stream, &head, &[head.len()], 512, 1, &mut out);
            feed_capped(&mut stream, &body, &[65536; 5], 512, 2, &mut out);
            assert!(out.is_empty());
            // The next request ends it.
            stream.peer_spoke(b"GET /next HTTP/1.1\r\n", &mut out);
            assert_eq!(out.len(), 1);
            let m = &out[0];
            assert_eq!((m.head.clone(), m.last_ts_ns), (response(200), 2));
            if before.is_empty() {
                // Neither the framing nor the head's end was seen.
                assert_eq!((m.body_size, m.truncated), (0, true));
            } else {
                assert_eq!((m.body_size, m.truncated), (300_000, false));
            }
            // The next response is framed as usual.
            feed_capped(
                &mut stream,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                &[100],
                512,
                3,
                &mut out,
            );
            assert_eq!((out.len(), out[1].body_size), (2, 2));
        }
        // A cut head of a 204 or of a HEAD answer has no body at all.
        let head = big_head("HTTP/1.1 204 No Content\r\n", "", 1400, "", b"");
        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        let mut out = Vec::new();
        feed_capped(&mut stream, &head, &[head.len()], 512, 1, &mut out);
        stream.finish(2, &mut out);
        assert_eq!((out[0].body_size, out[0].truncated), (0, false));
    }

    #[test]
    fn a_cut_head_whose_end_may_be_at_the_gap_is_not_guessed() {
        // After the gap the capture starts with CRLF: the blank line, or the
        // end of a field line? Not knowable, so the end counts as not seen.
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        stream.feed(b"GET /x HTTP/1.1\r\nCookie: aaaa", 500, 1, &mut out);
        stream.feed(b"\r\nbody-or-header\r\n\r\n", 0, 2, &mut out);
        stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
        assert_eq!((out[0].body_size, out[0].truncated), (0, true));
        // Lines that are not header fields end the search too.
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        stream.feed(b"POST /x HTTP/1.1\r\nCookie: aaaa", 500, 1, &mut out);
        stream.feed(b"aa\r\n{\"json\": 1}\r\n\r\n", 0, 2, &mut out);
        stream.finish(3, &mut out);
        assert_eq!((out[0].body_size, out[0].truncated), (0, true));
    }

    #[test]
    fn a_chunked_body_after_a_cut_head_is_followed() {
        let req = big_head(
            "POST /c HTTP/1.1\r\n",
            "",
            1200,
            "Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        );
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        feed_capped(&mut stream, &req, &[1000, 1000], 512, 1, &mut out);
        assert_eq!(out.len(), 1, "complete without waiting for the response");
        assert_eq!(
            (out[0].body_size, out[0].chunked, out[0].truncated),
            (5, true, false)
        );
    }

    #[test]
    fn long_target_cut_by_capture_is_kept_truncated() {
        let line = format!("GET /{} HTTP/1.1\r\n", "x".repeat(3000));
        let (out, _) = parse(&[
            (&line.as_bytes()[..512], 2600),
            (b"GET /next HTTP/1.1\r\n\r\n", 0),
        ]);
        assert_eq!(out.len(), 2);
        let MessageHead::Request { method, target } = &out[0].head else {
            panic!("not a request")
        };
        assert_eq!(
            (method.as_str(), target.len(), out[0].truncated),
            ("GET", 508, true)
        );
        assert_eq!(out[1].head, request("GET", "/next"));
    }

    #[test]
    fn chunked_gap_in_chunk_data_of_known_size() {
        // 0x1000 bytes of data: 500 captured, the rest and its CRLF in the gap.
        let first = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n".as_slice(),
            &[b'z'; 500],
        ]
        .concat();
        let (out, _) = parse(&[
            (&first, 4096 - 500 + 2),
            (b"3\r\nabc\r\n", 0),
            (b"0\r\n\r\n", 0),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
            (4099, false, 3)
        );

        // A gap reaching past the CRLF hides the next size line: framing is lost.
        let mut stream = Http1Stream::new();
        let mut out = run(&mut stream, &[(&first, 4096 - 500 + 10), (b"0\r\n\r\n", 0)]);
        assert!(out.is_empty());
        stream.finish(9, &mut out);
        assert_eq!(
            (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
            (4096, true, 2)
        );
    }

    #[test]
    fn a_last_chunk_hidden_by_a_gap_is_known_by_its_length() {
        // 1 KB of chunk data, 500 captured; the gap hides the rest, its CRLF
        // and `0` CRLF CRLF (7 bytes): the body ends there when the other
        // direction speaks next.
        let first = [
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n".as_slice(),
            &[b'z'; 500],
        ]
        .concat();
        for (hidden, truncated) in [(7, false), (9, true), (3, true)] {
            let mut stream = Http1Stream::new();
            let mut out = run(&mut stream, &[(&first, 1024 - 500 + hidden)]);
            assert!(out.is_empty());
            stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
            assert_eq!(
                (out[0].body_size, out[0].truncated),
                (1024, truncated),
                "{hidden}"
            );
        }
        // Bytes after the hidden tail mean it was not the end.
        let mut stream = Http1Stream::new();
        let mut out = run(&mut stream, &[(&first, 1024 - 500 + 7), (b"more", 0)]);
        stream.finish(3, &mut out);
        assert_eq!((out[0].body_size, out[0].truncated), (1024, true));
        // A gap from the start of a size line counts the same way.
        let mut stream = Http1Stream::new();
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        stream.expect_response_to("GET");
        let mut out = run(&mut stream, &[(head, 5)]);
        stream.finish(2, &mut out);
        assert_eq!((out[0].body_size, out[0].truncated), (3, false));
    }

    #[test]
    fn head_response_with_content_length_has_no_body() {
        let mut stream = Http1Stream::new();
        stream.expect_response_to("HEAD");
        stream.expect_response_to("GET");
        let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let out = run(&mut stream, &[(bytes, 0)]);
        let sizes: Vec<_> = out.iter().map(|m| (m.body_size, m.truncated)).collect();
        assert_eq!(sizes, vec![(0, false), (2, false)]);
    }

    #[test]
    fn no_body_for_204_and_304() {
        let bytes: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        let (out, _) = parse(&[(bytes, 0)]);
        let got: Vec<_> = out.into_iter().map(|m| (m.head, m.body_size)).collect();
        assert_eq!(
            got,
            vec![(response(204), 0), (response(304), 0), (response(200), 1)]
        );
    }

    #[test]
    fn continue_then_ok_keeps_the_expectation() {
        let mut stream = Http1Stream::new();
        stream.expect_response_to("HEAD");
        let bytes: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
        let out = run(&mut stream, &[(bytes, 0)]);
        let got: Vec<_> = out.into_iter().map(|m| (m.head, m.body_size)).collect();
        assert_eq!(got, vec![(response(100), 0), (response(200), 0)]);
    }

    #[test]
    fn switching_protocols_upgrades_the_stream() {
        let bytes: &[u8] =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
        let (mut out, mut stream) = parse(&[(bytes, 0)]);
        stream.feed(b"HTTP/1.1 200 OK\r\n\r\n", 0, 5, &mut out);
        stream.finish(6, &mut out);
        assert_eq!(
            out.into_iter().map(|m| m.head).collect::<Vec<_>>(),
            vec![response(101)]
        );
        assert!(stream.is_upgraded());
        assert_eq!(stream.garbage_segments(), 0);
    }

    #[test]
    fn successful_connect_upgrades_the_stream() {
        let mut stream = Http1Stream::new();
        stream.expect_response_to("CONNECT");
        let out = run(
            &mut stream,
            &[(
                b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01",
                0,
            )],
        );
        assert_eq!(out.len(), 1);
        assert!(stream.is_upgraded());
    }

    #[test]
    fn http10_read_until_close_completed_by_finish() {
        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        let mut out = run(
            &mut stream,
            &[
                (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc", 0),
                (b"defg", 100),
            ],
        );
        assert!(out.is_empty());
        stream.finish(50, &mut out);
        let mut want = msg(response(200), 107);
        want.version_minor = 0;
        want.content_type = Some("text/plain".into());
        want.first_ts_ns = 1;
        want.last_ts_ns = 2;
        assert_eq!(out, vec![want]);
    }

    #[test]
    fn garbage_segments_are_counted_then_valid_message_parses() {
        let segments: [Segment; 5] = [
            (b"\x16\x03\x01\x02\x00random tls", 0),
            (b"", 100),
            (b"get / HTTP/1.1\r\n\r\n", 4000),
            (b"\r\n", 0),
            (b"DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0),
        ];
        let (out, stream) = parse(&segments);
        assert_eq!(stream.garbage_segments(), 3);
        assert_eq!(
            out.into_iter().map(without_ts).collect::<Vec<_>>(),
            vec![msg(request("DELETE", "/x"), 0)]
        );
    }

    #[test]
    fn partial_start_line_that_turns_invalid_is_dropped() {
        let segments: [Segment; 3] = [
            (b"GET /a", 0),
            (b"\x01\x02", 0),
            (b"PUT /b HTTP/1.1\r\n\r\n", 0),
        ];
        let (out, stream) = parse(&segments);
        assert_eq!(stream.garbage_segments(), 2);
        assert_eq!(
            out.into_iter().map(|m| m.head).collect::<Vec<_>>(),
            vec![request("PUT", "/b")]
        );
        let (out, stream) = parse(&[(b"HTTP/1.1 2", 0), (b"HTTP/1.1 200 OK\r\n\r\n", 0)]);
        assert_eq!((stream.garbage_segments(), out.len()), (1, 0));
    }

    #[test]
    fn start_line_limits() {
        let long_method = b"ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n";
        let (out, stream) = parse(&[(long_method, 0)]);
        assert_eq!((out.len(), stream.garbage_segments()), (0, 1));
        let target = format!("/{}", "t".repeat(5000));
        let line = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(700));
        let (out, _) = parse(&[(line.as_bytes(), 0)]);
        assert_eq!(out[0].head, request("GET", &target[..MAX_TARGET]));
        assert_eq!(out[0].host.as_deref().map(str::len), Some(MAX_VALUE));
    }

    #[test]
    fn header_values_are_truncated_on_char_boundaries() {
        let value = format!("{}é\u{ff}", "a".repeat(MAX_VALUE - 1));
        let line = format!("GET / HTTP/1.1\r\ncontent-TYPE: {value}\r\n\r\n");
        let (out, _) = parse(&[(line.as_bytes(), 0)]);
        assert_eq!(out[0].content_type, Some("a".repeat(MAX_VALUE - 1)));
        let raw: &[u8] = b"GET / HTTP/1.1\r\nHost: a\xffb\r\n\r\n";
        let (out, _) = parse(&[(raw, 0)]);
        assert_eq!(out[0].host.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn huge_header_over_cap_is_truncated_and_bounded() {
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        stream.feed(b"GET /big HTTP/1.1\r\nHost: h\r\nX-Fill: ", 0, 1, &mut out);
        let filler = [b'f'; 512];
        for ts in 2..200 {
            stream.feed(&filler, 0, ts, &mut out);
            if let State::Head(head) = &stream.state {
                assert!(head.bytes.capacity() <= 2 * MAX_HEAD);
            }
        }
        stream.feed(b"\r\n\r\n", 0, 200, &mut out);
        stream.feed(b"GET /small HTTP/1.1\r\n\r\n", 0, 201, &mut out);
        assert_eq!(out.len(), 2);
        // The head's end was found past the cap: the sizes are still known.
        assert_eq!(
            (out[0].head.clone(), out[0].truncated),
            (request("GET", "/big"), false)
        );
        assert_eq!(out[0].host.as_deref(), Some("h"));
        assert_eq!((out[0].first_ts_ns, out[0].last_ts_ns), (1, 200));
        assert_eq!(out[1].head, request("GET", "/small"));
    }

    #[test]
    fn invalid_content_length_loses_framing() {
        for value in ["abc", "-1", "+5", "18446744073709551616", "5, 6", ""] {
            let bytes = format!("POST /x HTTP/1.1\r\nContent-Length: {value}\r\n\r\nbody");
            let (out, _) = parse(&[(bytes.as_bytes(), 0), (b"GET /y HTTP/1.1\r\n\r\n", 0)]);
            let got: Vec<_> = out.into_iter().map(|m| (m.head, m.truncated)).collect();
            assert_eq!(
                got,
                vec![(request("POST", "/x"), true), (request("GET", "/y"), false)],
                "{value:?}"
            );
        }
        let dup: &[u8] = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd";
        let (out, _) = parse(&[(dup, 0)]);
        assert!(out.is_empty());
        let same: &[u8] =
            b"POST /x HTTP/1.1\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc";
        let (out, _) = parse(&[(same, 0)]);
        assert_eq!((out[0].body_size, out[0].truncated), (3, false));
    }

    #[test]
    fn chunk_size_overflow_loses_framing() {
        let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\nabcd\r\n10000000000000000\r\n";
        let mut stream = Http1Stream::new();
        let mut out = run(&mut stream, &[(bytes, 0), (b"more", 0)]);
        assert!(out.is_empty());
        stream.finish(9, &mut out);
        assert_eq!(
            (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
            (4, true, 2)
        );
        let max: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
        let (out, _) = parse(&[(max, u64::MAX)]);
        assert!(out.is_empty());
    }

    #[test]
    fn finish_emits_truncated_in_progress_message() {
        let mut stream = Http1Stream::new();
        let mut out = run(
            &mut stream,
            &[(b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 0)],
        );
        stream.finish(7, &mut out);
        assert_eq!(
            (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
            (3, true, 1)
        );
        let mut out = run(&mut stream, &[(b"GET / HTTP/1.1\r\nHost: a\r\n", 0)]);
        stream.finish(8, &mut out);
        assert_eq!(
            (out[0].host.as_deref(), out[0].truncated),
            (Some("a"), true)
        );
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let (out, _) = parse(&[(b"GET /lf HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\n\n", 0)]);
        let got: Vec<_> = out.into_iter().map(|m| (m.head, m.host)).collect();
        assert_eq!(
            got,
            vec![
                (request("GET", "/lf"), Some("a".into())),
                (request("GET", "/b"), None)
            ]
        );
    }

    // ---- property tests ----

    /// Byte soup biased toward HTTP syntax so that deep states get exercised.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        let words: Vec<&'static [u8]> = vec![
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.0 101 x\r\n",
            b"\r\n",
            b"\r\n\r\n",
            b"\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 99999999999999999999\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n",
            b"0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"Host: \xff\xfe\r\n",
            b"HEAD ",
            b"HTTP/1.",
            b";ext=1",
            b"\x00\x7f\x80",
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            proptest::sample::select(words).prop_map(<[u8]>::to_vec),
        ]
    }

    fn segment() -> impl Strategy<Value = (Vec<u8>, u64, Option<&'static str>)> {
        (
            proptest::collection::vec(fragment(), 0..8).prop_map(|f| f.concat()),
            prop_oneof![4 => Just(0u64), 2 => 0..5000u64, 1 => Just(u64::MAX)],
            proptest::option::of(proptest::sample::select(vec!["GET", "HEAD", "CONNECT"])),
        )
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(segments in proptest::collection::vec(segment(), 0..24)) {
            survive(&segments)?;
        }
    }

    fn survive(segments: &[(Vec<u8>, u64, Option<&'static str>)]) -> Result<(), TestCaseError> {
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        for (ts, (captured, missing, expect)) in (1u64..).zip(segments) {
            if let Some(method) = expect {
                stream.expect_response_to(method);
            }
            stream.feed(captured, *missing, ts, &mut out);
            if let State::Head(head) = &stream.state {
                prop_assert!(head.bytes.len() <= MAX_HEAD);
            }
        }
        stream.finish(u64::MAX, &mut out);
        for m in &out {
            prop_assert!(m.first_ts_ns <= m.last_ts_ns);
            if let MessageHead::Request { method, target } = &m.head {
                prop_assert!(method.len() <= MAX_METHOD && target.len() <= MAX_TARGET);
            }
        }
        Ok(())
    }

    /// A message whose head is big (a cookie of up to 3 KB), cut into
    /// segments captured up to a small limit, ended by the other direction
    /// speaking: it comes out once, with its start line, and its body size
    /// is right or the message is marked truncated.
    #[derive(Debug, Clone)]
    struct BigHead {
        response: bool,
        cookie: usize,
        cookie_at: usize,
        length_line: bool,
        traceparent_at: usize,
        body: Vec<u8>,
        cuts: Vec<proptest::sample::Index>,
        cap: usize,
    }

    fn big_head_case() -> impl Strategy<Value = BigHead> {
        let word = prop_oneof![
            "[a-z0-9{}\",.]{1,12}".prop_map(String::into_bytes),
            Just(b"\r\n".to_vec()),
            Just(b" ".to_vec()),
        ];
        (
            any::<bool>(),
            0usize..3000,
            0usize..4,
            any::<bool>(),
            0usize..5,
            proptest::collection::vec(word, 0..200),
            proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
            16usize..600,
        )
            .prop_map(
                |(response, cookie, cookie_at, length_line, traceparent_at, words, cuts, cap)| {
                    // A body never holds a blank line (see read_cut_head).
                    let mut body: Vec<u8> = Vec::new();
                    for w in words {
                        if !(w == b"\r\n" && body.ends_with(b"\r\n")) {
                            body.extend_from_slice(&w);
                        }
                    }
                    if body.ends_with(b"\r\n") {
                        body.push(b'.');
                    }
                    BigHead {
                        response,
                        cookie,
                        cookie_at,
                        length_line: length_line || response,
                        traceparent_at,
                        body,
                        cuts,
                        cap,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn big_heads_cut_by_the_capture_are_exact_or_truncated(case in big_head_case()) {
            big_head_property(&case)?;
        }
    }

    fn big_head_property(case: &BigHead) -> Result<(), TestCaseError> {
        let mut fields = vec![
            "Host: example.test".to_string(),
            "User-Agent: proptest".to_string(),
            "Accept: */*".to_string(),
        ];
        fields.insert(
            case.cookie_at.min(fields.len()),
            format!("Cookie: {}", "k".repeat(case.cookie)),
        );
        let body = if case.length_line {
            case.body.clone()
        } else {
            Vec::new()
        };
        if case.length_line {
            fields.insert(1, format!("Content-Length: {}", body.len()));
        }
        fields.insert(
            case.traceparent_at.min(fields.len()),
            format!("traceparent: {TRACEPARENT}"),
        );
        let start = if case.response {
            "HTTP/1.1 200 OK"
        } else {
            "POST /p HTTP/1.1"
        };
        let mut bytes = format!("{start}\r\n{}\r\n\r\n", fields.join("\r\n")).into_bytes();
        bytes.extend_from_slice(&body);
        let mut bounds: Vec<usize> = case.cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        bounds.extend([0, bytes.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut stream = Http1Stream::new();
        if case.response {
            stream.expect_response_to("GET");
        }
        let mut out = Vec::new();
        for (ts, pair) in (1u64..).zip(bounds.windows(2)) {
            let segment = &bytes[pair[0]..pair[1]];
            let captured = &segment[..segment.len().min(case.cap)];
            stream.feed(
                captured,
                (segment.len() - captured.len()) as u64,
                ts,
                &mut out,
            );
        }
        let peer: &[u8] = if case.response {
            b"GET / HTTP/1.1\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\n"
        };
        stream.peer_spoke(peer, &mut out);
        stream.finish(u64::MAX, &mut out);
        prop_assert_eq!(out.len(), 1, "{:?}", out);
        let m = &out[0];
        let head = if case.response {
            response(200)
        } else {
            request("POST", "/p")
        };
        prop_assert_eq!(&m.head, &head);
        if !m.truncated {
            prop_assert_eq!(m.body_size, body.len() as u64);
        }
        if let Some(traceparent) = &m.traceparent {
            prop_assert_eq!(traceparent.as_str(), TRACEPARENT);
        }
        if bounds.len() == 2 && bytes.len() <= case.cap {
            prop_assert!(!m.truncated && m.traceparent.is_some());
        }
        prop_assert_eq!(stream.garbage_segments(), 0);
        Ok(())
    }

    /// One generated message: its wire bytes, which of them a gap may cover,
    /// what the parser should report (timestamps zero), and its request method.
    #[derive(Debug, Clone)]
    struct Wire {
        bytes: Vec<u8>,
        gap_ok: Vec<bool>,
        want: HttpMessage,
        answers: Option<&'static str>,
    }

    #[derive(Debug, Clone)]
    struct BodySpec {
        data: Vec<u8>,
        /// 0: no framing header, 1: Content-Length, 2: chunked.
        framing: u8,
        chunk_sizes: Vec<usize>,
        ext: bool,
        trailer: bool,
    }

    fn body_spec() -> impl Strategy<Value = BodySpec> {
        (
            proptest::collection::vec(any::<u8>(), 0..200),
            0u8..3,
            proptest::collection::vec(1usize..80, 0..6),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(data, framing, chunk_sizes, ext, trailer)| BodySpec {
                data,
                framing,
                chunk_sizes,
                ext,
                trailer,
            })
    }

    impl Wire {
        fn push(&mut self, bytes: &[u8], gap_ok: bool) {
            self.bytes.extend_from_slice(bytes);
            self.gap_ok.extend(std::iter::repeat_n(gap_ok, bytes.len()));
        }

        /// Appends framing headers, the blank line and the body.
        fn finish_with_body(&mut self, body: &BodySpec, lower: bool, send_body: bool) {
            let name = |n: &str| {
                if lower {
                    n.to_ascii_lowercase()
                } else {
                    n.to_string()
                }
            };
            match body.framing {
                1 => self.push(
                    format!("{}: {}\r\n", name("Content-Length"), body.data.len()).as_bytes(),
                    false,
                ),
                2 => self.push(
                    format!("{}: chunked\r\n", name("Transfer-Encoding")).as_bytes(),
                    false,
                ),
                _ => {}
            }
            self.push(b"\r\n", false);
            self.want.chunked = body.framing == 2;
            if !send_body {
                return;
            }
            self.want.body_size = body.data.len() as u64;
            if body.framing != 2 {
                self.push(&body.data, true);
                return;
            }
            let mut data = body.data.as_slice();
            let mut sizes = body.chunk_sizes.iter().cycle();
            while !data.is_empty() {
                let size = sizes.next().copied().unwrap_or(data.len()).min(data.len());
                let (chunk, rest) = data.split_at(size);
                let ext = if body.ext { ";k=\"v\"" } else { "" };
                let line = if lower {
                    format!("{size:x}{ext}\r\n")
                } else {
                    format!("{size:X}{ext}\r\n")
                };
                self.push(line.as_bytes(), false);
                self.push(chunk, true);
                self.push(b"\r\n", true);
                data = rest;
            }
            self.push(b"0\r\n", false);
            if body.trailer {
                self.push(b"X-Checksum: 42\r\n", false);
            }
            self.push(b"\r\n", false);
        }
    }

    fn head_line(wire: &mut Wire, host: &Option<String>, traceparent: bool, lower: bool) {
        if let Some(host) = host {
            wire.push(
                format!("{}: {host}\r\n", if lower { "host" } else { "Host" }).as_bytes(),
                false,
            );
            wire.want.host = Some(host.clone());
        }
        if traceparent {
            wire.push(format!("traceparent: {TRACEPARENT}\r\n").as_bytes(), false);
            wire.want.traceparent = Some(TRACEPARENT.into());
        }
    }

    fn wire_request() -> impl Strategy<Value = Wire> {
        let methods = vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
        (
            proptest::sample::select(methods),
            "/[a-zA-Z0-9._~/?=&%-]{0,30}",
            proptest::option::of("[a-z]{1,10}\\.example(:[0-9]{2,5})?"),
            any::<bool>(),
            0u8..2,
            body_spec(),
            any::<bool>(),
        )
            .prop_map(
                |(method, target, host, traceparent, minor, mut body, lower)| {
                    if body.framing == 0 {
                        body.data.clear();
                    }
                    let mut wire = Wire {
                        bytes: Vec::new(),
                        gap_ok: Vec::new(),
                        want: msg(request(method, &target), 0),
                        answers: None,
                    };
                    wire.want.version_minor = minor;
                    wire.push(
                        format!("{method} {target} HTTP/1.{minor}\r\n").as_bytes(),
                        false,
                    );
                    head_line(&mut wire, &host, traceparent, lower);
                    wire.finish_with_body(&body, lower, true);
                    wire
                },
            )
    }

    fn wire_response() -> impl Strategy<Value = Wire> {
        (
            proptest::sample::select(vec![200u16, 201, 204, 304, 404, 500]),
            proptest::sample::select(vec!["GET", "HEAD", "POST"]),
            any::<bool>(),
            proptest::option::of("[a-z]{1,8}/[a-z]{1,8}"),
            body_spec(),
            any::<bool>(),
        )
            .prop_map(
                |(status, answers, interim, content_type, mut body, lower)| {
                    let bodiless_status = status == 204 || status == 304;
                    // Close-delimited bodies only end a stream (see `wire_stream`); a HEAD
                    // answer may announce a length but not chunking; 204/304 announce nothing.
                    body.framing = match body.framing {
                        _ if bodiless_status => 0,
                        framing if answers == "HEAD" => framing.min(1),
                        0 => 1,
                        framing => framing,
                    };
                    let no_body = answers == "HEAD" || bodiless_status;
                    let mut wire = Wire {
                        bytes: Vec::new(),
                        gap_ok: Vec::new(),
                        want: msg(response(status), 0),
                        answers: Some(answers),
                    };
                    if interim {
                        wire.push(b"HTTP/1.1 100 Continue\r\n\r\n", false);
                    }
                    wire.push(
                        format!("HTTP/1.1 {status} Whatever It Says\r\n").as_bytes(),
                        false,
                    );
                    if let Some(ct) = &content_type {
                        wire.push(format!("Content-Type: {ct}\r\n").as_bytes(), false);
                        wire.want.content_type = content_type.clone();
                    }
                    wire.finish_with_body(&body, lower, !no_body);
                    wire
                },
            )
    }

    /// A whole stream: messages, optionally ending with a close-delimited response.
    fn wire_stream() -> impl Strategy<Value = (Vec<Wire>, Option<Vec<u8>>)> {
        prop_oneof![
            proptest::collection::vec(wire_request(), 1..6).prop_map(|w| (w, None)),
            (
                proptest::collection::vec(wire_response(), 1..6),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100))
            ),
        ]
    }

    /// Cut points plus, per segment, how much of its eligible tail becomes a gap.
    fn cuts() -> impl Strategy<Value = Vec<(proptest::sample::Index, u8)>> {
        proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..30)
    }

    proptest! {
        #[test]
        fn valid_messages_round_trip((wires, close_body) in wire_stream(), cuts in cuts()) {
            round_trip(wires, close_body, &cuts)?;
        }
    }

    fn round_trip(
        mut wires: Vec<Wire>,
        close_body: Option<Vec<u8>>,
        cuts: &[(proptest::sample::Index, u8)],
    ) -> Result<(), TestCaseError> {
        if let Some(data) = close_body {
            let mut wire = Wire {
                bytes: Vec::new(),
                gap_ok: Vec::new(),
                want: msg(response(200), data.len() as u64),
                answers: Some("GET"),
            };
            wire.want.version_minor = 0;
            wire.push(b"HTTP/1.0 200 OK\r\n\r\n", false);
            wire.push(&data, true);
            wires.push(wire);
        }
        let bytes: Vec<u8> = wires.iter().flat_map(|w| w.bytes.clone()).collect();
        let gap_ok: Vec<bool> = wires.iter().flat_map(|w| w.gap_ok.clone()).collect();

        // Segment i covers [bounds[i], bounds[i+1]); its tail may be turned into a gap.
        let mut bounds: Vec<usize> = cuts.iter().map(|(i, _)| i.index(bytes.len() + 1)).collect();
        bounds.extend([0, bytes.len()]);
        bounds.sort_unstable();
        let mut stream = Http1Stream::new();
        for method in wires.iter().filter_map(|w| w.answers) {
            stream.expect_response_to(method);
        }
        let mut out = Vec::new();
        let mut seg_of_byte = vec![0u64; bytes.len()];
        let fracs = cuts.iter().map(|(_, frac)| *frac).chain([0]);
        for (seg, (pair, frac)) in bounds.windows(2).zip(fracs).enumerate() {
            let (start, end) = (pair[0], pair[1]);
            let ts = seg as u64 + 1;
            seg_of_byte[start..end].iter_mut().for_each(|s| *s = ts);
            let eligible = gap_ok[start..end]
                .iter()
                .rev()
                .take_while(|&&ok| ok)
                .count();
            let gap = if frac < 128 {
                0
            } else {
                eligible * usize::from(frac - 128) / 127
            };
            stream.feed(&bytes[start..end - gap], gap as u64, ts, &mut out);
        }
        stream.finish(u64::MAX, &mut out);

        let mut offset = 0;
        let mut want = Vec::new();
        for wire in &wires {
            // An interim 100 precedes the final response inside the same wire.
            let interim_len = if wire.bytes.starts_with(b"HTTP/1.1 100") {
                25
            } else {
                0
            };
            if interim_len > 0 {
                let mut m = msg(response(100), 0);
                m.first_ts_ns = seg_of_byte[offset];
                m.last_ts_ns = seg_of_byte[offset + interim_len - 1];
                want.push(m);
            }
            let mut m = wire.want.clone();
            m.first_ts_ns = seg_of_byte[offset + interim_len];
            m.last_ts_ns = seg_of_byte[offset + wire.bytes.len() - 1];
            want.push(m);
            offset += wire.bytes.len();
        }
        prop_assert_eq!(out, want);
        prop_assert_eq!(stream.garbage_segments(), 0);
        Ok(())
    }
}
