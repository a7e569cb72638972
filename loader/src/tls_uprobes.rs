//! TLS library hooks: uprobes on SSL_read/SSL_write (and their `_ex`
//! variants) in the library files instrumented processes map. The worker asks
//! (`AttachUprobe`); everything it names is checked here against what the
//! kernel says, never trusted: the symbol must be on the allow-list, the pid
//! instrumented, and the library one of the files that pid maps. The file is
//! reached through the process's own root (/proc/PID/root), so a library in a
//! container is the container's file.
//!
//! One entry and one return uprobe_multi link per (library file, symbol),
//! attached for every process (pid -1): the BPF programs drop calls of
//! processes outside the pid filter. A hook is kept while some process that
//! asked for it is still instrumented, and detached with the last one.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;

use libbpf_rs::{Link, Object, UprobeMultiOpts};
use zerotrace_shared::ipc::{MAX_LIBRARY_PATH_BYTES, RUNTIME_LIBRARY_PREFIXES, TLS_SYMBOLS};

use crate::shared_hooks::SharedHooks;

/// File names of the TLS libraries the worker is told about.
const TLS_LIBRARY_PREFIXES: &[&str] = &["libssl.so"];

/// Why an AttachUprobe request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// A field no correct worker sends: (field, reason).
    Invalid(&'static str, String),
    /// Valid, but the kernel or the file said no.
    Failed(String),
    /// The file has no such symbol.
    Absent,
}

/// The entry program of each hooked function (the return program is shared).
fn entry_program(symbol: &str) -> &'static str {
    match symbol {
        "SSL_write" => "zt_tls_enter_write",
        "SSL_read_ex" => "zt_tls_enter_read_ex",
        "SSL_write_ex" => "zt_tls_enter_write_ex",
        _ => "zt_tls_enter_read",
    }
}

/// The return program, shared by every hooked function.
const EXIT_PROGRAM: &str = "zt_tls_exit";

/// The file paths a process maps (the sixth field of /proc/PID/maps), each once.
pub fn mapped_files(pid: u32) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    Ok(files_in_maps(&text))
}

fn files_in_maps(text: &str) -> Vec<String> {
    let mut files = BTreeSet::new();
    for line in text.lines() {
        // address perms offset dev inode pathname (the path may contain spaces).
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = rest.find(' ').map_or("", |i| &rest[i..]);
        }
        let path = rest.trim();
        if path.starts_with('/') && !path.ends_with(" (deleted)") {
            files.insert(path.to_owned());
        }
    }
    files.into_iter().collect()
}

/// The TLS libraries and the language runtime libraries among the files a
/// process maps (one read of its maps); both empty when they are unreadable.
pub fn mapped_libraries(pid: u32) -> (Vec<String>, Vec<String>) {
    libraries_among(&mapped_files(pid).unwrap_or_default())
}

fn libraries_among(files: &[String]) -> (Vec<String>, Vec<String>) {
    let named = |prefixes: &[&str]| -> Vec<String> {
        files
            .iter()
            .filter(|path| {
                let name = path.rsplit('/').next().unwrap_or("");
                prefixes.iter().any(|p| name.starts_with(p))
            })
            .cloned()
            .collect()
    };
    (named(TLS_LIBRARY_PREFIXES), named(RUNTIME_LIBRARY_PREFIXES))
}

/// The hooks in place (entry and return links), keyed by the library
/// file's identity and the symbol.
#[derive(Default)]
pub struct UprobeRegistry {
    hooks: SharedHooks<(Link, Link)>,
}

impl UprobeRegistry {
    pub fn attached(&self) -> usize {
        self.hooks.len()
    }

