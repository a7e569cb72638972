//! Go TLS hooks: uprobes on `crypto/tls.(*Conn).Read` and `.Write` inside the
//! executables of instrumented Go processes (Go carries its TLS in the
//! binary, not in libssl). The worker asks (`AttachGoTls`) and names the
//! executable DescribeProcess gave it; everything is checked here: the symbol
//! must be on the allow-list, the pid instrumented, the path the pid's own
//! executable. The loader then opens that executable itself, through
//! /proc/PID/exe, and finds the function's entry and its `RET` instructions
//! with zerotrace-gobin (the `.gopclntab` function table, which stripped
//! binaries keep), and hooks both: Go functions get no uretprobes, since the
//! Go runtime moves goroutine stacks and a uretprobe's rewritten return
//! address with them.
//!
//! One uprobe_multi link per (executable file, function), for every process
//! (pid -1): the BPF program drops calls of processes outside the pid filter.
//! The link is made through the descriptor the loader parsed, so the code
//! hooked is the code read. A hook is kept while some process that asked for
//! it is still instrumented, and detached with the last one.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use libbpf_rs::{Link, Object, UprobeMultiOpts};
use zerotrace_gobin::elf::ElfFile;
use zerotrace_gobin::{
    find_tls_hook_points, FileSource, GoFunction, HookedFunction, TlsHookPoints,
};
use zerotrace_shared::ipc::{GO_HTTP_CLIENT_SYMBOLS, GO_TLS_SYMBOLS, MAX_LIBRARY_PATH_BYTES};

use crate::shared_hooks::SharedHooks;
use crate::tls_uprobes::AttachError;

/// The program every Go TLS hook runs (bpf-programs/go_tls/go_tls_hooks.h).
pub const GO_TLS_PROGRAM: &str = "zt_go_tls";

/// Attach cookies, as `enum zt_tls_kind` and `enum zt_go_tls_hook` in the BPF
/// sources: the direction, and whether the hook is an entry or a return.
const KIND_READ: u64 = 1;
const KIND_WRITE: u64 = 2;
const HOOK_ENTRY: u64 = 16;
const HOOK_RETURN: u64 = 32;
const HOOK_AT_STACK_CHECK: u64 = 64;
const HOOK_COPY: u64 = 128;
/// `net/http`'s client connection, as `enum zt_go_http_hook`: no bytes, who calls.
const HTTP_ROUND_TRIP: u64 = 256;
const HTTP_WRITE_LOOP: u64 = 512;
const HTTP_READ_LOOP: u64 = 1024;

/// Why a Go TLS request was not attached, beyond [`AttachError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoAttachError {
    /// A refusal or failure, as for the library hooks.
    Attach(AttachError),
    /// Not Go (`not_go`), or Go older than 1.17: an answer, not a refusal.
    Unsupported { not_go: bool, reason: String },
}

impl From<AttachError> for GoAttachError {
    fn from(error: AttachError) -> Self {
        Self::Attach(error)
    }
}

fn invalid(field: &'static str, reason: String) -> GoAttachError {
    GoAttachError::Attach(AttachError::Invalid(field, reason))
}

fn failed(reason: String) -> GoAttachError {
    GoAttachError::Attach(AttachError::Failed(reason))
}

/// The allow-listed function a symbol names, or why it is refused.
fn allowed_function(symbol: &str) -> Result<HookedFunction, GoAttachError> {
    GO_TLS_SYMBOLS
        .iter()
        .chain(GO_HTTP_CLIENT_SYMBOLS)
        .find(|allowed| **allowed == symbol)
        .and_then(|allowed| HookedFunction::from_symbol(allowed))
        .ok_or_else(|| {
            invalid(
                "AttachGoTls.symbol",
                format!(
                    "{symbol:?} is not on the allow-list {GO_TLS_SYMBOLS:?} {GO_HTTP_CLIENT_SYMBOLS:?}"
                ),
            )
        })
}

