//! The loader's main loop: serve the worker's requests, restart it when it
//! dies (handing over the same map fds: probes stay attached, nothing is
//! reloaded), and detach everything on SIGINT/SIGTERM.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};
use zerotrace_shared::ipc::{self, LoaderStats, Refusal, Reply};
use zerotrace_shared::startup::StartupData;

use crate::probes::Probes;
use crate::request_table::{self, Session};
use crate::worker_identity::WorkerIdentity;
use crate::worker_kill;
use crate::worker_process::{self, WorkerProcess};

/// Worker exit codes that mean "restarting will not help": stop the agent.
pub const EXIT_CONFIG_ERROR: i32 = 78;
pub const EXIT_PRIVILEGE_REFUSED: i32 = 77;
/// How often TLS hooks of exited processes are looked for and detached.
const UPROBE_SWEEP_EVERY: Duration = Duration::from_secs(2);

pub struct SupervisorSettings {
    pub worker_path: PathBuf,
    pub identity: WorkerIdentity,
    /// How the identity was chosen, for the start-up line.
    pub identity_description: String,
    pub worker_args: Vec<String>,
    /// The few variables the worker's environment keeps (TLS roots, proxies).
    pub worker_environment: Vec<(String, String)>,
    /// Handed to every worker (restarts get the same): settings and the config file.
    pub startup: StartupData,
}

struct RunningWorker {
    process: WorkerProcess,
    session: Session,
    started: Instant,
    /// The socket reached EOF: wait for SIGCHLD.
    socket_closed: bool,
}

fn start_worker(settings: &SupervisorSettings, probes: &Probes) -> Result<RunningWorker, String> {
    probes.next_worker_generation()?;
    let process = worker_process::spawn(
        &settings.worker_path,
        settings.identity,
        &settings.worker_args,
        &settings.worker_environment,
        &settings.startup,
    )
    .map_err(|e| {
        format!(
            "cannot start the worker {}: {e}",
            settings.worker_path.display()
        )
    })?;
    let pid = process.child.id();
    info!(
        "worker started (pid {pid}, {})",
        settings.identity_description
    );
    Ok(RunningWorker {
        session: Session::new(pid),
        process,
        started: Instant::now(),
        socket_closed: false,
    })
}

/// The signals the supervisor reads from its signalfd.
fn supervised_signals() -> SigSet {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGCHLD);
    signals
}

/// Blocks the supervisor's signals from now on, so that one sent before
/// [`run`] is pending there (the worker unblocks them for itself).
pub fn hold_stop_signals() -> Result<(), String> {
    supervised_signals()
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))
}

/// Runs until a termination signal; returns the process exit code.
pub fn run(probes: &Probes, settings: &SupervisorSettings) -> Result<i32, String> {
    let signals = supervised_signals();
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;

    let mut stats = LoaderStats::default();
    let mut worker = Some(start_worker(settings, probes)?);
    let mut restart_at: Option<Instant> = None;
    let mut quick_failures = 0u32;
    let mut last_sweep = Instant::now();

    loop {
        if let Some(when) = restart_at {
            if Instant::now() >= when {
                restart_at = None;
                worker = Some(start_worker(settings, probes)?);
                stats.worker_restarts += 1;
            }
        }
        if last_sweep.elapsed() >= UPROBE_SWEEP_EVERY {
            last_sweep = Instant::now();
            for (library, symbol) in probes.sweep_uprobes() {
                info!("detached the {symbol} hook of {library}: no process uses it any more");
            }
        }
        let wake_in = match restart_at {
            Some(when) => when
                .saturating_duration_since(Instant::now())
                .min(UPROBE_SWEEP_EVERY),
            None => UPROBE_SWEEP_EVERY,
        };
        let timeout = PollTimeout::try_from(wake_in).unwrap_or(PollTimeout::MAX);
        let socket_fd = worker
            .as_ref()
            .filter(|w| !w.socket_closed)
            .map(|w| w.process.socket.as_fd());
        let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = socket_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let signal_ready = fds[0].any().unwrap_or(false);
        let socket_ready = fds.get(1).and_then(|f| f.any()).unwrap_or(false);
        drop(fds);

        if socket_ready {
            if let Some(w) = worker.as_mut() {
                serve_one(w, &mut stats, probes, settings.identity.uid)?;
            }
        }
        if !signal_ready {
            continue;
        }
        let Ok(Some(info)) = signal_fd.read_signal() else {
            continue;
        };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGINT) | Ok(Signal::SIGTERM) => {
                info!("stopping: detaching probes");
                if let Some(w) = worker.take() {
                    stop_worker(w);
                }
                return Ok(0);
            }
            Ok(Signal::SIGCHLD) => {
                let Some(w) = worker.as_mut() else { continue };
                let Ok(Some(status)) = w.process.child.try_wait() else {
                    continue;
                };
                let code = status.code();
                warn!("worker exited ({status})");
                if code == Some(EXIT_CONFIG_ERROR) || code == Some(EXIT_PRIVILEGE_REFUSED) {
                    return Ok(code.unwrap_or(1));
                }
                let lived = w.started.elapsed();
                worker = None;
                quick_failures = if lived < Duration::from_secs(5) {
                    quick_failures + 1
                } else {
                    0
                };
                // First restart at once; a crash loop backs off up to 5 s.
                let delay = Duration::from_millis(100 << quick_failures.saturating_sub(1).min(6))
                    .min(Duration::from_secs(5));
                restart_at = Some(Instant::now() + delay);
            }
            _ => {}
        }
    }
}

