//! Zero-setup mode: with no agent running, `zerotrace top --open-port PORTS`
//! starts `zerotrace run` for its own session (with the privileges the user
//! has), reads its live view, and stops it on quit.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zerotrace_worker::live_view::LiveSnapshot;

use crate::client;

/// How long the agent may take to load its probes and start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent this process started.
pub struct OwnAgent {
    child: Option<Child>,
    /// Private directory: the agent's log, and `live/` for the socket.
    dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// A new directory only we can write: `zerotrace-top.<pid>.<n>` under the temp dir,
/// mode 0711 so the worker (maybe another user) can reach its socket directory.
fn private_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut last = String::new();
    for attempt in 0..16u32 {
        let dir = base.join(format!(
            "zerotrace-top.{}.{:08x}",
            std::process::id(),
            nanos.wrapping_add(attempt.wrapping_mul(0x9e37_79b9))
        ));
        // create, never reuse: an existing path (someone else's) is an error here
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = format!("creating {}: {e}", dir.display()),
        }
    }
    Err(last)
}

/// The last lines of the agent's log.
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl OwnAgent {
    /// Starts `zerotrace run --open-port PORTS --trace-printer disabled --live-socket …`.
    pub fn start(zerotrace: &Path, ports: &str) -> Result<Self, String> {
        let dir = private_dir()?;
        let socket = dir.join("live").join("live.sock");
        let log = dir.join("agent.log");
        let log_file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&log)
            .map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut command = Command::new(zerotrace);
        command
            .args([
                "run",
                "--open-port",
                ports,
                "--trace-printer",
                "disabled",
                "--live-socket",
            ])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // Its own process group: keys typed at the terminal are ours.
            .process_group(0);
        // SAFETY: between fork and exec the child only calls prctl, which is
        // async-signal-safe. If this process dies without stopping the agent
        // (killed), the agent gets SIGTERM and stops too.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            format!("cannot run {}: {e}", zerotrace.display())
        })?;
        Ok(Self {
            child: Some(child),
            dir,
            socket,
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Why the agent is gone, if it is.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("the agent exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("the agent: {e}")),
        }
    }

    /// Waits until the agent serves its live view; returns the connection.
    pub fn wait_ready(&mut self) -> Result<(BufReader<UnixStream>, LiveSnapshot), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(reason) = self.exited() {
                return Err(format!("{reason}:\n{}", tail(&self.log, 20)));
            }
            if self.socket.exists() {
                match client::open(&self.socket) {
                    Ok(opened) => return Ok(opened),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the agent did not serve {} within {} s:\n{}",
                    self.socket.display(),
                    READY_TIMEOUT.as_secs(),
                    tail(&self.log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then SIGKILL if it does not stop; removes the private directory.
    /// Returns the end of the agent's log when it did not stop by itself.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        if let Ok(None) = child.try_wait() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        result = Err(format!(
                            "the agent did not stop within {} s and was killed:\n{}",
                            STOP_TIMEOUT.as_secs(),
                            tail(&self.log, 20)
                        ));
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

impl Drop for OwnAgent {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a stand-in agent script this test just wrote. Tests run on
    /// threads of one process: a child another test forks between our write
    /// and its own exec holds our file open for writing, and exec then fails
    /// with ETXTBSY until that child has exec'd. That window is short; retry.
    fn start_fake(script: &Path) -> OwnAgent {
        let mut last = String::new();
        for _ in 0..100 {
            match OwnAgent::start(script, "8080") {
                Ok(agent) => return agent,
                Err(e) if e.contains("Text file busy") => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    #[test]
    fn a_missing_agent_binary_is_reported_and_cleaned_up() {
        let err = OwnAgent::start(Path::new("/nonexistent/zerotrace"), "8080")
            .err()
            .unwrap_or_default();
        assert!(err.contains("cannot run /nonexistent/zerotrace"), "{err}");
    }

    #[test]
    fn an_agent_that_fails_shows_its_log() {
        // A stand-in agent that complains and exits.
        let dir = private_dir().unwrap_or_else(|e| panic!("{e}"));
        let script = dir.join("fake-zerotrace");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"zerotrace: missing CAP_BPF\" >&2\nexit 1\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut agent = start_fake(&script);
        let own_dir = agent.dir.clone();
        let err = agent.wait_ready().err().unwrap_or_default();
        assert!(err.contains("missing CAP_BPF"), "{err}");
        assert!(agent.stop().is_ok());
        assert!(!own_dir.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_running_agent_is_stopped() {
        let dir = private_dir().unwrap_or_else(|e| panic!("{e}"));
        let script = dir.join("fake-zerotrace");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut agent = start_fake(&script);
        let pid = agent.pid().unwrap_or(0);
        assert!(agent.exited().is_none());
        let started = Instant::now();
        assert!(agent.stop().is_ok());
        assert!(started.elapsed() < STOP_TIMEOUT);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
