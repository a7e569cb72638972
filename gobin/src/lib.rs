//! Finds where to hook Go's `crypto/tls` in a Go executable, stripped or not, for the
//! privileged loader: the Go version, the entry of each allow-listed function and the file
//! offsets of its return instructions (uprobes attach by file offset).
//!
//! # How
//! - [`elf`]: section headers, program headers (virtual address → file offset) and `.symtab`
//!   when present, from 64-bit little-endian x86-64 ELF files.
//! - [`buildinfo`]: the Go version from `.go.buildinfo` (Go 1.13+; inline strings since 1.18,
//!   pointers before).
//! - [`pclntab`]: function entries and ends from `.gopclntab` (`.data.rel.ro.gopclntab` in
//!   PIE builds), which `-ldflags='-s -w'` keeps (the runtime needs it); layouts of Go 1.2,
//!   1.16, 1.18 and 1.20+. When `.symtab` is present too, both must agree on each function
//!   found, or the binary is refused.
//! - [`returns`]: every `RET` of a function, decoded instruction by instruction: Go
//!   functions must not get uretprobes (a uretprobe rewrites the return address on the
//!   stack, and the Go runtime copies goroutine stacks when they grow), so the hook that
//!   needs the results runs at each return instead. Direct jumps out of the function (tail
//!   calls, exits no `RET` hook would see) are listed too; and the prologue's stack check
//!   (the `JBE` to `runtime.morestack`) and the direct calls, where hooks cost no
//!   single-step (uprobes emulate jumps and calls). `(*Conn).Read`'s one call to
//!   `runtime.memmove` is where its plaintext is copied into `b`.
//! - [`hooks`]: the fixed allow-list ([`HookedFunction`]) and the outcome for one executable
//!   ([`TlsHookPoints`]): found, not Go, Go older than 1.17 (no register ABI), no `crypto/tls`.
//!
//! # Hostile input
//! The loader runs this on executables of other users' processes, so every length, count and
//! offset from the file is checked before use; reads are capped (`.gopclntab` and `.symtab`
//! at 256 MiB, a function's code at 1 MiB, headers and strings far less); errors are a
//! [`GoBinError`] naming what was wrong. No `unsafe`, no panics (a fuzz target and a
//! mutation test feed it damaged Go binaries).
//!
//! # Dependencies
//! The ELF reader is our own (a few hundred lines over what the hooks need) rather than
//! `object` or `goblin`, which parse far more than this and would all be attack surface in
//! the privileged loader. x86-64 instruction lengths come from `iced-x86` with only its
//! decoder (`default-features = false, features = ["decoder", "std"]`: no formatter,
//! encoder or instruction info): a hand-written length decoder for every prefix, VEX/EVEX
//! form and opcode map is exactly where a wrong length would silently turn a byte inside an
//! instruction into a `RET` and corrupt a running program; iced-x86 is widely used and
//! tested against the vendors' opcode tables. Its cost, about 147 KB of a stripped release
//! binary (measured against the same program without it), is in docs/protocols.md.

#![forbid(unsafe_code)]

pub mod buildinfo;
mod bytes;
pub mod elf;
mod error;
pub mod hooks;
pub mod pclntab;
pub mod returns;
pub mod source;

pub use buildinfo::GoVersion;
pub use error::GoBinError;
pub use hooks::{HookedFunction, TlsHookPoint, TlsHookPoints};
pub use pclntab::PclntabVersion;
pub use source::{ExecutableSource, FileSource, SeekSource};

use elf::ElfFile;
use pclntab::{FunctionRange, Pclntab};
use source::read_range;

/// Where Go's linker puts the function table: its own section in executables, inside the
/// relocated read-only data in position-independent ones (`-buildmode=pie`).
const PCLNTAB_SECTIONS: [&str; 2] = [".gopclntab", ".data.rel.ro.gopclntab"];
/// `.gopclntab` is read whole up to this size (a 150 MB Kubernetes binary's is ~40 MB).
const MAX_PCLNTAB_BYTES: u64 = 256 << 20;
/// A function's machine code is read up to this size (Go's largest are well under it).
const MAX_FUNCTION_BYTES: u64 = 1 << 20;

