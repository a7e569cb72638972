//! Go's function table, `.gopclntab`, which stripped binaries keep (the runtime needs it for
//! stack traces): for each function, its entry address and name; a function ends where the
//! next one starts. Four layouts, told apart by the header's magic:
//!
//! | magic | Go | header after magic, pad, pad, minLC, ptrSize | function table entries |
//! |---|---|---|---|
//! | `0xfffffffb` | 1.2–1.15 | `nfunc` | (entry pc, func offset) pointers, at `8 + ptrSize` |
//! | `0xfffffffa` | 1.16–1.17 | `nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset` | pointers, at `pclnOffset` |
//! | `0xfffffff0` | 1.18–1.19 | `nfunc, nfiles, textStart, funcnameOffset, …, pclnOffset` | u32 offsets from `textStart` |
//! | `0xfffffff1` | 1.20+ | same as 1.18 | same as 1.18 |
//!
//! The table holds `nfunc` pairs and one more entry, the end of the last function. Each
//! pair's second field is the offset, from the table's start (the section's for 1.2), of the
//! function's `_func` record, whose first two fields are its entry and the offset of its NUL-terminated name
//! (in `funcnametab` since 1.16, from the start of `.gopclntab` before).

use crate::bytes::{c_str_at, u32_at, u64_at, u8_at};
use crate::error::GoBinError;

const MAGIC_GO_1_2: u32 = 0xffff_fffb;
const MAGIC_GO_1_16: u32 = 0xffff_fffa;
const MAGIC_GO_1_18: u32 = 0xffff_fff0;
const MAGIC_GO_1_20: u32 = 0xffff_fff1;
const POINTER_SIZE: u64 = 8;
/// Function names longer than this are not compared (Go's longest are a few hundred bytes).
const MAX_FUNCTION_NAME: usize = 4096;

/// Which of the table layouts the file uses (and so roughly which Go built it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PclntabVersion {
    /// Go 1.2 to 1.15.
    Go1_2,
    /// Go 1.16 and 1.17.
    Go1_16,
    /// Go 1.18 and 1.19.
    Go1_18,
    /// Go 1.20 and later.
    Go1_20,
}

impl PclntabVersion {
    /// Whether every Go that writes this layout passes arguments in registers on amd64
    /// (1.16's layout is also written by 1.17, so it cannot tell).
    pub fn implies_register_abi(self) -> bool {
        matches!(self, Self::Go1_18 | Self::Go1_20)
    }
}

/// A function's entry and end addresses, from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionRange {
    /// Address of the first instruction.
    pub entry: u64,
    /// Address just past the function (the next function's entry, or the table's end).
    pub end: u64,
}

/// A parsed `.gopclntab`: the section's bytes and where its tables are.
#[derive(Clone)]
pub struct Pclntab {
    data: Vec<u8>,
    version: PclntabVersion,
    function_count: u64,
    /// Base of function entries for 1.18+ (entries are u32 offsets from it); 0 before.
    text_start: u64,
    /// Offset of the names' table (0 for 1.2: names are relative to the section).
    names_offset: u64,
    /// Offset of the function table.
    table_offset: u64,
    /// What `_func` record offsets are relative to: the section for 1.2, the table since.
    records_offset: u64,
    /// Size of one table field: 4 bytes for 1.18+, a pointer before.
    field_size: u64,
}

/// Without the section's bytes (megabytes in a log line help no one).
impl std::fmt::Debug for Pclntab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pclntab")
            .field("len", &self.data.len())
            .field("version", &self.version)
            .field("function_count", &self.function_count)
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .finish_non_exhaustive()
    }
}

