//! HPACK (RFC 7541) header block decoding for one direction of an HTTP/2
//! connection.
//!
//! We are a passive observer: header blocks may be lost in capture gaps and
//! connections may be joined mid-stream, so the dynamic table we hold can be
//! incomplete. The decoder therefore tracks whether it is *synced* (it has
//! seen every header block since the connection started). When it is not,
//! the entries it holds are still exactly the newest entries of the peer's
//! table (insertions it saw after losing sync), while anything older is
//! unknown: a reference past the known entries yields an *unknown* field that
//! is skipped and counted, never a stale value. Static-table references and
//! literals decode exactly in either state.
//!
//! The input may be hostile: every length is bounded and nothing panics.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::sync::OnceLock;

/// Dynamic table sizes above this are clamped (memory bound per decoder).
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// Decoded header list (names + values + 32 per field) past this is an error.
pub const MAX_HEADER_LIST: usize = 64 * 1024;
/// Longest single string literal accepted (encoded length).
pub const MAX_STRING: usize = 16 * 1024;
/// Overhead per table entry (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;
/// Integers above this are rejected; nothing legitimate comes close.
const MAX_INT: u64 = u32::MAX as u64;

/// Why a header block could not be decoded. Any error desyncs the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended inside a representation.
    Truncated,
    /// An integer overflowed the accepted range.
    IntegerOverflow,
    /// Index 0, or past the tables while the decoder was synced.
    BadIndex(u64),
    /// Invalid Huffman code, padding or an encoded EOS.
    Huffman,
    /// A string literal longer than [`MAX_STRING`].
    StringTooLong,
    /// The decoded header list exceeds [`MAX_HEADER_LIST`].
    HeaderListTooLarge,
    /// A dynamic table size update after the first field of a block.
    LateSizeUpdate,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "header block truncated"),
            Self::IntegerOverflow => write!(f, "integer overflow"),
            Self::BadIndex(i) => write!(f, "invalid table index {i}"),
            Self::Huffman => write!(f, "invalid huffman string"),
            Self::StringTooLong => write!(f, "string literal too long"),
            Self::HeaderListTooLarge => write!(f, "header list too large"),
            Self::LateSizeUpdate => write!(f, "table size update not at block start"),
        }
    }
}

impl std::error::Error for HpackError {}

/// What [`HpackDecoder::decode`] could not resolve in a block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Fields referring to dynamic table entries unknown to a desynced decoder;
    /// they were left out of the output.
    pub unknown_fields: usize,
}

/// The decoding side of HPACK for one direction of one connection.
#[derive(Debug)]
pub struct HpackDecoder {
    /// Newest entry first, so index 62 is `entries[0]`.
    entries: VecDeque<(String, String)>,
    size: usize,
    max_size: usize,
    synced: bool,
}

/// RFC 7541 Appendix B: (code, bit length) for symbols 0..=255 and EOS (256).
const HUFFMAN_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

/// RFC 7541 Appendix A, indices 1..=61.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A table lookup: found, or a dynamic entry a desynced decoder does not know.
enum Lookup<'a> {
    Found(&'a str, &'a str),
    Unknown,
}

/// How a literal names its field.
enum Name {
    Literal(String),
    Known(String),
    Unknown,
}