/// Where one Go function is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    /// Virtual address of its entry.
    pub entry_addr: u64,
    /// Virtual address just past its end (the next function's entry).
    pub end_addr: u64,
    /// File offset of its entry (what a uprobe at entry attaches to).
    pub entry_file_offset: u64,
    /// File offset just past its end.
    pub end_file_offset: u64,
    /// File offsets of each of its `RET` instructions, in address order.
    pub return_file_offsets: Vec<u64>,
    /// File offsets of direct jumps out of the function (tail calls): exits that
    /// `return_file_offsets` do not cover. Empty for the `crypto/tls` functions; the hooks
    /// should refuse a function where it is not.
    pub jump_out_file_offsets: Vec<u64>,
    /// File offset of the prologue's stack check (the `JBE` to `runtime.morestack`), where
    /// an entry hook runs once per call; `None` for a function without one.
    pub stack_check_file_offset: Option<u64>,
    /// Direct calls it makes: (file offset of the `CALL`, address called).
    pub direct_calls: Vec<(u64, u64)>,
}

/// A parsed Go executable: its ELF layout, its Go version and its function table, over the
/// source of its bytes (read again for function code).
#[derive(Debug)]
pub struct GoBinary<S> {
    source: S,
    elf: ElfFile,
    go_version: Option<GoVersion>,
    pclntab: Pclntab,
}

impl<'a> GoBinary<&'a [u8]> {
    /// Parses an executable held in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GoBinError> {
        Self::from_source(bytes)
    }
}

impl<S: ExecutableSource> GoBinary<S> {
    /// Parses an executable from any source ([`FileSource`] for an open file).
    /// `Err(GoBinError::NotGo)` for an ELF without `.gopclntab`.
    pub fn from_source(source: S) -> Result<Self, GoBinError> {
        let elf = ElfFile::parse(&source)?;
        let section = PCLNTAB_SECTIONS
            .iter()
            .find_map(|name| elf.section(name))
            .ok_or(GoBinError::NotGo)?;
        let table = elf.section_bytes(&source, section, MAX_PCLNTAB_BYTES, ".gopclntab")?;
        let text_addr = elf.section(".text").map(|text| text.addr);
        let pclntab = Pclntab::parse(table, text_addr)?;
        let go_version = buildinfo::go_version(&elf, &source)?;
        Ok(Self {
            source,
            elf,
            go_version,
            pclntab,
        })
    }

    /// The Go version from the build info (`None` if the binary has no build info).
    pub fn go_version(&self) -> Option<&GoVersion> {
        self.go_version.as_ref()
    }

    /// The layout of the function table.
    pub fn pclntab_version(&self) -> PclntabVersion {
        self.pclntab.version()
    }

    /// The ELF layout (sections, loaded segments).
    pub fn elf(&self) -> &ElfFile {
        &self.elf
    }

    /// Whether calls pass arguments in registers (Go 1.17+): from the build info's version,
    /// else from the table layout (1.18+ layouts imply it); `false` when it cannot be told.
    pub fn has_register_abi(&self) -> bool {
        self.go_version
            .as_ref()
            .and_then(GoVersion::has_register_abi)
            .unwrap_or_else(|| self.pclntab.version().implies_register_abi())
    }

    /// Finds one function by its full Go name (`pkg/path.(*Type).Method`); `Ok(None)` if the
    /// table does not have it.
    pub fn function(&self, name: &str) -> Result<Option<GoFunction>, GoBinError> {
        Ok(self.functions(&[name])?.pop().flatten())
    }

