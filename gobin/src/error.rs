//! What can be wrong with an executable: every refusal of the parser, by cause.

use std::fmt;

/// Why an executable could not be read as a Go program.
///
/// Each variant names the part of the file that was wrong, so a refusal in the loader's log
/// says what to look at; none of them is a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoBinError {
    /// Reading the file failed (the I/O error's kind; the message is not kept).
    Io(std::io::ErrorKind),
    /// Does not start with the ELF magic.
    NotElf,
    /// An ELF file, but not 64-bit little-endian x86-64 (what the hooks are written for).
    UnsupportedElf(&'static str),
    /// A header, table or string runs past the end of the file or of its section.
    Truncated(&'static str),
    /// A field holds a value the format does not allow (a count, an entry size, an offset).
    Malformed(&'static str),
    /// A structure is larger than the parser accepts (bounds memory in the privileged loader).
    TooLarge(&'static str),
    /// An ELF without Go's function table (`.gopclntab`): not a Go program.
    NotGo,
    /// The function table's magic is not one of Go 1.2, 1.16, 1.18 or 1.20+.
    UnknownPclntabVersion(u32),
    /// A virtual address lies in no loaded segment's file bytes.
    AddressNotInFile(u64),
    /// The function's machine code holds bytes that are not a valid x86-64 instruction
    /// (file offset of the first one): its return instructions cannot be listed safely.
    UndecodableInstruction(u64),
    /// `.symtab` and `.gopclntab` disagree on a function's entry (name's address in each).
    SymbolMismatch {
        /// Entry address from `.gopclntab`.
        pclntab: u64,
        /// Address from `.symtab`.
        symtab: u64,
    },
}

impl fmt::Display for GoBinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(kind) => write!(f, "reading the executable failed: {kind}"),
            Self::NotElf => f.write_str("not an ELF file"),
            Self::UnsupportedElf(what) => write!(f, "unsupported ELF file: {what}"),
            Self::Truncated(what) => write!(f, "truncated: {what} runs past its bounds"),
            Self::Malformed(what) => write!(f, "malformed: {what}"),
            Self::TooLarge(what) => write!(f, "too large: {what}"),
            Self::NotGo => f.write_str("not a Go program (no .gopclntab)"),
            Self::UnknownPclntabVersion(magic) => {
                write!(f, "unknown .gopclntab version (magic {magic:#010x})")
            }
            Self::AddressNotInFile(addr) => {
                write!(f, "address {addr:#x} is in no loaded segment of the file")
            }
            Self::UndecodableInstruction(offset) => {
                write!(f, "undecodable instruction at file offset {offset:#x}")
            }
            Self::SymbolMismatch { pclntab, symtab } => write!(
                f,
                ".symtab ({symtab:#x}) and .gopclntab ({pclntab:#x}) disagree on an entry"
            ),
        }
    }
}

impl std::error::Error for GoBinError {}

impl From<std::io::Error> for GoBinError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            return Self::Truncated("file");
        }
        Self::Io(error.kind())
    }
}
