//! The Go version a program was built with, from its build info: the `.go.buildinfo`
//! section (or, without section headers, the first 64 KiB of the first writable segment,
//! where the linker puts it) starts with `\xff Go buildinf:`, a pointer size and flags; Go
//! 1.18+ stores the version inline as a varint-prefixed string after the 32-byte header,
//! older Go stores a pointer to a Go string header (data pointer, length).

use crate::bytes::{array, slice_at, u64_at, u8_at, uvarint_at};
use crate::elf::ElfFile;
use crate::error::GoBinError;
use crate::source::{read_range, ExecutableSource};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: u64 = 32;
/// The header plus a version string fits in this much (the module info after it is not read).
const SECTION_READ: u64 = 4096;
/// Where the build info is searched for when there is no `.go.buildinfo` section.
const SEGMENT_SEARCH: u64 = 64 << 10;
/// Go version strings are short ("go1.22.5", "devel go1.23-abcdef Tue …").
const MAX_VERSION_LEN: u64 = 256;
const FLAG_BIG_ENDIAN: u8 = 1;
const FLAG_INLINE_STRINGS: u8 = 2;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// A Go toolchain version as written in the build info, with its numbers when they parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoVersion {
    /// The string as stored, e.g. `go1.19.8` or `devel go1.23-abcdef …`.
    pub raw: String,
    /// `(major, minor, patch)`, e.g. `(1, 19, 8)`; patch 0 when absent (`go1.21rc2`).
    pub numbers: Option<(u32, u32, u32)>,
}

impl GoVersion {
    /// Parses the numbers out of a version string.
    pub fn from_raw(raw: &str) -> Self {
        Self {
            raw: raw.to_owned(),
            numbers: parse_numbers(raw),
        }
    }

    /// Whether this Go passes arguments in registers on amd64 (Go 1.17 and later); `None`
    /// when the version has no numbers.
    pub fn has_register_abi(&self) -> Option<bool> {
        self.numbers
            .map(|(major, minor, _)| (major, minor) >= (1, 17))
    }
}

fn parse_numbers(raw: &str) -> Option<(u32, u32, u32)> {
    let rest = raw.strip_prefix("devel ").unwrap_or(raw);
    let rest = rest.strip_prefix("go")?;
    let mut parts = rest.splitn(3, '.');
    let major = leading_number(parts.next()?)?;
    let minor = leading_number(parts.next()?)?;
    let patch = parts.next().and_then(leading_number).unwrap_or(0);
    Some((major, minor, patch))
}

fn leading_number(text: &str) -> Option<u32> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text.get(..digits)?.parse().ok()
}