    /// Checks and serves one request. `instrumented` tells whether a pid is in
    /// the kernel's pid filter. Returns whether a new hook was attached.
    pub fn attach(
        &mut self,
        tracer: &Object,
        instrumented: impl Fn(u32) -> bool,
        pid: u32,
        library: &str,
        symbol: &str,
    ) -> Result<bool, AttachError> {
        let symbol: &'static str = TLS_SYMBOLS
            .iter()
            .copied()
            .find(|s| *s == symbol)
            .ok_or_else(|| {
                AttachError::Invalid(
                    "AttachUprobe.symbol",
                    format!("{symbol:?} is not on the allow-list {TLS_SYMBOLS:?}"),
                )
            })?;
        if library.len() > MAX_LIBRARY_PATH_BYTES
            || !library.starts_with('/')
            || library.contains('\0')
        {
            return Err(AttachError::Invalid(
                "AttachUprobe.library",
                "not an absolute path".into(),
            ));
        }
        if !instrumented(pid) {
            return Err(AttachError::Invalid(
                "AttachUprobe.pid",
                format!("pid {pid} is not instrumented"),
            ));
        }
        let mapped = mapped_files(pid).map_err(AttachError::Failed)?;
        if !mapped.iter().any(|m| m == library) {
            return Err(AttachError::Invalid(
                "AttachUprobe.library",
                format!("{library} is not mapped by pid {pid}"),
            ));
        }
        // The file as the process sees it (its mount namespace).
        let path = format!("/proc/{pid}/root{library}");
        let meta =
            std::fs::metadata(&path).map_err(|e| AttachError::Failed(format!("{path}: {e}")))?;
        let key = (meta.dev(), meta.ino(), symbol);
        if self.hooks.join(&key, pid) {
            return Ok(false);
        }
        let attach = |program: &str, retprobe: bool| -> Result<Link, AttachError> {
            let prog = tracer
                .progs_mut()
                .find(|p| p.name() == program)
                .ok_or_else(|| AttachError::Failed(format!("program {program} missing")))?;
            let opts = UprobeMultiOpts {
                retprobe,
                ..Default::default()
            };
            // By name through the pattern: libbpf's symbol-list lookup does
            // not find versioned symbols (SSL_read@@OPENSSL_3.0.0). A name
            // from the allow-list has no glob characters.
            prog.attach_uprobe_multi_with_opts(-1, &path, symbol, opts)
                .map_err(|e| match e.kind() {
                    // libbpf's symbol lookup found no such function in the file.
                    libbpf_rs::ErrorKind::NotFound => AttachError::Absent,
                    _ => AttachError::Failed(format!("{symbol} in {library}: {e:#}")),
                })
        };
        let entry = attach(entry_program(symbol), false)?;
        let exit = attach(EXIT_PROGRAM, true)?;
        self.hooks.insert(key, (entry, exit), library, pid);
        Ok(true)
    }

    /// Forgets processes no longer instrumented and detaches hooks nobody
    /// uses any more. Returns the hooks detached, as (library, symbol).
    pub fn sweep(&mut self, instrumented: impl Fn(u32) -> bool) -> Vec<(String, &'static str)> {
        self.hooks.sweep(instrumented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_give_each_file_once() {
        let maps = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 08:01 1234 /usr/bin/python3.11
7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0
7f1c2b000000-7f1c2b02a000 r--p 00000000 08:01 777 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2b02a000-7f1c2b0a0000 r-xp 0002a000 08:01 777 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2c000000-7f1c2c001000 r--p 00000000 08:01 99 /opt/my app/lib with space.so
7f1c2d000000-7f1c2d001000 r--p 00000000 08:01 98 /tmp/gone.so (deleted)
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            files_in_maps(maps),
            vec![
                "/opt/my app/lib with space.so".to_owned(),
                "/usr/bin/python3.11".to_owned(),
                "/usr/lib/x86_64-linux-gnu/libssl.so.3".to_owned(),
            ]
        );
    }

    #[test]
    fn tls_and_runtime_libraries_are_told_apart_by_file_name() {
        let files: Vec<String> = [
            "/usr/bin/java",
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
            "/usr/lib/x86_64-linux-gnu/libsslx.so",
            "/opt/libjvm.so.d/other.so",
        ]
        .map(str::to_owned)
        .to_vec();
        let (tls, runtimes) = libraries_among(&files);
        assert_eq!(tls, ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]);
        assert_eq!(
            runtimes,
            [
                "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
                "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
            ]
        );
    }

    #[test]
    fn every_allowed_symbol_has_its_own_entry_program() {
        let programs: BTreeSet<&str> = TLS_SYMBOLS.iter().map(|s| entry_program(s)).collect();
        assert_eq!(programs.len(), TLS_SYMBOLS.len());
    }

    #[test]
    fn this_process_maps_its_own_executable() {
        let exe = std::env::current_exe().unwrap_or_default();
        let files = mapped_files(std::process::id()).unwrap_or_default();
        assert!(
            files.iter().any(|f| std::path::Path::new(f) == exe),
            "{files:?}"
        );
    }
}
