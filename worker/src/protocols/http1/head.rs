//! Message heads: finding where a head ends, reading the header fields that
//! matter (host, traceparent, content type, framing) and building the message.

use memchr::memchr_iter;

use std::sync::Arc;

use super::field_name::{
    CONTENT_LENGTH, CONTENT_TYPE, HOST, TRACEPARENT, TRANSFER_ENCODING, USER_AGENT,
};
use super::message::{HttpMessage, MessageHead};
use super::near_byte::find_line_feed;
use super::start_line::{check_start, LineKind, Parse, StartLine};
use super::{MAX_HEADERS, MAX_METHOD, MAX_TARGET, MAX_VALUE};
use crate::protocols::http2::grpc::ContentType;
use crate::spans::http::known_method_of_bytes;
use crate::spans::{HttpMethod, HttpText};

#[derive(Debug)]
pub(super) struct HeadBuf {
    /// The head so far, when it spans segments; a head that arrives in one
    /// segment is read in place and never copied here.
    pub(super) bytes: Vec<u8>,
    pub(super) first_ts: u64,
    pub(super) last_ts: u64,
    /// The start line, once it is complete and valid (it is parsed once).
    pub(super) start: Option<StartLine>,
    /// Where the search for the blank line resumes.
    pub(super) scanned: usize,
}
/// What the bytes of a head so far amount to.
pub(super) enum HeadScan {
    /// The start line is not one.
    Bad,
    /// The head ends (just past its blank line) at this offset; its header
    /// fields, when they were read on the way.
    Complete(usize, Option<Headers>),
    /// Valid so far; more bytes are needed.
    Partial,
}
/// What a stream's last request said that its next ones usually repeat:
/// a value with the same bytes is taken from here ([`Headers::field`]).
#[derive(Debug, Default)]
pub(super) struct LastRequest {
    /// Its Host, when it was kept inline (a clone copies no heap bytes).
    pub(super) host: Option<HttpText>,
    pub(super) user_agent: Option<Arc<String>>,
}

impl LastRequest {
    /// Nothing said before (a cut head's fields, a head read alone).
    pub(super) const NONE: LastRequest = LastRequest {
        host: None,
        user_agent: None,
    };
}

