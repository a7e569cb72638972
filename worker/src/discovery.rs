//! Discovery: which processes the kernel captures. OBI's selectors
//! (`discovery.instrument` / `exclude_instrument`: open ports, executable
//! path, containers only, pids) are evaluated on facts an unprivileged
//! process can gather: listening sockets from the loader's BPF iterator and
//! the kernel's listen events, the executable path from the loader's
//! DescribeProcess, the container id from the world-readable
//! /proc/PID/cgroup, and exec/fork/exit events from the kernel.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use zerotrace_shared::event::{layout, ListeningSocket};
use zerotrace_shared::ipc::ProcessDescription;
use zerotrace_shared::ports::PortSelection;

use crate::capture::bpf_map::BpfMap;
use crate::capture::pid_bits::PidBits;
use crate::clock::monotonic_now_ns;
use crate::config::{container_id_from_cgroup, decide, ProcessFacts, Selector, ServiceExport};
use crate::loader_client::LoaderClient;
use crate::process_language::{self, Language, LanguageClues};
use crate::process_state::{alive, is_kernel_thread, read_comm};
use crate::tls_hooks::TlsHooks;

/// How the kernel's pid filter is changed: directly through the map fd when
/// the kernel allows an unprivileged holder to, else by asking the loader.
pub enum PidFilterWriter {
    Direct(BpfMap),
    ViaLoader,
}

/// Service identity a selector gives the processes it matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceIdentity {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub container_id: Option<String>,
    /// The program's language, once judged (`telemetry.sdk.language`);
    /// a child forked after its parent was instrumented inherits it.
    pub language: Option<Language>,
    /// The selector's `exports` and `sampler`; a child inherits them too.
    pub export: ServiceExport,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentedProcess {
    pub ports: BTreeSet<u16>,
    /// The parent whose TLS hooks serve it, when it never asked for them
    /// itself (forked after the parent was instrumented): should that parent
    /// exit first, this process asks (see [`Discovery::on_exit`]).
    pub hooked_through: Option<u32>,
    pub identity: ServiceIdentity,
}

pub struct Discovery {
    instrument: Vec<Selector>,
    exclude: Vec<Selector>,
    /// The agent itself: never instrumented.
    excluded_pids: Vec<u32>,
    writer: PidFilterWriter,
    /// The kernel's bitmap in front of the filter, kept in step with it.
    bits: Option<PidBits>,
    instrumented: HashMap<u32, InstrumentedProcess>,
    /// Listening ports of every process seen listening (pruned when it is gone).
    listening: HashMap<u32, BTreeSet<u16>>,
    /// Executable paths and TLS libraries learnt from the loader (None: unreadable).
    descriptions: HashMap<u32, Option<ProcessDescription>>,
    /// Hooks the TLS libraries of instrumented processes (None: TLS capture off).
    tls: Option<TlsHooks>,
    /// Some selector needs the executable path (else the loader is never asked).
    needs_exe_path: bool,
    /// Some selector names languages: a process's language is judged before
    /// it is decided about.
    needs_language: bool,
    /// Some instrument entry can match a process that does not listen
    /// (exe_path, target_pids): scans then look at every process, and execs matter.
    matches_non_listeners: bool,
    /// Identities of processes instrumented since the last `take_new_identities`.
    new_identities: Vec<(u32, ServiceIdentity)>,
    /// The kernel captures every program from its exec until we decide
    /// (`arm_exec_capture`); what a process not instrumented sent is dropped.
    exec_capture: bool,
    pub pending_stats: PendingCaptureStats,
    /// Processes instrumented at an exec whose TLS library is looked for again.
    tls_looks: Vec<TlsLook>,
    /// The ports a selector names whose keys are in the pid filter: the
    /// kernel puts a process that listens on one in the filter at once.
    listen_capture: BTreeSet<u16>,
    /// Processes captured from such a listen and then not selected: when
    /// (monotonic ns) they were taken out. Their records up to then are dropped.
    rejected_at: HashMap<u32, u64>,
    /// Whether the kernel lists a thread's children in /proc (looked at once).
    kernel_lists_children: Option<bool>,
    /// Processes whose TLS hooks serve a child that never asked for its own
    /// (`InstrumentedProcess::hooked_through`): only their exits look for
    /// such children, not every exit (a fork-per-connection server's).
    hooks_serve_children: HashSet<u32>,
}

