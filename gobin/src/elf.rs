//! The small part of ELF the hooks need, read from 64-bit little-endian x86-64 executables:
//! section headers (to find `.gopclntab`, `.go.buildinfo`, `.text`, `.symtab`), program
//! headers (uprobes attach at file offsets, so virtual addresses are turned into offsets
//! through the loaded segments) and `.symtab` lookups by name. Every count, offset and size
//! from the file is checked before it is used.

use crate::bytes::{c_str_at, u16_at, u32_at, u64_at, u8_at};
use crate::error::GoBinError;
use crate::source::{read_range, ExecutableSource};

const ELF_HEADER_LEN: u64 = 64;
const PROGRAM_HEADER_LEN: u64 = 56;
const SECTION_HEADER_LEN: u64 = 64;
const SYMBOL_LEN: u64 = 24;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
/// Section counts and indexes at or above this are escapes to section 0's fields.
const SHN_LORESERVE: u16 = 0xff00;
const SHN_XINDEX: u16 = 0xffff;
/// More sections than this is not a program a compiler made (bounds the table we keep).
const MAX_SECTIONS: u64 = 1 << 16;
/// Section names longer than this are refused (Go's are a few dozen bytes).
const MAX_SECTION_NAME: usize = 256;
/// `.symtab` and its strings are read whole only up to this size each.
const MAX_SYMTAB_BYTES: u64 = 256 << 20;
/// A symbol name longer than this is not one of those the hooks look for.
const MAX_SYMBOL_NAME: usize = 4096;

/// One section header, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name from the section header string table (lossy UTF-8).
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_addr`: where the section is loaded (0 if it is not).
    pub addr: u64,
    /// `sh_offset`: where its bytes are in the file.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_link` (for `.symtab`: the index of its string table).
    pub link: u32,
}

impl Section {
    /// Whether the section has bytes in the file (`SHT_NOBITS` sections, like `.bss`, do not).
    pub fn has_file_bytes(&self) -> bool {
        self.kind != SHT_NOBITS
    }
}

/// One `PT_LOAD` program header: file bytes `[offset, offset + file_size)` are mapped at
/// `vaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz` (bytes beyond it, up to `p_memsz`, are zeros with no file offset).
    pub file_size: u64,
    /// `p_flags` (`PF_X` = 1, `PF_W` = 2, `PF_R` = 4).
    pub flags: u32,
}

/// The headers of a 64-bit little-endian x86-64 ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFile {
    /// `e_type`: 2 for a fixed-address executable, 3 for a position-independent one.
    pub file_type: u16,
    /// Every section header, index 0 included.
    pub sections: Vec<Section>,
    /// The `PT_LOAD` segments, in file order.
    pub load_segments: Vec<LoadSegment>,
    /// The file's length (every offset handed out is below it).
    pub file_len: u64,
}