/// The header fields we care about.
#[derive(Debug, Default)]
pub(super) struct Headers {
    pub(super) host: Option<HttpText>,
    /// Boxed: a message is moved as it is framed and paired, and at 128
    /// bytes or less it moves without a call to `memcpy`.
    pub(super) traceparent: Option<Box<str>>,
    /// Requests' only (`user_agent.original` of server spans); a thin
    /// pointer, for the same reason.
    pub(super) user_agent: Option<Arc<String>>,
    /// Requests' only: an h2c upgrade hands it to the HTTP/2 exchange; a
    /// response's is not used, so it is not read.
    pub(super) content_type: ContentType,
    pub(super) content_length: Option<u64>,
    pub(super) bad_length: bool,
    pub(super) transfer_encoding: bool,
    pub(super) chunked: bool,
    /// Whether these are a request's fields (`content_type` is read).
    pub(super) of_request: bool,
}
/// Checks the start line (until it is complete) and looks for the end of the
/// head in `bytes`, the head so far; `last` is what the stream's last
/// request said (see [`Headers::field`]).
pub(super) fn scan_head(head: &mut HeadBuf, bytes: &[u8], last: &LastRequest) -> HeadScan {
    if head.start.is_none() {
        match check_start(bytes) {
            Parse::Bad => return HeadScan::Bad,
            Parse::Line(start) => head.start = Some(start),
            // The start line is still incomplete: no blank line yet either.
            Parse::More(_) => {}
        }
    }
    if let Some(start) = head.start.filter(|_| head.scanned == 0) {
        // Usually the whole head is here: one pass finds its end and reads
        // its fields.
        if let Some((end, headers)) = read_head(bytes, &start, last) {
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
pub(super) fn new_message(
    start: StartLine,
    bytes: &[u8],
    headers: Headers,
    head: &HeadBuf,
) -> HttpMessage {
    let head_kind = match start.kind {
        LineKind::Request {
            method_len,
            target_len,
        } => {
            let (method, rest) = bytes.split_at_checked(method_len).unwrap_or((bytes, &[]));
            let target = rest.get(1..).unwrap_or_default();
            MessageHead::Request {
                method: match known_method_of_bytes(method) {
                    Some(known) => HttpMethod::Borrowed(known),
                    None => HttpMethod::Owned(lossy_truncated(method, MAX_METHOD)),
                },
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
        user_agent: headers.user_agent,
        content_type: headers.content_type,
        chunked: headers.chunked,
        body_size: 0,
        first_ts_ns: head.first_ts,
        last_ts_ns: head.last_ts,
        truncated: false,
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
/// Reads the header fields after the start line, up to the blank line or,
/// in a cut head, up to the last complete line.
pub(super) fn parse_headers(head: &[u8], of_request: bool) -> Headers {
    let mut headers = Headers::of(of_request);
    let mut lines = HeadLines::new(head);
    for _ in 0..MAX_HEADERS {
        // None: cut mid-line, the value may be incomplete.
        match lines.next() {
            Some((line, _)) if !line.is_empty() => headers.field(line, &LastRequest::NONE),
            _ => break,
        }
    }
    headers
}

/// One pass over a head that may be complete, from the end of its start
/// line `start`: where it ends (just past its blank line, as
/// [`find_head_end`] from 0) and its header fields (as [`parse_headers`]);
/// None when the blank line is not there yet.
fn read_head(head: &[u8], start: &StartLine, last: &LastRequest) -> Option<(usize, Headers)> {
    let mut headers = Headers::of(start.is_request());
    let mut lines = HeadLines {
        head,
        pos: Some(start.end),
    };
    let mut count = 0;
    loop {
        let (line, end) = lines.next()?;
        if line.is_empty() {
            return Some((end, headers));
        }
        if count < MAX_HEADERS {
            headers.field(line, last);
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
            pos: find_line_feed(head).map(|i| i + 1),
        }
    }
}

impl<'a> Iterator for HeadLines<'a> {
    type Item = (&'a [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.pos?;
        let rest = self.head.get(pos..)?;
        let Some(len) = find_line_feed(rest) else {
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
    /// No fields yet, of a request or a response.
    pub(super) fn of(of_request: bool) -> Self {
        Self {
            of_request,
            ..Self::default()
        }
    }

    /// One `name: value` line; other lines are ignored. RFC 9112 §5.1 allows
    /// no whitespace between a name and its colon, so each wanted name is
    /// checked where it stands (`field_name.rs`), with no search for the colon; most lines
    /// (user agent, accept, cookies, tokens, dates) are ruled out by their
    /// first letter, in the caller's loop, without a call.
    ///
    /// `last` is what the stream's last request said: a connection's
    /// requests repeat their Host and User-Agent, and a value with the same
    /// bytes is copied from it, not checked as UTF-8 and cut again.
    #[inline(always)]
    pub(super) fn field(&mut self, line: &[u8], last: &LastRequest) {
        if matches!(
            line.first().map(|b| b | 0x20),
            Some(b'h' | b't' | b'c' | b'u')
        ) {
            self.wanted_field(line, last);
        }
    }

    /// [`Headers::field`] for a line whose first letter is a wanted name's.
    fn wanted_field(&mut self, line: &[u8], last: &LastRequest) {
        match line.first().map(|b| b | 0x20) {
            Some(b'h') => {
                if let Some(value) = HOST.value_of(line) {
                    match last.host.as_ref() {
                        // The same bytes are valid UTF-8 within the limit, so
                        // they would become this text again.
                        Some(last) if self.host.is_none() && last.as_bytes() == value => {
                            self.host = Some(last.clone());
                        }
                        _ => keep_first(&mut self.host, value),
                    }
                }
            }
            Some(b't') => {
                if let Some(value) = TRACEPARENT.value_of(line) {
                    keep_first(&mut self.traceparent, value);
                } else if let Some(value) = TRANSFER_ENCODING.value_of(line) {
                    // Only the final coding decides the framing.
                    self.transfer_encoding = true;
                    let mut codings = value.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii);
                    let last = codings.find(|t| !t.is_empty());
                    self.chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
                }
            }
            Some(b'u') if self.of_request => {
                if let Some(value) = USER_AGENT.value_of(line) {
                    match &last.user_agent {
                        Some(same) if self.user_agent.is_none() && same.as_bytes() == value => {
                            self.user_agent = Some(Arc::clone(same));
                        }
                        _ if self.user_agent.is_none() => {
                            self.user_agent =
                                Some(Arc::new(lossy_truncated::<String>(value, MAX_VALUE)));
                        }
                        _ => {}
                    }
                }
            }
            Some(b'c') => {
                if let Some(value) = CONTENT_LENGTH.value_of(line) {
                    self.add_length(value);
                } else if !self.of_request {
                    // A response's Content-Type is not used: not even compared.
                } else if let Some(value) = CONTENT_TYPE.value_of(line) {
                    // The first one counts, as for the other fields.
                    self.content_type = self.content_type.or(ContentType::of(value));
                }
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

fn keep_first<T: for<'a> From<&'a str> + From<String>>(slot: &mut Option<T>, value: &[u8]) {
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
fn lossy_truncated<T: for<'a> From<&'a str> + From<String>>(bytes: &[u8], max: usize) -> T {
    // Lossy decoding never shrinks text, and only the last 3 input bytes of a
    // prefix can decode differently, so `max + 4` input bytes are enough.
    let prefix = bytes.get(..max.saturating_add(4)).unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(prefix) {
        // Valid UTF-8 (the usual case) decodes to itself: one copy.
        return T::from(
            text.get(..floor_char_boundary(text, max))
                .unwrap_or_default(),
        );
    }
    let mut text = String::from_utf8_lossy(prefix).into_owned();
    if text.len() > max {
        text.truncate(floor_char_boundary(&text, max));
    }
    T::from(text)
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
