//! `zerotrace top` against the real agent: the terminal view driven in tmux
//! while a real server is under load, the live socket's refusal of other
//! users, and the zero-setup mode that starts (and stops) its own agent.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zerotrace_integration_tests::*;

/// A uid that is neither root nor the worker's (`nobody`, 65534, by default).
const OTHER_UID: u32 = 4242;

fn top_binary() -> PathBuf {
    let path = bin_dir().join("zerotrace-top");
    assert!(
        path.is_file(),
        "{} missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// tmux is in scripts/install-deps.sh's test list; installed here if missing.
fn ensure_tmux() {
    let present = || {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return;
    }
    let apt = |args: &[&str]| {
        let _ = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    };
    apt(&["install", "-y", "-q", "tmux"]);
    if !present() {
        // A fresh machine may have no package lists yet.
        apt(&["update", "-q"]);
        apt(&["install", "-y", "-q", "tmux"]);
    }
    assert!(present(), "tmux is needed: apt-get install tmux");
}

/// A fresh directory for one test (0755, so the worker's user can reach its socket directory).
fn test_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "zerotrace-top-e2e-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// One tmux server (own socket, no user config) running one command in a 160x40 pane.
struct Tmux {
    name: String,
    exit_file: PathBuf,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-u", "-f", "/dev/null", "-L", &self.name])
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null());
        command
    }

    /// Runs `command_line` (a shell command) in a new detached session; its exit
    /// code goes to a file, and the pane closes when it ends.
    fn start(dir: &Path, command_line: &str) -> Tmux {
        let tmux = Tmux {
            name: format!(
                "zt-top-{}",
                dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
            ),
            exit_file: dir.join("top.exit"),
        };
        let shell = format!("{command_line}; echo $? > {}", tmux.exit_file.display());
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "top", "-x", "160", "-y", "40"])
            .arg(shell)
            .status()
            .unwrap_or_else(|e| panic!("tmux: {e}"));
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn screen(&self) -> String {
        self.command()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn send(&self, keys: &str) {
        let _ = self
            .command()
            .args(["send-keys", "-t", "top", keys])
            .status();
    }

    fn session_alive(&self) -> bool {
        self.command()
            .args(["has-session", "-t", "top"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Sends `q`; waits for the pane to close; returns the program's exit code.
    fn quit(&self) -> String {
        self.send("q");
        let closed = wait_for(Duration::from_secs(20), || {
            (!self.session_alive()).then_some(())
        });
        assert!(
            closed.is_some(),
            "the pane did not close after q; screen:\n{}",
            self.screen()
        );
        std::fs::read_to_string(&self.exit_file)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// Requests to /hello (200) and /status/500 (500) until dropped (at most 3 minutes).
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let ok = "GET /hello HTTP/1.1\r\nHost: top\r\n\r\n";
                let failing = "GET /status/500 HTTP/1.1\r\nHost: top\r\n\r\n";
                let deadline = Instant::now() + Duration::from_secs(180);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    raw_keepalive_requests(port, &[ok; 10]);
                    raw_keepalive_requests(port, &[failing; 3]);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Load {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The fields of the route table's line for a route starting with `route`:
/// service, route, req/s, err%, p50, p95, p99, total, sparkline.
fn route_line(screen: &str, route: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|line| {
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        (fields.len() >= 8 && fields[1].starts_with(route)).then_some(fields)
    })
}

fn number(field: &str) -> f64 {
    field.trim_end_matches('%').parse().unwrap_or(-1.0)
}

/// The screen once it shows python3's /hello with a request rate and
/// /status/500 (or its route, e.g. /status/*) with errors.
fn wait_for_live_rows(tmux: &Tmux, timeout: Duration) -> Result<String, String> {
    let mut last = String::new();
    let found = wait_for(timeout, || {
        last = tmux.screen();
        let hello = route_line(&last, "/hello")?;
        let failing = route_line(&last, "/status/")?;
        let ok = hello[0].starts_with("python3")
            && number(&hello[2]) > 0.0
            && failing[0].starts_with("python3")
            && number(&failing[3]) > 0.0
            && number(&failing[2]) > 0.0;
        ok.then(|| last.clone())
    });
    found.ok_or(last)
}

fn wait_for_socket(path: &Path, agent: &Agent) {
    let up = wait_for(Duration::from_secs(10), || {
        UnixStream::connect(path).ok().map(|_| ())
    });
    assert!(
        up.is_some(),
        "the worker never served its live view at {}; agent stderr:\n{}",
        path.display(),
        agent.stderr.text()
    );
}

#[test]
fn top_shows_live_red_per_route_and_quits_cleanly() {
    require_root();
    ensure_tmux();
    let top = top_binary();
    let dir = test_dir("view");
    let socket = dir.join("live").join("live.sock");
    let server = Server::python_app();
    let mut agent = Agent::start(
        &[
            "--open-port",
            &server.port.to_string(),
            "--live-socket",
            &socket.to_string_lossy(),
        ],
        &[],
    );
    wait_for_socket(&socket, &agent);
    let load = Load::start(server.port);

    let tmux = Tmux::start(
        &dir,
        &format!("{} --socket {}", top.display(), socket.display()),
    );
    let screen = wait_for_live_rows(&tmux, Duration::from_secs(30)).unwrap_or_else(|screen| {
        panic!(
            "the view never showed python3 /hello with a rate and /status/500 with errors; screen:\n{screen}\nagent stderr:\n{}",
            agent.stderr.text()
        )
    });
    eprintln!("zerotrace top, captured:\n{screen}");
    assert!(screen.contains("zerotrace top"), "{screen}");
    assert!(screen.contains("● connected"), "{screen}");
    let failing = route_line(&screen, "/status/").unwrap_or_default();
    assert_eq!(
        failing[3], "100%",
        "every /status/500 is an error: {screen}"
    );
    let hello = route_line(&screen, "/hello").unwrap_or_default();
    assert_eq!(hello[3], "0.0%", "{screen}");
    assert!(
        hello[4].ends_with("ms") || hello[4].ends_with('s'),
        "p50: {screen}"
    );

    // Keys: the client view has no python3 server rows; back with Tab.
    tmux.send("c");
    let client_view = wait_for(Duration::from_secs(5), || {
        let screen = tmux.screen();
        screen.contains("client spans").then_some(screen)
    });
    assert!(
        client_view.is_some(),
        "c did not switch views:\n{}",
        tmux.screen()
    );
    tmux.send("Tab");
    // A filter that matches nothing hides every row; Esc brings them back.
    for key in ["/", "n", "o", "p", "e", "Enter"] {
        tmux.send(key);
    }
    let filtered = wait_for(Duration::from_secs(5), || {
        let screen = tmux.screen();
        (screen.contains("filter service: nope") && route_line(&screen, "/hello").is_none())
            .then_some(())
    });
    assert!(
        filtered.is_some(),
        "the filter did not apply:\n{}",
        tmux.screen()
    );
    tmux.send("Escape");
    assert!(
        wait_for_live_rows(&tmux, Duration::from_secs(10)).is_ok(),
        "Esc did not clear the filter:\n{}",
        tmux.screen()
    );
    // g: the calls view. The load comes from this (uninstrumented) test, so
    // python3 is called by an address, with the /status/500 errors.
    tmux.send("g");
    // Until the view is drawn whole: a capture taken while the terminal is
    // being redrawn still shows rows of the previous view.
    let calls = wait_for(Duration::from_secs(10), || {
        let screen = tmux.screen();
        if route_line(&screen, "/hello").is_some() {
            return None;
        }
        screen.lines().find_map(|line| {
            let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            (fields.len() == 6
                && fields[0] == "127.0.0.1"
                && fields[1] == "python3"
                && fields[2] == "virtual_node"
                && number(&fields[3]) > 0.0
                && number(&fields[4]) > 0.0)
                .then_some(screen.clone())
        })
    });
    let calls = calls.unwrap_or_else(|| {
        panic!(
            "g did not show 127.0.0.1 calling python3 with a rate and errors (and no route):\n{}",
            tmux.screen()
        )
    });
    eprintln!("zerotrace top, calls view:\n{calls}");
    tmux.send("g");

    assert_eq!(tmux.quit(), "0", "zerotrace-top's exit code");
    drop(load);
    assert_eq!(agent.stop(), Some(0), "stderr:\n{}", agent.stderr.text());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects as `uid` with a small Python client; returns what it saw:
/// `CONNECT-ERROR <errno>`, or `LINE <first line>` then `EOF` (closed) or `MORE`.
fn connect_as(uid: u32, socket: &Path) -> String {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-ERROR", e.errno)
    sys.exit(0)
data = b""
try:
    while b"\n" not in data:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    first, _, rest = data.partition(b"\n")
    print("LINE", first.decode())
    while b"\n" not in rest:
        chunk = s.recv(1 << 20)
        if not chunk:
            print("EOF")
            break
        rest += chunk
    else:
        print("MORE")
except socket.timeout:
    print("TIMEOUT")
"#;
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let output = Command::new(python)
        .args(["-c", CLIENT])
        .arg(socket)
        .uid(uid)
        .gid(uid)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("python3 as uid {uid}: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn the_live_socket_refuses_other_users() {
    require_root();
    let dir = test_dir("refuse");
    let live_dir = dir.join("live");
    let socket = live_dir.join("live.sock");
    let server = Server::python_app();
    let agent = Agent::start(
        &[
            "--open-port",
            &server.port.to_string(),
            "--live-socket",
            &socket.to_string_lossy(),
        ],
        &[],
    );
    wait_for_socket(&socket, &agent);
    let worker_uid: u32 = agent
        .worker_pid()
        .and_then(|pid| status_field(pid, "Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no worker uid"));
    assert_ne!(worker_uid, 0);
    assert_ne!(worker_uid, OTHER_UID);

    // The socket: the worker's, 0600, in a 0700 directory of the worker's.
    let meta = std::fs::metadata(&socket).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), worker_uid);
    let dir_meta = std::fs::metadata(&live_dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dir_meta.mode() & 0o777, 0o700);
    assert_eq!(dir_meta.uid(), worker_uid);

    // Root reads snapshots.
    let root = UnixStream::connect(&socket).unwrap_or_else(|e| panic!("{e}"));
    let _ = root.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let _ = BufReader::new(&root).read_line(&mut line);
    let snapshot: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(snapshot["version"], 1, "{line}");
    drop(root);

    // Another user cannot even reach it (the file system says no)...
    let seen = connect_as(OTHER_UID, &socket);
    assert!(
        seen.starts_with(&format!("CONNECT-ERROR {}", libc::EACCES)),
        "{seen}"
    );

    // ...and with the permissions opened up, the worker refuses it by its
    // SO_PEERCRED uid: one refusal line, then the connection closes.
    std::fs::set_permissions(&live_dir, std::fs::Permissions::from_mode(0o711))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = connect_as(OTHER_UID, &socket);
    assert!(seen.starts_with("LINE {\"refused\""), "{seen}");
    assert!(seen.contains(&format!("uid {OTHER_UID}")), "{seen}");
    assert!(seen.trim_end().ends_with("EOF"), "{seen}");
    assert!(
        !seen.contains("\"version\""),
        "no data for a refused peer: {seen}"
    );
    let logged = wait_for(Duration::from_secs(5), || {
        agent
            .stderr
            .text()
            .contains(&format!("refused a client with uid {OTHER_UID}"))
            .then_some(())
    });
    assert!(logged.is_some(), "stderr:\n{}", agent.stderr.text());

    // The worker's own user is served.
    let seen = connect_as(worker_uid, &socket);
    assert!(seen.starts_with("LINE {\"version\":1"), "{seen}");
    assert!(seen.trim_end().ends_with("MORE"), "{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pids of processes whose command line contains all of `parts`.
fn processes_with(parts: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            parts.iter().all(|p| cmdline.contains(p))
        })
        .collect()
}

#[test]
fn top_starts_and_stops_its_own_agent_with_open_port() {
    require_root();
    ensure_tmux();
    top_binary();
    let dir = test_dir("zero-setup");
    let server = Server::python_app();
    let port = server.port.to_string();
    let load = Load::start(server.port);

    // Through the loader's `zerotrace top` dispatch.
    let zerotrace = bin_dir().join("zerotrace");
    let tmux = Tmux::start(
        &dir,
        &format!("{} top --open-port {port}", zerotrace.display()),
    );
    let screen = wait_for_live_rows(&tmux, Duration::from_secs(60)).unwrap_or_else(|screen| {
        panic!("the zero-setup view never showed live rows; screen:\n{screen}")
    });
    assert!(screen.contains("started by top"), "{screen}");
    let port_arg = format!("--open-port {port} ");
    let agents = processes_with(&["run", &port_arg, "--live-socket", "zerotrace-top."]);
    assert!(!agents.is_empty(), "no agent found for port {port}");
    let private_dirs: Vec<PathBuf> = agents
        .iter()
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let socket = args
                .iter()
                .position(|a| a == "--live-socket")
                .and_then(|i| args.get(i + 1))?;
            Some(Path::new(socket).parent()?.parent()?.to_path_buf())
        })
        .collect();

    assert_eq!(tmux.quit(), "0", "zerotrace-top's exit code");
    let gone = wait_for(Duration::from_secs(10), || {
        agents
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .then_some(())
    });
    assert!(gone.is_some(), "the agent top started is still running");
    assert!(
        processes_with(&[&port_arg, "zerotrace"]).is_empty(),
        "a zerotrace process for port {port} is left behind"
    );
    for private in private_dirs {
        assert!(!private.exists(), "{} left behind", private.display());
    }
    drop(load);
    let _ = std::fs::remove_dir_all(&dir);
}
