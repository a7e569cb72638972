//! One direction of a NATS connection read into operations: a control line
//! up to its CRLF, and for a message its payload (the size the line gives,
//! then CRLF), followed across the bytes the capture did not copy. A gap
//! that hides part of a control line loses the framing until a segment
//! starts with an operation of that side again.

#![forbid(unsafe_code)]

use zerotrace_shared::event::Direction;

use super::line::{self, Control, MAX_LINE};

/// One operation read: its control line, the first bytes of a message's
/// payload, and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub control: Control,
    /// Bytes of the control line, CRLF included.
    pub line_len: u64,
    /// A message's first payload bytes (headers first, for HPUB and HMSG).
    pub payload: Vec<u8>,
    /// Part of the payload was not captured.
    pub cut: bool,
    /// Timestamps of the segments holding the operation's first and last bytes.
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Operation {
    /// The operation's size on the wire.
    pub fn wire_size(&self) -> u64 {
        match &self.control {
            Control::Message(message) => self.line_len + message.size + 2,
            _ => self.line_len,
        }
    }
}

/// What [`OperationReader::feed`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent {
    Operation(Operation),
    /// A gap hid a control line, or bytes were not one: nothing is read
    /// until a segment starts with an operation again.
    Lost,
}

/// A message whose payload is still being read.
#[derive(Debug)]
struct InPayload {
    operation: Operation,
    /// Payload bytes and the final CRLF still to come.
    left: u64,
}

/// One direction's operations out of its segments.
#[derive(Debug)]
pub struct OperationReader {
    direction: Direction,
    /// Payload bytes kept of each message.
    kept: usize,
    /// The control line read so far.
    line: Vec<u8>,
    line_start_ns: u64,
    payload: Option<InPayload>,
    lost: bool,
    /// Times the framing was lost.
    pub losses: u64,
    /// Bytes passed over while lost.
    pub skipped_bytes: u64,
    /// Control lines that were not the side's operations.
    pub bad_lines: u64,
}

impl OperationReader {
    /// A reader of the side `direction` (seen from the client), keeping
    /// `kept` payload bytes of each message.
    pub fn new(direction: Direction, kept: usize) -> Self {
        Self {
            direction,
            kept,
            line: Vec::new(),
            line_start_ns: 0,
            payload: None,
            lost: false,
            losses: 0,
            skipped_bytes: 0,
            bad_lines: 0,
        }
    }

    /// A reader that starts out of sync (joined mid-stream): it reads from
    /// the first segment that starts with an operation.
    pub fn new_lost(direction: Direction, kept: usize) -> Self {
        Self {
            lost: true,
            ..Self::new(direction, kept)
        }
    }

    /// Whether a message's payload is being read (its control line was).
    pub fn reads_a_message(&self) -> bool {
        self.payload.is_some()
    }

    /// Reads `captured`, then `gap` bytes not captured; hands out each
    /// operation once its last byte was seen.
    pub fn feed(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<ReadEvent>) {
        let mut input = captured;
        if self.lost {
            if !line::starts_with_operation(input, self.direction) {
                self.skipped_bytes += input.len() as u64 + gap;
                return;
            }
            self.lost = false;
        }
        while !input.is_empty() {
            input = match self.payload.take() {
                Some(payload) => self.read_payload(payload, input, ts_ns, out),
                None => match self.read_line(input, ts_ns, out) {
                    Some(rest) => rest,
                    None => {
                        self.skipped_bytes += gap;
                        return;
                    }
                },
            };
        }
        if gap == 0 {
            return;
        }
        match self.payload.take() {
            Some(mut payload) if gap <= payload.left => {
                payload.left -= gap;
                payload.operation.cut = true;
                if payload.left == 0 {
                    self.hand_out(payload.operation, ts_ns, out);
                } else {
                    self.payload = Some(payload);
                }
            }
            Some(mut payload) => {
                // The message ends inside the gap, and the next line with it.
                self.skipped_bytes += gap - payload.left;
                payload.operation.cut = true;
                self.hand_out(payload.operation, ts_ns, out);
                self.lose(out);
            }
            None => {
                self.skipped_bytes += self.line.len() as u64 + gap;
                self.lose(out);
            }
        }
    }

    /// Payload bytes of the message being read; what follows its end.
    fn read_payload<'a>(
        &mut self,
        mut payload: InPayload,
        input: &'a [u8],
        ts_ns: u64,
        out: &mut Vec<ReadEvent>,
    ) -> &'a [u8] {
        let take = usize::try_from(payload.left)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let room = self.kept.saturating_sub(payload.operation.payload.len());
        // The payload's own bytes, not its final CRLF.
        let payload_left = payload.left.saturating_sub(2);
        let own = usize::try_from(payload_left)
            .unwrap_or(usize::MAX)
            .min(take);
        payload
            .operation
            .payload
            .extend_from_slice(&input[..own.min(room)]);
        payload.left -= take as u64;
        if payload.left == 0 {
            self.hand_out(payload.operation, ts_ns, out);
        } else {
            self.payload = Some(payload);
        }
        &input[take..]
    }

    /// Bytes of a control line; what follows it, or `None` when the line
    /// was not one (the framing is lost, the rest skipped).
    fn read_line<'a>(
        &mut self,
        input: &'a [u8],
        ts_ns: u64,
        out: &mut Vec<ReadEvent>,
    ) -> Option<&'a [u8]> {
        if self.line.is_empty() {
            self.line_start_ns = ts_ns;
        }
        let Some(end) = memchr::memchr(b'\n', input) else {
            self.line.extend_from_slice(input);
            if self.line.len() > MAX_LINE {
                self.bad_lines += 1;
                self.skipped_bytes += self.line.len() as u64;
                self.lose(out);
                return None;
            }
            return Some(&[]);
        };
        let rest = &input[end + 1..];
        // A line whole in this segment is read where it lies; one begun in
        // an earlier segment is read from what was kept of it.
        if !self.line.is_empty() {
            self.line.extend_from_slice(&input[..end]);
        }
        let whole = if self.line.is_empty() {
            &input[..end]
        } else {
            &self.line[..]
        };
        let line_len = whole.len() as u64 + 1;
        let parsed = line::parse(whole.strip_suffix(b"\r").unwrap_or(whole), self.direction);
        self.line.clear();
        let Some(control) = parsed else {
            self.bad_lines += 1;
            self.skipped_bytes += line_len + rest.len() as u64;
            self.lose(out);
            return None;
        };
        let operation = Operation {
            line_len,
            payload: Vec::new(),
            cut: false,
            start_ns: self.line_start_ns,
            end_ns: ts_ns,
            control,
        };
        match &operation.control {
            Control::Message(message) => {
                self.payload = Some(InPayload {
                    left: message.size + 2,
                    operation,
                });
            }
            _ => self.hand_out(operation, ts_ns, out),
        }
        Some(rest)
    }

    fn hand_out(&mut self, mut operation: Operation, ts_ns: u64, out: &mut Vec<ReadEvent>) {
        operation.end_ns = ts_ns;
        out.push(ReadEvent::Operation(operation));
    }

    fn lose(&mut self, out: &mut Vec<ReadEvent>) {
        self.line.clear();
        self.payload = None;
        if !self.lost {
            self.lost = true;
            self.losses += 1;
            out.push(ReadEvent::Lost);
        }
    }
}