impl HpackDecoder {
    /// A synced decoder whose table may grow to `max_table_size` bytes
    /// (clamped to [`MAX_TABLE_SIZE`]); HTTP/2 starts at 4096.
    pub fn new(max_table_size: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: max_table_size.min(MAX_TABLE_SIZE),
            synced: true,
        }
    }

    /// A decoder for a connection joined mid-stream: its table is unknown.
    pub fn new_desynced(max_table_size: usize) -> Self {
        let mut decoder = Self::new(max_table_size);
        decoder.synced = false;
        decoder
    }

    /// True while every header block since the connection start was decoded.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// A header block was lost (capture gap, undecodable frame): forget the
    /// table, since its indices can no longer be trusted.
    pub fn desync(&mut self) {
        self.synced = false;
        self.entries.clear();
        self.size = 0;
    }

    /// The peer advertised SETTINGS_HEADER_TABLE_SIZE = `size` for this
    /// table. Only ever raises the limit (clamped to [`MAX_TABLE_SIZE`]): a
    /// larger table than the encoder's keeps entries it will not reference,
    /// which is harmless, while a smaller one could drop entries it does.
    pub fn allow_table_size(&mut self, size: usize) {
        self.max_size = self.max_size.max(size.min(MAX_TABLE_SIZE));
    }

    /// Current dynamic table size in bytes (RFC 7541 §4.1).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Current dynamic table size limit.
    pub fn max_table_size(&self) -> usize {
        self.max_size
    }

    /// Dynamic table entries, newest first.
    pub fn table(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Decodes one complete header block, appending fields to `out` in order.
    /// On error, `out` keeps the fields decoded before it and the decoder is
    /// desynced.
    pub fn decode(
        &mut self,
        block: &[u8],
        out: &mut Vec<(String, String)>,
    ) -> Result<Decoded, HpackError> {
        let mut decoded = Decoded::default();
        let result = self.decode_block(block, out, &mut decoded);
        match result {
            Ok(()) => Ok(decoded),
            Err(e) => {
                self.desync();
                Err(e)
            }
        }
    }

    /// Decodes the first bytes of a header block whose rest was not
    /// captured: appends the fields these bytes hold whole (they are exact,
    /// since decoding is sequential) and stops at the first one they do not.
    /// The lost rest may have changed the table, so the decoder is desynced
    /// afterwards (entries it inserts from then on are known again).
    pub fn decode_prefix(&mut self, start: &[u8], out: &mut Vec<(String, String)>) -> Decoded {
        let mut decoded = Decoded::default();
        let _ = self.decode_block(start, out, &mut decoded);
        self.desync();
        decoded
    }

    fn decode_block(
        &mut self,
        block: &[u8],
        out: &mut Vec<(String, String)>,
        decoded: &mut Decoded,
    ) -> Result<(), HpackError> {
        let mut list_size = 0usize;
        let mut fields_seen = false;
        let mut rest = block;
        while let Some(&first) = rest.first() {
            let field = if first & 0x80 != 0 {
                // Indexed header field (§6.1).
                let index = take_int(&mut rest, 7)?;
                match self.lookup(index)? {
                    Lookup::Found(n, v) => Some((n.to_owned(), v.to_owned())),
                    Lookup::Unknown => None,
                }
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                if fields_seen {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = take_int(&mut rest, 5)?;
                self.max_size = usize::try_from(size)
                    .unwrap_or(MAX_TABLE_SIZE)
                    .min(MAX_TABLE_SIZE);
                self.evict(0);
                continue;
            } else {
                // Literal: with incremental indexing (§6.2.1), without
                // indexing (§6.2.2) or never indexed (§6.2.3).
                let indexing = first & 0xc0 == 0x40;
                let prefix = if indexing { 6 } else { 4 };
                let index = take_int(&mut rest, prefix)?;
                let name = if index == 0 {
                    Name::Literal(take_string(&mut rest)?)
                } else {
                    match self.lookup(index)? {
                        Lookup::Found(n, _) => Name::Known(n.to_owned()),
                        Lookup::Unknown => Name::Unknown,
                    }
                };
                let value = take_string(&mut rest)?;
                match name {
                    Name::Literal(name) | Name::Known(name) => {
                        if indexing {
                            self.insert(name.clone(), value.clone());
                        }
                        Some((name, value))
                    }
                    Name::Unknown => {
                        if indexing {
                            // The peer's table grew by an entry we cannot name:
                            // older known entries shift out of reach.
                            self.desync();
                        }
                        None
                    }
                }
            };
            fields_seen = true;
            match field {
                Some((name, value)) => {
                    list_size = list_size.saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
                    if list_size > MAX_HEADER_LIST {
                        return Err(HpackError::HeaderListTooLarge);
                    }
                    out.push((name, value));
                }
                None => decoded.unknown_fields += 1,
            }
        }
        Ok(())
    }

    fn lookup(&self, index: u64) -> Result<Lookup<'_>, HpackError> {
        let Some(i) = usize::try_from(index).ok().and_then(|i| i.checked_sub(1)) else {
            return Err(HpackError::BadIndex(index));
        };
        if let Some(&(n, v)) = STATIC_TABLE.get(i) {
            return Ok(Lookup::Found(n, v));
        }
        match self.entries.get(i - STATIC_TABLE.len()) {
            Some((n, v)) => Ok(Lookup::Found(n, v)),
            None if self.synced => Err(HpackError::BadIndex(index)),
            None => Ok(Lookup::Unknown),
        }
    }

    /// Adds an entry, evicting oldest entries first (§4.4). An entry larger
    /// than the table empties it and is not added.
    fn insert(&mut self, name: String, value: String) {
        let entry = name.len() + value.len() + ENTRY_OVERHEAD;
        if entry > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(entry);
        self.size += entry;
        self.entries.push_front((name, value));
    }

    /// Evicts until `room` more bytes fit under the limit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

/// Reads an integer with an `n`-bit prefix (§5.1), advancing `rest`.
fn take_int(rest: &mut &[u8], n: u8) -> Result<u64, HpackError> {
    let (&first, mut tail) = rest.split_first().ok_or(HpackError::Truncated)?;
    let max_prefix = (1u16 << n.min(8)) - 1;
    let mut value = u64::from(u16::from(first) & max_prefix);
    if value < u64::from(max_prefix) {
        *rest = tail;
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let (&b, t) = tail.split_first().ok_or(HpackError::Truncated)?;
        tail = t;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INT {
            return Err(HpackError::IntegerOverflow);
        }
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    *rest = tail;
    Ok(value)
}

/// Reads a string literal (§5.2), Huffman-decoding it when flagged.
fn take_string(rest: &mut &[u8]) -> Result<String, HpackError> {
    let huffman = rest.first().is_some_and(|b| b & 0x80 != 0);
    let len = take_int(rest, 7)?;
    let len = usize::try_from(len).map_err(|_| HpackError::StringTooLong)?;
    if len > MAX_STRING {
        return Err(HpackError::StringTooLong);
    }
    let (raw, tail) = rest.split_at_checked(len).ok_or(HpackError::Truncated)?;
    *rest = tail;
    if huffman {
        let bytes = huffman_decode(raw)?;
        Ok(String::from_utf8(bytes).unwrap_or_else(|e| lossy(e.as_bytes())))
    } else {
        Ok(lossy(raw))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Canonical-code decoding tables built from [`HUFFMAN_CODES`].
struct HuffmanTables {
    /// Per bit length: the first code of that length and where its symbols
    /// start in `symbols`, plus how many there are.
    by_len: [(u32, usize, usize); 31],
    /// Symbols ordered by (length, code).
    symbols: Vec<u16>,
}

fn huffman_tables() -> &'static HuffmanTables {
    static TABLES: OnceLock<HuffmanTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut symbols: Vec<u16> = (0..=256).collect();
        let key = |s: &u16| HUFFMAN_CODES.get(usize::from(*s)).map(|&(c, l)| (l, c));
        symbols.sort_by_key(key);
        let mut by_len = [(u32::MAX, 0usize, 0usize); 31];
        for (pos, s) in symbols.iter().enumerate() {
            if let Some(&(code, len)) = HUFFMAN_CODES.get(usize::from(*s)) {
                if let Some(slot) = by_len.get_mut(usize::from(len)) {
                    if slot.2 == 0 {
                        *slot = (code, pos, 0);
                    }
                    slot.2 += 1;
                }
            }
        }
        HuffmanTables { by_len, symbols }
    })
}

/// Decodes a Huffman string (§5.2, Appendix B).
fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, HpackError> {
    let tables = huffman_tables();
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in raw {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let Some(&(first, start, count)) = tables.by_len.get(len) else {
                return Err(HpackError::Huffman);
            };
            if count == 0 || code < first {
                continue;
            }
            let offset = (code - first) as usize;
            if offset >= count {
                continue;
            }
            match tables.symbols.get(start + offset) {
                Some(&sym) => match u8::try_from(sym) {
                    Ok(b) => out.push(b),
                    // EOS in the string is an error (§5.2).
                    Err(_) => return Err(HpackError::Huffman),
                },
                None => return Err(HpackError::Huffman),
            }
            code = 0;
            len = 0;
        }
    }
    // Padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len >= 8 || code != (1u32 << len) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| {
                let text = std::str::from_utf8(p).unwrap_or_else(|e| panic!("{e}"));
                u8::from_str_radix(text, 16).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    fn decode(decoder: &mut HpackDecoder, block: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let decoded = decoder
            .decode(&hex(block), &mut out)
            .unwrap_or_else(|e| panic!("decode failed: {e}"));
        assert_eq!(decoded.unknown_fields, 0);
        out
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn check_table(decoder: &HpackDecoder, expected: &[(&str, &str)], size: usize) {
        let table: Vec<(&str, &str)> = decoder.table().collect();
        assert_eq!(table, expected);
        assert_eq!(decoder.table_size(), size);
    }

    #[test]
    fn a_cut_block_yields_only_the_fields_it_holds_whole() {
        // RFC 7541 C.3.1 (GET http://www.example.com/), cut inside the
        // authority's value: the three static fields are exact, the cut one
        // is not guessed, and the table is unknown afterwards.
        let block = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        for cut in 0..block.len() {
            let mut d = HpackDecoder::new(4096);
            let mut out = Vec::new();
            let decoded = d.decode_prefix(&block[..cut], &mut out);
            let expected = fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
            assert_eq!(out, expected[..cut.min(3)], "cut at {cut}");
            assert_eq!(decoded.unknown_fields, 0);
            assert!(!d.is_synced());
            assert_eq!(d.table().count(), 0);
        }
        // Entries inserted after the loss are known again.
        let mut d = HpackDecoder::new(4096);
        d.decode_prefix(&block[..5], &mut Vec::new());
        let out = decode(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be",
        );
        assert_eq!(
            out,
            fields(&[
                ("custom-key", "custom-header"),
                ("custom-key", "custom-header")
            ])
        );
    }

    #[test]
    fn c1_integers() {
        let mut b: &[u8] = &[0x0a];
        assert_eq!(take_int(&mut b, 5), Ok(10));
        let mut b: &[u8] = &[0x1f, 0x9a, 0x0a];
        assert_eq!(take_int(&mut b, 5), Ok(1337));
        assert!(b.is_empty());
        let mut b: &[u8] = &[0x2a];
        assert_eq!(take_int(&mut b, 8), Ok(42));
        let mut b: &[u8] = &[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(take_int(&mut b, 5), Err(HpackError::IntegerOverflow));
        let mut b: &[u8] = &[0x1f, 0x9a];
        assert_eq!(take_int(&mut b, 5), Err(HpackError::Truncated));
    }

    #[test]
    fn c2_1_literal_with_indexing() {
        let mut d = HpackDecoder::new(4096);
        let out = decode(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        assert_eq!(out, fields(&[("custom-key", "custom-header")]));
        check_table(&d, &[("custom-key", "custom-header")], 55);
    }

    #[test]
    fn c2_2_literal_without_indexing() {
        let mut d = HpackDecoder::new(4096);
        let out = decode(&mut d, "040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(out, fields(&[(":path", "/sample/path")]));
        check_table(&d, &[], 0);
    }

    #[test]
    fn c2_3_literal_never_indexed() {
        let mut d = HpackDecoder::new(4096);
        let out = decode(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(out, fields(&[("password", "secret")]));
        check_table(&d, &[], 0);
    }

    #[test]
    fn c2_4_indexed() {
        let mut d = HpackDecoder::new(4096);
        assert_eq!(decode(&mut d, "82"), fields(&[(":method", "GET")]));
        check_table(&d, &[], 0);
    }

    const REQ1: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: [(&str, &str); 5] = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: [(&str, &str); 5] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];

    fn requests(blocks: [&str; 3]) {
        let mut d = HpackDecoder::new(4096);
        assert_eq!(decode(&mut d, blocks[0]), fields(&REQ1));
        check_table(&d, &[(":authority", "www.example.com")], 57);
        assert_eq!(decode(&mut d, blocks[1]), fields(&REQ2));
        check_table(
            &d,
            &[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ],
            110,
        );
        assert_eq!(decode(&mut d, blocks[2]), fields(&REQ3));
        check_table(
            &d,
            &[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ],
            164,
        );
    }

    #[test]
    fn c3_requests_without_huffman() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    #[test]
    fn c4_requests_with_huffman() {
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    fn responses(blocks: [&str; 3]) {
        let mut d = HpackDecoder::new(256);
        let resp1 = [
            (":status", "302"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOCATION),
        ];
        assert_eq!(decode(&mut d, blocks[0]), fields(&resp1));
        check_table(
            &d,
            &[
                ("location", LOCATION),
                ("date", DATE1),
                ("cache-control", "private"),
                (":status", "302"),
            ],
            222,
        );
        let resp2 = [
            (":status", "307"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOCATION),
        ];
        assert_eq!(decode(&mut d, blocks[1]), fields(&resp2));
        check_table(
            &d,
            &[
                (":status", "307"),
                ("location", LOCATION),
                ("date", DATE1),
                ("cache-control", "private"),
            ],
            222,
        );
        let resp3 = [
            (":status", "200"),
            ("cache-control", "private"),
            ("date", DATE2),
            ("location", LOCATION),
            ("content-encoding", "gzip"),
            ("set-cookie", COOKIE),
        ];
        assert_eq!(decode(&mut d, blocks[2]), fields(&resp3));
        check_table(
            &d,
            &[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE2),
            ],
            215,
        );
    }

    #[test]
    fn c5_responses_without_huffman() {
        responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
        ]);
    }

    #[test]
    fn c6_responses_with_huffman() {
        responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn size_update_evicts_and_must_lead_the_block() {
        let mut d = HpackDecoder::new(4096);
        decode(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        // Size update to 0 then back to 4096: table emptied.
        assert_eq!(
            decode(&mut d, "20 3fe1 1f 82"),
            fields(&[(":method", "GET")])
        );
        check_table(&d, &[], 0);
        assert_eq!(d.max_table_size(), 4096);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(&hex("82 20"), &mut out),
            Err(HpackError::LateSizeUpdate)
        );
        assert!(!d.is_synced());
    }

    #[test]
    fn size_update_is_clamped() {
        let mut d = HpackDecoder::new(1 << 20);
        assert_eq!(d.max_table_size(), MAX_TABLE_SIZE);
        // 1 MiB size update.
        decode(&mut d, "3fe1 ff3f");
        assert_eq!(d.max_table_size(), MAX_TABLE_SIZE);
    }

    #[test]
    fn oversized_entry_empties_table() {
        let mut d = HpackDecoder::new(64);
        decode(&mut d, "4001 6101 62");
        check_table(&d, &[("a", "b")], 34);
        let long = format!("4001 6120 {}", "61".repeat(32));
        decode(&mut d, &long);
        check_table(&d, &[], 0);
    }

    #[test]
    fn bad_index_in_synced_decoder_is_an_error_and_desyncs() {
        let mut d = HpackDecoder::new(4096);
        let mut out = Vec::new();
        assert_eq!(d.decode(&hex("80"), &mut out), Err(HpackError::BadIndex(0)));
        let mut d = HpackDecoder::new(4096);
        assert_eq!(
            d.decode(&hex("be"), &mut out),
            Err(HpackError::BadIndex(62))
        );
        assert!(!d.is_synced());
        assert!(out.is_empty());
    }

    #[test]
    fn desynced_decoder_never_returns_stale_entries() {
        let mut d = HpackDecoder::new(4096);
        decode(&mut d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        // A block was lost: whatever it inserted shifted the indices.
        d.desync();
        assert!(!d.is_synced());
        let mut out = Vec::new();
        // 0xbe = index 62, which now holds something unknown.
        let decoded = d
            .decode(&hex("8286 84be"), &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.unknown_fields, 1);
        assert_eq!(
            out,
            fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/")])
        );
        // New insertions are known again and referable.
        out.clear();
        decode(&mut d, "4001 6101 62");
        let decoded = d
            .decode(&hex("be bf"), &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, fields(&[("a", "b")]));
        assert_eq!(decoded.unknown_fields, 1);
        // A literal with an unknown name inserts an unknown entry: the
        // known entries can no longer be located.
        out.clear();
        let decoded = d
            .decode(&hex("7f00 0178 be"), &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.unknown_fields, 2);
        assert!(out.is_empty());
    }

    #[test]
    fn huffman_padding_and_eos_rejected() {
        // "a" is 00011; padding of zeros is invalid.
        assert_eq!(huffman_decode(&[0x18]), Err(HpackError::Huffman));
        assert_eq!(huffman_decode(&[0x1f]), Ok(b"a".to_vec()));
        // A full byte of padding is too long.
        assert_eq!(huffman_decode(&[0x1f, 0xff]), Err(HpackError::Huffman));
        // EOS (30 ones) inside the string.
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::Huffman)
        );
        assert_eq!(huffman_decode(&[]), Ok(Vec::new()));
    }

    #[test]
    fn huffman_roundtrips_every_symbol() {
        for sym in 0u8..=255 {
            let (code, len) = HUFFMAN_CODES[usize::from(sym)];
            // Encode the symbol twice, then pad with ones.
            let mut bits: u64 = (u64::from(code) << len) | u64::from(code);
            let mut nbits = u32::from(len) * 2;
            let pad = (8 - nbits % 8) % 8;
            bits = (bits << pad) | ((1u64 << pad) - 1);
            nbits += pad;
            let bytes: Vec<u8> = (0..nbits / 8)
                .rev()
                .map(|i| ((bits >> (i * 8)) & 0xff) as u8)
                .collect();
            assert_eq!(huffman_decode(&bytes), Ok(vec![sym, sym]), "symbol {sym}");
        }
    }

    #[test]
    fn string_and_list_limits() {
        let mut d = HpackDecoder::new(4096);
        let mut out = Vec::new();
        // Literal name with a declared length of 20000.
        assert_eq!(
            d.decode(&hex("007f a19c 01"), &mut out),
            Err(HpackError::StringTooLong)
        );
        let mut d = HpackDecoder::new(4096);
        let mut block = Vec::new();
        let value = vec![b'x'; 8000];
        for _ in 0..9 {
            // content-type (31) without indexing, 8000-byte value.
            block.extend_from_slice(&[0x0f, 0x10, 0x7f, 0xc1, 0x3d]);
            block.extend_from_slice(&value);
        }
        assert_eq!(
            d.decode(&block, &mut out),
            Err(HpackError::HeaderListTooLarge)
        );
        assert_eq!(out.len(), 8);
    }

    proptest! {
        #[test]
        fn arbitrary_blocks_never_panic(
            blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            max in 0usize..5000,
        ) {
            let mut d = HpackDecoder::new(max);
            let mut out = Vec::new();
            for block in &blocks {
                let _ = d.decode(block, &mut out);
                prop_assert!(d.table_size() <= d.max_table_size());
                prop_assert!(d.max_table_size() <= MAX_TABLE_SIZE);
            }
        }

        #[test]
        fn mutated_examples_never_panic(flip in 0usize..400, byte in any::<u8>()) {
            let mut block = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf \
                 88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b");
            if let Some(b) = block.get_mut(flip % 40) {
                *b = byte;
            }
            let mut d = HpackDecoder::new(4096);
            let mut out = Vec::new();
            let _ = d.decode(&block, &mut out);
            let _ = d.decode(&block, &mut out);
        }
    }
}
