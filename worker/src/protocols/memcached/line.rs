//! Lines of memcached's text protocol out of one direction of a captured
//! stream, with the data blocks that follow some of them (`set`'s value,
//! `VALUE`'s value) skipped by their declared length, across gaps too.

#![forbid(unsafe_code)]

use memchr::memchr;

/// Longest line kept (a `get` with many keys); the rest of it is skipped.
const MAX_LINE: usize = 2048;

/// One line, with its data block when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Without its CRLF; cut at `MAX_LINE`.
    pub text: Vec<u8>,
    /// Part of the line or of its data block was not captured.
    pub cut: bool,
    /// The line was longer than `MAX_LINE`: the rest of it was captured but
    /// not kept, only its words counted in `words_not_kept`.
    pub overflowed: bool,
    /// Words of the line past `MAX_LINE` (a long `get`'s other keys).
    pub words_not_kept: u64,
    /// The line, its data block and their CRLFs.
    pub wire_bytes: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    Line(Line),
    Lost,
}

/// Words that start in `bytes` (a byte other than a space or line end,
/// after a space), `after_space` telling whether the byte before them was
/// one, and left telling whether their last was.
fn count_word_starts(bytes: &[u8], after_space: &mut bool) -> u64 {
    let mut starts = 0;
    for byte in bytes {
        let space = *byte == b' ';
        if !space && *after_space && !matches!(byte, b'\r' | b'\n') {
            starts += 1;
        }
        *after_space = space;
    }
    starts
}

/// Splits one direction into lines; `data_after(line)` tells how many data
/// bytes (CRLF included) follow a line.
#[derive(Debug)]
pub struct LineReader {
    data_after: fn(&[u8]) -> Option<u64>,
    can_start: fn(&[u8]) -> bool,
    current: Option<Line>,
    /// The last byte of the current line read was a space (words past
    /// `MAX_LINE` are counted at their first byte).
    after_space: bool,
    /// Data bytes still to pass for the current line.
    data_left: u64,
    lost: bool,
    /// The other direction carried data since the framing was lost: a line
    /// may start at this direction's next segment. Until then, segments are
    /// the rest of a long reply or command, whose bytes may read like a
    /// line's start (`12 value…`).
    turned: bool,
    pub losses: u64,
    pub skipped_bytes: u64,
}

impl LineReader {
    pub fn new(data_after: fn(&[u8]) -> Option<u64>, can_start: fn(&[u8]) -> bool) -> Self {
        Self {
            data_after,
            can_start,
            current: None,
            after_space: false,
            data_left: 0,
            lost: false,
            turned: false,
            losses: 0,
            skipped_bytes: 0,
        }
    }

    /// The other direction carried data: after a loss, this one may find a
    /// line's start again.
    pub fn peer_spoke(&mut self) {
        self.turned = true;
    }

    fn lose(&mut self, out: &mut Vec<LineEvent>) {
        if let Some(line) = self.current.take() {
            // Read, but now part of what is skipped: still counted.
            self.skipped_bytes += line.wire_bytes;
        }
        self.turned = false;
        self.data_left = 0;
        self.after_space = false;
        if !self.lost {
            self.lost = true;
            self.losses += 1;
            out.push(LineEvent::Lost);
        }
    }

    fn emit(&mut self, ts_ns: u64, out: &mut Vec<LineEvent>) {
        if let Some(mut line) = self.current.take() {
            line.end_ns = ts_ns;
            out.push(LineEvent::Line(line));
        }
    }

    pub fn feed(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<LineEvent>) {
        let mut input = captured;
        if self.lost {
            if !self.turned || !(self.can_start)(input) {
                self.skipped_bytes += input.len() as u64 + gap;
                return;
            }
            self.lost = false;
        }
        while !input.is_empty() {
            let line = self.current.get_or_insert_with(|| Line {
                text: Vec::new(),
                cut: false,
                overflowed: false,
                words_not_kept: 0,
                wire_bytes: 0,
                start_ns: ts_ns,
                end_ns: ts_ns,
            });
            if self.data_left > 0 {
                let take = usize::try_from(self.data_left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                line.wire_bytes += take as u64;
                self.data_left -= take as u64;
                input = &input[take..];
                if self.data_left == 0 {
                    self.emit(ts_ns, out);
                }
                continue;
            }
            let end = memchr(b'\n', input);
            let take = end.map_or(input.len(), |at| at + 1);
            let room = MAX_LINE.saturating_sub(line.text.len()).min(take);
            line.text.extend_from_slice(&input[..room]);
            if let Some(last) = room.checked_sub(1).and_then(|at| input.get(at)) {
                self.after_space = *last == b' ';
            }
            if room < take {
                line.overflowed = true;
                line.words_not_kept += count_word_starts(&input[room..take], &mut self.after_space);
            }
            line.wire_bytes += take as u64;
            input = &input[take..];
            if end.is_none() {
                continue;
            }
            while matches!(line.text.last(), Some(b'\n' | b'\r')) {
                line.text.pop();
            }
            self.after_space = false;
            match (self.data_after)(&line.text) {
                Some(data) if data > 0 => self.data_left = data,
                _ => self.emit(ts_ns, out),
            }
        }
        if gap == 0 {
            return;
        }
        if self.data_left > 0 {
            let covered = gap.min(self.data_left);
            self.data_left -= covered;
            if let Some(line) = &mut self.current {
                line.cut = true;
                line.wire_bytes += covered;
            }
            if self.data_left == 0 {
                self.emit(ts_ns, out);
                if gap > covered {
                    self.skipped_bytes += gap - covered;
                    self.lose(out);
                }
            }
            return;
        }
        self.skipped_bytes += gap;
        self.lose(out);
    }
}
