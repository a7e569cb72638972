//! Helpers shared by the fuzz targets and the seed generator: HTTP/2 frame
//! builders, a small HPACK encoder that keeps a model of its dynamic table,
//! and the input layout of `http2_frames`. With them the targets build valid
//! conversations from fuzzer input and check what the decoders report.

use std::collections::VecDeque;
use std::sync::OnceLock;

use zerotrace_worker::protocols::hpack::{HpackDecoder, MAX_TABLE_SIZE};

pub use zerotrace_worker::protocols::http2::PREFACE;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// One HTTP/2 frame (RFC 9113 §4.1). Payloads longer than 2^24 - 1 bytes are
/// cut, which the fuzz inputs never reach.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .min(0x00ff_ffff);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(len.to_be_bytes().get(1..).unwrap_or_default());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload.get(..len as usize).unwrap_or(payload));
    out
}

/// SETTINGS with the given (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// A header block as HEADERS followed by CONTINUATION frames, cut after
/// each offset in `cuts` (offsets past the block or out of order are
/// ignored). `pad` adds PADDED with that many padding bytes to HEADERS.
pub fn header_frames(
    stream: u32,
    block: &[u8],
    end_stream: bool,
    cuts: &[usize],
    pad: Option<u8>,
) -> Vec<u8> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        if cut > start && cut < block.len() {
            pieces.push(block.get(start..cut).unwrap_or_default());
            start = cut;
        }
    }
    pieces.push(block.get(start..).unwrap_or_default());
    let last = pieces.len() - 1;
    let mut out = Vec::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let mut flags = if i == last { END_HEADERS } else { 0 };
        let mut payload = Vec::new();
        let kind = if i == 0 {
            if end_stream {
                flags |= END_STREAM;
            }
            if let Some(pad) = pad {
                flags |= PADDED;
                payload.push(pad);
            }
            HEADERS
        } else {
            CONTINUATION
        };
        payload.extend_from_slice(piece);
        if kind == HEADERS {
            payload.resize(payload.len() + usize::from(pad.unwrap_or(0)), 0);
        }
        out.extend(frame(kind, flags, stream, &payload));
    }
    out
}

/// DATA carrying `body`, optionally padded with `pad` bytes. Returns the
/// frame and the body length the decoder should count.
pub fn data_frame(stream: u32, body: &[u8], end_stream: bool, pad: Option<u8>) -> (Vec<u8>, u64) {
    let mut flags = if end_stream { END_STREAM } else { 0 };
    let mut payload = Vec::new();
    if let Some(pad) = pad {
        flags |= PADDED;
        payload.push(pad);
    }
    payload.extend_from_slice(body);
    payload.resize(payload.len() + usize::from(pad.unwrap_or(0)), 0);
    (frame(DATA, flags, stream, &payload), body.len() as u64)
}

/// One gRPC message: compressed flag, 4-byte big-endian length, message.
pub fn grpc_message(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The HPACK static table (RFC 7541 Appendix A), read back through the
/// decoder under test one indexed field at a time; index 1 is element 0.
/// Its contents are pinned by the RFC examples in the worker's unit tests.
pub fn static_table() -> &'static [(String, String)] {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (1u8..=61)
            .filter_map(|i| {
                let mut out = Vec::new();
                HpackDecoder::new(4096).decode(&[0x80 | i], &mut out).ok()?;
                out.pop()
            })
            .collect()
    })
}

/// Integer with an `n`-bit prefix (RFC 7541 §5.1); `flags` fills the bits
/// above the prefix.
pub fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u8, value: u64) {
    let max = (1u64 << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Raw (not Huffman) string literal (§5.2).
pub fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len() as u64);
    out.extend_from_slice(s);
}

/// How a literal field is represented (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexing {
    Incremental,
    Without,
    Never,
}

/// An HPACK encoder for building valid header blocks, with the dynamic
/// table it implies, kept the way RFC 7541 §4 says a decoder must keep it.
#[derive(Debug, Clone)]
pub struct HpackEncoder {
    /// Newest first: index 62 is `entries[0]`.
    entries: VecDeque<(String, String)>,
    size: usize,
    max_size: usize,
}

const ENTRY_OVERHEAD: usize = 32;

