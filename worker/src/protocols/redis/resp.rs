//! RESP2/RESP3 values out of one direction of a captured stream, without
//! keeping them whole: each top-level value comes out as a [`RespValue`]
//! summary (its type, the first bytes of its text, its direct children's
//! types and first bytes), so a 10 MB reply costs what a 10-byte one does.
//!
//! Bulk strings (`$`, `!`, `=`) are followed across gaps by their declared
//! lengths; a gap anywhere else loses the framing ([`RespEvent::Lost`]) until,
//! once the other side has spoken, a segment starts with a RESP type byte
//! again. A command cut that way still comes out, as far as it was read.

#![forbid(unsafe_code)]

use memchr::memchr;

/// First bytes kept of a top-level value's text (error messages, bulk heads).
const TOP_TEXT: usize = 256;
/// First bytes kept of a direct child's text (command names and keys).
const CHILD_TEXT: usize = 128;
/// Direct children kept per value; the rest are only counted.
const MAX_CHILDREN: usize = 512;
/// Nesting accepted; deeper is treated as garbage.
const MAX_DEPTH: usize = 32;
/// Longest header or simple-string line kept; the rest of it is skipped.
const MAX_LINE: usize = 512;
/// Elements or bytes a header may declare.
const MAX_DECLARED: i64 = 1 << 32;

/// Type bytes of RESP2 and RESP3.
pub const TYPE_BYTES: &[u8] = b"+-:$*_,#!=(%~>|";

/// Whether the stream holds commands (which may be inline) or replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Commands,
    Replies,
}

/// A direct child of a top-level value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespChild {
    pub kind: u8,
    pub text: Vec<u8>,
    pub null: bool,
}

/// Summary of one top-level value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespValue {
    /// The type byte; `b'i'` for an inline command.
    pub kind: u8,
    /// Line text (simple string, error, number) or the first bytes of a bulk.
    pub text: Vec<u8>,
    pub null: bool,
    pub children: Vec<RespChild>,
    /// Direct children declared (map entries count twice).
    pub child_count: u64,
    /// Some of its bytes were not captured.
    pub cut: bool,
    pub wire_bytes: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespEvent {
    Value(RespValue),
    Lost,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    remaining: u64,
    /// An attribute is not an element of its parent.
    counted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Line,
    /// Bulk payload plus its CRLF still to pass.
    Bulk {
        left: u64,
        depth: usize,
    },
}

/// Reads RESP values from one direction.
#[derive(Debug)]
pub struct RespReader {
    side: Side,
    state: State,
    line: Vec<u8>,
    line_overflow: bool,
    stack: Vec<Level>,
    current: Option<RespValue>,
    lost: bool,
    /// The other direction carried data since the framing was lost: a value
    /// may start at this direction's next segment. Until then, segments are
    /// the rest of what was being sent (a long command written in pieces, a
    /// long reply read in pieces), whose bytes may read like a value's start.
    turned: bool,
    /// The commands came as RESP arrays: this client does not write inline
    /// commands, so a resync waits for an array.
    arrays_seen: bool,
    pub losses: u64,
    pub skipped_bytes: u64,
}

fn parse_int(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.parse().ok()
}

/// The words of an inline command: split on blanks, `"…"` and `'…'` kept whole
/// (quotes dropped, escapes left as they are).
fn inline_words(line: &[u8]) -> Vec<&[u8]> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' | b'\t' => i += 1,
            quote @ (b'"' | b'\'') => {
                let start = i + 1;
                let mut end = start;
                while end < line.len() && line[end] != quote {
                    end += if line[end] == b'\\' { 2 } else { 1 };
                }
                let end = end.min(line.len());
                words.push(&line[start..end]);
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'\t') {
                    i += 1;
                }
                words.push(&line[start..i]);
            }
        }
    }
    words
}

impl RespReader {
    pub fn new(side: Side) -> Self {
        Self {
            side,
            state: State::Line,
            line: Vec::new(),
            line_overflow: false,
            stack: Vec::new(),
            current: None,
            lost: false,
            turned: false,
            arrays_seen: false,
            losses: 0,
            skipped_bytes: 0,
        }
    }

    /// A reader joined mid-stream: it waits for a segment that starts a value.
    pub fn new_lost(side: Side) -> Self {
        let mut reader = Self::new(side);
        reader.lost = true;
        reader.turned = true;
        reader
    }

    /// The other direction carried data: after a loss, this one may find a
    /// value's start again.
    pub fn peer_spoke(&mut self) {
        self.turned = true;
    }

