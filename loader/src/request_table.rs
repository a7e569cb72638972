//! The loader's whole attack surface: the requests a worker may make, when
//! each is allowed, and how every field is checked. A message that is not in
//! this table, arrives at the wrong time, or fails a check is refused with a
//! reason and counted. A message outside the protocol or out of phase also
//! gets the worker killed and replaced (supervisor.rs); a field that fails a
//! check does not.

use std::fs;

use zerotrace_shared::ipc::{
    self, DecodeError, LoaderStats, MapDescriptor, ProcessDescription, Refusal, Reply, Request,
    MAX_TARGETS_PER_REQUEST, PROTOCOL_VERSION,
};

use crate::go_tls_uprobes::{self, GoAttachError};
use crate::probes::Probes;
use crate::tls_uprobes::{self, AttachError};

/// Where a worker session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected; only Hello is permitted.
    AwaitingHello,
    /// Hello answered (map fds handed over); the rest of the table is open.
    Serving,
}

/// One row per request: the phase it is permitted in, and whether it may
/// be used once per session only.
struct Rule {
    name: &'static str,
    permitted_in: Phase,
    once: bool,
}

fn rule(request: &Request) -> Rule {
    let (name, permitted_in, once) = match request {
        Request::Hello => ("Hello", Phase::AwaitingHello, true),
        Request::SetTargets { .. } => ("SetTargets", Phase::Serving, false),
        Request::ListListeners => ("ListListeners", Phase::Serving, false),
        Request::DescribeProcess { .. } => ("DescribeProcess", Phase::Serving, false),
        Request::Stats => ("Stats", Phase::Serving, false),
        Request::AttachUprobe { .. } => ("AttachUprobe", Phase::Serving, false),
        Request::AttachGoTls { .. } => ("AttachGoTls", Phase::Serving, false),
    };
    Rule {
        name,
        permitted_in,
        once,
    }
}

/// What the loader knows about the session it is serving.
pub struct Session {
    pub phase: Phase,
    pub worker_pid: u32,
    used_once: Vec<&'static str>,
}

impl Session {
    pub fn new(worker_pid: u32) -> Self {
        Self {
            phase: Phase::AwaitingHello,
            worker_pid,
            used_once: Vec::new(),
        }
    }
}

/// The reply to send, and the fds to attach to it.
pub struct Answer {
    pub reply: Reply,
    pub fds: Vec<std::os::fd::RawFd>,
    /// A refusal that a well-behaved worker meets in its normal work (a
    /// process gone, or one the loader may not read, before it could be
    /// described): counted, logged at debug level rather than as a warning.
    pub routine: bool,
}

impl Answer {
    fn plain(reply: Reply) -> Self {
        Self {
            reply,
            fds: Vec::new(),
            routine: false,
        }
    }
    fn refused(refusal: Refusal) -> Self {
        Self::plain(Reply::Refused(refusal))
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> Answer {
    Answer::refused(Refusal::InvalidField {
        field: field.to_owned(),
        reason: reason.into(),
    })
}

/// Largest pid the kernel hands out (pid_max can be at most 2^22).
fn pid_max() -> u32 {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304)
}

fn validate_pid(field: &str, pid: u32) -> Result<(), Answer> {
    if pid == 0 || pid > pid_max() {
        return Err(invalid(field, format!("{pid} is not a valid pid")));
    }
    Ok(())
}

/// Handles one received datagram. `truncated` or attached fds mean the peer
/// sent something no request of ours can be.
pub fn handle_message(
    session: &mut Session,
    stats: &mut LoaderStats,
    probes: &Probes,
    bytes: &[u8],
    oversize: bool,
) -> Answer {
    let answer = decide(session, stats, probes, bytes, oversize);
    if matches!(answer.reply, Reply::Refused(_)) {
        stats.requests_refused += 1;
    } else {
        stats.requests_served += 1;
    }
    answer
}

fn decide(
    session: &mut Session,
    stats: &LoaderStats,
    probes: &Probes,
    bytes: &[u8],
    oversize: bool,
) -> Answer {
    if oversize {
        return Answer::refused(Refusal::Oversize);
    }
    let request = match ipc::decode::<Request>(bytes) {
        Ok(request) => request,
        Err(DecodeError::WrongVersion(_)) => {
            return Answer::refused(Refusal::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
            })
        }
        Err(DecodeError::Malformed) => return Answer::refused(Refusal::Malformed),
    };
    let rule = rule(&request);
    if rule.permitted_in != session.phase || session.used_once.contains(&rule.name) {
        return Answer::refused(Refusal::NotPermittedNow);
    }
    if rule.once {
        session.used_once.push(rule.name);
    }
    match request {
        Request::Hello => hello(session, probes),
        Request::SetTargets { add, remove } => set_targets(session, probes, &add, &remove),
        Request::ListListeners => match probes.list_listeners() {
            Ok(listeners) => Answer::plain(Reply::Listeners(listeners)),
            Err(reason) => Answer::refused(Refusal::Failed { reason }),
        },
        Request::DescribeProcess { pid } => describe_process(pid),
        Request::Stats => Answer::plain(Reply::Stats(LoaderStats {
            uprobes_attached: probes.uprobes_attached() as u64,
            ..stats.clone()
        })),
        Request::AttachUprobe {
            pid,
            library,
            symbol,
        } => attach_uprobe(session, probes, pid, &library, &symbol),
        Request::AttachGoTls {
            pid,
            exe_path,
            symbol,
        } => attach_go_tls(session, probes, pid, &exe_path, &symbol),
    }
}

