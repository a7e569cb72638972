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

mod huffman;
mod static_table;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

use huffman::huffman_decode;
use static_table::STATIC_TABLE;

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