    /// Finds several functions in one pass over the table; same order as `names`.
    pub fn functions(&self, names: &[&str]) -> Result<Vec<Option<GoFunction>>, GoBinError> {
        let ranges = self.pclntab.find(names)?;
        let symbols = if ranges.iter().any(Option::is_some) {
            self.elf.symbol_values(&self.source, names)?
        } else {
            None
        };
        ranges
            .into_iter()
            .enumerate()
            .map(|(index, range)| {
                let Some(range) = range else {
                    return Ok(None);
                };
                // An unstripped binary's two tables must agree, or neither is trusted.
                if let Some(Some(symbol)) = symbols.as_ref().and_then(|s| s.get(index)) {
                    if *symbol != range.entry {
                        return Err(GoBinError::SymbolMismatch {
                            pclntab: range.entry,
                            symtab: *symbol,
                        });
                    }
                }
                self.locate(range).map(Some)
            })
            .collect()
    }

    /// File offsets of a function's range and of its returns.
    fn locate(&self, range: FunctionRange) -> Result<GoFunction, GoBinError> {
        let len = range.end - range.entry;
        if self.elf.file_bytes_from(range.entry)? < len {
            return Err(GoBinError::Truncated("function code"));
        }
        let entry_file_offset = self.elf.file_offset(range.entry)?;
        let code = read_range(
            &self.source,
            entry_file_offset,
            len,
            MAX_FUNCTION_BYTES,
            "function code",
        )?;
        let exits = returns::function_exits(&code, range.entry, entry_file_offset)?;
        Ok(GoFunction {
            entry_addr: range.entry,
            end_addr: range.end,
            entry_file_offset,
            end_file_offset: entry_file_offset.saturating_add(len),
            return_file_offsets: exits.returns,
            jump_out_file_offsets: exits.jumps_out,
            stack_check_file_offset: exits.stack_check,
            direct_calls: exits.calls,
        })
    }

    /// The allow-listed `crypto/tls` functions found, or why there are none to hook.
    pub fn tls_hook_points(&self) -> Result<TlsHookPoints, GoBinError> {
        let go_version = self.go_version.clone();
        if !self.has_register_abi() {
            return Ok(TlsHookPoints::RegisterAbiMissing { go_version });
        }
        let names = HookedFunction::ALL.map(HookedFunction::symbol);
        let found = self.functions(&names)?;
        let memmove = self
            .pclntab
            .find(&[MEMMOVE])?
            .pop()
            .flatten()
            .map(|range| range.entry);
        let points: Vec<TlsHookPoint> = HookedFunction::ALL
            .into_iter()
            .zip(found)
            .filter_map(|(function, location)| {
                let location = location?;
                let copy_call_file_offset = match (function, memmove) {
                    (HookedFunction::ConnRead, Some(memmove)) => only_call_to(&location, memmove),
                    _ => None,
                };
                Some(TlsHookPoint {
                    function,
                    location,
                    copy_call_file_offset,
                })
            })
            .collect();
        let has_data_path = points.iter().any(|point| {
            matches!(
                point.function,
                HookedFunction::ConnRead | HookedFunction::ConnWrite
            )
        });
        if !has_data_path {
            return Ok(TlsHookPoints::NoCryptoTls { go_version });
        }
        Ok(TlsHookPoints::Found { go_version, points })
    }
}

/// The Go runtime's copy function: `(*Conn).Read` copies the decrypted record into `b` with
/// it (the inlined `bytes.(*Reader).Read`).
const MEMMOVE: &str = "runtime.memmove";

/// The file offset of the one direct call from `function` to `target`, if there is exactly one.
fn only_call_to(function: &GoFunction, target: u64) -> Option<u64> {
    let mut calls = function
        .direct_calls
        .iter()
        .filter(|(_, called)| *called == target);
    let (offset, _) = calls.next()?;
    calls.next().is_none().then_some(*offset)
}

/// [`GoBinary::tls_hook_points`] for any executable: "not Go" is an outcome here, not an
/// error; errors are for files that are damaged or not x86-64 ELF.
pub fn find_tls_hook_points<S: ExecutableSource>(source: S) -> Result<TlsHookPoints, GoBinError> {
    match GoBinary::from_source(source) {
        Ok(binary) => binary.tls_hook_points(),
        Err(GoBinError::NotGo) => Ok(TlsHookPoints::NotGo),
        Err(error) => Err(error),
    }
}
