//! TLS plaintext: when a process is instrumented, the worker asks the loader
//! to hook the read/write functions of the TLS library it maps (libssl), or
//! of its executable when that links OpenSSL/BoringSSL statically (Node.js),
//! or Go's `crypto/tls` when the executable is a Go program (the loader
//! reads the executable and says whether it is).
//! The loader checks every request against /proc and its allow-list; the
//! worker only decides what to ask for and remembers what cannot work.

use std::collections::HashSet;

use zerotrace_shared::ipc::{ProcessDescription, GO_TLS_SYMBOLS, TLS_SYMBOLS};

use crate::loader_client::{GoTlsAnswer, LoaderClient};

/// Executables whose static TLS symbols were looked for and not found.
const MAX_REMEMBERED_EXES: usize = 4096;

#[derive(Default)]
pub struct TlsHooks {
    exes_without_tls: HashSet<String>,
    /// Executables the loader found not Go, too old, or without `crypto/tls`.
    exes_without_go_tls: HashSet<String>,
    /// (library, symbol) pairs already reported as failing, so each is logged once.
    reported_failures: HashSet<(String, &'static str)>,
    /// Processes whose TLS calls are hooked.
    pub hooked_processes: u64,
    /// Processes whose libraries the loader could not read.
    pub unseen_processes: u64,
}

impl TlsHooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hooks the TLS library of a process the worker just instrumented.
    /// Returns the library files hooked.
    pub fn hook(
        &mut self,
        pid: u32,
        process: &ProcessDescription,
        loader: &LoaderClient,
    ) -> Vec<String> {
        let mut hooked = Vec::new();
        if process.tls_libraries.is_empty() {
            let exe = &process.exe_path;
            if let Some(exe) = self.static_tls_candidate(exe) {
                if self.hook_static(pid, &exe, loader) {
                    hooked.push(exe);
                }
            }
            if hooked.is_empty() && self.go_tls_candidate(exe) && self.hook_go(pid, exe, loader) {
                hooked.push(format!("{exe} (Go crypto/tls)"));
            }
        }
        for library in &process.tls_libraries {
            let mut functions = 0;
            for &symbol in TLS_SYMBOLS {
                match loader.attach_uprobe(pid, library, symbol) {
                    Ok(Some(_)) => functions += 1,
                    // Older libraries lack the _ex functions.
                    Ok(None) => {}
                    Err(e) => self.report(library, symbol, &e),
                }
            }
            if functions > 0 {
                hooked.push(library.clone());
            }
        }
        if !hooked.is_empty() {
            self.hooked_processes += 1;
            tracing::info!(
                "TLS plaintext of pid {pid} captured through {}",
                hooked.join(", ")
            );
        }
        hooked
    }

    /// The loader could not describe an instrumented process (its /proc
    /// files need ptrace access): its TLS traffic stays encrypted. Said once.
    pub fn cannot_see(&mut self, pid: u32) {
        self.unseen_processes += 1;
        if self.unseen_processes == 1 {
            tracing::warn!(
                "cannot see which TLS library pid {pid} uses (the loader has no \
                 ptrace access to it: another user, or more capabilities than the loader); its \
                 TLS traffic is not decoded. Grant the loader CAP_SYS_PTRACE to capture it \
                 (docs/deployment.md). Said once."
            );
        }
    }

    fn static_tls_candidate(&self, exe: &str) -> Option<String> {
        (!exe.is_empty() && exe.starts_with('/') && !self.exes_without_tls.contains(exe))
            .then(|| exe.to_owned())
    }

    /// An executable without libssl may carry the TLS functions itself: the
    /// first one decides (one ELF lookup per executable, remembered).
    fn hook_static(&mut self, pid: u32, exe: &str, loader: &LoaderClient) -> bool {
        let mut symbols = TLS_SYMBOLS.iter().copied();
        let Some(first) = symbols.next() else {
            return false;
        };
        match loader.attach_uprobe(pid, exe, first) {
            Ok(Some(_)) => {}
            Ok(None) => {
                if self.exes_without_tls.len() >= MAX_REMEMBERED_EXES {
                    self.exes_without_tls.clear();
                }
                self.exes_without_tls.insert(exe.to_owned());
                return false;
            }
            // Not remembered: the process may have gone, or its maps were unreadable.
            Err(e) => {
                self.report(exe, first, &e);
                return false;
            }
        }
        for symbol in symbols {
            if let Err(e) = loader.attach_uprobe(pid, exe, symbol) {
                self.report(exe, symbol, &e);
            }
        }
        true
    }

    fn go_tls_candidate(&self, exe: &str) -> bool {
        !exe.is_empty() && exe.starts_with('/') && !self.exes_without_go_tls.contains(exe)
    }

    /// A Go executable: hooks `crypto/tls` Read and Write. The loader tells
    /// whether it is Go at all; what cannot work is remembered per executable
    /// and an old Go is reported once.
    fn hook_go(&mut self, pid: u32, exe: &str, loader: &LoaderClient) -> bool {
        let mut functions = 0;
        for &symbol in GO_TLS_SYMBOLS {
            match loader.attach_go_tls(pid, exe, symbol) {
                Ok(GoTlsAnswer::Attached { .. }) => functions += 1,
                Ok(GoTlsAnswer::Absent) => {}
                Ok(GoTlsAnswer::Unsupported { not_go, reason }) => {
                    if !not_go {
                        tracing::warn!("TLS of pid {pid} is not captured: {reason}");
                    }
                    self.remember_without_go_tls(exe);
                    return false;
                }
                // Not remembered: the process may have gone, or exec'd meanwhile.
                Err(e) => self.report(exe, symbol, &e),
            }
        }
        if functions == 0 {
            self.remember_without_go_tls(exe);
        }
        functions > 0
    }

    fn remember_without_go_tls(&mut self, exe: &str) {
        if self.exes_without_go_tls.len() >= MAX_REMEMBERED_EXES {
            self.exes_without_go_tls.clear();
        }
        self.exes_without_go_tls.insert(exe.to_owned());
    }

    fn report(&mut self, library: &str, symbol: &'static str, error: &str) {
        if self.reported_failures.len() < MAX_REMEMBERED_EXES
            && self.reported_failures.insert((library.to_owned(), symbol))
        {
            tracing::warn!("cannot hook {symbol} in {library}: {error}");
        }
    }
}
