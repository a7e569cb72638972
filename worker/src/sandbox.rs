//! The worker's seccomp allow-list, installed once start-up is over (map fds
//! received, ring buffer mapped, listeners bound, threads started) on every
//! thread at once (TSYNC). It permits what the worker does from then on —
//! ring buffer polling, the four BPF map element commands, reading files,
//! TCP/TLS connections to OTLP backends (DNS included), serving the
//! Prometheus and live-view sockets, the loader's socket — and nothing else:
//! no `execve`, `ptrace`, `mount`, `kill`, `BPF_PROG_LOAD`, file writes,
//! `listen`, `fork`-style `clone`.
//!
//! Refused calls fail with EPERM instead of killing the process: a missed
//! syscall on some rare path (a libc update, an NSS module) then degrades
//! one feature with an error the worker reports, instead of crash-looping
//! the agent; an attacker gains nothing from an error code.
//!
//! Built with `seccompiler` (rust-vmm, used by Firecracker): it compiles
//! argument conditions to classic BPF and checks the architecture, which a
//! hand-written filter would have to get right on its own.

use std::collections::BTreeMap;

use seccompiler::{
    apply_filter_all_threads, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use crate::config::SeccompMode;

/// The `bpf()` commands the worker may use: map element access only.
const BPF_MAP_LOOKUP_ELEM: u64 = 1;
const BPF_MAP_UPDATE_ELEM: u64 = 2;
const BPF_MAP_DELETE_ELEM: u64 = 3;
const BPF_MAP_GET_NEXT_KEY: u64 = 4;

/// `prctl` options: thread names only (std and tokio name their threads).
const PRCTL_OPTIONS: [u64; 2] = [libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64];

/// `ioctl` requests: non-blocking mode, close-on-exec, readable bytes, and
/// the terminal queries std makes on stdout. (`as u64`: `Ioctl` is not u64 on every libc.)
#[allow(clippy::unnecessary_cast)]
const IOCTL_REQUESTS: [u64; 6] = [
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
    libc::FIONCLEX as u64,
    libc::FIONREAD as u64,
    libc::TCGETS as u64,
    libc::TIOCGWINSZ as u64,
];

/// Socket families: Unix (loader, live view, nscd), TCP/UDP over IPv4/IPv6
/// (OTLP, DNS, Prometheus), and route netlink (getaddrinfo's AI_ADDRCONFIG).
const SOCKET_FAMILIES: [u64; 4] = [
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// Opening flags that would write: any access mode but O_RDONLY, O_CREAT, O_TRUNC.
const WRITE_FLAGS: u64 = (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC) as u64;

/// Syscalls allowed whatever their arguments.
const UNCONDITIONAL: &[libc::c_long] = &[
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // descriptors and files (opening is conditional, below)
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_eventfd2,
    // waiting
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_futex,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_restart_syscall,
    // sockets (creating one is conditional, below; no listen: listeners are bound at start)
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    // threads: std, tokio's blocking pool (getaddrinfo), glibc's start-up of each
    // thread. clone3 passes its flags in memory a filter cannot read, so
    // restricting clone's flags would not stop a fork; execve is what is denied.
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_sched_getaffinity,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // signals (own process only: tgkill is conditional, below)
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    // time, identity, randomness
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_uname,
];

/// The legacy x86_64 forms libc and std still use.
#[cfg(target_arch = "x86_64")]
const UNCONDITIONAL_X86_64: &[libc::c_long] = &[
    libc::SYS_poll,
    libc::SYS_epoll_wait,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_accept,
    libc::SYS_getrlimit,
];
#[cfg(not(target_arch = "x86_64"))]
const UNCONDITIONAL_X86_64: &[libc::c_long] = &[];

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

/// 32-bit arguments (flags, families, commands) compared on their low half only.
fn dword(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

/// One rule per allowed value of argument `arg`.
fn one_of(arg: u8, values: &[u64], dword_arg: bool) -> Result<Vec<SeccompRule>, String> {
    values
        .iter()
        .map(|value| {
            let cond = if dword_arg {
                dword(arg, SeccompCmpOp::Eq, *value)?
            } else {
                condition(arg, SeccompCmpOp::Eq, *value)?
            };
            SeccompRule::new(vec![cond]).map_err(|e| e.to_string())
        })
        .collect()
}

fn read_only_open(flags_arg: u8) -> Result<Vec<SeccompRule>, String> {
    Ok(vec![SeccompRule::new(vec![dword(
        flags_arg,
        SeccompCmpOp::MaskedEq(WRITE_FLAGS),
        0,
    )?])
    .map_err(|e| e.to_string())?])
}

/// The rules, by syscall number.
fn rules(own_pid: u32) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in UNCONDITIONAL.iter().chain(UNCONDITIONAL_X86_64) {
        rules.insert(nr, Vec::new());
    }
    let conditional = [
        (
            libc::SYS_bpf,
            one_of(
                0,
                &[
                    BPF_MAP_LOOKUP_ELEM,
                    BPF_MAP_UPDATE_ELEM,
                    BPF_MAP_DELETE_ELEM,
                    BPF_MAP_GET_NEXT_KEY,
                ],
                true,
            )?,
        ),
        (libc::SYS_openat, read_only_open(2)?),
        (libc::SYS_socket, one_of(0, &SOCKET_FAMILIES, true)?),
        (libc::SYS_prctl, one_of(0, &PRCTL_OPTIONS, true)?),
        (libc::SYS_ioctl, one_of(1, &IOCTL_REQUESTS, true)?),
        // Signals to this process's own threads only (abort, tokio's wake-ups).
        (libc::SYS_tgkill, one_of(0, &[u64::from(own_pid)], true)?),
        // Reading limits, never setting them (new limit pointer NULL).
        (
            libc::SYS_prlimit64,
            vec![SeccompRule::new(vec![condition(2, SeccompCmpOp::Eq, 0)?])
                .map_err(|e| e.to_string())?],
        ),
    ];
    for (nr, chain) in conditional {
        rules.insert(nr, chain);
    }
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_open, read_only_open(1)?);
    Ok(rules)
}

/// Compiles the allow-list for this architecture.
pub fn compile(mode: SeccompMode, own_pid: u32) -> Result<BpfProgram, String> {
    let refused = match mode {
        SeccompMode::Enforce => SeccompAction::Errno(libc::EPERM as u32),
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Off => return Err("the seccomp filter is off".into()),
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let filter = SeccompFilter::new(rules(own_pid)?, refused, SeccompAction::Allow, arch)
        .map_err(|e| format!("building the seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("compiling the seccomp filter: {e}"))
}

/// Installs the allow-list on every thread of the process (TSYNC); threads
/// started later inherit it. Sets no_new_privs first (the loader already
/// did for the worker; a test binary may not have). `Off` installs nothing.
pub fn install(mode: SeccompMode) -> Result<(), String> {
    if mode == SeccompMode::Off {
        return Ok(());
    }
    let program = compile(mode, std::process::id())?;
    apply_filter_all_threads(&program).map_err(|e| format!("installing the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_values_are_named() {
        assert_eq!(SeccompMode::parse(None), Ok(SeccompMode::Enforce));
        assert_eq!(SeccompMode::parse(Some("log")), Ok(SeccompMode::Log));
        assert_eq!(SeccompMode::parse(Some("off")), Ok(SeccompMode::Off));
        assert!(SeccompMode::parse(Some("strict"))
            .err()
            .unwrap_or_default()
            .contains("strict"));
    }

    #[test]
    fn the_filter_compiles_within_the_kernel_limit() {
        let program = compile(SeccompMode::Enforce, 42).unwrap_or_else(|e| panic!("{e}"));
        // BPF_MAXINSNS: the kernel refuses longer classic BPF programs.
        assert!(
            !program.is_empty() && program.len() <= 4096,
            "{}",
            program.len()
        );
    }
}
