//! A stand-in for a compromised worker, started by the real loader through
//! `--worker-path`. Two modes:
//!
//! - Without `ZT_HOSTILE_STATE_DIR`: one session of well-formed requests
//!   whose fields fail the loader's checks, then valid ones; prints how the
//!   loader answered each as one JSON object and exits with the
//!   "configuration error" code so the loader stops instead of restarting it.
//! - With it: each life (the loader restarts it) commits the next protocol
//!   violation of the list (`ZT_HOSTILE_VIOLATIONS` narrows it) after a valid
//!   Hello and Stats, printing one JSON line per step; it counts its lives in
//!   a file of that directory. A life the loader does not end within 10 s
//!   prints `survived`. After the last violation it exits with 78.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};
use zerotrace_integration_tests::stand_in::{exchange, loader_socket, startup_data};
use zerotrace_shared::ipc::{self, Envelope, Request};

const VIOLATIONS: [&str; 7] = [
    "stats_before_hello",
    "hello_again",
    "unknown_tag",
    "wrong_version",
    "garbage",
    "oversize",
    "with_fd",
];

fn encoded(request: &Request) -> Vec<u8> {
    ipc::encode(request).unwrap_or_default()
}

/// The bytes (and fds) of one protocol violation.
fn violation(label: &str) -> (Vec<u8>, Vec<i32>) {
    match label {
        "stats_before_hello" => (encoded(&Request::Stats), vec![]),
        "hello_again" => (encoded(&Request::Hello), vec![]),
        "unknown_tag" => {
            let mut bytes = encoded(&Request::Stats);
            if let Some(tag) = bytes.last_mut() {
                *tag = 0x63;
            }
            (bytes, vec![])
        }
        "wrong_version" => (
            postcard::to_stdvec(&Envelope {
                version: 99,
                body: Request::Hello,
            })
            .unwrap_or_default(),
            vec![],
        ),
        "garbage" => (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(), vec![]),
        "oversize" => (vec![0u8; 100 * 1024], vec![]),
        _ => (
            encoded(&Request::Stats),
            vec![std::io::stdin().as_fd().as_raw_fd()],
        ),
    }
}

fn print_line(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// One well-behaved session with field checks that must fail, then valid requests.
fn field_checks(socket: &OwnedFd) -> ! {
    let own_pid = std::process::id();
    let too_many = Request::SetTargets {
        add: (1..=2000).collect(),
        remove: Vec::new(),
    };
    let steps: Vec<(&str, Vec<u8>)> = vec![
        ("hello", encoded(&Request::Hello)),
        (
            "pid_zero",
            encoded(&Request::SetTargets {
                add: vec![0],
                remove: vec![],
            }),
        ),
        (
            "pid_too_large",
            encoded(&Request::SetTargets {
                add: vec![],
                remove: vec![u32::MAX],
            }),
        ),
        ("too_many_pids", encoded(&too_many)),
        (
            "instrument_self",
            encoded(&Request::SetTargets {
                add: vec![own_pid],
                remove: vec![],
            }),
        ),
        (
            "describe_pid_zero",
            encoded(&Request::DescribeProcess { pid: 0 }),
        ),
        (
            "go_tls_self",
            encoded(&Request::AttachGoTls {
                pid: own_pid,
                exe_path: "/proc/self/exe".into(),
                symbol: "crypto/tls.(*Conn).Read".into(),
            }),
        ),
        (
            "go_tls_off_list",
            encoded(&Request::AttachGoTls {
                pid: 1,
                exe_path: "/sbin/init".into(),
                symbol: "runtime.main".into(),
            }),
        ),
        (
            "go_tls_long_path",
            encoded(&Request::AttachGoTls {
                pid: 1,
                exe_path: format!("/{}", "a".repeat(5000)),
                symbol: "crypto/tls.(*Conn).Write".into(),
            }),
        ),
        ("list_listeners", encoded(&Request::ListListeners)),
        (
            "describe_self",
            encoded(&Request::DescribeProcess { pid: own_pid }),
        ),
        ("stats", encoded(&Request::Stats)),
    ];
    let mut results = Map::new();
    for (label, bytes) in steps {
        results.insert(label.to_owned(), exchange(socket, &bytes, &[]));
    }
    print_line(Value::Object(results));
    std::process::exit(78);
}

/// The life this is (0, 1, …), counted in `dir/lives`.
fn next_life(dir: &Path) -> usize {
    let file = dir.join("lives");
    let life = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let _ = std::fs::write(&file, (life + 1).to_string());
    life
}

fn main() {
    let socket = loader_socket("hostile worker");
    // Handed over by the loader like the real worker's settings.
    let startup = startup_data("hostile worker");
    let Some(dir) = startup.var("ZEROTRACE_TEST_HOSTILE_STATE_DIR") else {
        field_checks(&socket);
    };
    let chosen = startup.var("ZEROTRACE_TEST_HOSTILE_VIOLATIONS");
    let violations: Vec<&str> = VIOLATIONS
        .into_iter()
        .filter(|v| chosen.is_none_or(|c| c.split(',').any(|x| x == *v)))
        .collect();
    let life = next_life(Path::new(&dir));
    let pid = std::process::id();
    let Some(label) = violations.get(life).copied() else {
        print_line(json!({ "life": life, "pid": pid, "done": true }));
        std::process::exit(78);
    };
    if label != "stats_before_hello" {
        let hello = exchange(&socket, &encoded(&Request::Hello), &[]);
        let stats = exchange(&socket, &encoded(&Request::Stats), &[]);
        print_line(json!({ "life": life, "pid": pid, "hello": hello, "stats": stats }));
    }
    print_line(json!({ "life": life, "pid": pid, "violation": label }));
    let (bytes, fds) = violation(label);
    let reply = exchange(&socket, &bytes, &fds);
    print_line(json!({ "life": life, "pid": pid, "violation": label, "reply": reply }));
    // Never answered again, and ended shortly (the timeout only matters if not).
    let timeout = libc::timeval {
        tv_sec: 10,
        tv_usec: 0,
    };
    // SAFETY: setsockopt on our own socket with a timeval that outlives the call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let after = exchange(&socket, &encoded(&Request::Stats), &[]);
    print_line(json!({ "life": life, "pid": pid, "after": after }));
    std::thread::sleep(Duration::from_secs(10));
    print_line(json!({ "life": life, "pid": pid, "survived": label }));
    std::process::exit(1);
}
