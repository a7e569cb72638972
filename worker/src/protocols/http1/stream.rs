//! [`Http1Stream`]: the state machine of one direction, driving the start
//! line, head, cut-head and body readers over captured segments and gaps.

use memchr::memrchr;

use super::cut_head::{read_cut_head, take_fields, CutHead};
use super::framing::{
    body_framing, gap_in_body, step_chunk, take_counted, Body, Next, ReqKind, LAST_CHUNK,
};
use super::head::{new_message, parse_headers, scan_head, HeadBuf, HeadScan, Headers, LastRequest};
use super::message::{HttpMessage, MessageHead};
use super::queue::InlineFirstQueue;
use super::start_line::{
    check_start, is_interim_response, skip_blank_lines, starts_message, LineKind, Parse,
};
use super::{len64, to_usize, MAX_CUT_LINE, MAX_HEAD, MAX_PENDING};
use std::sync::Arc;

/// Where a stream's completed messages go: straight to the pairing in the
/// session (no queue between them, so a message is not moved through one),
/// or a vector.
pub trait MessageSink {
    fn message(&mut self, message: HttpMessage);
}

impl MessageSink for Vec<HttpMessage> {
    fn message(&mut self, message: HttpMessage) {
        self.push(message);
    }
}

/// Turns one direction of a TCP stream into HTTP/1.x messages.
#[derive(Debug, Default)]
pub struct Http1Stream {
    pub(super) state: State,
    /// Bytes of the segment being fed that were not captured.
    missing: u64,
    /// What the next final responses answer, oldest first.
    expected: InlineFirstQueue<ReqKind>,
    garbage: u64,
    /// What the last request whose head came in one piece said that the
    /// connection's next request likely repeats: its Host, when it is short
    /// enough to be held inline (its copy is a move of 24 bytes, not an
    /// allocation), and its User-Agent (shared) (see [`Headers::field`]).
    last_request: LastRequest,
}