impl ElfFile {
    /// Reads and checks the ELF header, the program headers and the section headers.
    pub fn parse<S: ExecutableSource + ?Sized>(source: &S) -> Result<Self, GoBinError> {
        let file_len = source.len();
        if file_len < 4 {
            return Err(GoBinError::NotElf);
        }
        let header = read_range(
            source,
            0,
            ELF_HEADER_LEN.min(file_len),
            ELF_HEADER_LEN,
            "ELF header",
        )?;
        if header.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(GoBinError::NotElf);
        }
        if header.len() < ELF_HEADER_LEN as usize {
            return Err(GoBinError::Truncated("ELF header"));
        }
        if u8_at(&header, 4, "ELF header")? != 2 {
            return Err(GoBinError::UnsupportedElf("not 64-bit"));
        }
        if u8_at(&header, 5, "ELF header")? != 1 {
            return Err(GoBinError::UnsupportedElf("not little-endian"));
        }
        if u16_at(&header, 18, "ELF header")? != EM_X86_64 {
            return Err(GoBinError::UnsupportedElf("not x86-64"));
        }
        let file_type = u16_at(&header, 16, "ELF header")?;
        let load_segments = read_load_segments(source, &header)?;
        let sections = read_sections(source, &header)?;
        Ok(Self {
            file_type,
            sections,
            load_segments,
            file_len,
        })
    }

    /// The first section with this name.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// The bytes of a section, read whole if no larger than `cap`.
    pub fn section_bytes<S: ExecutableSource + ?Sized>(
        &self,
        source: &S,
        section: &Section,
        cap: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, GoBinError> {
        if !section.has_file_bytes() {
            return Err(GoBinError::Malformed(what));
        }
        read_range(source, section.offset, section.size, cap, what)
    }

    /// The file offset of virtual address `addr`, if a loaded segment has file bytes there.
    pub fn file_offset(&self, addr: u64) -> Result<u64, GoBinError> {
        self.load_segments
            .iter()
            .find_map(|segment| {
                let delta = addr.checked_sub(segment.vaddr)?;
                (delta < segment.file_size).then(|| segment.offset.checked_add(delta))?
            })
            .filter(|&offset| offset < self.file_len)
            .ok_or(GoBinError::AddressNotInFile(addr))
    }

    /// How many bytes from `addr` on are file bytes of the same loaded segment.
    pub fn file_bytes_from(&self, addr: u64) -> Result<u64, GoBinError> {
        self.load_segments
            .iter()
            .find_map(|segment| {
                let delta = addr.checked_sub(segment.vaddr)?;
                segment
                    .file_size
                    .checked_sub(delta)
                    .filter(|&left| left > 0)
            })
            .ok_or(GoBinError::AddressNotInFile(addr))
    }

    /// The values (addresses) of the first `.symtab` symbols with these names, in the same
    /// order; `Ok(None)` when the file has no `.symtab` (stripped).
    pub fn symbol_values<S: ExecutableSource + ?Sized>(
        &self,
        source: &S,
        names: &[&str],
    ) -> Result<Option<Vec<Option<u64>>>, GoBinError> {
        let Some(symtab) = self.sections.iter().find(|s| s.kind == SHT_SYMTAB) else {
            return Ok(None);
        };
        let strtab = usize::try_from(symtab.link)
            .ok()
            .and_then(|index| self.sections.get(index))
            .ok_or(GoBinError::Malformed(".symtab's string table index"))?;
        let symbols = self.section_bytes(source, symtab, MAX_SYMTAB_BYTES, ".symtab")?;
        let strings = self.section_bytes(source, strtab, MAX_SYMTAB_BYTES, ".strtab")?;
        let mut values = vec![None; names.len()];
        for symbol in symbols.chunks_exact(SYMBOL_LEN as usize) {
            let name_offset = u32_at(symbol, 0, ".symtab entry")?;
            // A symbol whose name is unreadable is not one of those looked for.
            let Ok(symbol_name) =
                c_str_at(&strings, name_offset.into(), MAX_SYMBOL_NAME, ".strtab")
            else {
                continue;
            };
            for (value, name) in values.iter_mut().zip(names) {
                if value.is_none() && symbol_name == name.as_bytes() {
                    *value = Some(u64_at(symbol, 8, ".symtab entry")?);
                }
            }
        }
        Ok(Some(values))
    }
}

fn read_load_segments<S: ExecutableSource + ?Sized>(
    source: &S,
    header: &[u8],
) -> Result<Vec<LoadSegment>, GoBinError> {
    let table_offset = u64_at(header, 32, "ELF header")?;
    let entry_size = u64::from(u16_at(header, 54, "ELF header")?);
    let count = u64::from(u16_at(header, 56, "ELF header")?);
    if count == 0 {
        return Err(GoBinError::Malformed("no program headers"));
    }
    if entry_size < PROGRAM_HEADER_LEN {
        return Err(GoBinError::Malformed("program header entry size"));
    }
    // count and entry_size are u16, so the table is at most 4 GiB but read only up to 4 MiB.
    let table = read_range(
        source,
        table_offset,
        count * entry_size,
        4 << 20,
        "program headers",
    )?;
    let mut segments = Vec::new();
    for index in 0..count {
        let at = index * entry_size;
        if u32_at(&table, at, "program header")? != PT_LOAD {
            continue;
        }
        segments.push(LoadSegment {
            flags: u32_at(&table, at + 4, "program header")?,
            offset: u64_at(&table, at + 8, "program header")?,
            vaddr: u64_at(&table, at + 16, "program header")?,
            file_size: u64_at(&table, at + 32, "program header")?,
        });
    }
    Ok(segments)
}

