//! The embedded BPF objects: loading, attaching, and the handles the loader
//! keeps for as long as it lives. Dropping `Probes` detaches everything (no
//! pins are ever made, so nothing outlives the loader).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use std::cell::RefCell;

use libbpf_rs::{Iter, Link, MapCore, Object, ObjectBuilder, OpenObject};
use zerotrace_shared::event::{decode_listeners, layout, ListeningSocket};
use zerotrace_shared::ipc::{MapDescriptor, MapRole};

use crate::go_tls_uprobes::{GoAttachError, GoTlsRegistry, GO_TLS_PROGRAM};
use crate::tls_uprobes::{AttachError, UprobeRegistry};

const SYSCALL_TRACER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/syscall_tracer.bpf.o"));
const LISTENER_ITER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/listener_iter.bpf.o"));

/// Bytes of each payload the kernel copies (fixed when the BPF objects were built).
pub const PAYLOAD_MAX: &str = env!("ZEROTRACE_PAYLOAD_MAX");

/// Largest head capture the BPF objects allow (`ZT_HEAD_MAX`).
pub const HEAD_MAX: u32 = 16384;

/// The head capture from `ZEROTRACE_HEAD_CAPTURE` (bytes, up to [`HEAD_MAX`];
/// 0 turns it off), else [`HEAD_MAX`].
pub fn head_capture_from_env() -> Result<u32, String> {
    match std::env::var("ZEROTRACE_HEAD_CAPTURE") {
        Err(_) => Ok(HEAD_MAX),
        Ok(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if n <= HEAD_MAX => Ok(n),
            _ => Err(format!(
                "ZEROTRACE_HEAD_CAPTURE={raw:?}: expected a number of bytes from 0 to {HEAD_MAX}"
            )),
        },
    }
}

/// Bytes waiting in the ring before a data event wakes the worker, unless
/// `--ring-wakeup-bytes` says otherwise. The worker drains what is waiting in
/// one burst, on a CPU the instrumented processes need: a smaller threshold
/// means shorter bursts (their requests wait less behind it) and more
/// wake-ups (docs/benchmarks.md, "The worker's bursts and nginx's tail latency").
pub const DEFAULT_WAKEUP_BYTES: u32 = 64 * 1024;

/// The wake-up threshold for a ring of `ring_bytes`: `asked`, or the default;
/// at most a sixteenth of the ring either way by default, and an asked
/// threshold above half the ring is refused (the ring would fill before it
/// woke anyone).
pub fn wakeup_bytes(ring_bytes: u32, asked: Option<u32>) -> Result<u64, String> {
    match asked {
        None => Ok(u64::from(DEFAULT_WAKEUP_BYTES.min(ring_bytes / 16))),
        Some(n) if n <= ring_bytes / 2 => Ok(u64::from(n)),
        Some(n) => Err(format!(
            "--ring-wakeup-bytes {n}: must be at most half of --ring-buffer-bytes ({ring_bytes})"
        )),
    }
}

/// How much of the data hooks runs (`ZEROTRACE_BENCH_FLOOR`, benchmarks only):
/// the floor of what capture can cost is measured with the same hooks doing
/// nothing, or only the pid filter lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchFloor {
    /// Everything (the product).
    Off,
    /// The data hooks return at once.
    Hooks,
    /// The data hooks return after the pid filter lookup.
    Filter,
    /// The data hooks return once the socket is resolved and its state looked
    /// up (its identity noted), before any payload is copied.
    Socket,
    /// The data hooks do everything but write the record into the ring.
    Copy,
    /// The kernel side does everything; the worker consumes each record
    /// without decoding it (the worker reads the same variable).
    Drain,
    /// As `Drain`, but only the records of writes go into the ring (reads
    /// are copied and dropped): what one record fewer per exchange saves.
    DrainWrites,
}