#[derive(Debug, Default)]
pub(super) enum State {
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
/// Result of feeding bytes to the current state.
enum Step {
    Took(usize),
    /// The rest of the segment, gap included, has been dealt with.
    DropRest,
}
/// A chunked message ends with `hidden` bytes unseen after its last chunk
/// size line began: they were the last chunk exactly when there are
/// [`LAST_CHUNK`] of them; otherwise the framing is lost there and they
/// count as the body's, as every byte after a loss does. True when lost.
fn hidden_not_last_chunk(msg: &mut HttpMessage, hidden: u64) -> bool {
    if hidden == LAST_CHUNK {
        return false;
    }
    msg.body_size = msg.body_size.saturating_add(hidden);
    true
}

impl Http1Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one segment observed at `ts_ns`. Completed messages go to `out`.
    pub fn feed(&mut self, captured: &[u8], missing: u64, ts_ns: u64, out: &mut impl MessageSink) {
        let ends_waiting = match &mut self.state {
            State::Resync(msg) => {
                if !starts_message(captured, missing) {
                    // Anything but a fresh start line belongs to the lost
                    // message: its bytes are counted as its body's, framing
                    // (chunk size lines) included.
                    msg.last_ts_ns = ts_ns;
                    msg.body_size = msg
                        .body_size
                        .saturating_add(len64(captured))
                        .saturating_add(missing);
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

    /// [`Self::feed`] for a segment whose last bytes, `tail`, the kernel
    /// copied apart (they are among the `missing` ones). When the bytes not
    /// copied before the tail leave the framing known (inside a counted body
    /// or a chunk's data: Node.js writes a chunk and the last chunk with one
    /// writev), the tail is read as the bytes it is, and the message ends
    /// there, whole. Otherwise a chunked message whose framing was lost ends
    /// where a segment ends with the last chunk after a chunk's data
    /// (`\r\n0\r\n\r\n`), in its tail or in a copy of the whole segment,
    /// or is the last chunk alone (Node.js writes it so when the data went
    /// before): it is complete there, rather than when the other side next speaks (a
    /// client's connection may then stay idle for minutes) or the
    /// connection closes.
    pub fn feed_with_tail(
        &mut self,
        captured: &[u8],
        missing: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut impl MessageSink,
    ) {
        let tail_len = len64(tail);
        let end = match missing.checked_sub(tail_len) {
            Some(gap) if tail_len > 0 => {
                self.feed(captured, gap, ts_ns, out);
                if self.reads_a_framed_body() {
                    self.feed(tail, 0, ts_ns, out);
                    return;
                }
                self.on_gap(tail_len, ts_ns, out);
                tail
            }
            _ => {
                self.feed(captured, missing, ts_ns, out);
                if missing > 0 {
                    return;
                }
                captured
            }
        };
        let lost_chunked = match &self.state {
            State::Resync(msg) => msg.chunked,
            State::Body(_, Body::ChunkTail(_)) => true,
            _ => false,
        };
        if lost_chunked && (end.ends_with(b"\r\n0\r\n\r\n") || end == b"0\r\n\r\n") {
            self.complete_waiting(out);
        }
    }

    /// Whether the message being read is in a body whose framing is known
    /// at this point of the stream: the bytes that come next can be read as
    /// its own (a counted body, a chunk's data or what follows it).
    fn reads_a_framed_body(&self) -> bool {
        matches!(
            self.state,
            State::Body(_, Body::Fixed(_) | Body::UntilClose | Body::Chunk(_))
        )
    }

    /// The other direction of the connection carries data now (`peer` is the
    /// start of its segment). A message here that waits only for an end the
    /// capture cannot show (its head or its framing was cut) is complete:
    /// neither side of HTTP/1 speaks before the other is done, except for
    /// interim responses, after which the request goes on.
    pub fn peer_spoke(&mut self, peer: &[u8], out: &mut impl MessageSink) {
        if self.waits_for_its_end() && !is_interim_response(peer) {
            self.complete_waiting(out);
        }
    }

    /// Whether the message being read waits only for an end the capture
    /// cannot show: one being resynced, one whose head was cut, one whose
    /// body ends where the other direction speaks.
    fn waits_for_its_end(&self) -> bool {
        matches!(
            self.state,
            State::Resync(_)
                | State::Body(_, Body::UntilTurn | Body::ChunkTail(_))
                | State::CutHead(..)
        )
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
    pub fn finish(&mut self, ts_ns: u64, out: &mut impl MessageSink) {
        let _ = ts_ns;
        // Only a message being read ends here; the state is taken for it
        // alone (between messages, as most connections close, it stays).
        if matches!(self.state, State::Head(_) | State::Body(..)) {
            match std::mem::take(&mut self.state) {
                State::Head(head) => self.lose_head(&head, &head.bytes),
                State::Body(mut msg, body) => {
                    msg.truncated = match body {
                        Body::UntilClose | Body::UntilTurn => false,
                        Body::ChunkTail(hidden) => hidden_not_last_chunk(&mut msg, hidden),
                        _ => true,
                    };
                    out.message(*msg);
                }
                other => self.state = other,
            }
        }
        self.complete_waiting(out);
    }

    /// Whether a message is being read (its first bytes came, it is not done).
    pub fn in_message(&self) -> bool {
        !matches!(self.state, State::Idle | State::Upgraded)
    }

    /// When the message being read began (None between messages).
    pub fn message_first_ts_ns(&self) -> Option<u64> {
        match &self.state {
            State::Head(head) => Some(head.first_ts),
            State::Body(msg, _) | State::Resync(msg) | State::CutHead(msg, _) => {
                Some(msg.first_ts_ns)
            }
            State::Idle | State::Upgraded => None,
        }
    }

    /// Segments (or stale partial start lines) dropped as not HTTP.
    pub fn garbage_segments(&self) -> u64 {
        self.garbage
    }

    /// True after a 101 Switching Protocols response or a successful CONNECT.
    pub fn is_upgraded(&self) -> bool {
        matches!(self.state, State::Upgraded)
    }

    /// The other direction switched protocols (a 101 or a successful CONNECT
    /// went by there): what this direction carries next is not HTTP/1
    /// either (WebSocket frames, a tunnel's TLS), and is not read as such.
    /// A message still being read here keeps its state.
    pub fn follow_upgrade(&mut self) {
        if matches!(self.state, State::Idle) {
            self.state = State::Upgraded;
        }
    }

    /// Emits the message that waits only for its end, if any: one being
    /// resynced, one whose head was cut, one whose body ends where the
    /// other direction speaks.
    fn complete_waiting(&mut self, out: &mut impl MessageSink) {
        // Taken only when it waits (it is moved out and back otherwise).
        if !self.waits_for_its_end() {
            return;
        }
        match std::mem::take(&mut self.state) {
            State::Resync(msg) | State::Body(msg, Body::UntilTurn) => out.message(*msg),
            State::Body(mut msg, Body::ChunkTail(hidden)) => {
                msg.truncated = hidden_not_last_chunk(&mut msg, hidden);
                out.message(*msg);
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
        out: &mut impl MessageSink,
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
        out.message(*msg);
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

    fn step(&mut self, rest: &[u8], ts: u64, out: &mut impl MessageSink) -> Step {
        // Between messages, the usual case, the state is not taken out (and
        // no state taken out is left to drop).
        if matches!(self.state, State::Idle) {
            return self.start_message(rest, ts, out);
        }
        match std::mem::take(&mut self.state) {
            State::Idle => self.start_message(rest, ts, out),
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
                if let (Body::ChunkTail(hidden), Next::Lost) = (body, &next) {
                    // Not the last chunk after all: the bytes hidden are
                    // the lost message's, as those after them.
                    msg.body_size = msg.body_size.saturating_add(hidden);
                }
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
            // Resyncing (the message already owns this segment, and its
            // bytes after the loss are counted as its body's) or upgraded.
            mut other => {
                if let State::Resync(msg) = &mut other {
                    msg.body_size = msg
                        .body_size
                        .saturating_add(len64(rest))
                        .saturating_add(self.missing);
                }
                self.state = other;
                Step::DropRest
            }
        }
    }

    /// Between messages: `rest` starts a message, or stray line ends.
    fn start_message(&mut self, rest: &[u8], ts: u64, out: &mut impl MessageSink) -> Step {
        // Stray CRLFs between messages are allowed (RFC 9112 §2.2).
        let blank = rest.len() - skip_blank_lines(rest).len();
        if blank > 0 {
            return Step::Took(blank);
        }
        // A message starts here: its head is read at once, not on the next
        // step through the state.
        let head = HeadBuf {
            bytes: Vec::new(),
            first_ts: ts,
            last_ts: ts,
            start: None,
            scanned: 0,
        };
        self.step_head(head, rest, out)
    }

    fn step_head(&mut self, mut head: HeadBuf, rest: &[u8], out: &mut impl MessageSink) -> Step {
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
        match scan_head(&mut head, view, &self.last_request) {
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
                if let Some(host) = msg.host.as_ref().filter(|h| !h.is_heap_allocated()) {
                    self.last_request.host = Some(host.clone());
                }
                if let Some(user_agent) = &msg.user_agent {
                    self.last_request.user_agent = Some(Arc::clone(user_agent));
                }
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
        let headers = headers.unwrap_or_else(|| parse_headers(bytes, start.is_request()));
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
        let headers = parse_headers(bytes, start.is_request());
        let framing = Headers {
            content_length: headers.content_length,
            bad_length: headers.bad_length,
            transfer_encoding: headers.transfer_encoding,
            chunked: headers.chunked,
            ..Headers::of(start.is_request())
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

    fn on_gap(&mut self, gap: u64, ts: u64, out: &mut impl MessageSink) {
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
                let before = msg.body_size;
                let next = gap_in_body(body, gap, &mut msg.body_size);
                if matches!(next, Next::Lost) {
                    // The gap's bytes past the data it was known to hold are
                    // the lost message's too.
                    let taken = msg.body_size - before;
                    msg.body_size = msg.body_size.saturating_add(gap - taken);
                }
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
            // Lost where the captured bytes ended: the gap is the message's.
            State::Resync(mut msg) => {
                msg.body_size = msg.body_size.saturating_add(gap);
                self.state = State::Resync(msg);
            }
            // Idle: the gap holds the start of something we cannot see.
            other => self.state = other,
        }
    }

    /// Like [`Self::settle`] for a message not boxed yet: it gets a box only
    /// if it has to wait in the state.
    fn settle_new(&mut self, msg: HttpMessage, next: Next, out: &mut impl MessageSink) {
        match next {
            Next::Done => out.message(msg),
            Next::Upgrade => {
                out.message(msg);
                self.state = State::Upgraded;
            }
            Next::Body(_) | Next::Lost => self.settle(Box::new(msg), next, out),
        }
    }

    /// Moves a message on to its next state, emitting it when it is done.
    fn settle(&mut self, mut msg: Box<HttpMessage>, next: Next, out: &mut impl MessageSink) {
        match next {
            Next::Body(body) => self.state = State::Body(msg, body),
            Next::Done => out.message(*msg),
            Next::Upgrade => {
                out.message(*msg);
                self.state = State::Upgraded;
            }
            Next::Lost => {
                msg.truncated = true;
                self.state = State::Resync(msg);
            }
        }
    }
}