/// Where to attach and with which cookies. The entry hook goes on the
/// prologue's stack check when there is one (it runs once per call there, and
/// uprobes emulate a conditional jump instead of stepping it out of line,
/// which costs a debug trap), else on the entry. Read's plaintext is taken at
/// its one call to runtime.memmove when found (a call is emulated too), else
/// at each of its returns (stepped). Write's returns are hooked only without a
/// stack check, to close the call its entry opened, so that an entry run
/// again by a stack growth is told from a new call.
fn probe_points(
    function: HookedFunction,
    location: &GoFunction,
    copy_call: Option<u64>,
) -> (Vec<usize>, Vec<u64>) {
    let kind = match function {
        HookedFunction::ConnWrite => KIND_WRITE,
        HookedFunction::PersistConnRoundTrip
        | HookedFunction::PersistConnWriteLoop
        | HookedFunction::PersistConnReadLoop => return client_probe_points(function, location),
        HookedFunction::ConnRead | HookedFunction::ConnClose => KIND_READ,
    };
    let stack_check = location.stack_check_file_offset;
    let (mut offsets, mut cookies) = match stack_check {
        Some(check) => (vec![check], vec![kind | HOOK_ENTRY | HOOK_AT_STACK_CHECK]),
        None => (vec![location.entry_file_offset], vec![kind | HOOK_ENTRY]),
    };
    let returns = &location.return_file_offsets;
    match (kind, copy_call) {
        (KIND_READ, Some(copy)) => {
            offsets.push(copy);
            cookies.push(kind | HOOK_COPY);
        }
        _ if kind == KIND_READ || stack_check.is_none() => {
            offsets.extend_from_slice(returns);
            cookies.extend(returns.iter().map(|_| kind | HOOK_RETURN));
        }
        _ => {}
    }
    (offsets_as_usize(offsets), cookies)
}

/// `net/http`'s client connection: the entry (on the stack check when there
/// is one, where a pass that grows the stack is skipped; a second run of
/// the entry writes the same again), and for the loops every RET, where the
/// goroutine, whose address Go gives to a later one, is forgotten.
fn client_probe_points(function: HookedFunction, location: &GoFunction) -> (Vec<usize>, Vec<u64>) {
    let kind = match function {
        HookedFunction::PersistConnWriteLoop => HTTP_WRITE_LOOP,
        HookedFunction::PersistConnReadLoop => HTTP_READ_LOOP,
        _ => HTTP_ROUND_TRIP,
    };
    let (mut offsets, mut cookies) = match location.stack_check_file_offset {
        Some(check) => (vec![check], vec![kind | HOOK_ENTRY | HOOK_AT_STACK_CHECK]),
        None => (vec![location.entry_file_offset], vec![kind | HOOK_ENTRY]),
    };
    if kind != HTTP_ROUND_TRIP {
        offsets.extend_from_slice(&location.return_file_offsets);
        cookies.extend(
            location
                .return_file_offsets
                .iter()
                .map(|_| kind | HOOK_RETURN),
        );
    }
    (offsets_as_usize(offsets), cookies)
}

/// File offsets of a file the loader could read: they fit in usize on 64-bit.
fn offsets_as_usize(offsets: Vec<u64>) -> Vec<usize> {
    offsets
        .into_iter()
        .map(|o| usize::try_from(o).unwrap_or(usize::MAX))
        .collect()
}

/// Whether the executable of `pid` is a Go program: its ELF section headers
/// name `.go.buildinfo`, `.gopclntab` or `.note.go.buildid` (kept by
/// stripped and PIE builds).
/// Only the headers are read, through bounded reads; false when the file is
/// unreadable or no ELF file.
pub fn is_go_executable(pid: u32) -> bool {
    let Ok(file) = File::open(format!("/proc/{pid}/exe")) else {
        return false;
    };
    FileSource::new(file)
        .and_then(|source| ElfFile::parse(&source))
        .is_ok_and(|elf| {
            [".go.buildinfo", ".gopclntab", ".note.go.buildid"]
                .iter()
                .any(|name| elf.section(name).is_some())
        })
}

