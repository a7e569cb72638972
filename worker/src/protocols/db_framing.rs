//! Length-prefixed frames (PostgreSQL messages, MySQL packets) out of one
//! direction of a captured stream.
//!
//! Segments arrive as captured bytes plus a count of bytes not captured after
//! them. A frame whose header was seen is followed across such gaps by its
//! declared length: its body is kept up to a per-tag limit and the frame is
//! marked `cut`. A gap that swallows a header loses the framing: the framer
//! reports [`FrameEvent::Lost`] and waits until the protocol's resync function
//! finds a frame start in a later segment.

#![forbid(unsafe_code)]

/// A frame header: tag (message type, or sequence id) and body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub tag: u8,
    pub body_len: u64,
}

/// How a protocol frames its messages.
#[derive(Debug, Clone, Copy)]
pub struct FrameFormat {
    pub header_len: usize,
    /// Parses `header_len` bytes; `None` when they cannot start a frame.
    pub parse_header: fn(&[u8]) -> Option<FrameHeader>,
    /// Body bytes worth keeping for a tag (0 for rows and copy data).
    pub keep_body: fn(u8) -> usize,
    /// Where a frame starts in a segment after framing was lost, if anywhere.
    pub resync: fn(&[u8]) -> Option<usize>,
    /// Where, in a segment's last bytes copied apart from its start (a
    /// tail), frames start that run exactly to the segment's end, if the
    /// protocol can tell (a server's last answer before it waits).
    pub tail_resync: fn(&[u8]) -> Option<usize>,
}

/// Bytes at the end of a segment copied whole that are looked at for frames
/// running to its end after a loss: as many as the kernel copies of a longer
/// segment's end (`ZT_TAIL_LEN`).
const WHOLE_END_LEN: usize = zerotrace_shared::event::layout::TAIL_LEN;

/// One frame: its tag, the kept prefix of its body, and what was lost of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub body: Vec<u8>,
    /// Declared body length.
    pub body_len: u64,
    /// Part of the body was not captured (or not kept, past `keep_body`).
    pub cut: bool,
    /// Timestamp of the segment holding the frame's first byte.
    pub start_ns: u64,
    /// Timestamp of the segment holding its last byte.
    pub end_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    Frame(Frame),
    /// Framing lost to a gap or to bytes that are not a frame.
    Lost,
    /// Framing regained where a segment (or what it holds after bytes the
    /// protocol's resync skipped) starts with frames, after a loss.
    Regained,
    /// Framing regained in a segment's tail after a loss: the frames that
    /// follow are the last of that segment, and whatever they answer may
    /// have had other answers in the lost bytes before them.
    EndRegained,
}

#[derive(Debug)]
struct InProgress {
    header: FrameHeader,
    body: Vec<u8>,
    keep: usize,
    seen: u64,
    cut: bool,
    start_ns: u64,
}

/// Turns segments of one direction into frames.
#[derive(Debug)]
pub struct LengthFramer {
    format: FrameFormat,
    header: Vec<u8>,
    header_start_ns: u64,
    current: Option<InProgress>,
    lost: bool,
    /// Bytes dropped while framing was lost.
    pub skipped_bytes: u64,
    /// Times framing was lost.
    pub losses: u64,
}

impl LengthFramer {
    pub fn new(format: FrameFormat) -> Self {
        Self {
            format,
            header: Vec::new(),
            header_start_ns: 0,
            current: None,
            lost: false,
            skipped_bytes: 0,
            losses: 0,
        }
    }

    /// A framer that starts out of sync (joined mid-stream).
    pub fn new_lost(format: FrameFormat) -> Self {
        let mut framer = Self::new(format);
        framer.lost = true;
        framer
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Between frames, with no partial header buffered.
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.current.is_none() && self.header.is_empty()
    }

    fn lose(&mut self, out: &mut Vec<FrameEvent>) {
        // A header begun (or read and refused) is skipped bytes too.
        self.skipped_bytes += self.header.len() as u64;
        self.header.clear();
        self.current = None;
        if !self.lost {
            self.lost = true;
            self.losses += 1;
            out.push(FrameEvent::Lost);
        }
    }

