//! Frames whose header says how long they are, the header itself of
//! varying or fixed length (MQTT's fixed header with its variable-length
//! remaining length, AMQP 0-9-1's frame header), out of one direction of a
//! captured stream: a frame is followed across the bytes the capture did
//! not copy by its length, and handed out once its last byte was seen, with
//! the first bytes after its header. A gap that hides a header loses the
//! framing until a segment starts with a header again.

#![forbid(unsafe_code)]

/// What [`PrefixHeader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead<H> {
    Header(H),
    /// The bytes end inside the header.
    Short,
    /// Not a header of this protocol.
    Invalid,
}

/// A frame header.
pub trait PrefixHeader: Copy + std::fmt::Debug {
    fn read(bytes: &[u8]) -> HeaderRead<Self>;
    /// The header's own length.
    fn header_len(&self) -> usize;
    /// The whole frame's length, header included.
    fn total(&self) -> u64;
}

/// One frame: its header, the first bytes after it, and whether the rest
/// was not all captured (or not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<H> {
    pub header: H,
    pub body: Vec<u8>,
    pub cut: bool,
    /// Timestamps of the segments holding the frame's first and last bytes.
    pub start_ns: u64,
    pub end_ns: u64,
}

/// What [`PrefixFramer::feed`] hands out besides frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent<H> {
    Frame(Framed<H>),
    /// The bytes were not packets, or a gap hid a fixed header: nothing is
    /// read until a segment starts with a packet again.
    Lost,
}

/// One direction's frames out of its segments.
#[derive(Debug)]
pub struct PrefixFramer<H> {
    /// The current frame's first bytes: its header and at most `kept`
    /// bytes after it.
    start: Vec<u8>,
    kept: usize,
    /// The current frame's header, once whole.
    header: Option<H>,
    /// Bytes of the current packet seen so far, kept or not.
    seen: u64,
    start_ts: u64,
    lost: bool,
    /// Times the framing was lost.
    pub losses: u64,
    /// Bytes passed over while lost.
    pub skipped_bytes: u64,
}

impl<H: PrefixHeader> PrefixFramer<H> {
    /// A framer keeping at most `kept` bytes of each frame past its header.
    pub fn new(kept: usize) -> Self {
        Self {
            start: Vec::new(),
            kept,
            header: None,
            seen: 0,
            start_ts: 0,
            lost: false,
            losses: 0,
            skipped_bytes: 0,
        }
    }

    /// A framer that starts out of sync (joined mid-stream): it reads from
    /// the first segment that starts with a header.
    pub fn new_lost(kept: usize) -> Self {
        Self {
            lost: true,
            ..Self::new(kept)
        }
    }

    /// Reads `captured`, then `gap` bytes not captured; hands out each
    /// frame once its last byte was seen.
    pub fn feed(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<ReadEvent<H>>) {
        let mut input = captured;
        if self.lost {
            // A segment that starts with a header, or, whole and shorter
            // than one, with its start: clients read a frame a few bytes at
            // a time (paho-mqtt reads an acknowledgement in reads of 1, 1
            // and 2 bytes). A wrong start is found out at the next bytes.
            let regain = match H::read(input) {
                HeaderRead::Header(_) => true,
                HeaderRead::Short => gap == 0 && !input.is_empty(),
                HeaderRead::Invalid => false,
            };
            if !regain {
                self.skipped_bytes += input.len() as u64 + gap;
                return;
            }
            self.lost = false;
        }
        while !input.is_empty() {
            if self.seen == 0 {
                self.start_ts = ts_ns;
            }
            let header = match self.header {
                Some(header) => header,
                None => match H::read(&self.start) {
                    HeaderRead::Header(header) => {
                        self.header = Some(header);
                        header
                    }
                    HeaderRead::Short => {
                        // One byte more of the header.
                        self.start.push(input[0]);
                        self.seen += 1;
                        input = &input[1..];
                        continue;
                    }
                    HeaderRead::Invalid => {
                        self.skipped_bytes += self.start.len() as u64 + input.len() as u64 + gap;
                        return self.lose(out);
                    }
                },
            };
            let total = header.total();
            let need = total - self.seen;
            let take = usize::try_from(need).unwrap_or(usize::MAX).min(input.len());
            let room = (header.header_len() + self.kept).saturating_sub(self.start.len());
            self.start.extend_from_slice(&input[..take.min(room)]);
            self.seen += take as u64;
            input = &input[take..];
            if self.seen == total {
                self.hand_out(header, ts_ns, out);
            }
        }
        // A header read by its last byte, of a packet with nothing after it
        // (PINGREQ, DISCONNECT).
        if self.header.is_none() {
            if let HeaderRead::Header(header) = H::read(&self.start) {
                self.header = Some(header);
                if self.seen == header.total() {
                    self.hand_out(header, ts_ns, out);
                }
            }
        }
        if gap == 0 {
            return;
        }
        if self.seen == 0 {
            // Between packets: the gap hides the next header.
            self.skipped_bytes += gap;
            return self.lose(out);
        }
        // A header still unread is one the gap hides.
        let header = match self.header {
            Some(header) => header,
            None => match H::read(&self.start) {
                HeaderRead::Header(header) => header,
                HeaderRead::Short | HeaderRead::Invalid => {
                    self.skipped_bytes += self.start.len() as u64 + gap;
                    return self.lose(out);
                }
            },
        };
        self.header = Some(header);
        let need = header.total() - self.seen;
        self.seen += gap.min(need);
        if gap >= need {
            self.hand_out(header, ts_ns, out);
        }
        if gap > need {
            // Past the packet's end: the next header is in the gap.
            self.skipped_bytes += gap - need;
            self.lose(out);
        }
    }

    fn hand_out(&mut self, header: H, ts_ns: u64, out: &mut Vec<ReadEvent<H>>) {
        let mut body = std::mem::take(&mut self.start);
        let cut = (body.len() as u64) < header.total();
        body.drain(..header.header_len().min(body.len()));
        out.push(ReadEvent::Frame(Framed {
            header,
            body,
            cut,
            start_ns: self.start_ts,
            end_ns: ts_ns,
        }));
        self.header = None;
        self.seen = 0;
    }

    fn lose(&mut self, out: &mut Vec<ReadEvent<H>>) {
        self.start.clear();
        self.header = None;
        self.seen = 0;
        if !self.lost {
            self.lost = true;
            self.losses += 1;
            out.push(ReadEvent::Lost);
        }
    }
}
