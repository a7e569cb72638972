//! Started by the real loader through `--worker-path` in place of the worker:
//! asks for TLS library hooks that must be refused (a symbol off the
//! allow-list, a library the pid does not map, a pid that is not
//! instrumented...) and one that must be granted, the same for Go TLS hooks
//! (`AttachGoTls`: a symbol off the list, a path that is not the pid's
//! executable, an executable that is not Go), and prints how the loader
//! answered each as one JSON object; then exits with the "configuration
//! error" code so the loader stops instead of restarting it.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use zerotrace_integration_tests::stand_in::{exchange, loader_socket};
use zerotrace_shared::ipc::{self, Request};

fn ask(socket: &OwnedFd, request: &Request) -> Value {
    match ipc::encode(request) {
        Ok(bytes) => exchange(socket, &bytes, &[]),
        Err(_) => json!("encode failed"),
    }
}

fn spawn(program: &str, args: &[&str]) -> Option<Child> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .ok()
}

/// The libssl file a process maps, once it does (waits up to 10 s).
fn mapped_libssl(pid: u32) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let found = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| {
                p.rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("libssl.so"))
            });
        if let Some(path) = found {
            return Some(path.to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn attach(pid: u32, library: &str, symbol: &str) -> Request {
    Request::AttachUprobe {
        pid,
        library: library.to_owned(),
        symbol: symbol.to_owned(),
    }
}

fn attach_go(pid: u32, exe_path: &str, symbol: &str) -> Request {
    Request::AttachGoTls {
        pid,
        exe_path: exe_path.to_owned(),
        symbol: symbol.to_owned(),
    }
}

const GO_READ: &str = "crypto/tls.(*Conn).Read";

fn main() {
    let socket = loader_socket("uprobe requester");
    let mut results = Map::new();
    let mut record = |label: &str, value: Value| {
        results.insert(label.to_owned(), value);
    };
    record("hello", ask(&socket, &Request::Hello));

    let python = spawn(
        "/usr/bin/python3",
        &["-c", "import ssl, time; time.sleep(60)"],
    );
    let sleeper = spawn("sleep", &["60"]);
    let (Some(mut python), Some(mut sleeper)) = (python, sleeper) else {
        eprintln!("uprobe requester: cannot start the test processes");
        std::process::exit(1);
    };
    let (py, sl) = (python.id(), sleeper.id());
    let Some(libssl) = mapped_libssl(py) else {
        eprintln!("uprobe requester: python never mapped libssl");
        std::process::exit(1);
    };
    record("libssl", json!(libssl));

    // The interpreter's executable is mapped but carries no TLS functions.
    let python_exe = std::fs::read_link(format!("/proc/{py}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    record(
        "not_instrumented",
        ask(&socket, &attach(py, &libssl, "SSL_read")),
    );
    record(
        "go_not_instrumented",
        ask(&socket, &attach_go(py, &python_exe, GO_READ)),
    );
    record(
        "set_targets",
        ask(
            &socket,
            &Request::SetTargets {
                add: vec![py, sl],
                remove: vec![],
            },
        ),
    );
    record(
        "describe_python",
        ask(&socket, &Request::DescribeProcess { pid: py }),
    );
    record("not_mapped", ask(&socket, &attach(sl, &libssl, "SSL_read")));
    record(
        "off_allow_list",
        ask(&socket, &attach(py, &libssl, "SSL_CTX_free")),
    );
    record(
        "libc_system",
        ask(
            &socket,
            &attach(py, "/usr/lib/x86_64-linux-gnu/libc.so.6", "system"),
        ),
    );
    record(
        "relative_path",
        ask(&socket, &attach(py, "libssl.so.3", "SSL_read")),
    );
    record(
        "agent_itself",
        ask(&socket, &attach(std::process::id(), &libssl, "SSL_read")),
    );
    record(
        "absent_symbol",
        ask(&socket, &attach(py, &python_exe, "SSL_read")),
    );
    for (label, request) in [
        (
            "go_off_allow_list",
            attach_go(py, &python_exe, "crypto/tls.(*Conn).Handshake"),
        ),
        (
            "go_close_off_allow_list",
            attach_go(py, &python_exe, "crypto/tls.(*Conn).Close"),
        ),
        ("go_main", attach_go(py, &python_exe, "main.main")),
        (
            "go_http_transport_off_allow_list",
            attach_go(py, &python_exe, "net/http.(*Transport).roundTrip"),
        ),
        ("go_library_path", attach_go(py, &libssl, GO_READ)),
        ("go_other_exe", attach_go(sl, &python_exe, GO_READ)),
        ("go_relative_path", attach_go(py, "python3", GO_READ)),
        (
            "go_agent_itself",
            attach_go(std::process::id(), &python_exe, GO_READ),
        ),
        ("go_not_go", attach_go(py, &python_exe, GO_READ)),
        (
            "go_http_client_not_go",
            attach_go(py, &python_exe, "net/http.(*persistConn).writeLoop"),
        ),
    ] {
        record(label, ask(&socket, &request));
    }
    record("granted", ask(&socket, &attach(py, &libssl, "SSL_read")));
    record(
        "granted_again",
        ask(&socket, &attach(py, &libssl, "SSL_read")),
    );
    record("stats_attached", ask(&socket, &Request::Stats));

    // The last process that asked exits: the hook goes with it.
    let _ = python.kill();
    let _ = python.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = json!(null);
    while Instant::now() < deadline {
        after = ask(&socket, &Request::Stats);
        if after
            .as_str()
            .is_some_and(|s| s.contains("uprobes_attached: 0"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    record("stats_after_exit", after);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    println!("{}", Value::Object(results));
    std::process::exit(78);
}