/// Refusals a correct worker never causes, whatever the timing: bytes that
/// are not a message of this protocol version, or a request out of phase.
/// (A field that fails a check is refused but not held against the worker:
/// some checks depend on processes that may exit in between.)
fn is_protocol_violation(refusal: &Refusal) -> bool {
    matches!(
        refusal,
        Refusal::Malformed
            | Refusal::UnsupportedVersion { .. }
            | Refusal::Oversize
            | Refusal::NotPermittedNow
    )
}

/// OpenSSH's monitor rule: a worker that breaks the protocol is compromised.
/// It is never served again and is killed; its SIGCHLD starts a fresh one.
/// When even that fails, the loader stops, and the worker's parent-death
/// signal (which its seccomp filter keeps it from clearing) ends it.
fn treat_as_compromised(
    worker: &mut RunningWorker,
    refusal: &Refusal,
    uid: nix::unistd::Uid,
) -> Result<(), String> {
    let pid = worker.process.child.id();
    error!(
        "protocol violation by the worker (pid {pid}): {refusal:?}; treating it as compromised: killing it and starting a new one"
    );
    worker.socket_closed = true;
    worker_kill::kill_worker(pid, uid)
        .map_err(|e| format!("cannot kill the compromised worker (pid {pid}): {e}; stopping"))
}

fn serve_one(
    worker: &mut RunningWorker,
    stats: &mut LoaderStats,
    probes: &Probes,
    uid: nix::unistd::Uid,
) -> Result<(), String> {
    let socket = worker.process.socket.as_fd();
    let message = match ipc::recv_message(socket) {
        Ok(Some(message)) => message,
        Ok(None) | Err(_) => {
            worker.socket_closed = true;
            return Ok(());
        }
    };
    // No SO_PEERCRED check: on a socketpair it reports the creator (us), not
    // the peer. Only the worker ever held the other end (fd 3, CLOEXEC elsewhere).
    let oversize = message.truncated || !message.fds.is_empty();
    let answer =
        request_table::handle_message(&mut worker.session, stats, probes, &message.bytes, oversize);
    if let Reply::Refused(refusal) = &answer.reply {
        if answer.routine {
            debug!(
                "could not answer a worker request: {refusal:?} (refused so far: {})",
                stats.requests_refused
            );
        } else {
            warn!(
                "refused a worker request: {refusal:?} (refused so far: {})",
                stats.requests_refused
            );
        }
    }
    let sent = ipc::encode(&answer.reply)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            ipc::send_message(socket, &bytes, &answer.fds).map_err(|e| e.to_string())
        });
    if let Err(e) = sent {
        warn!("cannot reply to the worker: {e}");
    }
    match &answer.reply {
        Reply::Refused(refusal) if is_protocol_violation(refusal) => {
            treat_as_compromised(worker, refusal, uid)
        }
        _ => Ok(()),
    }
}

/// Asks the worker to stop by closing its socket (it flushes and exits on
/// EOF), so no CAP_KILL is needed for a worker under another uid; a SIGTERM
/// is tried too. Never blocks for more than a few seconds.
fn stop_worker(worker: RunningWorker) {
    let RunningWorker { process, .. } = worker;
    let WorkerProcess { mut child, socket } = process;
    drop(socket);
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.kill().is_ok() {
        let _ = child.wait();
    }
    // Otherwise the worker's parent-death signal ends it when we exit.
}
