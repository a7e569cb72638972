//! Starting the worker: a fresh socketpair, then the worker binary exec'd
//! under its own uid/gid with no capabilities, no_new_privs, and a
//! parent-death signal, holding only its end of the socketpair (as fd 3).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use zerotrace_shared::ipc::IPC_FD_ENV;

use crate::privileges::WorkerIdentity;

/// The descriptor number the worker finds its socket at.
const WORKER_IPC_FD: i32 = 3;

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

pub fn spawn(
    worker_path: &Path,
    identity: WorkerIdentity,
    worker_args: &[String],
) -> io::Result<WorkerProcess> {
    let (loader_end, worker_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let worker_fd = worker_end.as_raw_fd();
    let switch_user = identity.switches_user();
    let (uid, gid) = (identity.uid.as_raw(), identity.gid.as_raw());
    let loader_pid = std::process::id() as libc::pid_t;

    let mut command = Command::new(worker_path);
    command
        .args(worker_args)
        .env(IPC_FD_ENV, WORKER_IPC_FD.to_string())
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (no allocation, no locks).
    unsafe {
        command.pre_exec(move || {
            drop_privileges_in_child(worker_fd, switch_user, uid, gid, loader_pid)
        });
    }
    let child = command.spawn()?;
    drop(worker_end);
    Ok(WorkerProcess {
        child,
        socket: loader_end,
    })
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs between fork and exec. Order matters: identity first (which clears
/// capabilities when leaving uid 0), then an explicit capability wipe for the
/// non-root case, then the death signal (a credential change would reset it),
/// then no_new_privs so nothing exec'd later can regain privileges.
fn drop_privileges_in_child(
    worker_fd: i32,
    switch_user: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
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
        if worker_fd == WORKER_IPC_FD {
            check(libc::fcntl(worker_fd, libc::F_SETFD, 0))?;
        } else {
            check(libc::dup2(worker_fd, WORKER_IPC_FD))?;
        }
        if switch_user {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))?;
        }
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