/// The executable of `pid`, opened through /proc/PID/exe, after checking it
/// is the file the worker named.
fn open_executable(pid: u32, exe_path: &str) -> Result<File, GoAttachError> {
    let link = format!("/proc/{pid}/exe");
    let actual = std::fs::read_link(&link).map_err(|e| failed(format!("{link}: {e}")))?;
    if actual.as_os_str() != exe_path {
        return Err(invalid(
            "AttachGoTls.exe_path",
            format!("{exe_path} is not the executable of pid {pid}"),
        ));
    }
    let file = File::open(&link).map_err(|e| failed(format!("{link}: {e}")))?;
    // The process may have exec'd between the two: the file opened must be the one named.
    let named = format!("/proc/{pid}/root{exe_path}");
    let (opened, named_meta) = (
        file.metadata()
            .map_err(|e| failed(format!("{link}: {e}")))?,
        std::fs::metadata(&named).map_err(|e| failed(format!("{named}: {e}")))?,
    );
    if (opened.dev(), opened.ino()) != (named_meta.dev(), named_meta.ino()) {
        return Err(invalid(
            "AttachGoTls.exe_path",
            format!("{exe_path} is no longer the executable of pid {pid}"),
        ));
    }
    Ok(file)
}

/// An executable file's identity: device, inode, size and modification time.
type FileIdentity = (u64, u64, u64, i64, i64);

/// Executables whose parse outcome is kept (cleared when full).
const MAX_PARSED_EXECUTABLES: usize = 256;

/// The Go TLS hooks in place, keyed by the executable's identity and the function.
#[derive(Default)]
pub struct GoTlsRegistry {
    hooks: SharedHooks<Link>,
    /// What zerotrace-gobin found in each executable asked about: the second
    /// function's request, other processes running the file, and a worker
    /// asking again and again do not make the loader read it again.
    parsed: HashMap<FileIdentity, Result<TlsHookPoints, String>>,
}

impl GoTlsRegistry {
    pub fn attached(&self) -> usize {
        self.hooks.len()
    }

    /// Checks and serves one request. `instrumented` tells whether a pid is in
    /// the kernel's pid filter. Returns whether a new hook was attached;
    /// `Absent` when the executable is Go without this function.
    pub fn attach(
        &mut self,
        tracer: &Object,
        instrumented: impl Fn(u32) -> bool,
        pid: u32,
        exe_path: &str,
        symbol: &str,
    ) -> Result<bool, GoAttachError> {
        let function = allowed_function(symbol)?;
        let symbol = function.symbol();
        if exe_path.len() > MAX_LIBRARY_PATH_BYTES
            || !exe_path.starts_with('/')
            || exe_path.contains('\0')
        {
            return Err(invalid(
                "AttachGoTls.exe_path",
                "not an absolute path".into(),
            ));
        }
        if !instrumented(pid) {
            return Err(invalid(
                "AttachGoTls.pid",
                format!("pid {pid} is not instrumented"),
            ));
        }
        let file = open_executable(pid, exe_path)?;
        let meta = file
            .metadata()
            .map_err(|e| failed(format!("{exe_path}: {e}")))?;
        let key = (meta.dev(), meta.ino(), symbol);
        if self.hooks.join(&key, pid) {
            return Ok(false);
        }
        let points = match self.hook_points(&file, &meta) {
            Ok(TlsHookPoints::Found { points, .. }) => points,
            Ok(TlsHookPoints::NoCryptoTls { .. }) => return Err(AttachError::Absent.into()),
            Ok(TlsHookPoints::NotGo) => {
                return Err(GoAttachError::Unsupported {
                    not_go: true,
                    reason: format!("{exe_path} is not a Go program"),
                })
            }
            Ok(TlsHookPoints::RegisterAbiMissing { go_version }) => {
                let version = go_version.map_or_else(|| "of unknown version".into(), |v| v.raw);
                return Err(GoAttachError::Unsupported {
                    not_go: false,
                    reason: format!(
                        "{exe_path} is Go {version}: before Go 1.17 arguments travel on \
                         the stack, which the Go TLS hooks do not read"
                    ),
                });
            }
            Err(e) => return Err(failed(format!("{exe_path}: {e}"))),
        };
        let Some(point) = points.into_iter().find(|p| p.function == function) else {
            return Err(AttachError::Absent.into());
        };
        let copy_call = point.copy_call_file_offset;
        let location = point.location;
        // An exit that is not a RET would leave a Read open, or a loop's
        // goroutine remembered after it is gone: not hooked. (A round trip's
        // entry is all that is hooked of it.)
        let exits_matter = function != HookedFunction::PersistConnRoundTrip;
        if exits_matter
            && (!location.jump_out_file_offsets.is_empty()
                || location.return_file_offsets.is_empty())
        {
            return Err(failed(format!(
                "{symbol} in {exe_path} has exits other than RET instructions"
            )));
        }
        let (offsets, cookies) = probe_points(function, &location, copy_call);
        let prog = tracer
            .progs_mut()
            .find(|p| p.name() == GO_TLS_PROGRAM)
            .ok_or_else(|| failed(format!("program {GO_TLS_PROGRAM} missing")))?;
        let opts = UprobeMultiOpts {
            offsets,
            cookies,
            ..Default::default()
        };
        // The descriptor parsed above: the kernel hooks the very file that was read.
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let link = prog
            .attach_uprobe_multi_with_opts(-1, &path, "", opts)
            .map_err(|e| failed(format!("{symbol} in {exe_path}: {e:#}")))?;
        self.hooks.insert(key, link, exe_path, pid);
        Ok(true)
    }