/// Selectors naming more ports than this (wide ranges) are not given keys in
/// the pid filter (16,384 entries, shared with the processes).
const MAX_LISTEN_CAPTURE_PORTS: usize = 1024;
/// Processes instrumented at most as the descendants of one that was just
/// instrumented (a selector naming a supervisor would otherwise take the
/// whole tree under it at once).
const MAX_DESCENDANTS: usize = 1024;
/// The host's init: the descendants of everything.
const INIT_PID: u32 = 1;
/// How long a process taken out after its listen is remembered: its records
/// are all read by then (the ring is drained in order, every 25 ms).
const REJECTED_KEPT_NS: u64 = 10_000_000_000;

/// A program's libraries are mapped by the dynamic loader as it starts, after
/// its exec: a process instrumented at its exec is asked for its TLS library
/// again after these delays, until one is found and hooked.
const TLS_LOOKS_AFTER_EXEC: [Duration; 6] = [
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(10),
];

/// The next look for the TLS library of a process instrumented at its exec.
struct TlsLook {
    due: Instant,
    pid: u32,
    /// Index in TLS_LOOKS_AFTER_EXEC of this look.
    attempt: usize,
}

/// What capturing processes from their exec or listen, before discovery
/// decides, cost and missed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PendingCaptureStats {
    /// Processes captured from their exec or listen that no selector wanted
    /// (taken out of the filter again).
    pub rejected: u64,
    /// Of those, programs gone before their executable could be read, and
    /// without a path they were exec'd by (their bytes are dropped).
    pub unreadable: u64,
    /// Programs gone before their executable could be read, judged by the
    /// path they were exec'd by.
    pub judged_by_exec_path: u64,
    /// Records of processes not instrumented, dropped.
    pub records_dropped: u64,
}

impl Discovery {
    pub fn new(
        instrument: Vec<Selector>,
        exclude: Vec<Selector>,
        excluded_pids: Vec<u32>,
        writer: PidFilterWriter,
    ) -> Self {
        let needs_exe_path = instrument
            .iter()
            .chain(&exclude)
            .any(|s| s.exe_path.is_some());
        let needs_language = instrument
            .iter()
            .chain(&exclude)
            .any(|s| s.languages.is_some());
        let matches_non_listeners = instrument.iter().any(|s| {
            s.open_ports.is_none()
                && (s.exe_path.is_some() || !s.target_pids.is_empty() || s.languages.is_some())
        });
        Self {
            matches_non_listeners,
            instrument,
            exclude,
            excluded_pids,
            writer,
            bits: None,
            instrumented: HashMap::new(),
            listening: HashMap::new(),
            descriptions: HashMap::new(),
            tls: None,
            needs_exe_path,
            needs_language,
            new_identities: Vec::new(),
            exec_capture: false,
            pending_stats: PendingCaptureStats::default(),
            tls_looks: Vec::new(),
            listen_capture: BTreeSet::new(),
            rejected_at: HashMap::new(),
            kernel_lists_children: None,
            hooks_serve_children: HashSet::new(),
        }
    }

    /// Writes a key in the pid filter for each port the instrument entries
    /// name (when they name at most MAX_LISTEN_CAPTURE_PORTS in all): the
    /// kernel then puts a process that listens on one in the filter before
    /// the worker has read its listen. Returns how many ports.
    pub fn arm_listen_capture(&mut self) -> Result<usize, String> {
        let PidFilterWriter::Direct(map) = &self.writer else {
            return Ok(0);
        };
        let selections: Vec<&PortSelection> = self
            .instrument
            .iter()
            .filter_map(|s| s.open_ports.as_ref())
            .collect();
        if selections.iter().map(|p| p.len()).sum::<usize>() > MAX_LISTEN_CAPTURE_PORTS {
            return Ok(0);
        }
        let mut ports = BTreeSet::new();
        for port in selections.iter().flat_map(|p| p.ports()) {
            if ports.insert(port) {
                let key = layout::PID_FILTER_PORT_KEYS as u32 | u32::from(port);
                map.update(&key.to_ne_bytes(), &1u32.to_ne_bytes())
                    .map_err(|e| format!("writing port {port}'s key in the pid filter: {e}"))?;
            }
        }
        let count = ports.len();
        self.listen_capture = ports;
        Ok(count)
    }

