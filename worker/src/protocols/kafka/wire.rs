//! Kafka's primitive types read from untrusted bytes: every read is checked
//! and says `None` when the bytes end first or a length makes no sense.
//! Flexible versions (KIP-482) use compact strings and arrays (unsigned
//! varint length + 1) and end structures with tagged fields.

#![forbid(unsafe_code)]

/// Elements of an array we agree to walk (more: the message is not read).
pub const MAX_ARRAY: usize = 100_000;

/// A cursor over a message body.
#[derive(Debug, Clone, Copy)]
pub struct Wire<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Compact strings and arrays, tagged fields (a flexible version).
    pub flexible: bool,
}

impl<'a> Wire<'a> {
    pub fn new(bytes: &'a [u8], flexible: bool) -> Self {
        Self {
            bytes,
            pos: 0,
            flexible,
        }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn i8(&mut self) -> Option<i8> {
        self.array::<1>().map(i8::from_be_bytes)
    }

    pub fn i16(&mut self) -> Option<i16> {
        self.array::<2>().map(i16::from_be_bytes)
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.array::<4>().map(i32::from_be_bytes)
    }

    pub fn i64(&mut self) -> Option<i64> {
        self.array::<8>().map(i64::from_be_bytes)
    }

    pub fn uuid(&mut self) -> Option<[u8; 16]> {
        self.array::<16>()
    }

    /// An unsigned varint (at most 5 bytes: a u32).
    pub fn uvarint(&mut self) -> Option<u32> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = *self.take(1)?.first()?;
            value |= u32::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A length: compact (`uvarint - 1`) or `i16`/`i32` as `wide` says;
    /// `Some(None)` for null.
    fn length(&mut self, wide: bool) -> Option<Option<usize>> {
        if self.flexible {
            let n = self.uvarint()?;
            return Some(n.checked_sub(1).map(|n| n as usize));
        }
        let n = if wide {
            self.i32()?
        } else {
            i32::from(self.i16()?)
        };
        match n {
            -1 => Some(None),
            n => usize::try_from(n).ok().map(Some),
        }
    }

    /// A (nullable) string's bytes; `Some(None)` for null.
    pub fn nullable_string(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(false)? {
            None => Some(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    pub fn string(&mut self) -> Option<&'a [u8]> {
        self.nullable_string()?
    }

    /// A (nullable) bytes field, as records are: `Some(None)` for null.
    pub fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(true)? {
            None => Some(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// A nullable bytes field that may run past the captured bytes: what
    /// of it is here and its declared length (null is empty). The cursor
    /// ends after it, or at the end when it was cut.
    pub fn bytes_prefix(&mut self) -> Option<(&'a [u8], usize)> {
        let declared = self.length(true)?.unwrap_or(0);
        let end = self.pos.saturating_add(declared).min(self.bytes.len());
        let kept = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some((kept, declared))
    }

    /// The element count of an array (null is empty), bounded by [`MAX_ARRAY`].
    pub fn array_len(&mut self) -> Option<usize> {
        let n = if self.flexible {
            self.length(false)?.unwrap_or(0)
        } else {
            match self.i32()? {
                -1 => 0,
                n => usize::try_from(n).ok()?,
            }
        };
        (n <= MAX_ARRAY).then_some(n)
    }

    /// Skips an array of fixed-size elements.
    pub fn skip_array(&mut self, element: usize) -> Option<()> {
        let n = self.array_len()?;
        self.skip(n.checked_mul(element)?)
    }

    /// Skips a structure's tagged fields (flexible versions only).
    pub fn tagged_fields(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_and_compact_strings_and_arrays() {
        let mut wire = Wire::new(b"\x00\x03abc\xff\xff\x00\x00\x00\x02", false);
        assert_eq!(wire.string(), Some(&b"abc"[..]));
        assert_eq!(wire.nullable_string(), Some(None));
        assert_eq!(wire.array_len(), Some(2));
        let mut compact = Wire::new(b"\x04abc\x00\x03\x00", true);
        assert_eq!(compact.string(), Some(&b"abc"[..]));
        assert_eq!(compact.nullable_string(), Some(None));
        assert_eq!(compact.array_len(), Some(2));
        assert_eq!(compact.tagged_fields(), Some(()));
    }

    #[test]
    fn reads_past_the_end_and_absurd_lengths_are_refused() {
        assert_eq!(Wire::new(b"\x00\x05ab", false).string(), None);
        assert_eq!(Wire::new(b"\x7f\xff\xff\xff", false).array_len(), None);
        assert_eq!(Wire::new(b"\xff\xff\xff\xff\xff\x01", true).uvarint(), None);
        assert_eq!(Wire::new(b"\xac\x02", true).uvarint(), Some(300));
        assert_eq!(Wire::new(b"\x01\x05\x02", true).tagged_fields(), None);
    }
}