    /// Whether a segment can start a value (where framing comes back).
    fn can_start(&self, segment: &[u8]) -> bool {
        match (self.side, segment.first()) {
            (Side::Commands, Some(b)) => {
                *b == b'*' || (!self.arrays_seen && b.is_ascii_alphabetic())
            }
            (Side::Replies, Some(b)) => TYPE_BYTES.contains(b),
            (_, None) => false,
        }
    }

    fn lose(&mut self, ts_ns: u64, out: &mut Vec<RespEvent>) {
        if let Some(mut value) = self.current.take() {
            // A command array whose name was read is still that command.
            if self.side == Side::Commands && value.kind == b'*' && !value.children.is_empty() {
                value.cut = true;
                value.end_ns = ts_ns;
                out.push(RespEvent::Value(value));
            } else {
                // Read, but now part of what is skipped: still counted.
                self.skipped_bytes += value.wire_bytes;
            }
        }
        self.turned = false;
        self.state = State::Line;
        self.line.clear();
        self.line_overflow = false;
        self.stack.clear();
        self.current = None;
        if !self.lost {
            self.lost = true;
            self.losses += 1;
            out.push(RespEvent::Lost);
        }
    }

    pub fn feed(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<RespEvent>) {
        let mut input = captured;
        if self.lost {
            if !self.turned || !self.can_start(input) {
                self.skipped_bytes += input.len() as u64 + gap;
                return;
            }
            self.lost = false;
        }
        while !input.is_empty() {
            if self.current.is_none() && self.line.is_empty() && self.state == State::Line {
                self.current = Some(RespValue {
                    kind: 0,
                    text: Vec::new(),
                    null: false,
                    children: Vec::new(),
                    child_count: 0,
                    cut: false,
                    wire_bytes: 0,
                    start_ns: ts_ns,
                    end_ns: ts_ns,
                });
            }
            match self.state {
                State::Bulk { left, depth } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    self.keep_text(depth, &input[..take], left);
                    self.count_bytes(take as u64);
                    input = &input[take..];
                    let left = left - take as u64;
                    if left == 0 {
                        self.state = State::Line;
                        self.value_done(ts_ns, out);
                    } else {
                        self.state = State::Bulk { left, depth };
                    }
                }
                State::Line => {
                    let end = memchr(b'\n', input);
                    let take = end.map_or(input.len(), |at| at + 1);
                    let room = MAX_LINE.saturating_sub(self.line.len()).min(take);
                    self.line_overflow |= room < take;
                    self.line.extend_from_slice(&input[..room]);
                    self.count_bytes(take as u64);
                    input = &input[take..];
                    if end.is_none() {
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.line);
                    self.line_overflow = false;
                    while matches!(line.last(), Some(b'\n' | b'\r')) {
                        line.pop();
                    }
                    let ok = self.on_line(&line, ts_ns, out);
                    line.clear();
                    self.line = line;
                    if !ok {
                        self.skipped_bytes += input.len() as u64 + gap;
                        self.lose(ts_ns, out);
                        return;
                    }
                }
            }
        }
        if gap == 0 {
            return;
        }
        if let State::Bulk { left, depth } = self.state {
            if let Some(current) = &mut self.current {
                current.cut = true;
            }
            self.count_bytes(gap.min(left));
            if gap < left {
                self.state = State::Bulk {
                    left: left - gap,
                    depth,
                };
                return;
            }
            self.state = State::Line;
            self.value_done(ts_ns, out);
            if gap > left {
                self.skipped_bytes += gap - left;
                self.lose(ts_ns, out);
            }
            return;
        }
        self.skipped_bytes += gap;
        self.lose(ts_ns, out);
    }

    fn count_bytes(&mut self, bytes: u64) {
        if let Some(current) = &mut self.current {
            current.wire_bytes += bytes;
        }
    }

    /// Keeps bulk bytes as the text of the value (depth 0) or of its last child (depth 1).
    fn keep_text(&mut self, depth: usize, bytes: &[u8], left_with_crlf: u64) {
        // The last two bytes of a bulk are its CRLF, not text.
        let payload_left = left_with_crlf.saturating_sub(2);
        let bytes = &bytes[..bytes
            .len()
            .min(usize::try_from(payload_left).unwrap_or(usize::MAX))];
        let Some(current) = &mut self.current else {
            return;
        };
        let (text, max) = match depth {
            0 => (&mut current.text, TOP_TEXT),
            1 => match current.children.last_mut() {
                Some(child) => (&mut child.text, CHILD_TEXT),
                None => return,
            },
            _ => return,
        };
        let room = max.saturating_sub(text.len()).min(bytes.len());
        text.extend_from_slice(&bytes[..room]);
    }

    /// Handles one header or simple line; false when it is not RESP.
    fn on_line(&mut self, line: &[u8], ts_ns: u64, out: &mut Vec<RespEvent>) -> bool {
        let depth = self.stack.len();
        let Some((&kind, rest)) = line.split_first() else {
            // An empty line between inline commands.
            return depth == 0 && self.side == Side::Commands && {
                self.current = None;
                true
            };
        };
        if !TYPE_BYTES.contains(&kind) {
            if depth == 0 && self.side == Side::Commands && kind.is_ascii_graphic() {
                return self.inline(line, ts_ns, out);
            }
            return false;
        }
        let Some(current) = &mut self.current else {
            return false;
        };
        if depth == 0 {
            current.kind = kind;
            self.arrays_seen |= self.side == Side::Commands && kind == b'*';
        } else if depth == 1 && self.stack[0].remaining > 0 && current.children.len() < MAX_CHILDREN
        {
            current.children.push(RespChild {
                kind,
                text: Vec::new(),
                null: false,
            });
        }
        match kind {
            b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {
                let null = kind == b'_';
                self.set_text(depth, rest, null);
                self.value_done(ts_ns, out);
                true
            }
            b'$' | b'!' | b'=' => match parse_int(rest) {
                Some(-1) => {
                    self.set_text(depth, b"", true);
                    self.value_done(ts_ns, out);
                    true
                }
                Some(len) if (0..MAX_DECLARED).contains(&len) => {
                    self.state = State::Bulk {
                        left: len as u64 + 2,
                        depth,
                    };
                    true
                }
                _ => false,
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let Some(n) = parse_int(rest) else {
                    return false;
                };
                if n == -1 {
                    self.set_text(depth, b"", true);
                    self.value_done(ts_ns, out);
                    return true;
                }
                if !(0..MAX_DECLARED).contains(&n) || depth >= MAX_DEPTH {
                    return false;
                }
                let elements = if matches!(kind, b'%' | b'|') {
                    2 * n as u64
                } else {
                    n as u64
                };
                if depth == 0 {
                    if let Some(current) = &mut self.current {
                        current.child_count = elements;
                    }
                }
                let counted = !(kind == b'|' && depth > 0);
                if elements == 0 {
                    if counted {
                        self.value_done(ts_ns, out);
                    }
                    return true;
                }
                self.stack.push(Level {
                    remaining: elements,
                    counted,
                });
                true
            }
            _ => false,
        }
    }

    fn set_text(&mut self, depth: usize, text: &[u8], null: bool) {
        let Some(current) = &mut self.current else {
            return;
        };
        match depth {
            0 => {
                current.text = text[..text.len().min(TOP_TEXT)].to_vec();
                current.null = null;
            }
            1 => {
                if let Some(child) = current.children.last_mut() {
                    child.text = text[..text.len().min(CHILD_TEXT)].to_vec();
                    child.null = null;
                }
            }
            _ => {}
        }
    }

    /// An inline command: the line's words are its arguments.
    fn inline(&mut self, line: &[u8], ts_ns: u64, out: &mut Vec<RespEvent>) -> bool {
        let Some(current) = &mut self.current else {
            return false;
        };
        current.kind = b'i';
        for word in inline_words(line) {
            current.child_count += 1;
            if current.children.len() < MAX_CHILDREN {
                current.children.push(RespChild {
                    kind: b'$',
                    text: word[..word.len().min(CHILD_TEXT)].to_vec(),
                    null: false,
                });
            }
        }
        self.value_done(ts_ns, out);
        true
    }

    /// A value ended: close the aggregates it completes, emit the top-level one.
    fn value_done(&mut self, ts_ns: u64, out: &mut Vec<RespEvent>) {
        while let Some(level) = self.stack.last_mut() {
            level.remaining = level.remaining.saturating_sub(1);
            if level.remaining > 0 {
                return;
            }
            let counted = level.counted;
            self.stack.pop();
            if !counted {
                // A nested attribute ended: its parent is still waiting for its element.
                return;
            }
        }
        if let Some(mut value) = self.current.take() {
            value.end_ns = ts_ns;
            out.push(RespEvent::Value(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(side: Side, segments: &[(&[u8], u64)]) -> Vec<RespEvent> {
        let mut reader = RespReader::new(side);
        let mut out = Vec::new();
        for (i, (bytes, gap)) in segments.iter().enumerate() {
            reader.feed(bytes, *gap, i as u64, &mut out);
        }
        out
    }

    #[test]
    fn command_arrays_and_inline_commands() {
        let out = values(
            Side::Commands,
            &[(
                b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\nEVAL \"return 'a b'\" 0\r\n",
                0,
            )],
        );
        let [RespEvent::Value(set), RespEvent::Value(ping), RespEvent::Value(eval)] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            eval.children
                .iter()
                .map(|c| c.text.as_slice())
                .collect::<Vec<_>>(),
            [&b"EVAL"[..], b"return 'a b'", b"0"]
        );
        assert_eq!(
            set.children
                .iter()
                .map(|c| c.text.as_slice())
                .collect::<Vec<_>>(),
            [&b"SET"[..], b"k", b"hello"]
        );
        assert_eq!(set.wire_bytes, 31);
        assert_eq!(
            (ping.kind, ping.children[0].text.as_slice()),
            (b'i', &b"PING"[..])
        );
    }

    #[test]
    fn nested_replies_and_resp3_types() {
        let out = values(
            Side::Replies,
            &[(b"*2\r\n*1\r\n:1\r\n$-1\r\n%1\r\n+a\r\n,1.5\r\n|1\r\n+k\r\n+v\r\n#t\r\n_\r\n>2\r\n$1\r\nx\r\n$1\r\ny\r\n", 0)],
        );
        let kinds: Vec<u8> = out
            .iter()
            .filter_map(|e| match e {
                RespEvent::Value(v) => Some(v.kind),
                RespEvent::Lost => None,
            })
            .collect();
        assert_eq!(kinds, b"*%|#_>");
    }

    #[test]
    fn bulk_followed_across_a_gap() {
        let out = values(Side::Replies, &[(b"$10\r\nabc", 9), (b"+OK\r\n", 0)]);
        let [RespEvent::Value(bulk), RespEvent::Value(ok)] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(bulk.cut);
        assert_eq!(bulk.text, b"abc");
        assert_eq!(ok.text, b"OK");
    }

    #[test]
    fn gap_over_a_header_loses_then_resyncs_once_the_other_side_spoke() {
        let mut reader = RespReader::new(Side::Replies);
        let mut out = Vec::new();
        reader.feed(b"*3\r\n:1\r\n", 20, 0, &mut out);
        // Still the long reply: what reads like a value is not one.
        reader.feed(b"+OK\r\n", 0, 1, &mut out);
        reader.feed(b"garbage", 0, 2, &mut out);
        assert_eq!(out, vec![RespEvent::Lost]);
        reader.peer_spoke();
        reader.feed(b"+OK\r\n", 0, 3, &mut out);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[1], RespEvent::Value(v) if v.text == b"OK"));
    }

    #[test]
    fn a_client_that_writes_arrays_resyncs_at_an_array_not_at_text() {
        let mut reader = RespReader::new(Side::Commands);
        let mut out = Vec::new();
        reader.feed(b"*1\r\n$4\r\nPING\r\n", 0, 0, &mut out);
        // A pipeline whose second command is past the capture: lost.
        reader.feed(
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9000\r\nv",
            20_000,
            1,
            &mut out,
        );
        reader.peer_spoke();
        // Text that reads like an inline command is the rest of a long value.
        reader.feed(b"element number 5\r\n", 0, 3, &mut out);
        reader.feed(b"*1\r\n$4\r\nPING\r\n", 0, 4, &mut out);
        let names: Vec<&[u8]> = out
            .iter()
            .filter_map(|e| match e {
                RespEvent::Value(v) => v.children.first().map(|c| c.text.as_slice()),
                RespEvent::Lost => None,
            })
            .collect();
        assert_eq!(names, vec![&b"PING"[..], b"SET", b"PING"], "{out:?}");
        // A client that types inline commands resyncs at text.
        let mut inline = RespReader::new_lost(Side::Commands);
        let mut out = Vec::new();
        inline.feed(b"PING\r\n", 0, 0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn a_command_cut_by_a_lost_framing_comes_out_as_far_as_it_was_read() {
        let mut reader = RespReader::new(Side::Commands);
        let mut out = Vec::new();
        reader.feed(
            b"*4\r\n$5\r\nRPUSH\r\n$1\r\nl\r\n$3\r\nab",
            900,
            0,
            &mut out,
        );
        let [RespEvent::Value(command), RespEvent::Lost] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(command.cut);
        assert_eq!(command.child_count, 4);
        assert_eq!(command.children[0].text, b"RPUSH");
    }
}