    pub fn feed(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<FrameEvent>) {
        let mut input = captured;
        if self.lost {
            match (self.format.resync)(input) {
                Some(offset) if offset <= input.len() => {
                    self.skipped_bytes += offset as u64;
                    input = &input[offset..];
                    self.lost = false;
                    out.push(FrameEvent::Regained);
                }
                _ => {
                    self.skipped_bytes += input.len() as u64 + gap;
                    return;
                }
            }
        }
        while !input.is_empty() {
            if let Some(current) = &mut self.current {
                let need = current.header.body_len - current.seen;
                let take = usize::try_from(need).unwrap_or(usize::MAX).min(input.len());
                let room = current.keep.saturating_sub(current.body.len()).min(take);
                current.body.extend_from_slice(&input[..room]);
                current.seen += take as u64;
                input = &input[take..];
                if current.seen == current.header.body_len {
                    self.finish(ts_ns, out);
                }
                continue;
            }
            if self.header.is_empty() {
                self.header_start_ns = ts_ns;
            }
            let want = self.format.header_len - self.header.len();
            let take = want.min(input.len());
            self.header.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.header.len() < self.format.header_len {
                break;
            }
            match (self.format.parse_header)(&self.header) {
                Some(header) => {
                    let keep = (self.format.keep_body)(header.tag)
                        .min(usize::try_from(header.body_len).unwrap_or(usize::MAX));
                    self.current = Some(InProgress {
                        header,
                        body: Vec::with_capacity(keep.min(input.len())),
                        keep,
                        seen: 0,
                        cut: false,
                        start_ns: self.header_start_ns,
                    });
                    self.header.clear();
                    if header.body_len == 0 {
                        self.finish(ts_ns, out);
                    }
                }
                None => {
                    self.skipped_bytes += input.len() as u64 + gap;
                    self.lose(out);
                    return;
                }
            }
        }
        if gap == 0 {
            return;
        }
        let Some(current) = &mut self.current else {
            self.skipped_bytes += gap;
            self.lose(out);
            return;
        };
        let need = current.header.body_len - current.seen;
        current.cut = true;
        if gap < need {
            current.seen += gap;
            return;
        }
        current.seen += need;
        self.finish(ts_ns, out);
        if gap > need {
            self.skipped_bytes += gap - need;
            self.lose(out);
        }
    }

    /// [`Self::feed`] for a segment of which `tail` (its last bytes, among
    /// the `missing` ones after `captured`) was copied apart too: frames
    /// followed through the bytes not copied go on in it, and framing lost
    /// there may be regained from it ([`FrameFormat::tail_resync`]). A
    /// segment copied whole that does not start with a frame while framing
    /// is lost (the short last read of a result) has its last bytes looked
    /// at the same way.
    pub fn feed_with_tail(
        &mut self,
        captured: &[u8],
        missing: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut Vec<FrameEvent>,
    ) {
        if let Some(hidden) = missing
            .checked_sub(tail.len() as u64)
            .filter(|_| !tail.is_empty())
        {
            self.feed(captured, hidden, ts_ns, out);
            if !self.lost {
                return self.feed(tail, 0, ts_ns, out);
            }
            if !self.regain_at_end(tail, ts_ns, out) {
                self.skipped_bytes += tail.len() as u64;
            }
            return;
        }
        // Only while lost (the resync is a scan, not for every segment).
        // Where the start-of-segment resync finds frames before the last
        // bytes (a PostgreSQL ReadyForQuery amid the read: answers of an
        // earlier batch), it decides, as before.
        if self.lost && missing == 0 {
            let end_at = captured.len().saturating_sub(WHOLE_END_LEN);
            let resynced_before_end = (self.format.resync)(captured).is_some_and(|at| at < end_at);
            if !resynced_before_end {
                let (before, end) = captured.split_at(end_at);
                if self.regain_at_end(end, ts_ns, out) {
                    self.skipped_bytes += before.len() as u64;
                    return;
                }
            }
        }
        self.feed(captured, missing, ts_ns, out)
    }

    /// Regains lost framing where the format finds frames that run to the
    /// end of `end` (a segment's last bytes), and reads them.
    fn regain_at_end(&mut self, end: &[u8], ts_ns: u64, out: &mut Vec<FrameEvent>) -> bool {
        match (self.format.tail_resync)(end) {
            Some(offset) if offset < end.len() => {
                self.skipped_bytes += offset as u64;
                self.lost = false;
                out.push(FrameEvent::EndRegained);
                self.feed(&end[offset..], 0, ts_ns, out);
                true
            }
            _ => false,
        }
    }