impl Pclntab {
    /// Checks the header and that the function table lies inside the section.
    /// `text_section_addr` stands in for a zero `textStart` (a 1.18+ header may leave it
    /// to be relocated).
    pub fn parse(data: Vec<u8>, text_section_addr: Option<u64>) -> Result<Self, GoBinError> {
        let magic = u32_at(&data, 0, ".gopclntab header")?;
        let version = match magic {
            MAGIC_GO_1_2 => PclntabVersion::Go1_2,
            MAGIC_GO_1_16 => PclntabVersion::Go1_16,
            MAGIC_GO_1_18 => PclntabVersion::Go1_18,
            MAGIC_GO_1_20 => PclntabVersion::Go1_20,
            other => return Err(GoBinError::UnknownPclntabVersion(other)),
        };
        if u8_at(&data, 4, ".gopclntab header")? != 0 || u8_at(&data, 5, ".gopclntab header")? != 0
        {
            return Err(GoBinError::Malformed(".gopclntab header padding"));
        }
        if u8_at(&data, 6, ".gopclntab header")? != 1 {
            return Err(GoBinError::Malformed(
                ".gopclntab instruction quantum (not x86)",
            ));
        }
        if u64::from(u8_at(&data, 7, ".gopclntab header")?) != POINTER_SIZE {
            return Err(GoBinError::Malformed(".gopclntab pointer size"));
        }
        let word = |index: u64| u64_at(&data, 8 + index * POINTER_SIZE, ".gopclntab header");
        let function_count = word(0)?;
        let (text_start, names_offset, table_offset, field_size) = match version {
            PclntabVersion::Go1_2 => (0, 0, 8 + POINTER_SIZE, POINTER_SIZE),
            PclntabVersion::Go1_16 => (0, word(2)?, word(6)?, POINTER_SIZE),
            PclntabVersion::Go1_18 | PclntabVersion::Go1_20 => {
                let from_header = word(2)?;
                let text_start = match (from_header, text_section_addr) {
                    (0, Some(addr)) => addr,
                    (0, None) => return Err(GoBinError::Malformed(".gopclntab textStart")),
                    (addr, _) => addr,
                };
                (text_start, word(3)?, word(7)?, 4)
            }
        };
        // nfunc pairs plus the end entry must fit in the section (this also bounds nfunc).
        let table_len = function_count
            .checked_mul(2)
            .and_then(|fields| fields.checked_add(1))
            .and_then(|fields| fields.checked_mul(field_size))
            .ok_or(GoBinError::Malformed(".gopclntab function count"))?;
        let table_end = table_offset
            .checked_add(table_len)
            .ok_or(GoBinError::Malformed(".gopclntab function table offset"))?;
        if table_end > data.len() as u64 {
            return Err(GoBinError::Truncated(".gopclntab function table"));
        }
        if names_offset > data.len() as u64 {
            return Err(GoBinError::Truncated(".gopclntab name table"));
        }
        Ok(Self {
            data,
            version,
            function_count,
            text_start,
            names_offset,
            table_offset,
            records_offset: if version == PclntabVersion::Go1_2 {
                0
            } else {
                table_offset
            },
            field_size,
        })
    }

    /// The layout's version.
    pub fn version(&self) -> PclntabVersion {
        self.version
    }

    /// How many functions the table lists.
    pub fn function_count(&self) -> u64 {
        self.function_count
    }

    /// Field `index` of the function table (entries and `_func` offsets alternate).
    fn table_field(&self, index: u64) -> Result<u64, GoBinError> {
        let at = self.table_offset + index * self.field_size;
        if self.field_size == 4 {
            Ok(u32_at(&self.data, at, ".gopclntab function table")?.into())
        } else {
            u64_at(&self.data, at, ".gopclntab function table")
        }
    }

    /// Entry address from a table entry field.
    fn entry_address(&self, field: u64) -> Result<u64, GoBinError> {
        self.text_start
            .checked_add(field)
            .ok_or(GoBinError::Malformed(".gopclntab entry address"))
    }