fn read_sections<S: ExecutableSource + ?Sized>(
    source: &S,
    header: &[u8],
) -> Result<Vec<Section>, GoBinError> {
    let table_offset = u64_at(header, 40, "ELF header")?;
    let entry_size = u64::from(u16_at(header, 58, "ELF header")?);
    let mut count = u64::from(u16_at(header, 60, "ELF header")?);
    let mut names_index = u16_at(header, 62, "ELF header")?;
    if table_offset == 0 {
        return Ok(Vec::new());
    }
    if entry_size < SECTION_HEADER_LEN {
        return Err(GoBinError::Malformed("section header entry size"));
    }
    // With many sections, the real count and name-table index are in section 0.
    if count == 0 || names_index == SHN_XINDEX {
        let first = read_range(
            source,
            table_offset,
            SECTION_HEADER_LEN,
            SECTION_HEADER_LEN,
            "section headers",
        )?;
        if count == 0 {
            count = u64_at(&first, 32, "section header")?;
        }
        if names_index == SHN_XINDEX {
            names_index = u16::try_from(u32_at(&first, 40, "section header")?)
                .map_err(|_| GoBinError::Malformed("section name table index"))?;
        }
    } else if names_index >= SHN_LORESERVE {
        return Err(GoBinError::Malformed("section name table index"));
    }
    if count > MAX_SECTIONS {
        return Err(GoBinError::TooLarge("section header count"));
    }
    let table = read_range(
        source,
        table_offset,
        count * entry_size,
        MAX_SECTIONS * entry_size,
        "section headers",
    )?;
    let mut raw = Vec::new();
    for index in 0..count {
        let at = index * entry_size;
        raw.push((
            u32_at(&table, at, "section header")?,
            Section {
                name: String::new(),
                kind: u32_at(&table, at + 4, "section header")?,
                addr: u64_at(&table, at + 16, "section header")?,
                offset: u64_at(&table, at + 24, "section header")?,
                size: u64_at(&table, at + 32, "section header")?,
                link: u32_at(&table, at + 40, "section header")?,
            },
        ));
    }
    let names_section = raw
        .get(usize::from(names_index))
        .map(|(_, section)| section)
        .ok_or(GoBinError::Malformed("section name table index"))?;
    // A section name table too large to be one is refused rather than read.
    let names = if names_section.has_file_bytes() {
        read_range(
            source,
            names_section.offset,
            names_section.size,
            1 << 20,
            "section name table",
        )?
    } else {
        return Err(GoBinError::Malformed("section name table"));
    };
    Ok(raw
        .into_iter()
        .map(|(name_offset, mut section)| {
            // A section whose name is unreadable keeps an empty name: it is not one we use.
            if let Ok(name) = c_str_at(&names, name_offset.into(), MAX_SECTION_NAME, "section name")
            {
                section.name = String::from_utf8_lossy(name).into_owned();
            }
            section
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_short_files() {
        assert_eq!(ElfFile::parse(&b""[..]), Err(GoBinError::NotElf));
        assert_eq!(
            ElfFile::parse(&b"MZ\x90\x00junk"[..]),
            Err(GoBinError::NotElf)
        );
        assert_eq!(
            ElfFile::parse(&b"\x7fELF\x02\x01"[..]),
            Err(GoBinError::Truncated("ELF header"))
        );
    }

    #[test]
    fn rejects_32_bit_and_other_machines() {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 1;
        header[5] = 1;
        assert_eq!(
            ElfFile::parse(&header),
            Err(GoBinError::UnsupportedElf("not 64-bit"))
        );
        header[4] = 2;
        header[18] = 183; // aarch64
        assert_eq!(
            ElfFile::parse(&header),
            Err(GoBinError::UnsupportedElf("not x86-64"))
        );
    }

    #[test]
    fn file_offsets_come_from_load_segments_file_bytes_only() {
        let elf = ElfFile {
            file_type: 2,
            sections: Vec::new(),
            load_segments: vec![LoadSegment {
                vaddr: 0x40_1000,
                offset: 0x1000,
                file_size: 0x100,
                flags: 5,
            }],
            file_len: 0x2000,
        };
        assert_eq!(elf.file_offset(0x40_1010), Ok(0x1010));
        assert_eq!(elf.file_bytes_from(0x40_1010), Ok(0xf0));
        assert!(elf.file_offset(0x40_1100).is_err());
        assert!(elf.file_offset(0x40_0fff).is_err());
    }
}
