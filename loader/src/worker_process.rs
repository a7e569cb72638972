//! Starting the worker: a fresh socketpair, then the worker binary exec'd
//! under its own uid/gid with no capabilities, no_new_privs, non-dumpable,
//! and a parent-death signal, holding only its end of the socketpair (as fd
//! 3) and its sealed start-up data (fd 4), with an environment that holds
//! those two numbers and the TLS root and proxy locations
//! (`startup::KEPT_IN_ENVIRONMENT`): settings and secrets reach it through
//! fd 4, never through `/proc/PID/environ`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use zerotrace_shared::ipc::IPC_FD_ENV;
use zerotrace_shared::startup::{self, StartupData, STARTUP_FD_ENV};

use crate::worker_identity::WorkerIdentity;

/// The descriptor number the worker finds its socket at.
const WORKER_IPC_FD: i32 = 3;
/// The descriptor number the worker finds its start-up data at.
const WORKER_STARTUP_FD: i32 = 4;

/// A running worker and the loader's end of its socket.
pub struct WorkerProcess {
    pub child: Child,
    pub socket: OwnedFd,
}

/// Where the worker binary is: `--worker-path`, else next to the loader.
pub fn default_worker_path() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("zerotrace-worker"))
}

/// The ids the child takes between fork and exec.
#[derive(Clone, Copy)]
struct ChildIds {
    switch_user: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// The real gid at exec (see `WorkerIdentity::exec_real_gid`).
    real_gid: libc::gid_t,
    /// The highest capability number this kernel knows, when the loader
    /// holds CAP_SETPCAP: the child then empties its bounding set.
    clear_bounding_up_to: Option<libc::c_ulong>,
}

pub fn spawn(
    worker_path: &Path,
    identity: WorkerIdentity,
    worker_args: &[String],
    environment: &[(String, String)],
    startup_data: &StartupData,
) -> io::Result<WorkerProcess> {
    let (loader_end, worker_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    // A fresh memfd per worker: each reads its own from offset 0.
    let startup_fd = startup::to_sealed_memfd(startup_data).map_err(io::Error::other)?;
    let fds = ChildFds {
        ipc: worker_end.as_raw_fd(),
        startup: startup_fd.as_raw_fd(),
    };
    let ids = ChildIds {
        switch_user: identity.switches_user(),
        uid: identity.uid.as_raw(),
        gid: identity.gid.as_raw(),
        real_gid: identity.exec_real_gid.unwrap_or(identity.gid).as_raw(),
        clear_bounding_up_to: bounding_to_clear(),
    };
    let loader_pid = std::process::id() as libc::pid_t;

    let mut command = Command::new(worker_path);
    command
        .args(worker_args)
        .env_clear()
        .env(IPC_FD_ENV, WORKER_IPC_FD.to_string())
        .env(STARTUP_FD_ENV, WORKER_STARTUP_FD.to_string())
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (no allocation, no locks).
    unsafe {
        command.pre_exec(move || drop_privileges_in_child(fds, ids, loader_pid));
    }
    let child = command.spawn()?;
    drop(worker_end);
    drop(startup_fd);
    Ok(WorkerProcess {
        child,
        socket: loader_end,
    })
}

/// `Some(last capability)` when the child can empty its bounding set.
fn bounding_to_clear() -> Option<libc::c_ulong> {
    let setpcap = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP);
    if !setpcap.unwrap_or(false) {
        return None;
    }
    caps::runtime::thread_all_supported()
        .iter()
        .map(|c| libc::c_ulong::from(c.index()))
        .max()
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The loader's descriptors the child places at fixed numbers.
#[derive(Clone, Copy)]
struct ChildFds {
    ipc: i32,
    startup: i32,
}

/// Places `fd` at `target` without close-on-exec.
///
/// # Safety
/// Only async-signal-safe calls; `fd` is open.
unsafe fn place_fd(fd: i32, target: i32) -> io::Result<()> {
    // SAFETY: fcntl/dup2 on descriptor numbers.
    unsafe {
        if fd == target {
            check(libc::fcntl(fd, libc::F_SETFD, 0))
        } else {
            check(libc::dup2(fd, target))
        }
    }
}

/// Runs between fork and exec. Order matters: non-dumpable first (this
/// child is a copy of the loader's memory, secrets included), the bounding
/// set emptied while CAP_SETPCAP is still held (CAP_SETPCAP last), identity next
/// (which clears capabilities when leaving uid 0), then an explicit
/// capability wipe for the non-root case, then the death signal (a
/// credential change would reset it), then no_new_privs so nothing exec'd
/// later can regain privileges. Exec resets dumpability; the real gid that
/// differs from the effective one makes the kernel keep the worker
/// non-dumpable through exec, until it sets that itself in `main`.
fn drop_privileges_in_child(
    fds: ChildFds,
    ids: ChildIds,
    loader_pid: libc::pid_t,
) -> io::Result<()> {
    // SAFETY: plain system calls on integers, null pointers and local buffers.
    unsafe {
        // The loader blocks SIGINT/SIGTERM/SIGCHLD for its signalfd; the worker must not.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &empty,
            std::ptr::null_mut(),
        ))?;
        check(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0))?;
        // The start-up fd first: moving the socket to 3 must not overwrite it.
        let mut startup = fds.startup;
        if startup == WORKER_IPC_FD {
            startup = libc::fcntl(startup, libc::F_DUPFD_CLOEXEC, WORKER_STARTUP_FD + 1);
            check(startup)?;
        }
        place_fd(fds.ipc, WORKER_IPC_FD)?;
        place_fd(startup, WORKER_STARTUP_FD)?;
        if let Some(last) = ids.clear_bounding_up_to {
            let setpcap = libc::c_ulong::from(caps::Capability::CAP_SETPCAP.index());
            for capability in (0..=last).filter(|c| *c != setpcap).chain([setpcap]) {
                check(libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0))?;
            }
        }
        if ids.switch_user {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(ids.real_gid, ids.gid, ids.gid))?;
            check(libc::setresuid(ids.uid, ids.uid, ids.uid))?;
        }
        check(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0))?;
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ))?;
        let mut header = CapUserHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapUserData::default(); 2];
        check(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) as libc::c_int)?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        if libc::getppid() != loader_pid {
            return Err(io::Error::other(
                "loader exited while the worker was starting",
            ));
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
