//! Bounds-checked little-endian reads from a byte slice: every read of the parsers goes
//! through here, so an offset from the file can never index out of bounds.

use crate::error::GoBinError;

/// Reads `N` bytes at `offset`, or says which structure (`what`) was cut short.
pub(crate) fn array<const N: usize>(
    data: &[u8],
    offset: u64,
    what: &'static str,
) -> Result<[u8; N], GoBinError> {
    let start = usize::try_from(offset).map_err(|_| GoBinError::Truncated(what))?;
    let end = start.checked_add(N).ok_or(GoBinError::Truncated(what))?;
    let bytes = data.get(start..end).ok_or(GoBinError::Truncated(what))?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

pub(crate) fn u8_at(data: &[u8], offset: u64, what: &'static str) -> Result<u8, GoBinError> {
    Ok(array::<1>(data, offset, what)?[0])
}

pub(crate) fn u16_at(data: &[u8], offset: u64, what: &'static str) -> Result<u16, GoBinError> {
    Ok(u16::from_le_bytes(array(data, offset, what)?))
}

pub(crate) fn u32_at(data: &[u8], offset: u64, what: &'static str) -> Result<u32, GoBinError> {
    Ok(u32::from_le_bytes(array(data, offset, what)?))
}

pub(crate) fn u64_at(data: &[u8], offset: u64, what: &'static str) -> Result<u64, GoBinError> {
    Ok(u64::from_le_bytes(array(data, offset, what)?))
}

/// The slice `[offset, offset + len)`, checked.
pub(crate) fn slice_at<'a>(
    data: &'a [u8],
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], GoBinError> {
    let start = usize::try_from(offset).map_err(|_| GoBinError::Truncated(what))?;
    let len = usize::try_from(len).map_err(|_| GoBinError::Truncated(what))?;
    let end = start.checked_add(len).ok_or(GoBinError::Truncated(what))?;
    data.get(start..end).ok_or(GoBinError::Truncated(what))
}

/// The NUL-terminated string at `offset`, at most `max` bytes long before its NUL.
pub(crate) fn c_str_at<'a>(
    data: &'a [u8],
    offset: u64,
    max: usize,
    what: &'static str,
) -> Result<&'a [u8], GoBinError> {
    let start = usize::try_from(offset).map_err(|_| GoBinError::Truncated(what))?;
    let rest = data.get(start..).ok_or(GoBinError::Truncated(what))?;
    let window = &rest[..rest.len().min(max.saturating_add(1))];
    let nul = window
        .iter()
        .position(|&b| b == 0)
        .ok_or(GoBinError::Truncated(what))?;
    Ok(&window[..nul])
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`) at `offset`: its value and length.
pub(crate) fn uvarint_at(
    data: &[u8],
    offset: u64,
    what: &'static str,
) -> Result<(u64, u64), GoBinError> {
    let mut value = 0u64;
    for index in 0..10u64 {
        let byte = u8_at(data, offset.saturating_add(index), what)?;
        let bits = u64::from(byte & 0x7f);
        // The tenth byte may only carry the top bit of a u64.
        if index == 9 && byte > 1 {
            return Err(GoBinError::Malformed(what));
        }
        value |= bits << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    Err(GoBinError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let data = [1u8, 2, 3, 4];
        assert_eq!(u32_at(&data, 0, "x"), Ok(0x0403_0201));
        assert!(u32_at(&data, 1, "x").is_err());
        assert!(u64_at(&data, u64::MAX, "x").is_err());
        assert!(slice_at(&data, 2, u64::MAX, "x").is_err());
    }

    #[test]
    fn c_strings_need_their_nul_within_max() {
        let data = b"abc\0def";
        assert_eq!(c_str_at(data, 0, 8, "x"), Ok(&b"abc"[..]));
        assert!(c_str_at(data, 0, 2, "x").is_err());
        assert!(c_str_at(data, 4, 8, "x").is_err());
    }

    #[test]
    fn uvarints_decode_and_reject_overlong() {
        assert_eq!(uvarint_at(&[0x96, 0x01], 0, "x"), Ok((150, 2)));
        assert!(uvarint_at(&[0xff; 11], 0, "x").is_err());
        assert!(uvarint_at(&[0x80], 0, "x").is_err());
    }
}
