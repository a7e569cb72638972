//! TLS plaintext: when a process is instrumented, the worker asks the loader
//! to hook the read/write functions of the TLS library it maps (libssl), or
//! of its executable when that links OpenSSL/BoringSSL statically (Node.js),
//! or Go's `crypto/tls` when the executable is a Go program (the loader
//! reads the executable and says whether it is).
//! The loader checks every request against /proc and its allow-list; the
//! worker only decides what to ask for and remembers what cannot work.

use std::collections::{HashMap, HashSet};

use zerotrace_shared::ipc::{
    ProcessDescription, GO_HTTP_CLIENT_SYMBOLS, GO_TLS_SYMBOLS, TLS_SYMBOLS,
};

use crate::loader_client::{GoTlsAnswer, LoaderClient};
use crate::process_state::alive;

/// Executables whose static TLS symbols were looked for and not found.
const MAX_REMEMBERED_EXES: usize = 4096;

/// A process running a Go program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoProcess {
    pub pid: u32,
    /// Go >= 1.17 (register ABI): the kernel can name its goroutines.
    pub register_abi: bool,
}

#[derive(Default)]
pub struct TlsHooks {
    exes_without_tls: HashSet<String>,
    /// Executables the loader found not Go, too old, or without `crypto/tls`.
    exes_without_go_tls: HashSet<String>,
    /// Executables the loader found to be Go programs (hooked or not), and
    /// whether they pass arguments in registers (Go >= 1.17: R14 holds the
    /// current goroutine).
    go_exes: HashMap<String, bool>,
    /// Go processes found since the last `take_go_processes`: goroutines
    /// share threads, so trace nesting must not tell requests by thread.
    go_processes: Vec<GoProcess>,
    /// (library, symbol) pairs already reported as failing, so each is logged once.
    reported_failures: HashSet<(String, &'static str)>,
    /// Processes whose TLS calls are hooked.
    pub hooked_processes: u64,
    /// `net/http` client functions hooked, in all processes.
    pub go_client_hooks: u64,
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
            if let Some(&register_abi) = self.go_exes.get(exe.as_str()) {
                self.go_processes.push(GoProcess { pid, register_abi });
            }
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
                    Err(e) => {
                        if self.failed(pid, library, symbol, &e) {
                            return hooked;
                        }
                    }
                }
            }
            if functions > 0 {
                hooked.push(library.clone());
            }
        }
        if !hooked.is_empty() {
            self.hooked_processes += 1;
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
                self.failed(pid, exe, first, &e);
                return false;
            }
        }
        for symbol in symbols {
            if let Err(e) = loader.attach_uprobe(pid, exe, symbol) {
                if self.failed(pid, exe, symbol, &e) {
                    break;
                }
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
                Ok(GoTlsAnswer::Attached { .. }) => {
                    functions += 1;
                    self.note_go(pid, exe, true);
                }
                // Absent is said only of a Go with the register ABI.
                Ok(GoTlsAnswer::Absent) => self.note_go(pid, exe, true),
                Ok(GoTlsAnswer::Unsupported { not_go, reason }) => {
                    if !not_go {
                        // Go before 1.17: R14 is no goroutine.
                        tracing::warn!("TLS of pid {pid} is not captured: {reason}");
                        self.note_go(pid, exe, false);
                    }
                    self.remember_without_go_tls(exe);
                    return false;
                }
                // Not remembered: the process may have gone, or exec'd meanwhile.
                Err(e) => {
                    if self.failed(pid, exe, symbol, &e) {
                        return false;
                    }
                }
            }
        }
        if functions == 0 {
            self.remember_without_go_tls(exe);
        } else {
            self.hook_go_http_client(pid, exe, loader);
        }
        functions > 0
    }

    /// `net/http`'s client connection in a Go program with the register ABI:
    /// the kernel then names the calling goroutine in the events of the
    /// goroutines that write and read a call's connection for it.
    fn hook_go_http_client(&mut self, pid: u32, exe: &str, loader: &LoaderClient) {
        let mut hooked = 0;
        for &symbol in GO_HTTP_CLIENT_SYMBOLS {
            match loader.attach_go_tls(pid, exe, symbol) {
                Ok(GoTlsAnswer::Attached { .. }) => hooked += 1,
                // A program without net/http's client.
                Ok(GoTlsAnswer::Absent | GoTlsAnswer::Unsupported { .. }) => return,
                Err(e) => {
                    if self.failed(pid, exe, symbol, &e) {
                        return;
                    }
                }
            }
        }
        self.go_client_hooks += hooked;
        if hooked == GO_HTTP_CLIENT_SYMBOLS.len() as u64 {
            tracing::info!(
                "net/http client calls of pid {pid} are named by the goroutine that makes them"
            );
        }
    }

    /// `pid` runs the Go program `exe` (said once per process).
    fn note_go(&mut self, pid: u32, exe: &str, register_abi: bool) {
        if self.go_processes.last().map(|p| p.pid) != Some(pid) {
            self.go_processes.push(GoProcess { pid, register_abi });
        }
        if !self.go_exes.contains_key(exe) {
            if self.go_exes.len() >= MAX_REMEMBERED_EXES {
                self.go_exes.clear();
            }
            self.go_exes.insert(exe.to_owned(), register_abi);
        }
    }

    /// The loader found `exe` to be a Go program.
    pub fn is_go_exe(&self, exe: &str) -> bool {
        self.go_exes.contains_key(exe)
    }

    /// Go processes found since the last `take_go_processes`, left there.
    pub fn go_processes(&self) -> &[GoProcess] {
        &self.go_processes
    }

    /// Go processes found since the last call.
    pub fn take_go_processes(&mut self) -> Vec<GoProcess> {
        std::mem::take(&mut self.go_processes)
    }

    fn remember_without_go_tls(&mut self, exe: &str) {
        if self.exes_without_go_tls.len() >= MAX_REMEMBERED_EXES {
            self.exes_without_go_tls.clear();
        }
        self.exes_without_go_tls.insert(exe.to_owned());
    }

    /// A hook request for `pid` failed. When the process is gone (a daemon's
    /// first process exits as soon as it has forked; the loader then refuses
    /// it as not instrumented) that is no failure of the hook: returns true,
    /// and nothing is reported. Else the failure is reported, once per
    /// file and function.
    fn failed(&mut self, pid: u32, library: &str, symbol: &'static str, error: &str) -> bool {
        if !alive(pid) {
            tracing::debug!("pid {pid} is gone: {symbol} in {library} not hooked for it");
            return true;
        }
        self.report(library, symbol, error);
        false
    }

    fn report(&mut self, library: &str, symbol: &'static str, error: &str) {
        if self.reported_failures.len() < MAX_REMEMBERED_EXES
            && self.reported_failures.insert((library.to_owned(), symbol))
        {
            tracing::warn!("cannot hook {symbol} in {library}: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::{Arc, Mutex};

    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use zerotrace_shared::ipc::{self, Reply, Request};

    use super::*;

    /// A stand-in loader on a socketpair: answers each request with
    /// `answer` and records it; stops when the worker's end closes.
    fn stand_in_loader(answer: fn(&Request) -> Reply) -> (LoaderClient, Arc<Mutex<Vec<Request>>>) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap_or_else(|e| panic!("socketpair: {e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            while let Ok(Some(message)) = ipc::recv_message(theirs.as_fd()) {
                let Ok(request) = ipc::decode::<Request>(&message.bytes) else {
                    return;
                };
                let reply = answer(&request);
                log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                let bytes = ipc::encode(&reply).unwrap_or_default();
                if ipc::send_message(theirs.as_fd(), &bytes, &[]).is_err() {
                    return;
                }
            }
        });
        (LoaderClient::new(ours), seen)
    }

    fn go_exe(pid: u32) -> ProcessDescription {
        ProcessDescription {
            pid,
            exe_path: "/srv/app".into(),
            tls_libraries: Vec::new(),
            runtime_libraries: Vec::new(),
            go_executable: false,
        }
    }

    fn go_requests(seen: &Mutex<Vec<Request>>) -> Vec<String> {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|r| match r {
                Request::AttachGoTls { pid, symbol, .. } => Some(format!("{pid} {symbol}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_go_executable_gets_read_write_and_the_http_client_hooked_for_each_process() {
        let (loader, seen) = stand_in_loader(|request| match request {
            Request::AttachGoTls { .. } => Reply::UprobeAttached { new: true },
            _ => Reply::SymbolAbsent,
        });
        let mut hooks = TlsHooks::new();
        assert_eq!(
            hooks.hook(7, &go_exe(7), &loader),
            vec!["/srv/app (Go crypto/tls)".to_owned()]
        );
        hooks.hook(8, &go_exe(8), &loader);
        assert_eq!(
            go_requests(&seen),
            [
                "7 crypto/tls.(*Conn).Read",
                "7 crypto/tls.(*Conn).Write",
                "7 net/http.(*persistConn).roundTrip",
                "7 net/http.(*persistConn).writeLoop",
                "7 net/http.(*persistConn).readLoop",
                "8 crypto/tls.(*Conn).Read",
                "8 crypto/tls.(*Conn).Write",
                "8 net/http.(*persistConn).roundTrip",
                "8 net/http.(*persistConn).writeLoop",
                "8 net/http.(*persistConn).readLoop"
            ]
        );
        assert_eq!(hooks.hooked_processes, 2);
        assert_eq!(hooks.go_client_hooks, 6);
        // Both are Go processes, for trace nesting (each said once).
        let go = |pid| GoProcess {
            pid,
            register_abi: true,
        };
        assert_eq!(hooks.take_go_processes(), [go(7), go(8)]);
        assert!(hooks.take_go_processes().is_empty());
    }

    #[test]
    fn an_old_go_or_a_program_that_is_not_go_is_asked_about_once() {
        for not_go in [true, false] {
            let answer = if not_go {
                |_: &Request| Reply::GoTlsUnsupported {
                    not_go: true,
                    reason: "not Go".into(),
                }
            } else {
                |_: &Request| Reply::GoTlsUnsupported {
                    not_go: false,
                    reason: "Go 1.16".into(),
                }
            };
            let (loader, seen) = stand_in_loader(answer);
            let mut hooks = TlsHooks::new();
            assert!(hooks.hook(7, &go_exe(7), &loader).is_empty());
            assert!(hooks.hook(8, &go_exe(8), &loader).is_empty());
            assert_eq!(go_requests(&seen), ["7 crypto/tls.(*Conn).Read"]);
            assert_eq!(hooks.hooked_processes, 0);
            // An old Go is still Go (its later processes too, without
            // asking), but R14 holds no goroutine there.
            let old = |pid| GoProcess {
                pid,
                register_abi: false,
            };
            let go: &[GoProcess] = if not_go { &[] } else { &[old(7), old(8)] };
            assert_eq!(hooks.take_go_processes(), go);
        }
    }

    #[test]
    fn a_process_with_libssl_is_not_asked_about_go() {
        let (loader, seen) = stand_in_loader(|_| Reply::UprobeAttached { new: true });
        let mut hooks = TlsHooks::new();
        let process = ProcessDescription {
            pid: 7,
            exe_path: "/usr/bin/python3".into(),
            tls_libraries: vec!["/usr/lib/libssl.so.3".into()],
            runtime_libraries: Vec::new(),
            go_executable: false,
        };
        assert_eq!(
            hooks.hook(7, &process, &loader),
            vec!["/usr/lib/libssl.so.3".to_owned()]
        );
        assert!(go_requests(&seen).is_empty());
    }
}
