//! What /proc says of a process anyone may read: its name, whether it is
//! alive, whether it is a kernel thread.

/// The process's name (`/proc/PID/comm`), empty when it cannot be read.
pub(crate) fn read_comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

/// Running (not gone, not a zombie waiting to be reaped).
/// PF_EXITING in the `flags` field of /proc/PID/stat: set as soon as the
/// process starts to exit, before the kernel's exit hook runs.
const PF_EXITING: u64 = 0x4;

/// Alive and not exiting. A process caught between the start of its exit and
/// becoming a zombie counts as gone: the kernel's exit hook (which takes it
/// out of the pid filter) may already have run, so adding it would leave it
/// there for good.
pub(crate) fn alive(pid: u32) -> bool {
    let (state, flags) = state_and_flags(pid);
    !matches!(state, Some('Z') | Some('X') | None) && flags & PF_EXITING == 0
}

/// PF_KTHREAD: a kernel thread (no executable, no sockets of its own).
const PF_KTHREAD: u64 = 0x0020_0000;

pub(crate) fn is_kernel_thread(pid: u32) -> bool {
    state_and_flags(pid).1 & PF_KTHREAD != 0
}

/// The state letter and the `flags` field of /proc/PID/stat (None and 0
/// when it cannot be read).
fn state_and_flags(pid: u32) -> (Option<char>, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (None, 0);
    };
    // State, ppid, pgrp, session, tty_nr, tpgid, flags… follow the
    // parenthesised command name.
    let mut fields = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace())
        .into_iter()
        .flatten();
    let state = fields.next().and_then(|s| s.chars().next());
    let flags = fields
        .nth(5)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    (state, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_one_is_not() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        let _ = child.wait();
        assert!(!alive(pid));
    }

    #[test]
    fn kernel_threads_are_told_from_processes() {
        // kthreadd is pid 2 in the host's pid namespace; this test process
        // is not a kernel thread.
        if read_comm(2) == "kthreadd" {
            assert!(is_kernel_thread(2));
        }
        assert!(!is_kernel_thread(std::process::id()));
        assert!(!is_kernel_thread(u32::MAX));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        // Not waited for: it stays a zombie until dropped and reaped.
        let zombie = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !alive(pid)
        });
        assert!(zombie);
        drop(child);
    }
}