    /// The name of function `index`, read through its `_func` record.
    fn function_name(&self, index: u64) -> Result<&[u8], GoBinError> {
        let record = self
            .records_offset
            .checked_add(self.table_field(index * 2 + 1)?)
            .ok_or(GoBinError::Malformed(".gopclntab _func offset"))?;
        // `_func` starts with the entry (u32 since 1.18, a pointer before), then nameOff.
        let name_field = record
            .checked_add(self.field_size)
            .ok_or(GoBinError::Malformed(".gopclntab _func offset"))?;
        let name_offset = u32_at(&self.data, name_field, ".gopclntab _func")?;
        let name_at = self
            .names_offset
            .checked_add(name_offset.into())
            .ok_or(GoBinError::Malformed(".gopclntab name offset"))?;
        c_str_at(
            &self.data,
            name_at,
            MAX_FUNCTION_NAME,
            ".gopclntab function name",
        )
    }

    /// The entry and end of function `index`.
    fn function_range(&self, index: u64) -> Result<FunctionRange, GoBinError> {
        let entry = self.entry_address(self.table_field(index * 2)?)?;
        // The field after a pair is the next entry (or the end of the last function).
        let end = self.entry_address(self.table_field(index * 2 + 2)?)?;
        if end <= entry {
            return Err(GoBinError::Malformed(".gopclntab function order"));
        }
        Ok(FunctionRange { entry, end })
    }

