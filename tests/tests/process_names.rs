//! Spans name the process, not the thread that made the call: servers rename
//! their threads (grpcio's `event_engine`, Java and Go pools), and the
//! service name, the printer and the live view must not follow them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use zerotrace_integration_tests::*;

/// Names of the threads of `pid` (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Stops the server even when an assertion fails.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_server_whose_request_threads_rename_themselves_is_named_after_its_process() {
    require_root();
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/renamed_threads.py");
    let server = ChildGuard(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display())),
    );
    let pid = server.0.id();
    let listening = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(listening.is_some(), "the server never listened");

    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let url = format!("http://127.0.0.1:{port}/who");
    // Each connection's thread renames itself before reading: every byte
    // of these exchanges is read and written by a `req-worker` thread.
    curl(&[&url, &url]);
    curl(&[&url]);
    let spans = agent.wait_for_spans(3, |s| s.str_of("path") == "/who");
    // Control: the threads that served really carry another name (one
    // connection's thread is still alive in curl's keep-alive window or not;
    // the name is checked while a connection is held open).
    let held = std::net::TcpStream::connect(("127.0.0.1", port));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        thread_names(pid).iter().any(|n| n == "req-worker"),
        "the handler thread was not renamed: {:?}",
        thread_names(pid)
    );
    drop(held);
    assert_eq!(comm_of(pid), "python3");
    for span in &spans {
        assert_eq!(span.str_of("process"), "python3", "{span}");
        assert_eq!(span["pid"].as_u64(), Some(u64::from(pid)), "{span}");
    }
}