    /// Forgets processes taken out after a listen long enough ago.
    pub fn forget_old_rejections(&mut self, now_ns: u64) {
        if !self.rejected_at.is_empty() {
            self.rejected_at
                .retain(|_, at| now_ns.saturating_sub(*at) < REJECTED_KEPT_NS);
        }
    }

    /// Looks again for the TLS library of processes instrumented at their
    /// exec whose look is due (TLS_LOOKS_AFTER_EXEC).
    pub fn look_again_for_tls(&mut self, loader: &LoaderClient) {
        if self.tls_looks.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, later): (Vec<TlsLook>, Vec<TlsLook>) = std::mem::take(&mut self.tls_looks)
            .into_iter()
            .partition(|look| look.due <= now);
        self.tls_looks = later;
        for look in due {
            if !self.instrumented.contains_key(&look.pid) || !alive(look.pid) {
                continue;
            }
            self.descriptions.remove(&look.pid);
            if !self.hook_tls(look.pid, loader) {
                self.schedule_tls_look(look.pid, look.attempt + 1);
            }
        }
    }

    fn schedule_tls_look(&mut self, pid: u32, attempt: usize) {
        if let Some(delay) = TLS_LOOKS_AFTER_EXEC.get(attempt) {
            self.tls_looks.push(TlsLook {
                due: Instant::now() + *delay,
                pid,
                attempt,
            });
        }
    }

    /// Some instrument entry names an executable and no port: a program it
    /// names may be done (a curl, a cron job) before its exec event reaches
    /// us, so the kernel is asked to capture every program from its exec
    /// (ZT_FILTER_EXEC_PENDING in the pid filter's settings key) until
    /// `on_exec` decides. Needs the filter written directly (kernels from
    /// 6.5); otherwise, and without such a selector, the setting is cleared.
    /// Returns whether it is on.
    pub fn arm_exec_capture(&mut self) -> Result<bool, String> {
        let wanted = self
            .instrument
            .iter()
            .any(|s| s.open_ports.is_none() && s.exe_path.is_some());
        let PidFilterWriter::Direct(map) = &self.writer else {
            return if wanted {
                Err("this kernel does not let the worker write the pid filter".into())
            } else {
                Ok(false)
            };
        };
        let key = (layout::PID_FILTER_SETTINGS as u32).to_ne_bytes();
        if !wanted {
            return match map.delete(&key) {
                Ok(()) => Ok(false),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
                Err(e) => Err(format!("clearing the pid filter's settings: {e}")),
            };
        }
        map.update(&key, &(layout::FILTER_EXEC_PENDING as u32).to_ne_bytes())
            .map_err(|e| format!("setting the pid filter's settings: {e}"))?;
        self.exec_capture = true;
        // A worker restarted while the setting was on was itself put in the filter.
        for pid in self.excluded_pids.clone() {
            self.forget_if_pending(pid);
        }
        Ok(true)
    }

    /// Whether a record `pid` sent at `ts_ns` is dropped: the kernel captures
    /// programs from their exec and this one is not (or no longer)
    /// instrumented, or it was captured from a listen and then not selected.
    pub fn drops_records_of(&self, pid: u32, ts_ns: u64) -> bool {
        (self.exec_capture && !self.instrumented.contains_key(&pid))
            || (!self.rejected_at.is_empty()
                && self.rejected_at.get(&pid).is_some_and(|at| ts_ns <= *at))
    }

    /// Takes `pid` out of the filter if the kernel put it there pending (at
    /// its exec or listen); returns whether it did.
    fn forget_if_pending(&mut self, pid: u32) -> bool {
        let PidFilterWriter::Direct(map) = &self.writer else {
            return false;
        };
        let flags = match map.lookup(&pid.to_ne_bytes()) {
            Ok(Some(value)) => value
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .unwrap_or(0),
            _ => return false,
        };
        if flags & layout::PID_EXEC_PENDING as u32 == 0 {
            return false;
        }
        let _ = map.delete(&pid.to_ne_bytes());
        self.clear_bit(pid);
        true
    }

    fn clear_go_bit(&self, pid: u32) {
        if let Some(bits) = &self.bits {
            bits.clear_go(pid);
        }
    }

    fn clear_bit(&self, pid: u32) {
        if let Some(bits) = &self.bits {
            bits.clear(pid);
        }
    }

    /// Keeps the kernel's pid bitmap in step with the filter.
    pub fn with_pid_bits(mut self, bits: PidBits) -> Self {
        self.bits = Some(bits);
        self
    }

    /// Sets the bit of every instrumented process whose bit is clear: a bit
    /// the kernel's fork program and this process changed at the same
    /// instant may be lost (see capture/pid_bits.rs); returns how many.
    pub fn repair_pid_bits(&self) -> usize {
        let Some(bits) = &self.bits else {
            return 0;
        };
        let mut repaired = 0;
        for &pid in self.instrumented.keys() {
            if !bits.is_set(pid) {
                bits.set(pid);
                repaired += 1;
            }
        }
        repaired
    }

    /// Also hook the TLS libraries of the processes instrumented from now on.
    pub fn with_tls_hooks(mut self) -> Self {
        self.tls = Some(TlsHooks::new());
        self
    }

    pub fn instrumented(&self) -> &HashMap<u32, InstrumentedProcess> {
        &self.instrumented
    }

    /// Processes whose resource should carry a selector's name/namespace or a container id.
    pub fn take_new_identities(&mut self) -> Vec<(u32, ServiceIdentity)> {
        std::mem::take(&mut self.new_identities)
    }

    /// Judges the language of an instrumented process (see
    /// [`Self::language_of`]); a new or changed one goes out with its
    /// identity (`take_new_identities`).
    fn judge_language(&mut self, pid: u32, loader: &LoaderClient) {
        let language = self.language_of(pid, loader);
        if let Some(process) = self.instrumented.get_mut(&pid) {
            if process.identity.language != Some(language) {
                process.identity.language = Some(language);
                self.new_identities.push((pid, process.identity.clone()));
            }
        }
    }

    /// A process's language, from its description (asked for here if it was
    /// not: the executable, whether it is Go, the runtime libraries it
    /// maps), the Go TLS hooks' findings and its argv[0].
    fn language_of(&mut self, pid: u32, loader: &LoaderClient) -> Language {
        let argv0 = process_language::read_argv0(pid);
        let description = self.describe(pid, loader).cloned();
        let go = description.as_ref().is_some_and(|d| {
            d.go_executable
                || self
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.is_go_exe(&d.exe_path))
        });
        process_language::judge(LanguageClues {
            go,
            runtime_libraries: description
                .as_ref()
                .map_or(&[], |d| d.runtime_libraries.as_slice()),
            exe_path: description.as_ref().map(|d| d.exe_path.as_str()),
            argv0: argv0.as_deref(),
        })
    }

    /// Entries kept for processes that are not instrumented (bounded by pruning).
    pub fn tracked_facts(&self) -> usize {
        self.listening.len() + self.descriptions.len()
    }

    fn add_to_filter(&self, pid: u32, loader: &LoaderClient) -> Result<(), String> {
        match &self.writer {
            PidFilterWriter::Direct(map) => map
                .update(&pid.to_ne_bytes(), &1u32.to_ne_bytes())
                .map_err(|e| format!("pid filter update: {e}")),
            PidFilterWriter::ViaLoader => loader.set_targets(vec![pid], Vec::new()),
        }?;
        // After the filter: a set bit only ever sends the kernel to it.
        if let Some(bits) = &self.bits {
            bits.set(pid);
        }
        Ok(())
    }

    fn remove_from_filter(&self, pid: u32, loader: &LoaderClient) {
        let _ = match &self.writer {
            PidFilterWriter::Direct(map) => {
                map.delete(&pid.to_ne_bytes()).map_err(|e| e.to_string())
            }
            PidFilterWriter::ViaLoader => loader.set_targets(Vec::new(), vec![pid]),
        };
        self.clear_bit(pid);
    }

    fn describe(&mut self, pid: u32, loader: &LoaderClient) -> Option<&ProcessDescription> {
        self.descriptions
            .entry(pid)
            .or_insert_with(|| loader.describe_process(pid).ok())
            .as_ref()
    }

    fn facts(&mut self, pid: u32, comm: &str, loader: &LoaderClient) -> ProcessFacts {
        let exe_path = if self.needs_exe_path {
            self.describe(pid, loader).map(|d| d.exe_path.clone())
        } else {
            None
        };
        let container_id = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| container_id_from_cgroup(&text));
        let language = self
            .needs_language
            .then(|| self.language_of(pid, loader).as_str());
        ProcessFacts {
            pid,
            exe_path,
            comm: if comm.is_empty() {
                read_comm(pid)
            } else {
                comm.to_owned()
            },
            open_ports: self
                .listening
                .get(&pid)
                .map(|p| p.iter().copied().collect())
                .unwrap_or_default(),
            container_id,
            language,
        }
    }

    /// Decides about one process with what is known of it now.
    fn evaluate(&mut self, pid: u32, comm: &str, loader: &LoaderClient) {
        if self.excluded_pids.contains(&pid) {
            return;
        }
        if let Some(process) = self.instrumented.get_mut(&pid) {
            if let Some(ports) = self.listening.get(&pid) {
                process.ports.extend(ports);
            }
            return;
        }
        let facts = self.facts(pid, comm, loader);
        let Some(selector) = decide(&self.instrument, &self.exclude, &facts) else {
            return;
        };
        let identity = ServiceIdentity {
            name: selector.name.clone(),
            namespace: selector.namespace.clone(),
            container_id: facts.container_id.clone(),
            language: None,
            export: selector.export,
        };
        let origin = selector.origin.clone();
        let added = self.add_to_filter(pid, loader);
        let gone = added.is_ok() && !alive(pid);
        if gone {
            // Gone before we got to it: its exit already passed the kernel's
            // cleanup, so take it out again ourselves.
            self.remove_from_filter(pid, loader);
        }
        match added {
            // Captured from its exec (exec_capture), what it sent before it
            // was gone is still to be read: it stays instrumented until its
            // exit event, which follows its records.
            Ok(()) if gone && !self.exec_capture => {}
            Ok(()) => {
                tracing::info!(
                    "instrumenting pid {pid} ({}) matched by {origin}{}",
                    facts.comm,
                    if facts.open_ports.is_empty() {
                        String::new()
                    } else {
                        format!(", listening on {:?}", facts.open_ports)
                    }
                );
                self.new_identities.push((pid, identity.clone()));
                self.instrumented.insert(
                    pid,
                    InstrumentedProcess {
                        ports: facts.open_ports.into_iter().collect(),
                        hooked_through: None,
                        identity,
                    },
                );
                self.hook_tls(pid, loader);
                self.instrument_descendants(pid, loader);
            }
            Err(e) => tracing::warn!("cannot instrument pid {pid}: {e}"),
        }
    }

    /// Instruments the processes `pid` forked before it was instrumented,
    /// and theirs, as the kernel's fork program does for the ones it forks
    /// after: with its ports (their connections are its server's: a Node.js
    /// cluster's primary listens and hands each connection to a worker it
    /// forked before it listened) and its identity. A process an exclusion
    /// names is left out, and what it forked with it.
    ///
    /// Not below init (pid 1), which holds the listening sockets of systemd's
    /// socket units: every service of the host descends from it.
    fn instrument_descendants(&mut self, pid: u32, loader: &LoaderClient) {
        if pid == INIT_PID {
            return;
        }
        let Some(root) = self.instrumented.get(&pid) else {
            return;
        };
        let (ports, identity) = (root.ports.clone(), root.identity.clone());
        let mut pending = self.children_of(pid);
        let mut taken = 0;
        while let Some(child) = pending.pop() {
            if self.excluded_pids.contains(&child) || self.instrumented.contains_key(&child) {
                continue;
            }
            // An exclusion wins here as it does for any process (not below it either).
            let facts = self.facts(child, "", loader);
            if self.exclude.iter().any(|s| s.matches(&facts)) {
                continue;
            }
            if taken == MAX_DESCENDANTS {
                tracing::warn!(
                    "pid {pid} has more than {MAX_DESCENDANTS} descendants: the rest stay \
                     uninstrumented (only the ones it forks from now on are)"
                );
                break;
            }
            if let Err(e) = self.add_to_filter(child, loader) {
                tracing::warn!("cannot instrument pid {child}, a child of pid {pid}'s: {e}");
                continue;
            }
            if !alive(child) {
                self.remove_from_filter(child, loader);
                continue;
            }
            taken += 1;
            tracing::info!(
                "instrumenting pid {child} ({}): forked before its instrumented ancestor pid {pid} was instrumented",
                read_comm(child)
            );
            self.new_identities.push((child, identity.clone()));
            self.instrumented.insert(
                child,
                InstrumentedProcess {
                    ports: ports.clone(),
                    // It asks for its hooks itself, below.
                    hooked_through: None,
                    identity: identity.clone(),
                },
            );
            self.hook_tls(child, loader);
            let grandchildren = self.children_of(child);
            pending.extend(grandchildren);
        }
    }

    /// The children of `pid`: each of its threads lists the ones it forked
    /// (/proc/PID/task/TID/children, readable by anyone). Empty when it is
    /// gone, or on a kernel without these files (CONFIG_PROC_CHILDREN off),
    /// which is said once.
    fn children_of(&mut self, pid: u32) -> Vec<u32> {
        let kernel_lists_children = *self.kernel_lists_children.get_or_insert_with(|| {
            let listed = std::path::Path::new("/proc/thread-self/children").exists();
            if !listed {
                tracing::warn!(
                    "this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): \
                     children forked before their parent was instrumented are not instrumented"
                );
            }
            listed
        });
        let Some(tasks) = kernel_lists_children
            .then(|| std::fs::read_dir(format!("/proc/{pid}/task")).ok())
            .flatten()
        else {
            return Vec::new();
        };
        let mut children = Vec::new();
        for task in tasks.flatten() {
            // A thread that ended meanwhile has no file: it forked nothing alive.
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                children.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|child| child.parse::<u32>().ok()),
                );
            }
        }
        children
    }

    /// Asks for the TLS library hooks of a newly instrumented process (or
    /// one that exec'd) and judges its language; returns whether any hook
    /// was attached.
    fn hook_tls(&mut self, pid: u32, loader: &LoaderClient) -> bool {
        let hooked = self.hook_tls_libraries(pid, loader);
        self.judge_language(pid, loader);
        hooked
    }

    fn hook_tls_libraries(&mut self, pid: u32, loader: &LoaderClient) -> bool {
        if self.tls.is_none() {
            return false;
        }
        let Some(description) = self.describe(pid, loader).cloned() else {
            if let Some(tls) = self.tls.as_mut() {
                tls.cannot_see(pid);
            }
            return false;
        };
        // Gone meanwhile (a daemon's first process): the loader would refuse.
        if !alive(pid) {
            return false;
        }
        let Some(tls) = self.tls.as_mut() else {
            return false;
        };
        let hooked = tls.hook(pid, &description, loader);
        // Before the news: from the report on, its events name goroutines.
        self.mark_go_processes();
        if !hooked.is_empty() {
            tracing::info!(
                "TLS plaintext of pid {pid} captured through {}",
                hooked.join(", ")
            );
        }
        !hooked.is_empty()
    }

    /// Sets the Go bit of the Go processes the TLS hooks found (Go >= 1.17,
    /// instrumented): the kernel names their goroutines from now on.
    fn mark_go_processes(&self) {
        let (Some(bits), Some(tls)) = (&self.bits, &self.tls) else {
            return;
        };
        for process in tls.go_processes() {
            // Before Go 1.17 R14 is no goroutine: threads it is.
            if process.register_abi && self.instrumented.contains_key(&process.pid) {
                bits.set_go(process.pid);
            }
        }
    }

    /// Go processes found since the last call (by the Go TLS hooks'
    /// answers, in [`Self::hook_tls`], which marked them in the pid bitmap).
    pub fn take_go_processes(&mut self) -> Vec<u32> {
        self.tls
            .as_mut()
            .map_or_else(Vec::new, TlsHooks::take_go_processes)
            .into_iter()
            .map(|process| process.pid)
            .collect()
    }

    /// A process listens on `port`.
    /// The kernel put a process that listens on a port a selector names in
    /// the filter (arm_listen_capture): one not selected leaves it again.
    pub fn on_listen(&mut self, pid: u32, port: u16, comm: &str, loader: &LoaderClient) {
        self.listening.entry(pid).or_default().insert(port);
        if self.needs_language && !self.instrumented.contains_key(&pid) {
            // Described at its exec, before it mapped its runtime's libraries.
            self.descriptions.remove(&pid);
        }
        self.evaluate(pid, comm, loader);
        if self.listen_capture.contains(&port) {
            self.reject_if_pending(pid);
        }
    }

    /// A process not instrumented that the kernel captured pending (at its
    /// exec or listen) leaves the filter, and its records up to now are
    /// dropped.
    fn reject_if_pending(&mut self, pid: u32) {
        if !self.instrumented.contains_key(&pid) && self.forget_if_pending(pid) {
            self.pending_stats.rejected += 1;
            self.rejected_at.insert(pid, monotonic_now_ns());
        }
    }

    /// A process exec'd: a new executable, perhaps one a selector names.
    /// With programs captured from their exec, one no selector wants now
    /// leaves the filter again (a server that listens later is evaluated
    /// again then).
    /// `exec_path` (the path it was exec'd by, sent for a program the kernel
    /// captures from its exec) stands in for its executable if it is gone
    /// before /proc/PID/exe could be read.
    pub fn on_exec(&mut self, pid: u32, comm: &str, exec_path: &[u8], loader: &LoaderClient) {
        self.descriptions.remove(&pid);
        // The new program's TLS look says again whether it is Go.
        self.clear_go_bit(pid);
        if self.exec_capture && exec_path.starts_with(b"/") && self.describe(pid, loader).is_none()
        {
            self.pending_stats.judged_by_exec_path += 1;
            self.descriptions.insert(
                pid,
                Some(ProcessDescription {
                    pid,
                    exe_path: String::from_utf8_lossy(exec_path).into_owned(),
                    tls_libraries: Vec::new(),
                    runtime_libraries: Vec::new(),
                    go_executable: false,
                }),
            );
        }
        if self.matches_non_listeners {
            self.evaluate(pid, comm, loader);
        }
        // Instrumented now or before (a child that runs another program):
        // the new program maps its libraries only as it starts (the TLS
        // looks judge its language again then).
        if self.instrumented.contains_key(&pid) {
            self.judge_language(pid, loader);
            if self.tls.is_some() {
                self.schedule_tls_look(pid, 0);
            }
        }
        if self.exec_capture && !self.instrumented.contains_key(&pid) {
            self.pending_stats.rejected += 1;
            if matches!(self.descriptions.get(&pid), Some(None)) {
                self.pending_stats.unreadable += 1;
            }
            self.remove_from_filter(pid, loader);
        }
    }

    /// A full scan: every listening socket, and (for exe_path selectors) every
    /// process; forgets processes that are gone.
    pub fn on_scan(&mut self, listeners: &[ListeningSocket], loader: &LoaderClient) {
        self.listening.clear();
        for listener in listeners {
            self.listening
                .entry(listener.pid)
                .or_default()
                .insert(listener.port);
        }
        let mut candidates: BTreeSet<u32> = self.listening.keys().copied().collect();
        if self.matches_non_listeners {
            if let Ok(entries) = std::fs::read_dir("/proc") {
                // Not kernel threads: the loader would be asked for an
                // executable they do not have (and say so, each one).
                candidates.extend(
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                        .filter(|pid| {
                            self.instrumented.contains_key(pid)
                                || self.descriptions.contains_key(pid)
                                || !is_kernel_thread(*pid)
                        }),
                );
            }
        }
        // Pending entries a restarted worker (or an event lost to a full
        // ring) left undecided: a listener's too, when ports have keys.
        let pending_possible = self.exec_capture || !self.listen_capture.is_empty();
        for pid in candidates {
            self.evaluate(pid, "", loader);
            if pending_possible {
                self.reject_if_pending(pid);
            }
        }
        let gone: Vec<u32> = self
            .instrumented
            .keys()
            .copied()
            .filter(|pid| !alive(*pid))
            .collect();
        for pid in gone {
            self.instrumented.remove(&pid);
            self.remove_from_filter(pid, loader);
        }
        self.descriptions.retain(|pid, _| alive(*pid));
        let instrumented = &self.instrumented;
        self.hooks_serve_children
            .retain(|pid| instrumented.contains_key(pid));
    }

    /// The kernel already instrumented the child of an instrumented process.
    /// With programs captured from their exec, the parent may be one only
    /// captured (a child forked before we took the parent out): the child
    /// leaves the filter too.
    pub fn on_fork(&mut self, child: u32, parent: u32, loader: &LoaderClient) {
        if self.exec_capture && !self.instrumented.contains_key(&parent) {
            self.remove_from_filter(child, loader);
            return;
        }
        // Found already among its parent's children, which asked for its hooks.
        if self.instrumented.contains_key(&child) {
            return;
        }
        let (ports, identity) = self
            .instrumented
            .get(&parent)
            .map(|p| (p.ports.clone(), p.identity.clone()))
            .unwrap_or_default();
        self.new_identities.push((child, identity.clone()));
        self.hooks_serve_children.insert(parent);
        self.instrumented.insert(
            child,
            InstrumentedProcess {
                ports,
                hooked_through: Some(parent),
                identity,
            },
        );
    }

    /// Whether `pid` listens on `port`, as far as discovery knows: its own
    /// listening sockets, or the ports of the instrumented parent it was
    /// forked from (nginx workers, PostgreSQL backends).
    pub fn listens_on(&self, pid: u32, port: u16) -> bool {
        self.instrumented
            .get(&pid)
            .is_some_and(|p| p.ports.contains(&port))
            || self.listening.get(&pid).is_some_and(|p| p.contains(&port))
    }

    /// The kernel already removed the exited process from its filter.
    ///
    /// Its instrumented children ask for the TLS hooks now: the loader keeps
    /// a hook while some process that asked for it is instrumented, and a
    /// child forked by the kernel's rule never asked. A daemon's first
    /// process listens, forks and exits (nginx's master is that child): its
    /// children would otherwise lose their TLS plaintext with it.
    pub fn on_exit(&mut self, pid: u32, loader: &LoaderClient) {
        self.clear_go_bit(pid);
        self.instrumented.remove(&pid);
        self.listening.remove(&pid);
        self.descriptions.remove(&pid);
        if !self.hooks_serve_children.remove(&pid) || self.tls.is_none() {
            return;
        }
        let orphans: Vec<u32> = self
            .instrumented
            .iter_mut()
            .filter(|(_, p)| p.hooked_through == Some(pid))
            .map(|(child, p)| {
                p.hooked_through = None;
                *child
            })
            .collect();
        for child in orphans {
            if alive(child) {
                self.hook_tls(child, loader);
            }
        }
    }
}