fn hello(session: &mut Session, probes: &Probes) -> Answer {
    match probes.worker_maps() {
        Ok(maps) => {
            session.phase = Phase::Serving;
            let (descriptors, fds): (Vec<MapDescriptor>, Vec<_>) = maps.into_iter().unzip();
            Answer {
                reply: Reply::Hello {
                    loader_pid: std::process::id(),
                    maps: descriptors,
                },
                fds,
                routine: false,
            }
        }
        Err(reason) => Answer::refused(Refusal::Failed { reason }),
    }
}

fn set_targets(session: &Session, probes: &Probes, add: &[u32], remove: &[u32]) -> Answer {
    if add.len() + remove.len() > MAX_TARGETS_PER_REQUEST {
        return invalid(
            "SetTargets",
            format!("more than {MAX_TARGETS_PER_REQUEST} pids in one request"),
        );
    }
    for (field, pids) in [("SetTargets.add", add), ("SetTargets.remove", remove)] {
        for &pid in pids {
            if let Err(answer) = validate_pid(field, pid) {
                return answer;
            }
        }
    }
    // The agent never instruments itself.
    for &pid in add {
        if pid == std::process::id() || pid == session.worker_pid {
            return invalid("SetTargets.add", format!("{pid} is the agent itself"));
        }
    }
    match probes.set_targets(add, remove) {
        Ok(()) => Answer::plain(Reply::TargetsSet),
        Err(reason) => Answer::refused(Refusal::Failed { reason }),
    }
}

fn attach_uprobe(
    session: &Session,
    probes: &Probes,
    pid: u32,
    library: &str,
    symbol: &str,
) -> Answer {
    if let Err(answer) = validate_pid("AttachUprobe.pid", pid) {
        return answer;
    }
    if pid == std::process::id() || pid == session.worker_pid {
        return invalid("AttachUprobe.pid", format!("{pid} is the agent itself"));
    }
    match probes.attach_tls_uprobe(pid, library, symbol) {
        Ok(new) => Answer::plain(Reply::UprobeAttached { new }),
        Err(AttachError::Invalid(field, reason)) => invalid(field, reason),
        Err(AttachError::Failed(reason)) => Answer::refused(Refusal::Failed { reason }),
        Err(AttachError::Absent) => Answer::plain(Reply::SymbolAbsent),
    }
}

fn attach_go_tls(
    session: &Session,
    probes: &Probes,
    pid: u32,
    exe_path: &str,
    symbol: &str,
) -> Answer {
    if let Err(answer) = validate_pid("AttachGoTls.pid", pid) {
        return answer;
    }
    if pid == std::process::id() || pid == session.worker_pid {
        return invalid("AttachGoTls.pid", format!("{pid} is the agent itself"));
    }
    match probes.attach_go_tls(pid, exe_path, symbol) {
        Ok(new) => Answer::plain(Reply::UprobeAttached { new }),
        Err(GoAttachError::Unsupported { not_go, reason }) => {
            Answer::plain(Reply::GoTlsUnsupported { not_go, reason })
        }
        Err(GoAttachError::Attach(AttachError::Invalid(field, reason))) => invalid(field, reason),
        Err(GoAttachError::Attach(AttachError::Failed(reason))) => {
            Answer::refused(Refusal::Failed { reason })
        }
        Err(GoAttachError::Attach(AttachError::Absent)) => Answer::plain(Reply::SymbolAbsent),
    }
}

/// Reads /proc/PID/exe (its path, and its section headers: is it Go?) and
/// the file names in /proc/PID/maps: facts the unprivileged worker cannot read.
fn describe_process(pid: u32) -> Answer {
    if let Err(answer) = validate_pid("DescribeProcess.pid", pid) {
        return answer;
    }
    match fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(path) => {
            let (tls_libraries, runtime_libraries) = tls_uprobes::mapped_libraries(pid);
            Answer::plain(Reply::Process(ProcessDescription {
                pid,
                exe_path: path.to_string_lossy().into_owned(),
                tls_libraries,
                runtime_libraries,
                go_executable: go_tls_uprobes::is_go_executable(pid),
            }))
        }
        // Exited since the worker saw it, or not ours to read (a kernel
        // thread, a process of another user namespace such as pid 1 in a
        // container): the worker's scans meet these every time.
        Err(e) => Answer {
            routine: true,
            ..Answer::refused(Refusal::Failed {
                reason: format!("/proc/{pid}/exe: {e}"),
            })
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's scans meet processes that exit, or that the loader may
    /// not read, before they are described: refused without a warning. A
    /// pid no kernel hands out is a worker's mistake: warned about.
    #[test]
    fn a_process_gone_before_it_is_described_is_a_routine_refusal() {
        let me = describe_process(std::process::id());
        assert!(matches!(me.reply, Reply::Process(_)) && !me.routine);
        // A Rust test binary: no Go sections, no language runtime mapped.
        if let Reply::Process(description) = &me.reply {
            assert!(!description.go_executable, "{description:?}");
            assert!(description.runtime_libraries.is_empty(), "{description:?}");
        }
        let gone = (2..pid_max())
            .rev()
            .find(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        let Some(gone) = gone else {
            return;
        };
        let answer = describe_process(gone);
        assert!(
            matches!(answer.reply, Reply::Refused(Refusal::Failed { .. })) && answer.routine,
            "{:?}",
            answer.reply
        );
        let bad = describe_process(0);
        assert!(
            matches!(bad.reply, Reply::Refused(Refusal::InvalidField { .. })) && !bad.routine,
            "{:?}",
            bad.reply
        );
    }
}