    /// The hook points of an open executable, parsed once per file version.
    fn hook_points(
        &mut self,
        file: &File,
        meta: &std::fs::Metadata,
    ) -> Result<TlsHookPoints, String> {
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        if let Some(outcome) = self.parsed.get(&identity) {
            return outcome.clone();
        }
        let outcome = file
            .try_clone()
            .map_err(|e| e.to_string())
            .and_then(|copy| FileSource::new(copy).map_err(|e| e.to_string()))
            .and_then(|source| find_tls_hook_points(source).map_err(|e| e.to_string()));
        if self.parsed.len() >= MAX_PARSED_EXECUTABLES {
            self.parsed.clear();
        }
        self.parsed.insert(identity, outcome.clone());
        outcome
    }

    /// Forgets processes no longer instrumented and detaches hooks nobody
    /// uses any more. Returns the hooks detached, as (executable, symbol).
    pub fn sweep(&mut self, instrumented: impl Fn(u32) -> bool) -> Vec<(String, &'static str)> {
        self.hooks.sweep(instrumented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_names_only_read_write_and_the_http_client_connection() {
        for (symbol, function) in [
            ("crypto/tls.(*Conn).Read", HookedFunction::ConnRead),
            ("crypto/tls.(*Conn).Write", HookedFunction::ConnWrite),
            (
                "net/http.(*persistConn).roundTrip",
                HookedFunction::PersistConnRoundTrip,
            ),
            (
                "net/http.(*persistConn).writeLoop",
                HookedFunction::PersistConnWriteLoop,
            ),
            (
                "net/http.(*persistConn).readLoop",
                HookedFunction::PersistConnReadLoop,
            ),
        ] {
            assert_eq!(allowed_function(symbol), Ok(function), "{symbol}");
        }
        for refused in [
            "crypto/tls.(*Conn).Close",
            "crypto/tls.(*Conn).Handshake",
            "net/http.(*persistConn).close",
            "net/http.(*Transport).roundTrip",
            "main.main",
            "SSL_read",
            "",
        ] {
            assert!(
                matches!(
                    allowed_function(refused),
                    Err(GoAttachError::Attach(AttachError::Invalid(
                        "AttachGoTls.symbol",
                        _
                    )))
                ),
                "{refused}"
            );
        }
    }

    fn function(stack_check: Option<u64>) -> GoFunction {
        GoFunction {
            entry_addr: 0x40_0100,
            end_addr: 0x40_0200,
            entry_file_offset: 0x100,
            end_file_offset: 0x200,
            return_file_offsets: vec![0x140, 0x180],
            jump_out_file_offsets: vec![],
            stack_check_file_offset: stack_check,
            direct_calls: vec![],
        }
    }

    #[test]
    fn entries_go_on_the_stack_check_and_reads_on_their_copy() {
        assert_eq!(
            probe_points(
                HookedFunction::ConnRead,
                &function(Some(0x104)),
                Some(0x160)
            ),
            (
                vec![0x104, 0x160],
                vec![
                    KIND_READ | HOOK_ENTRY | HOOK_AT_STACK_CHECK,
                    KIND_READ | HOOK_COPY
                ]
            )
        );
        assert_eq!(
            probe_points(HookedFunction::ConnWrite, &function(Some(0x109)), None),
            (
                vec![0x109],
                vec![KIND_WRITE | HOOK_ENTRY | HOOK_AT_STACK_CHECK]
            )
        );
    }

    #[test]
    fn without_a_copy_call_reads_get_their_returns() {
        assert_eq!(
            probe_points(HookedFunction::ConnRead, &function(Some(0x104)), None),
            (
                vec![0x104, 0x140, 0x180],
                vec![
                    KIND_READ | HOOK_ENTRY | HOOK_AT_STACK_CHECK,
                    KIND_READ | HOOK_RETURN,
                    KIND_READ | HOOK_RETURN
                ]
            )
        );
    }

    #[test]
    fn without_a_stack_check_the_entry_and_every_return_are_hooked() {
        assert_eq!(
            probe_points(HookedFunction::ConnWrite, &function(None), None),
            (
                vec![0x100, 0x140, 0x180],
                vec![
                    KIND_WRITE | HOOK_ENTRY,
                    KIND_WRITE | HOOK_RETURN,
                    KIND_WRITE | HOOK_RETURN
                ]
            )
        );
        assert_eq!(
            probe_points(HookedFunction::ConnRead, &function(None), None),
            (
                vec![0x100, 0x140, 0x180],
                vec![
                    KIND_READ | HOOK_ENTRY,
                    KIND_READ | HOOK_RETURN,
                    KIND_READ | HOOK_RETURN
                ]
            )
        );
    }

    #[test]
    fn the_client_connection_s_loops_are_forgotten_at_each_return_and_calls_are_seen_at_entry() {
        assert_eq!(
            probe_points(
                HookedFunction::PersistConnWriteLoop,
                &function(Some(0x104)),
                None
            ),
            (
                vec![0x104, 0x140, 0x180],
                vec![
                    HTTP_WRITE_LOOP | HOOK_ENTRY | HOOK_AT_STACK_CHECK,
                    HTTP_WRITE_LOOP | HOOK_RETURN,
                    HTTP_WRITE_LOOP | HOOK_RETURN
                ]
            )
        );
        assert_eq!(
            probe_points(HookedFunction::PersistConnReadLoop, &function(None), None),
            (
                vec![0x100, 0x140, 0x180],
                vec![
                    HTTP_READ_LOOP | HOOK_ENTRY,
                    HTTP_READ_LOOP | HOOK_RETURN,
                    HTTP_READ_LOOP | HOOK_RETURN
                ]
            )
        );
        assert_eq!(
            probe_points(
                HookedFunction::PersistConnRoundTrip,
                &function(Some(0x104)),
                None
            ),
            (
                vec![0x104],
                vec![HTTP_ROUND_TRIP | HOOK_ENTRY | HOOK_AT_STACK_CHECK]
            )
        );
    }

    #[test]
    fn the_cookies_match_the_bpf_sources() {
        let events = include_str!("../../bpf-programs/include/zerotrace_events.h");
        let hooks = include_str!("../../bpf-programs/go_tls/go_tls_hooks.h");
        for (source, line) in [
            (events, format!("ZT_TLS_READ = {KIND_READ},")),
            (events, format!("ZT_TLS_WRITE = {KIND_WRITE},")),
            (hooks, format!("ZT_GO_HOOK_ENTRY = {HOOK_ENTRY},")),
            (hooks, format!("ZT_GO_HOOK_RETURN = {HOOK_RETURN},")),
            (
                hooks,
                format!("ZT_GO_HOOK_AT_STACK_CHECK = {HOOK_AT_STACK_CHECK},"),
            ),
            (hooks, format!("ZT_GO_HOOK_COPY = {HOOK_COPY},")),
            (hooks, format!("ZT_GO_HTTP_ROUND_TRIP = {HTTP_ROUND_TRIP},")),
            (hooks, format!("ZT_GO_HTTP_WRITE_LOOP = {HTTP_WRITE_LOOP},")),
            (hooks, format!("ZT_GO_HTTP_READ_LOOP = {HTTP_READ_LOOP},")),
        ] {
            assert!(
                source.lines().any(|l| l.trim().starts_with(&line)),
                "{line}"
            );
        }
    }

    #[test]
    fn a_path_that_is_not_the_pids_executable_is_refused() {
        let refused = open_executable(std::process::id(), "/usr/bin/true");
        assert!(
            matches!(
                refused,
                Err(GoAttachError::Attach(AttachError::Invalid(
                    "AttachGoTls.exe_path",
                    _
                )))
            ),
            "{refused:?}"
        );
        let own = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        assert!(open_executable(std::process::id(), &own).is_ok());
    }
}