#[cfg(test)]
mod capture_tests {
    use super::*;

    /// What a process captured before discovery decided sent is dropped
    /// while it is not instrumented: from its exec on when programs are
    /// captured from their exec; up to its rejection when it was captured
    /// from a listen.
    #[test]
    fn records_of_captured_processes_not_selected_are_dropped() {
        let mut discovery = Discovery::new(
            Vec::new(),
            Vec::new(),
            Vec::new(),
            PidFilterWriter::ViaLoader,
        );
        assert!(!discovery.drops_records_of(42, 10));
        discovery.rejected_at.insert(42, 100);
        assert!(discovery.drops_records_of(42, 100));
        assert!(
            !discovery.drops_records_of(42, 101),
            "sent after the rejection"
        );
        assert!(!discovery.drops_records_of(43, 10), "another process");
        discovery.exec_capture = true;
        assert!(discovery.drops_records_of(43, 10));
        assert!(discovery.drops_records_of(42, 101));
    }
}

#[cfg(test)]
mod descendant_tests {
    use super::*;
    use crate::process_state::read_comm;

    /// The children any thread of a process forked, and theirs in turn.
    #[test]
    fn a_process_s_children_are_listed_by_any_of_its_threads() {
        let mut discovery = Discovery::new(
            Vec::new(),
            Vec::new(),
            Vec::new(),
            PidFilterWriter::ViaLoader,
        );
        let spawn = || {
            std::process::Command::new("sh")
                .args(["-c", "sleep 10 & wait"])
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let mut here = spawn();
        // Forked by another thread of this process.
        let mut there = std::thread::spawn(spawn)
            .join()
            .unwrap_or_else(|_| panic!("the spawning thread panicked"));
        let children = discovery.children_of(std::process::id());
        assert!(children.contains(&here.id()), "{children:?}");
        assert!(children.contains(&there.id()), "{children:?}");
        let grandchildren = (0..200).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            Some(discovery.children_of(here.id())).filter(|c| !c.is_empty())
        });
        assert!(
            grandchildren.is_some_and(|g| g.len() == 1 && read_comm(g[0]) == "sleep"),
            "the shell's sleep"
        );
        assert!(discovery.children_of(u32::MAX).is_empty());
        for child in [&mut here, &mut there] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