impl BenchFloor {
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("ZEROTRACE_BENCH_FLOOR").as_deref() {
            Err(_) | Ok("") | Ok("off") => Ok(Self::Off),
            Ok("hooks") => Ok(Self::Hooks),
            Ok("filter") => Ok(Self::Filter),
            Ok("socket") => Ok(Self::Socket),
            Ok("copy") => Ok(Self::Copy),
            Ok("drain") => Ok(Self::Drain),
            Ok("drain-writes") => Ok(Self::DrainWrites),
            Ok(other) => Err(format!(
                "ZEROTRACE_BENCH_FLOOR={other:?}: expected off, hooks, filter, socket, copy, drain or drain-writes"
            )),
        }
    }

    /// The value of `zt_settings.floor` (ZT_FLOOR_* in syscall_tracer.bpf.c).
    fn kernel_value(self) -> u64 {
        match self {
            Self::Off | Self::Drain => 0,
            Self::Hooks => 1,
            Self::Filter => 2,
            Self::Socket => 3,
            Self::Copy => 4,
            Self::DrainWrites => 5,
        }
    }
}

/// The maps handed to the worker, by name in the object.
const WORKER_MAPS: &[(&str, MapRole)] = &[
    ("zt_events", MapRole::Events),
    ("zt_pid_filter", MapRole::PidFilter),
    ("zt_pid_bits", MapRole::PidBits),
    ("zt_counters", MapRole::Counters),
];

/// Loader-side knobs for the kernel programs.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Bytes waiting in the ring buffer before a data event wakes the worker.
    pub wakeup_bytes: u64,
    /// Bytes copied of a segment that starts an HTTP head ([`HEAD_MAX`] at most;
    /// at or below [`PAYLOAD_MAX`], heads are captured like any segment).
    pub head_capture: u32,
    /// Only this backend (`--capture-backend`); None: the best that loads.
    pub backend: Option<CaptureBackend>,
    /// Benchmarks only: how much of the data hooks runs.
    pub floor: BenchFloor,
}

/// Programs attached on request (TLS library uprobes), not at start.
const ON_REQUEST_PROGRAMS: &[&str] = &[
    "zt_tls_enter_read",
    "zt_tls_enter_write",
    "zt_tls_enter_read_ex",
    "zt_tls_enter_write_ex",
    "zt_tls_exit",
    GO_TLS_PROGRAM,
];

/// Loaded and attached programs; the links detach on drop.
pub struct Probes {
    tracer: Object,
    _tracer_links: Vec<Link>,
    _listener_object: Object,
    listener_link: Link,
    /// Why TLS hooks cannot be attached on this kernel, if they cannot.
    tls_unavailable: Option<String>,
    backend: CaptureBackend,
    uprobes: RefCell<UprobeRegistry>,
    go_tls: RefCell<GoTlsRegistry>,
}

fn context(what: &str) -> impl Fn(libbpf_rs::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Maps only one backend's programs use, with that backend: not created
/// for the other. The socket backend keeps per-socket state in the socket's
/// own storage (its sockets are trusted pointers; the fd walk's are not).
const BACKEND_MAPS: [(&str, CaptureBackend); 1] =
    [("zt_conn_storage", CaptureBackend::SocketTracepoints)];

/// Which programs capture socket data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureBackend {
    /// `sock_send_length`/`sock_recv_length` (kernel >= 6.3): only socket I/O
    /// takes a tracepoint; connect and listen come from `inet_sock_set_state`.
    SocketTracepoints,
    /// `sys_exit` for every syscall (any BTF kernel).
    SyscallExit,
}

impl CaptureBackend {
    pub fn describe(self) -> &'static str {
        match self {
            CaptureBackend::SocketTracepoints => "socket tracepoints",
            CaptureBackend::SyscallExit => "syscall exit",
        }
    }

    /// Programs this backend does not use (not loaded). `zt_sock_state` and
    /// `zt_sock_state_exit` are one program built for each backend.
    fn unused_programs(self) -> &'static [&'static str] {
        match self {
            CaptureBackend::SocketTracepoints => &["zt_sys_exit", "zt_sock_state_exit"],
            CaptureBackend::SyscallExit => &["zt_sock_send", "zt_sock_recv", "zt_sock_state"],
        }
    }
}

