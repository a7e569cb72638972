//! For the stand-in workers (`src/bin/hostile_worker.rs`,
//! `src/bin/uprobe_requester.rs`) that the real loader starts through
//! `--worker-path`, and for the tests that read their reports.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Duration;

use serde_json::{json, Value};
use zerotrace_shared::ipc::{self, Reply, IPC_FD_ENV};
use zerotrace_shared::startup::{self, StartupData};

use crate::{wait_for, Agent};

/// The loader's end of the socketpair, from the environment; exits when absent.
/// Like the real worker, the stand-in first takes its effective gid as its
/// real gid (the loader execs it with another real gid, which would make its
/// own children start non-dumpable, their /proc/PID/maps closed to it).
pub fn loader_socket(who: &str) -> OwnedFd {
    if let Err(e) = zerotrace_worker::privileges::settle_real_gid() {
        eprintln!("{who}: {e}");
        std::process::exit(1);
    }
    let fd: i32 = std::env::var(IPC_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    if fd < 3 {
        eprintln!("{who}: no IPC fd");
        std::process::exit(1);
    }
    // SAFETY: the loader passed this descriptor to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The loader's start-up data (its `OTEL_*`/`ZEROTRACE_*` variables and the
/// configuration file), as the real worker reads it; exits when absent.
pub fn startup_data(who: &str) -> StartupData {
    // SAFETY: called once per stand-in process, for the descriptor the loader placed.
    let data = unsafe { startup::take_inherited_fd() }.and_then(startup::read_from);
    data.unwrap_or_else(|e| {
        eprintln!("{who}: {e}");
        std::process::exit(1);
    })
}

/// Sends one message (with `fds` attached) and describes the loader's reply.
pub fn exchange(socket: &OwnedFd, bytes: &[u8], fds: &[i32]) -> Value {
    if let Err(e) = ipc::send_message(socket.as_fd(), bytes, fds) {
        return json!(format!("send failed: {e}"));
    }
    match ipc::recv_message(socket.as_fd()) {
        Ok(Some(message)) => match ipc::decode::<Reply>(&message.bytes) {
            Ok(Reply::Hello { maps, .. }) => {
                json!(format!(
                    "Hello: {} maps, {} fds",
                    maps.len(),
                    message.fds.len()
                ))
            }
            Ok(reply) => json!(format!("{reply:?}")),
            Err(e) => json!(format!("undecodable reply {e:?}")),
        },
        Ok(None) => json!("connection closed"),
        Err(e) => json!(format!("recv failed: {e}")),
    }
}

/// Runs the agent with `worker` as its worker until the stand-in exits with
/// the configuration-error code (78); returns its JSON report and the agent.
pub fn report_of(worker: &str, timeout: Duration) -> (Value, Agent) {
    let mut agent = Agent::spawn(&["--open-port", "1", "--worker-path", worker], &[]);
    let code = wait_for(timeout, || agent.child.try_wait().ok().flatten());
    assert_eq!(
        code.and_then(|c| c.code()),
        Some(78),
        "{}",
        agent.stderr.text()
    );
    std::thread::sleep(Duration::from_millis(100));
    let report = agent
        .stdout
        .snapshot()
        .iter()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from {worker}: {}", agent.stderr.text()));
    (report, agent)
}