/// The Go version from the build info; `Ok(None)` when the file has none (not built by the
/// go command, or older than Go 1.13).
pub fn go_version<S: ExecutableSource + ?Sized>(
    elf: &ElfFile,
    source: &S,
) -> Result<Option<GoVersion>, GoBinError> {
    let block = match elf.section(".go.buildinfo") {
        Some(section) if section.has_file_bytes() => {
            let len = section.size.min(SECTION_READ);
            read_range(source, section.offset, len, SECTION_READ, ".go.buildinfo")?
        }
        _ => match search_data_segment(elf, source)? {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    if block.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err(GoBinError::Malformed("build info magic"));
    }
    let pointer_size = u8_at(&block, 14, "build info header")?;
    let flags = u8_at(&block, 15, "build info header")?;
    if flags & FLAG_BIG_ENDIAN != 0 || pointer_size != 8 {
        return Err(GoBinError::Malformed(
            "build info: not 64-bit little-endian",
        ));
    }
    let raw = if flags & FLAG_INLINE_STRINGS != 0 {
        inline_version(&block)?
    } else {
        pointer_version(elf, source, &block)?
    };
    if raw.is_empty() {
        return Ok(None);
    }
    let raw = String::from_utf8(raw).map_err(|_| GoBinError::Malformed("Go version string"))?;
    Ok(Some(GoVersion::from_raw(&raw)))
}

/// Go 1.18+: a varint length and the bytes, right after the header.
fn inline_version(block: &[u8]) -> Result<Vec<u8>, GoBinError> {
    let (len, varint_len) = uvarint_at(block, HEADER_LEN, "build info version")?;
    if len > MAX_VERSION_LEN {
        return Err(GoBinError::TooLarge("Go version string"));
    }
    Ok(slice_at(block, HEADER_LEN + varint_len, len, "build info version")?.to_vec())
}

/// Before Go 1.18: a pointer to a string header {data pointer, length}, both in the file.
fn pointer_version<S: ExecutableSource + ?Sized>(
    elf: &ElfFile,
    source: &S,
    block: &[u8],
) -> Result<Vec<u8>, GoBinError> {
    let header_addr = u64_at(block, 16, "build info header")?;
    let header = read_at_addr(elf, source, header_addr, 16)?;
    let data_addr = u64_at(&header, 0, "version string header")?;
    let len = u64_at(&header, 8, "version string header")?;
    if len > MAX_VERSION_LEN {
        return Err(GoBinError::TooLarge("Go version string"));
    }
    read_at_addr(elf, source, data_addr, len)
}

fn read_at_addr<S: ExecutableSource + ?Sized>(
    elf: &ElfFile,
    source: &S,
    addr: u64,
    len: u64,
) -> Result<Vec<u8>, GoBinError> {
    if elf.file_bytes_from(addr)? < len {
        return Err(GoBinError::Truncated("build info string"));
    }
    read_range(
        source,
        elf.file_offset(addr)?,
        len,
        MAX_VERSION_LEN,
        "build info string",
    )
}

/// Without the section, the magic is 16-byte aligned near the start of the first writable,
/// non-executable segment (where Go's linker puts it).
fn search_data_segment<S: ExecutableSource + ?Sized>(
    elf: &ElfFile,
    source: &S,
) -> Result<Option<Vec<u8>>, GoBinError> {
    let Some(segment) = elf
        .load_segments
        .iter()
        .find(|segment| segment.flags & (PF_X | PF_W) == PF_W)
    else {
        return Ok(None);
    };
    let len = segment
        .file_size
        .min(SEGMENT_SEARCH)
        .min(elf.file_len.saturating_sub(segment.offset));
    let data = read_range(source, segment.offset, len, SEGMENT_SEARCH, "data segment")?;
    let mut at = 0u64;
    while at.saturating_add(HEADER_LEN) <= len {
        if array::<14>(&data, at, "data segment")? == *MAGIC {
            let end = (at + SECTION_READ).min(len);
            let block = slice_at(&data, at, end - at, "data segment")?.to_vec();
            return Ok(Some(block));
        }
        at += 16;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_parse_from_release_and_devel_strings() {
        assert_eq!(parse_numbers("go1.19.8"), Some((1, 19, 8)));
        assert_eq!(parse_numbers("go1.21rc2"), Some((1, 21, 0)));
        assert_eq!(parse_numbers("go1.16"), Some((1, 16, 0)));
        assert_eq!(
            parse_numbers("devel go1.23-abcdef Tue Jan 1"),
            Some((1, 23, 0))
        );
        assert_eq!(parse_numbers("gccgo"), None);
        assert_eq!(parse_numbers(""), None);
    }

    #[test]
    fn register_abi_starts_at_go_1_17() {
        assert_eq!(
            GoVersion::from_raw("go1.16.15").has_register_abi(),
            Some(false)
        );
        assert_eq!(GoVersion::from_raw("go1.17").has_register_abi(), Some(true));
        assert_eq!(GoVersion::from_raw("go2.0").has_register_abi(), Some(true));
        assert_eq!(GoVersion::from_raw("weird").has_register_abi(), None);
    }

    /// An ELF layout with the whole `file` loaded at 0x1000 and `.go.buildinfo` at its start.
    fn layout(file: &[u8]) -> ElfFile {
        ElfFile {
            file_type: 2,
            sections: vec![crate::elf::Section {
                name: ".go.buildinfo".to_owned(),
                kind: 1,
                addr: 0x1000,
                offset: 0,
                size: 64,
                link: 0,
            }],
            load_segments: vec![crate::elf::LoadSegment {
                vaddr: 0x1000,
                offset: 0,
                file_size: file.len() as u64,
                flags: 6,
            }],
            file_len: file.len() as u64,
        }
    }

    #[test]
    fn pre_1_18_build_info_points_at_a_string_header() -> Result<(), GoBinError> {
        let mut file = vec![0u8; 96];
        file[..14].copy_from_slice(MAGIC);
        file[14] = 8;
        file[16..24].copy_from_slice(&0x1040u64.to_le_bytes());
        file[64..72].copy_from_slice(&0x1050u64.to_le_bytes());
        file[72..80].copy_from_slice(&8u64.to_le_bytes());
        file[80..88].copy_from_slice(b"go1.16.3");
        let version = go_version(&layout(&file), file.as_slice())?;
        assert_eq!(version, Some(GoVersion::from_raw("go1.16.3")));
        // A string header pointing outside the file, or a huge length, is an error.
        file[64..72].copy_from_slice(&0x9000u64.to_le_bytes());
        assert!(go_version(&layout(&file), file.as_slice()).is_err());
        file[64..72].copy_from_slice(&0x1050u64.to_le_bytes());
        file[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(go_version(&layout(&file), file.as_slice()).is_err());
        Ok(())
    }

    #[test]
    fn inline_version_is_bounded() {
        let mut block = vec![0u8; 32];
        block.extend_from_slice(&[8]);
        block.extend_from_slice(b"go1.19.8");
        assert_eq!(inline_version(&block), Ok(b"go1.19.8".to_vec()));
        block[32] = 9;
        assert!(inline_version(&block).is_err());
        block[32] = 0xff;
        assert!(inline_version(&block).is_err());
    }
}
