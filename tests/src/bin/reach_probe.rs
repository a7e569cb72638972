//! An attacker of the worker's own uid, for `tests/tests/isolation.rs`.
//! Started as root, it takes a uid and gid (setgroups([]), setresgid,
//! setresuid, so it is exactly a process of that uid) and tries to reach
//! into process PID the ways a same-uid process can:
//!
//!   zerotrace-reach-probe UID GID PID probe
//!       ptrace(PTRACE_ATTACH), /proc/PID/{mem,environ,maps}, listing
//!       /proc/PID/fd, opening /proc/PID/fd/N, pidfd_getfd: one JSON object,
//!       each attempt "ok" or the errno's name.
//!   zerotrace-reach-probe UID GID PID scan NEEDLE
//!       reads every file under /proc/PID/ (and task/*/) it can, and reports
//!       which contain NEEDLE.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::ESRCH) => "ESRCH".into(),
        Some(libc::EIO) => "EIO".into(),
        Some(libc::EBADF) => "EBADF".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

fn outcome<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => errno_name(&e),
    }
}

fn last_error<T>() -> std::io::Result<T> {
    Err(std::io::Error::last_os_error())
}

fn become_user(uid: u32, gid: u32) -> Result<(), String> {
    // SAFETY: credential calls with integers and a null group list.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(gid, gid, gid) == 0
            && libc::setresuid(uid, uid, uid) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cannot become {uid}:{gid}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn ptrace_attach(pid: i32) -> std::io::Result<()> {
    // SAFETY: ptrace with integer arguments and null pointers.
    if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) } != 0 {
        return last_error();
    }
    // Attached: wait for the stop, then let it go.
    let mut status = 0;
    // SAFETY: waitpid writes into our local; detach takes integers.
    unsafe {
        libc::waitpid(pid, &mut status, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize);
    }
    Ok(())
}

/// Opens /proc/PID/mem and reads 4 bytes where the first mapping starts
/// (the executable's ELF header): "ok" only if those bytes are `\x7fELF`.
fn read_mem(pid: i32, first_mapping: Option<u64>) -> String {
    let file = match File::open(format!("/proc/{pid}/mem")) {
        Ok(file) => file,
        Err(e) => return errno_name(&e),
    };
    let Some(address) = first_mapping else {
        return "opened (no address to read)".into();
    };
    let mut head = [0u8; 4];
    match file.read_exact_at(&mut head, address) {
        Ok(()) if &head == b"\x7fELF" => "ok".into(),
        Ok(()) => format!("read {head:?}"),
        Err(e) => errno_name(&e),
    }
}

fn pidfd_getfd(pid: i32, target_fd: i32) -> std::io::Result<()> {
    // SAFETY: raw syscalls with integers; a returned fd is closed at once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if pidfd < 0 {
            return last_error();
        }
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, target_fd, 0) as i32;
        let result = if fd < 0 { last_error() } else { Ok(()) };
        if fd >= 0 {
            libc::close(fd);
        }
        libc::close(pidfd);
        result
    }
}

fn probe(pid: i32) -> Value {
    let mut report = Map::new();
    report.insert("ptrace_attach".into(), json!(outcome(ptrace_attach(pid))));
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"));
    let first_mapping = maps.as_ref().ok().and_then(|text| {
        let start = text.lines().next()?.split('-').next()?;
        u64::from_str_radix(start, 16).ok()
    });
    report.insert("maps".into(), json!(outcome(maps)));
    report.insert("mem".into(), json!(read_mem(pid, first_mapping)));
    report.insert(
        "environ".into(),
        json!(outcome(std::fs::read(format!("/proc/{pid}/environ")))),
    );
    report.insert(
        "fd_list".into(),
        json!(outcome(std::fs::read_dir(format!("/proc/{pid}/fd")))),
    );
    // Descriptors 0..=15 by number (the list itself may be refused).
    let opens: Vec<String> = (0..16)
        .map(|n| outcome(File::open(format!("/proc/{pid}/fd/{n}"))))
        .collect();
    report.insert("fd_opens".into(), json!(opens));
    // fd 3 is the worker's socket to the loader; 4.. its map fds.
    let getfds: Vec<String> = (0..8).map(|n| outcome(pidfd_getfd(pid, n))).collect();
    report.insert("pidfd_getfd".into(), json!(getfds));
    Value::Object(report)
}

/// Every regular file under `dir`, not following symbolic links.
fn files_under(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && depth > 0 {
            files_under(&path, depth - 1, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

fn scan(pid: i32, needle: &str) -> Value {
    let mut files = Vec::new();
    // /proc/PID/*, task/TID/*, and one level below those (attr/, net/…).
    files_under(Path::new(&format!("/proc/{pid}")), 3, &mut files);
    let mut readable = 0usize;
    let mut found = Vec::new();
    for path in &files {
        let Ok(file) = File::open(path) else { continue };
        let mut bytes = Vec::new();
        if file.take(4 << 20).read_to_end(&mut bytes).is_err() {
            continue;
        }
        readable += 1;
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(path.display().to_string());
        }
    }
    json!({ "files": files.len(), "readable": readable, "found_in": found })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (
        args.first().and_then(|v| v.parse::<u32>().ok()),
        args.get(1).and_then(|v| v.parse::<u32>().ok()),
        args.get(2).and_then(|v| v.parse::<i32>().ok()),
    );
    let (Some(uid), Some(gid), Some(pid)) = parsed else {
        eprintln!("usage: zerotrace-reach-probe UID GID PID probe|scan NEEDLE");
        std::process::exit(2);
    };
    if let Err(e) = become_user(uid, gid) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let report = match (args.get(3).map(String::as_str), args.get(4)) {
        (Some("probe"), _) => probe(pid),
        (Some("scan"), Some(needle)) if !needle.is_empty() => scan(pid, needle),
        _ => {
            eprintln!("usage: zerotrace-reach-probe UID GID PID probe|scan NEEDLE");
            std::process::exit(2);
        }
    };
    println!("{report}");
}
