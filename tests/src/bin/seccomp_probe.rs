//! Proves the worker's seccomp allow-list on the real kernel: sets up what
//! the worker has at start-up (a thread, a BPF map, a listening socket, a
//! process to trace), tries each forbidden call once *before* the filter (to
//! show the kernel would allow it here, as root), installs the filter with
//! the worker library's own `sandbox::install`, tries everything again, and
//! prints one JSON object of outcomes ("ok" or the errno name).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::{json, Map, Value};
use zerotrace_worker::config::SeccompMode;
use zerotrace_worker::sandbox;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;

fn outcome(result: libc::c_long) -> Value {
    if result >= 0 {
        json!("ok")
    } else {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        json!(match errno {
            libc::EPERM => "EPERM".to_owned(),
            libc::EACCES => "EACCES".to_owned(),
            libc::EINVAL => "EINVAL".to_owned(),
            libc::ESRCH => "ESRCH".to_owned(),
            other => format!("errno {other}"),
        })
    }
}

fn io_outcome<T>(result: std::io::Result<T>) -> Value {
    match result {
        Ok(_) => json!("ok"),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => json!("EPERM"),
        Err(e) => json!(format!("{e}")),
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> libc::c_long {
    // SAFETY: the attr buffer is ours and large enough for every command used.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) }
}

/// A one-entry array map; returns its fd (or a negative result).
fn map_create() -> libc::c_long {
    let mut attr = [0u64; 16];
    // map_type 2 (array), key_size 4 | value_size 8, max_entries 1
    attr[0] = 2 | (4 << 32);
    attr[1] = 8 | (1 << 32);
    bpf(BPF_MAP_CREATE, &mut attr)
}

fn map_call(cmd: libc::c_long, fd: i32, value: &mut u64) -> libc::c_long {
    let key: u32 = 0;
    let mut attr = [0u64; 16];
    attr[0] = fd as u64;
    attr[1] = &key as *const u32 as u64;
    attr[2] = value as *mut u64 as u64;
    bpf(cmd, &mut attr)
}

/// `r0 = 0; exit` as a socket filter: the smallest program the kernel loads.
fn prog_load() -> libc::c_long {
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = b"GPL\0";
    let mut attr = [0u64; 16];
    attr[0] = 1 | (2 << 32); // BPF_PROG_TYPE_SOCKET_FILTER, 2 instructions
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd >= 0 {
        // SAFETY: the kernel just returned this fd to us.
        drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    fd
}

/// Attaches to `pid` with ptrace and detaches again.
fn ptrace_attach(pid: i32) -> libc::c_long {
    // SAFETY: ptrace on our own child; it is detached right after.
    let attached = unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if attached == 0 {
        let mut status = 0;
        // SAFETY: waiting for the stop of the child we attached to.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // SAFETY: detaching from it.
        unsafe {
            libc::ptrace(
                libc::PTRACE_DETACH,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
    }
    attached
}

fn seccomp_field(status_path: &str) -> String {
    std::fs::read_to_string(status_path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn exec_true() -> Value {
    io_outcome(
        Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status(),
    )
}

fn write_file(path: &std::path::Path) -> Value {
    io_outcome(std::fs::write(path, b"x"))
}

fn main() {
    let mut report = Map::new();
    let mut record = |key: &str, value: Value| {
        report.insert(key.to_owned(), value);
    };
    let mut command = Command::new("sleep");
    command.arg("30").stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: prctl with integer arguments between fork and exec: the target
    // dies with us (after the filter, kill() is refused to us).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    // Never waited for: it cannot be killed under the filter, and dies with us.
    #[allow(clippy::zombie_processes)]
    let target = command.spawn().unwrap_or_else(|e| panic!("sleep: {e}"));
    let target_pid = target.id() as i32;
    let scratch = std::env::temp_dir().join(format!("zt-seccomp-{}", std::process::id()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let map_fd = map_create();
    // A thread that exists before the filter: TSYNC must cover it too.
    let (go, wait) = mpsc::channel::<()>();
    let (report_back, results) = mpsc::channel::<(String, Value)>();
    let early = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let _ = wait.recv();
        let _ = report_back.send((
            "early_thread_seccomp".into(),
            json!(seccomp_field(&format!("/proc/self/task/{tid}/status"))),
        ));
        let _ = report_back.send(("early_thread_prog_load".into(), outcome(prog_load())));
    });

    record("before_map_create", outcome(map_fd));
    record("before_prog_load", outcome(prog_load()));
    record("before_ptrace", outcome(ptrace_attach(target_pid)));
    record("before_exec", exec_true());
    record("before_write_file", write_file(&scratch));
    let _ = std::fs::remove_file(&scratch);

    let installed = sandbox::install(SeccompMode::Enforce);
    record(
        "install",
        json!(installed.map(|()| "ok".to_owned()).unwrap_or_else(|e| e)),
    );
    let _ = go.send(());
    let _ = early.join();
    for (key, value) in results.try_iter() {
        record(&key, value);
    }
    record("seccomp", json!(seccomp_field("/proc/self/status")));
    // Forbidden now.
    record("prog_load", outcome(prog_load()));
    record("map_create", outcome(map_create()));
    record("ptrace", outcome(ptrace_attach(target_pid)));
    record("exec", exec_true());
    record("write_file", write_file(&scratch));
    // SAFETY: prctl with integer arguments; would clear the parent-death signal.
    record(
        "clear_parent_death_signal",
        outcome(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) }.into()),
    );
    // SAFETY: kill with signal 0 only probes; the target is our own child.
    record("kill", outcome(unsafe { libc::kill(target_pid, 0) }.into()));
    // Still allowed: what the worker does after start-up.
    let mut value = 7u64;
    record(
        "map_update",
        outcome(map_call(BPF_MAP_UPDATE_ELEM, map_fd as i32, &mut value)),
    );
    let mut read_back = 0u64;
    record(
        "map_lookup",
        outcome(map_call(BPF_MAP_LOOKUP_ELEM, map_fd as i32, &mut read_back)),
    );
    record("map_value", json!(read_back));
    record(
        "read_proc",
        io_outcome(std::fs::read_to_string("/proc/self/stat")),
    );
    let exchanged = (|| -> std::io::Result<Vec<u8>> {
        let mut client = TcpStream::connect(("127.0.0.1", port))?;
        let (mut server, _) = listener.accept()?;
        client.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    })();
    record("tcp", io_outcome(exchanged));
    let late = std::thread::spawn(|| outcome(prog_load()));
    record(
        "late_thread_prog_load",
        late.join().unwrap_or_else(|_| json!("panicked")),
    );
    if map_fd >= 0 {
        // SAFETY: closing the map fd we created (as the worker would not).
        unsafe { libc::close(map_fd as i32) };
    }
    println!("{}", Value::Object(report));
}