/// The syscall tracer, configured and ready to load; without the TLS
/// programs when `with_tls` is false.
fn open_tracer(
    settings: ProbeSettings,
    backend: CaptureBackend,
    with_tls: bool,
) -> Result<OpenObject, String> {
    let mut open = ObjectBuilder::default()
        .open_memory(SYSCALL_TRACER)
        .map_err(context("opening the syscall tracer object"))?;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if let Some((_, owner)) = BACKEND_MAPS.iter().find(|(m, _)| *m == name) {
            map.set_autocreate(*owner == backend)
                .map_err(context("choosing the backend's maps"))?;
        } else if name == "zt_events" {
            map.set_max_entries(settings.ring_buffer_bytes)
                .map_err(context("sizing the ring buffer"))?;
        } else if name == "zt_scratch" {
            // One staging entry per CPU, indexed by the CPU the program runs on.
            let cpus =
                libbpf_rs::num_possible_cpus().map_err(context("counting the possible CPUs"))?;
            let cpus = u32::try_from(cpus).map_err(|_| "too many CPUs".to_owned())?;
            map.set_max_entries(cpus.max(1))
                .map_err(context("sizing the staging area"))?;
        } else if name.ends_with(".rodata") {
            // `zt_settings` in syscall_tracer.bpf.c: wakeup_bytes, head_capture, floor.
            let mut fields = Vec::with_capacity(24);
            fields.extend_from_slice(&settings.wakeup_bytes.to_ne_bytes());
            fields.extend_from_slice(&u64::from(settings.head_capture).to_ne_bytes());
            fields.extend_from_slice(&settings.floor.kernel_value().to_ne_bytes());
            match map.initial_value_mut() {
                Some(value) if value.len() == fields.len() => value.copy_from_slice(&fields),
                _ => return Err("unexpected .rodata layout in the syscall tracer".into()),
            }
        }
    }
    for mut prog in open.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if ON_REQUEST_PROGRAMS.contains(&name.as_str()) {
            prog.set_autoattach(false);
            if !with_tls {
                prog.set_autoload(false);
            }
        }
        if backend.unused_programs().contains(&name.as_str()) {
            prog.set_autoload(false);
        }
    }
    Ok(open)
}

/// Fails early, with the reason, when the kernel cannot run CO-RE programs.
pub fn check_kernel_support() -> Result<(), String> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(
            "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): \
                    zerotrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (most \
                    distribution kernels since 2020 are)"
                .into(),
        );
    }
    Ok(())
}

impl Probes {
    pub fn load_and_attach(settings: ProbeSettings) -> Result<Self, String> {
        check_kernel_support()?;
        // The socket tracepoints need kernel 6.3; uprobe_multi (TLS) 6.6:
        // the first combination this kernel accepts is used (without TLS,
        // everything else still works).
        let mut attempts = Vec::new();
        let mut loaded = None;
        let combinations = [
            (CaptureBackend::SocketTracepoints, true),
            (CaptureBackend::SyscallExit, true),
            (CaptureBackend::SocketTracepoints, false),
            (CaptureBackend::SyscallExit, false),
        ];
        for (backend, with_tls) in combinations
            .into_iter()
            .filter(|(b, _)| settings.backend.is_none_or(|wanted| wanted == *b))
        {
            match open_tracer(settings, backend, with_tls)?.load() {
                Ok(tracer) => {
                    loaded = Some((tracer, backend, with_tls));
                    break;
                }
                Err(e) => attempts.push(format!("{} (TLS {with_tls}): {e}", backend.describe())),
            }
        }
        let Some((tracer, backend, with_tls)) = loaded else {
            return Err(format!(
                "loading the syscall tracer into the kernel: {}",
                attempts.join("; ")
            ));
        };
        let tls_unavailable = (!with_tls).then(|| {
            format!(
                "the TLS library hooks did not load: {}",
                attempts.join("; ")
            )
        });
        let mut tracer_links = Vec::new();
        for prog in tracer.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            if ON_REQUEST_PROGRAMS.contains(&name.as_str())
                || backend.unused_programs().contains(&name.as_str())
            {
                continue;
            }
            let link = prog
                .attach()
                .map_err(|e| format!("attaching {name}: {e}"))?;
            tracer_links.push(link);
        }

