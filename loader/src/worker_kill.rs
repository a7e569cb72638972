//! Ending a worker the loader no longer trusts (it broke the protocol). The
//! loader may hold no CAP_KILL — the service unit grants CAP_SETUID, not
//! CAP_KILL — so when the worker runs under another uid and kill() is
//! refused, a short-lived child of the loader takes the worker's uid and
//! sends the signal itself.

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid, Uid};

/// Sends SIGKILL to the worker `pid`, which runs as `uid`.
pub fn kill_worker(pid: u32, uid: Uid) -> Result<(), String> {
    let target = Pid::from_raw(pid as i32);
    match kill(target, Signal::SIGKILL) {
        Ok(()) => return Ok(()),
        Err(Errno::EPERM) => {}
        Err(e) => return Err(format!("kill({pid}): {e}")),
    }
    let raw_uid = uid.as_raw();
    // SAFETY: the loader is single-threaded; the child makes only raw system
    // calls (no allocation, no locks) and leaves with _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: async-signal-safe calls with integer arguments.
            let code = unsafe {
                if libc::setresuid(raw_uid, raw_uid, raw_uid) == 0
                    && libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0
                {
                    0
                } else {
                    1
                }
            };
            // SAFETY: ends the child without running the loader's destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(status) => Err(format!(
                "kill({pid}) as uid {raw_uid} failed in the helper ({status:?})"
            )),
            Err(e) => Err(format!("waiting for the kill helper: {e}")),
        },
        Err(e) => Err(format!("fork for the kill helper: {e}")),
    }
}