    fn finish(&mut self, ts_ns: u64, out: &mut Vec<FrameEvent>) {
        if let Some(done) = self.current.take() {
            let cut = done.cut || (done.body.len() as u64) < done.header.body_len;
            out.push(FrameEvent::Frame(Frame {
                tag: done.header.tag,
                body: done.body,
                body_len: done.header.body_len,
                cut,
                start_ns: done.start_ns,
                end_ns: ts_ns,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Option<FrameHeader> {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        (bytes[0].is_ascii_alphabetic() && len >= 4).then(|| FrameHeader {
            tag: bytes[0],
            body_len: u64::from(len - 4),
        })
    }

    fn format() -> FrameFormat {
        FrameFormat {
            header_len: 5,
            parse_header: header,
            keep_body: |_| 4,
            resync: |seg| (seg.first().is_some_and(u8::is_ascii_alphabetic)).then_some(0),
            tail_resync: |tail| memchr::memchr(b'Z', tail),
        }
    }

    fn frames(events: &[FrameEvent]) -> Vec<(u8, Vec<u8>, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                FrameEvent::Frame(f) => Some((f.tag, f.body.clone(), f.cut)),
                FrameEvent::Lost | FrameEvent::Regained | FrameEvent::EndRegained => None,
            })
            .collect()
    }

    #[test]
    fn frames_split_across_segments_and_gaps() {
        let mut framer = LengthFramer::new(format());
        let mut out = Vec::new();
        framer.feed(b"A\0\0", 0, 1, &mut out);
        framer.feed(b"\0\x06hiB\0\0\0\x0cabc", 5, 2, &mut out);
        framer.feed(b"C\0\0\0\x04", 0, 3, &mut out);
        assert_eq!(
            frames(&out),
            vec![
                (b'A', b"hi".to_vec(), false),
                (b'B', b"abc".to_vec(), true),
                (b'C', vec![], false)
            ]
        );
        assert!(framer.at_boundary());
    }

    #[test]
    fn a_gap_over_a_header_loses_framing_until_resync() {
        let mut framer = LengthFramer::new(format());
        let mut out = Vec::new();
        framer.feed(b"A\0\0\0\x04", 9, 1, &mut out);
        assert_eq!(out.last(), Some(&FrameEvent::Lost));
        framer.feed(b"\x01\x02", 0, 2, &mut out);
        framer.feed(b"Z\0\0\0\x05I", 0, 3, &mut out);
        assert_eq!(
            frames(&out),
            vec![(b'A', vec![], false), (b'Z', b"I".to_vec(), false)]
        );
        assert_eq!(framer.losses, 1);
        assert_eq!(framer.skipped_bytes, 11);
    }

    #[test]
    fn frames_go_on_in_a_tail_or_are_found_there_after_a_loss() {
        // The gap before the tail ends inside B: B's end is in the tail,
        // and C follows it.
        let mut framer = LengthFramer::new(format());
        let mut out = Vec::new();
        framer.feed_with_tail(b"B\0\0\0\x10abc", 14, b"lmC\0\0\0\x04", 1, &mut out);
        // (Four bytes of B's body are kept: the last one from the tail.)
        assert_eq!(
            frames(&out),
            vec![(b'B', b"abcl".to_vec(), true), (b'C', vec![], false)]
        );
        assert!(framer.at_boundary() && framer.losses == 0);
        // A gap past B's end hides the next header: the tail's format finds a
        // frame in it, after bytes that are skipped.
        let mut out = Vec::new();
        framer.feed_with_tail(b"B\0\0\0\x06", 20, b"..Z\0\0\0\x05I", 2, &mut out);
        assert_eq!(out.get(1), Some(&FrameEvent::Lost));
        assert_eq!(out.get(2), Some(&FrameEvent::EndRegained));
        assert_eq!(
            frames(&out),
            vec![(b'B', vec![], true), (b'Z', b"I".to_vec(), false)]
        );
        assert!(framer.at_boundary());
        // Lost, then a segment copied whole that starts inside a frame: its
        // last bytes regain the framing.
        let mut lost = LengthFramer::new_lost(format());
        let mut out = Vec::new();
        lost.feed_with_tail(b"11Z\0\0\0\x05I", 0, b"", 4, &mut out);
        assert_eq!(out.first(), Some(&FrameEvent::EndRegained));
        assert_eq!(frames(&out), vec![(b'Z', b"I".to_vec(), false)]);
        assert_eq!(lost.skipped_bytes, 2);
        // Lost from the start, with no frame in the tail: all skipped.
        let mut lost = LengthFramer::new_lost(format());
        let mut out = Vec::new();
        lost.feed_with_tail(b"11", 30, b"1111", 3, &mut out);
        assert!(out.is_empty() && lost.is_lost());
        assert_eq!(lost.skipped_bytes, 32);
    }
}