        let listener_object = ObjectBuilder::default()
            .open_memory(LISTENER_ITER)
            .map_err(context("opening the listener iterator object"))?
            .load()
            .map_err(context("loading the listener iterator"))?;
        let listener_link = listener_object
            .progs_mut()
            .next()
            .ok_or("the listener iterator object has no program")?
            .attach()
            .map_err(context("attaching the listener iterator"))?;

        Ok(Self {
            tracer,
            _tracer_links: tracer_links,
            _listener_object: listener_object,
            listener_link,
            tls_unavailable,
            backend,
            uprobes: RefCell::new(UprobeRegistry::default()),
            go_tls: RefCell::new(GoTlsRegistry::default()),
        })
    }

    /// Which programs capture socket data on this kernel.
    pub fn backend(&self) -> CaptureBackend {
        self.backend
    }

    /// Why TLS plaintext capture is off on this kernel, if it is.
    pub fn tls_unavailable(&self) -> Option<&str> {
        self.tls_unavailable.as_deref()
    }

    fn pid_filter(&self) -> Result<libbpf_rs::Map<'_>, String> {
        self.tracer
            .maps()
            .find(|m| m.name() == "zt_pid_filter")
            .ok_or_else(|| "pid filter map missing".to_owned())
    }

    /// The pid's flags in the kernel pid filter (None: not instrumented).
    fn pid_flags(&self, pid: u32) -> Option<u32> {
        let map = self.pid_filter().ok()?;
        let value = map
            .lookup(&pid.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()??;
        let bytes: [u8; 4] = value.get(..4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(bytes))
    }

    /// Hooks a TLS library function for `pid` (see tls_uprobes.rs for the
    /// checks) and marks the pid so its encrypted socket bytes are not sent.
    pub fn attach_tls_uprobe(
        &self,
        pid: u32,
        library: &str,
        symbol: &str,
    ) -> Result<bool, AttachError> {
        if let Some(reason) = &self.tls_unavailable {
            return Err(AttachError::Failed(reason.clone()));
        }
        let new = self.uprobes.borrow_mut().attach(
            &self.tracer,
            |p| self.pid_flags(p).is_some(),
            pid,
            library,
            symbol,
        )?;
        self.mark_tls_hooked(pid)?;
        Ok(new)
    }

    /// Hooks a Go `crypto/tls` function in the executable of `pid` (see
    /// go_tls_uprobes.rs for the checks) and marks the pid like
    /// [`Self::attach_tls_uprobe`] does.
    pub fn attach_go_tls(
        &self,
        pid: u32,
        exe_path: &str,
        symbol: &str,
    ) -> Result<bool, GoAttachError> {
        if let Some(reason) = &self.tls_unavailable {
            return Err(AttachError::Failed(reason.clone()).into());
        }
        let new = self.go_tls.borrow_mut().attach(
            &self.tracer,
            |p| self.pid_flags(p).is_some(),
            pid,
            exe_path,
            symbol,
        )?;
        self.mark_tls_hooked(pid)?;
        Ok(new)
    }

    /// Marks a pid whose TLS calls are hooked: its socket bytes that are TLS
    /// records are then not sent (the hooks send the plaintext).
    fn mark_tls_hooked(&self, pid: u32) -> Result<(), AttachError> {
        let flags = self.pid_flags(pid).unwrap_or(0);
        let tls = (layout::PID_INSTRUMENTED | layout::PID_TLS) as u32;
        if flags & tls != tls {
            let map = self.pid_filter().map_err(AttachError::Failed)?;
            // EXIST: a process that exited meanwhile is not put back.
            map.update(
                &pid.to_ne_bytes(),
                &(flags | tls).to_ne_bytes(),
                libbpf_rs::MapFlags::EXIST,
            )
            .map_err(|e| AttachError::Failed(format!("marking pid {pid}: {e}")))?;
        }
        Ok(())
    }

    /// Detaches TLS hooks whose processes are all gone; returns what went.
    pub fn sweep_uprobes(&self) -> Vec<(String, &'static str)> {
        let instrumented = |p| self.pid_flags(p).is_some();
        let mut detached = self.uprobes.borrow_mut().sweep(instrumented);
        detached.extend(self.go_tls.borrow_mut().sweep(instrumented));
        detached
    }

    /// TLS hooks in place: library functions and Go executables' functions.
    pub fn uprobes_attached(&self) -> usize {
        self.uprobes.borrow().attached() + self.go_tls.borrow().attached()
    }

    /// The maps the worker receives, with their raw fds (owned by `self`).
    pub fn worker_maps(&self) -> Result<Vec<(MapDescriptor, RawFd)>, String> {
        let mut out = Vec::new();
        for (wanted, role) in WORKER_MAPS {
            let map = self
                .tracer
                .maps()
                .find(|m| m.name() == *wanted)
                .ok_or_else(|| format!("map {wanted} missing from the object"))?;
            out.push((
                MapDescriptor {
                    role: *role,
                    max_entries: map.max_entries(),
                    key_size: map.key_size(),
                    value_size: map.value_size(),
                },
                map.as_fd().as_raw_fd(),
            ));
        }
        Ok(out)
    }

    /// Adds or removes processes in the kernel pid filter.
    pub fn set_targets(&self, add: &[u32], remove: &[u32]) -> Result<(), String> {
        let map = self
            .tracer
            .maps()
            .find(|m| m.name() == "zt_pid_filter")
            .ok_or("pid filter map missing")?;
        for pid in add {
            map.update(
                &pid.to_ne_bytes(),
                &1u32.to_ne_bytes(),
                libbpf_rs::MapFlags::ANY,
            )
            .map_err(|e| format!("adding pid {pid}: {e}"))?;
        }
        for pid in remove {
            // Already gone (the process exited) is fine.
            let _ = map.delete(&pid.to_ne_bytes());
        }
        Ok(())
    }

    /// Starts a new worker generation: the kernel then sends each socket's
    /// identity again, since a restarted worker knows no connections.
    pub fn next_worker_generation(&self) -> Result<(), String> {
        let map = self
            .tracer
            .maps()
            .find(|m| m.name() == "zt_generation")
            .ok_or("generation map missing")?;
        let key = 0u32.to_ne_bytes();
        let current = map
            .lookup(&key, libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .and_then(|v| {
                v.get(..4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            })
            .unwrap_or(0);
        map.update(
            &key,
            &current.wrapping_add(1).to_ne_bytes(),
            libbpf_rs::MapFlags::ANY,
        )
        .map_err(|e| format!("bumping the worker generation: {e}"))
    }

    /// Every listening TCP socket on the machine, read through the BPF iterator.
    pub fn list_listeners(&self) -> Result<Vec<ListeningSocket>, String> {
        let mut iter = Iter::new(&self.listener_link).map_err(context("starting the iterator"))?;
        let mut bytes = Vec::new();
        iter.read_to_end(&mut bytes)
            .map_err(|e| format!("reading the iterator: {e}"))?;
        let mut listeners = decode_listeners(&bytes);
        listeners.sort_by_key(|l| (l.pid, l.port));
        listeners.dedup();
        Ok(listeners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wakeup_threshold_is_the_default_or_what_was_asked_within_half_the_ring() {
        assert_eq!(wakeup_bytes(4 << 20, None), Ok(64 * 1024));
        // A small ring wakes at a sixteenth of itself.
        assert_eq!(wakeup_bytes(64 * 1024, None), Ok(4096));
        assert_eq!(wakeup_bytes(4 << 20, Some(16 * 1024)), Ok(16 * 1024));
        assert_eq!(wakeup_bytes(4 << 20, Some(2 << 20)), Ok(2 << 20));
        let refused = wakeup_bytes(4 << 20, Some((2 << 20) + 1));
        assert!(refused.is_err_and(|e| e.contains("at most half")));
    }

    #[test]
    fn head_max_matches_the_bpf_header() {
        let header = include_str!("../../bpf-programs/include/zerotrace_events.h");
        let defined = header
            .lines()
            .find_map(|l| l.strip_prefix("#define ZT_HEAD_MAX "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        assert_eq!(defined, Some(HEAD_MAX));
    }
}