impl HpackEncoder {
    pub fn new(max_size: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    pub fn table(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn table_len(&self) -> usize {
        self.entries.len()
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The field at `index` (1-based, static then dynamic).
    pub fn field(&self, index: usize) -> Option<(&str, &str)> {
        let i = index.checked_sub(1)?;
        let table = static_table();
        match table.get(i) {
            Some((n, v)) => Some((n, v)),
            None => self
                .entries
                .get(i - table.len())
                .map(|(n, v)| (n.as_str(), v.as_str())),
        }
    }

    fn find(&self, name: &str, value: Option<&str>) -> Option<usize> {
        let matches = |n: &str, v: &str| n == name && value.is_none_or(|value| v == value);
        let table = static_table();
        table
            .iter()
            .position(|(n, v)| matches(n, v))
            .or_else(|| {
                self.entries
                    .iter()
                    .position(|(n, v)| matches(n, v))
                    .map(|i| i + table.len())
            })
            .map(|i| i + 1)
    }

    /// Dynamic table size update (§6.3); must lead a block. Sizes above the
    /// decoder's clamp are clamped here too.
    pub fn size_update(&mut self, block: &mut Vec<u8>, size: usize) {
        hpack_int(block, 0x20, 5, size as u64);
        self.max_size = size.min(MAX_TABLE_SIZE);
        self.evict(0);
    }

    /// Indexed field (§6.1); `index` must exist.
    pub fn indexed(&self, block: &mut Vec<u8>, index: usize) {
        hpack_int(block, 0x80, 7, index as u64);
    }

    /// Literal field (§6.2); `name_index` refers to an existing entry whose
    /// name is `name`, or `None` for a literal name.
    pub fn literal(
        &mut self,
        block: &mut Vec<u8>,
        name: &str,
        name_index: Option<usize>,
        value: &str,
        indexing: Indexing,
    ) {
        self.literal_with(block, name, name_index, value, indexing, |block| {
            hpack_string(block, value.as_bytes());
        });
    }

    /// Like [`Self::literal`], with the value Huffman-coded: `huffman` is
    /// the code of `value` (one of [`HUFFMAN_EXAMPLES`]).
    pub fn literal_huffman(
        &mut self,
        block: &mut Vec<u8>,
        name: &str,
        name_index: Option<usize>,
        (value, huffman): (&str, &[u8]),
        indexing: Indexing,
    ) {
        self.literal_with(block, name, name_index, value, indexing, |block| {
            hpack_int(block, 0x80, 7, huffman.len() as u64);
            block.extend_from_slice(huffman);
        });
    }

    fn literal_with(
        &mut self,
        block: &mut Vec<u8>,
        name: &str,
        name_index: Option<usize>,
        value: &str,
        indexing: Indexing,
        encode_value: impl FnOnce(&mut Vec<u8>),
    ) {
        let (flags, prefix) = match indexing {
            Indexing::Incremental => (0x40, 6),
            Indexing::Without => (0x00, 4),
            Indexing::Never => (0x10, 4),
        };
        hpack_int(block, flags, prefix, name_index.unwrap_or(0) as u64);
        if name_index.is_none() {
            hpack_string(block, name.as_bytes());
        }
        encode_value(block);
        if indexing == Indexing::Incremental {
            self.insert(name, value);
        }
    }

    /// Encodes one field in one of the valid ways, picked by `choice`:
    /// an exact match is indexed when `choice` allows it, names are
    /// referenced when known, and the rest are literals of every kind.
    pub fn field_by_choice(&mut self, block: &mut Vec<u8>, name: &str, value: &str, choice: u8) {
        if choice & 1 == 0 {
            if let Some(index) = self.find(name, Some(value)) {
                self.indexed(block, index);
                return;
            }
        }
        let name_index = if choice & 2 == 0 {
            self.find(name, None)
        } else {
            None
        };
        let indexing = match choice >> 2 & 3 {
            0 | 1 => Indexing::Incremental,
            2 => Indexing::Without,
            _ => Indexing::Never,
        };
        self.literal(block, name, name_index, value, indexing);
    }

    fn insert(&mut self, name: &str, value: &str) {
        let entry = name.len() + value.len() + ENTRY_OVERHEAD;
        if entry > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(entry);
        self.size += entry;
        self.entries.push_front((name.to_owned(), value.to_owned()));
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((n, v)) = self.entries.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
        }
    }
}

/// Huffman codes of strings (RFC 7541 Appendix C.4 and C.6).
pub const HUFFMAN_EXAMPLES: [(&str, &[u8]); 8] = [
    (
        "www.example.com",
        &[
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ],
    ),
    ("no-cache", &[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]),
    (
        "custom-key",
        &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
    ),
    (
        "custom-value",
        &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
    ),
    ("302", &[0x64, 0x02]),
    ("private", &[0xae, 0xc3, 0x77, 0x1a, 0x4b]),
    ("gzip", &[0x9b, 0xd9, 0xab]),
    ("", &[]),
];

/// One segment of the `http2_frames` input: which direction, the captured
/// bytes, and how many bytes went by uncaptured after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Segment<'a> {
    /// `false` = Ingress, `true` = Egress.
    pub egress: bool,
    pub captured: &'a [u8],
    pub missing: u64,
    /// Same timestamp as the previous segment.
    pub same_ts: bool,
}

/// Gap sizes a segment can declare: inside a frame, across a few frames,
/// past any frame.
pub const GAPS: [u64; 8] = [1, 2, 5, 9, 16, 100, 1000, 70_000];

/// Layout of the `http2_frames` input, after one leading option byte:
/// `[control][len hi][len lo][len bytes]...` with control bit 0 =
/// direction (1 = Egress), bit 1 = a gap follows the bytes, bits 2–4 = its
/// size (index into [`GAPS`]), bit 5 = same timestamp as the previous one.
pub fn h2_segments(mut rest: &[u8]) -> Vec<H2Segment<'_>> {
    let mut out = Vec::new();
    while let [control, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (captured, next) = tail.split_at(len);
        let missing = if control & 2 != 0 {
            GAPS.get(usize::from(control >> 2 & 7))
                .copied()
                .unwrap_or(1)
        } else {
            0
        };
        out.push(H2Segment {
            egress: control & 1 == 1,
            captured,
            missing,
            same_ts: control & 0x20 != 0,
        });
        rest = next;
    }
    out
}

/// The inverse of [`h2_segments`]; `missing` must be 0 or one of [`GAPS`].
pub fn h2_input(options: u8, segments: &[H2Segment<'_>]) -> Vec<u8> {
    let mut out = vec![options];
    for s in segments {
        let mut control = u8::from(s.egress);
        if let Some(i) = GAPS.iter().position(|&g| g == s.missing) {
            control |= 2 | (i as u8) << 2;
        }
        if s.same_ts {
            control |= 0x20;
        }
        out.push(control);
        let len = u16::try_from(s.captured.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(s.captured.get(..usize::from(len)).unwrap_or_default());
    }
    out
}

/// Reads structured fuzzer input front to back; runs dry as zeros.
#[derive(Debug)]
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    /// Up to 127 bytes, length first.
    pub fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte() & 0x7f).min(self.0.len());
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        bytes
    }

    /// Up to 127 bytes, length first, as text (invalid UTF-8 replaced).
    pub fn string(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