    /// Finds each of `names` in one pass over the table; the result is in the same order,
    /// `None` for a name the table does not have. A record whose name cannot be read is
    /// skipped (it is not one of ours); a bad range for a wanted name is an error.
    pub fn find(&self, names: &[&str]) -> Result<Vec<Option<FunctionRange>>, GoBinError> {
        let mut found = vec![None; names.len()];
        let mut remaining = names.len();
        for index in 0..self.function_count {
            if remaining == 0 {
                break;
            }
            let Ok(name) = self.function_name(index) else {
                continue;
            };
            for (slot, wanted) in found.iter_mut().zip(names) {
                if slot.is_none() && name == wanted.as_bytes() {
                    *slot = Some(self.function_range(index)?);
                    remaining -= 1;
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1.20-layout table with two functions, "a.F" at text+0x10 and "b.G" at text+0x40,
    /// ending at text+0x80.
    fn tiny_go_1_20() -> Vec<u8> {
        let mut data = vec![0u8; 8 + 8 * 8];
        data[..4].copy_from_slice(&MAGIC_GO_1_20.to_le_bytes());
        data[6] = 1;
        data[7] = 8;
        let put = |data: &mut Vec<u8>, index: usize, value: u64| {
            data[8 + index * 8..16 + index * 8].copy_from_slice(&value.to_le_bytes());
        };
        let names_offset = data.len() as u64;
        put(&mut data, 0, 2);
        put(&mut data, 2, 0x40_1000);
        put(&mut data, 3, names_offset);
        data.extend_from_slice(b"a.F\0b.G\0");
        let table_offset = data.len() as u64;
        put(&mut data, 7, table_offset);
        // Table: (0x10, f0) (0x40, f1) 0x80, then two _func records.
        let records = 5 * 4;
        for field in [0x10u32, records, 0x40, records + 8, 0x80] {
            data.extend_from_slice(&field.to_le_bytes());
        }
        for (entry, name) in [(0x10u32, 0u32), (0x40, 4)] {
            data.extend_from_slice(&entry.to_le_bytes());
            data.extend_from_slice(&name.to_le_bytes());
        }
        data
    }

    #[test]
    fn finds_functions_and_their_ends() -> Result<(), GoBinError> {
        let table = Pclntab::parse(tiny_go_1_20(), None)?;
        assert_eq!(table.version(), PclntabVersion::Go1_20);
        let found = table.find(&["b.G", "a.F", "c.H"])?;
        assert_eq!(
            found,
            vec![
                Some(FunctionRange {
                    entry: 0x40_1040,
                    end: 0x40_1080
                }),
                Some(FunctionRange {
                    entry: 0x40_1010,
                    end: 0x40_1040
                }),
                None
            ]
        );
        Ok(())
    }

    /// The same two functions in the 1.16 layout: pointer-sized fields, absolute entries.
    fn tiny_go_1_16() -> Vec<u8> {
        let mut data = vec![0u8; 8 + 7 * 8];
        data[..4].copy_from_slice(&MAGIC_GO_1_16.to_le_bytes());
        data[6] = 1;
        data[7] = 8;
        let put = |data: &mut Vec<u8>, index: usize, value: u64| {
            data[8 + index * 8..16 + index * 8].copy_from_slice(&value.to_le_bytes());
        };
        let names_offset = data.len() as u64;
        put(&mut data, 0, 2);
        put(&mut data, 2, names_offset);
        data.extend_from_slice(b"a.F\0b.G\0");
        let table_offset = data.len() as u64;
        put(&mut data, 6, table_offset);
        let records = 5 * 8;
        for field in [0x40_1010u64, records, 0x40_1040, records + 16, 0x40_1080] {
            data.extend_from_slice(&field.to_le_bytes());
        }
        for (entry, name) in [(0x40_1010u64, 0u32), (0x40_1040, 4)] {
            data.extend_from_slice(&entry.to_le_bytes());
            data.extend_from_slice(&name.to_le_bytes());
            data.extend_from_slice(&[0; 4]);
        }
        data
    }

    /// The 1.2 layout: table right after the header, records and names relative to the start.
    fn tiny_go_1_2() -> Vec<u8> {
        let mut data = vec![0u8; 16];
        data[..4].copy_from_slice(&MAGIC_GO_1_2.to_le_bytes());
        data[6] = 1;
        data[7] = 8;
        data[8..16].copy_from_slice(&2u64.to_le_bytes());
        // Table at 16: 5 pointers; records at 56 and 72; names at 88.
        for field in [0x40_1010u64, 56, 0x40_1040, 72, 0x40_1080] {
            data.extend_from_slice(&field.to_le_bytes());
        }
        for (entry, name) in [(0x40_1010u64, 88u32), (0x40_1040, 92)] {
            data.extend_from_slice(&entry.to_le_bytes());
            data.extend_from_slice(&name.to_le_bytes());
            data.extend_from_slice(&[0; 4]);
        }
        data.extend_from_slice(b"a.F\0b.G\0");
        data
    }

    #[test]
    fn reads_the_go_1_16_and_go_1_2_layouts() -> Result<(), GoBinError> {
        for (data, version) in [
            (tiny_go_1_16(), PclntabVersion::Go1_16),
            (tiny_go_1_2(), PclntabVersion::Go1_2),
        ] {
            let table = Pclntab::parse(data, None)?;
            assert_eq!(table.version(), version);
            assert!(!version.implies_register_abi());
            let found = table.find(&["b.G", "a.F"])?;
            let expected = [(0x40_1040, 0x40_1080), (0x40_1010, 0x40_1040)]
                .map(|(entry, end)| Some(FunctionRange { entry, end }));
            assert_eq!(found, expected, "{version:?}");
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_headers_and_counts() {
        let mut data = tiny_go_1_20();
        data[0] = 0;
        assert!(matches!(
            Pclntab::parse(data, None),
            Err(GoBinError::UnknownPclntabVersion(_))
        ));
        let mut data = tiny_go_1_20();
        data[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Pclntab::parse(data, None).is_err());
        let mut data = tiny_go_1_20();
        data[7] = 4;
        assert!(Pclntab::parse(data, None).is_err());
        assert!(Pclntab::parse(tiny_go_1_20()[..20].to_vec(), None).is_err());
    }

    #[test]
    fn zero_text_start_falls_back_to_the_text_section() -> Result<(), GoBinError> {
        let mut data = tiny_go_1_20();
        data[24..32].copy_from_slice(&0u64.to_le_bytes());
        assert!(Pclntab::parse(data.clone(), None).is_err());
        let table = Pclntab::parse(data, Some(0x50_0000))?;
        assert_eq!(table.find(&["a.F"])?[0].map(|r| r.entry), Some(0x50_0010));
        Ok(())
    }
}
