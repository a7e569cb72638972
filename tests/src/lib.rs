//! Helpers for the end-to-end tests: start the real agent (loader + worker)
//! with the JSON trace printer, start real servers, collect the spans the
//! agent prints, and read process facts from /proc.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory holding the built `zerotrace` and `zerotrace-worker`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/<test> -> target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for bin in ["zerotrace", "zerotrace-worker"] {
        assert!(
            dir.join(bin).is_file(),
            "{} missing: build the workspace first (cargo build --workspace)",
            dir.join(bin).display()
        );
    }
    dir
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end tests load BPF programs: run them as root"
    );
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts `command` (a server told to listen on 127.0.0.1:`port`) with no
/// stdio, and waits up to 10 s until the port accepts; `None` (the child
/// killed) when it exited or never listened.
pub fn spawn_listening(command: &mut Command, port: u16) -> Result<Option<Child>, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    let up = wait_for(Duration::from_secs(10), || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Some(false);
        }
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
    });
    if up == Some(true) {
        return Ok(Some(child));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}

/// The python3 of a venv that `tests/servers/<ensure>` makes (or finds)
/// and prints; `scripts/install-deps.sh test` runs it first.
pub fn venv_python(ensure: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join(ensure);
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "the venv of {ensure} is missing (run scripts/install-deps.sh test): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Lines a child process wrote, collected by a background thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(self, stream: impl Read + Send + 'static) -> Self {
        let sink = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.0.lock() {
                    lines.push(line);
                }
            }
        });
        self
    }

    /// Collects from an optional pipe (as taken from a `Child`).
    pub fn collect_from(self, stream: Option<impl Read + Send + 'static>) -> Self {
        match stream {
            Some(stream) => self.collect(stream),
            None => self,
        }
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }
}

/// Polls `check` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The real agent: `zerotrace run` as a separate process.
pub struct Agent {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Agent {
    /// Starts `zerotrace run --trace-printer json` with extra args and env,
    /// and waits until the worker reports it is ready.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Agent {
        let agent = Self::spawn(args, env);
        let ready = wait_for(Duration::from_secs(10), || {
            agent
                .stderr
                .text()
                .contains("ready: instrumenting")
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "agent did not become ready; stderr:\n{}",
            agent.stderr.text()
        );
        agent
    }

    /// Starts the agent (as [`Agent::start`]) exporting spans and metrics to
    /// `receiver` at test pace (spans every 200 ms, metrics every 500 ms)
    /// over the receiver's transport; `extra` environment comes after, so a
    /// variable named again there wins (e.g. `OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub fn start_exporting_to(
        args: &[&str],
        receiver: &otlp_receiver::OtlpReceiver,
        extra: &[(&str, &str)],
    ) -> Agent {
        let endpoint = receiver.endpoint();
        let protocol = match receiver.transport() {
            otlp_receiver::OtlpTransport::Grpc => "grpc",
            otlp_receiver::OtlpTransport::Http => "http/protobuf",
        };
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ];
        env.extend_from_slice(extra);
        Agent::start(args, &env)
    }

    /// Starts the agent without waiting for anything.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::spawn_under(&[], args, env)
    }

    /// Starts the agent through `setpriv` with these options (user,
    /// capability sets…), without waiting for anything.
    pub fn spawn_with_setpriv(setpriv: &[&str], args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut wrapper = vec!["setpriv"];
        wrapper.extend_from_slice(setpriv);
        wrapper.push("--");
        Self::spawn_under(&wrapper, args, env)
    }

    /// `wrapper` (a command and its arguments, or nothing) runs `zerotrace run`.
    fn spawn_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Agent {
        let zerotrace = bin_dir().join("zerotrace");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&zerotrace);
                command
            }
            None => Command::new(&zerotrace),
        };
        command
            .arg("run")
            .args(["--trace-printer", "json"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start zerotrace: {e}"));
        let stdout =
            Lines::default().collect(child.stdout.take().unwrap_or_else(|| panic!("stdout")));
        let stderr =
            Lines::default().collect(child.stderr.take().unwrap_or_else(|| panic!("stderr")));
        Agent {
            child,
            stdout,
            stderr,
        }
    }

    /// Spans printed so far, parsed.
    pub fn spans(&self) -> Vec<Value> {
        self.stdout
            .snapshot()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the worker reports the TLS hooks of `pid` in place.
    pub fn wait_for_tls_hooks(&self, pid: u32) {
        self.wait_for_tls_hooks_through(pid, "");
    }

    /// Waits until the worker reports the TLS hooks of `pid` in place,
    /// through something whose report contains `through`.
    pub fn wait_for_tls_hooks_through(&self, pid: u32, through: &str) {
        let needle = format!("TLS plaintext of pid {pid} captured through");
        let hooked = wait_for(Duration::from_secs(10), || {
            let stderr = self.stderr.text();
            stderr
                .lines()
                .any(|l| l.contains(&needle) && l.contains(through))
                .then_some(())
        });
        assert!(
            hooked.is_some(),
            "no TLS hooks for pid {pid} (reported with {through:?}); agent stderr:\n{}",
            self.stderr.text()
        );
    }

    /// Waits until `count` spans match `predicate`; returns them.
    pub fn wait_for_spans(&self, count: usize, predicate: impl Fn(&Value) -> bool) -> Vec<Value> {
        let found = wait_for(Duration::from_secs(10), || {
            let matching: Vec<Value> = self.spans().into_iter().filter(|s| predicate(s)).collect();
            (matching.len() >= count).then_some(matching)
        });
        found.unwrap_or_else(|| {
            panic!(
                "expected {count} matching span(s); printed spans:\n{}\nagent stderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            )
        })
    }

    /// The worker process's pid (the loader's child).
    pub fn worker_pid(&self) -> Option<u32> {
        children_of(self.child.id())
            .into_iter()
            .find(|pid| comm_of(*pid).starts_with("zerotrace-work"))
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        if status.is_none() {
            let _ = self.child.kill();
        }
        // Let the collector threads drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        status.and_then(|s| s.code())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A real server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    /// `tests/servers/http_app.py` on a free port. Another test may take the
    /// same "free" port first (tests run in parallel): then ours cannot bind,
    /// and another port is tried.
    pub fn python_app() -> Server {
        for _ in 0..5 {
            if let Some(server) = Self::try_python_app_on(free_port()) {
                return server;
            }
        }
        panic!("the test server could not bind a port in 5 tries");
    }

    /// `tests/servers/http_app.py` on the given port.
    pub fn python_app_on(port: u16) -> Server {
        Self::try_python_app_on(port)
            .unwrap_or_else(|| panic!("the test server could not listen on port {port}"))
    }

    /// `tests/servers/<script>` run by Debian's `/usr/bin/python3` (for the
    /// Python libraries installed as Debian packages) on a free port: the
    /// script takes the port as its first argument and prints "listening".
    pub fn system_python(script: &str) -> Server {
        for _ in 0..5 {
            if let Some(server) = Self::try_script_on("/usr/bin/python3", script, free_port()) {
                return server;
            }
        }
        panic!("{script} could not bind a port in 5 tries");
    }

    /// `tests/servers/<script> PORT ARGS…` run by `interpreter` on a free
    /// port with `env` added: the script takes the port as its first
    /// argument and prints "listening".
    pub fn script(
        interpreter: &str,
        script: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        for _ in 0..5 {
            let port = free_port();
            if let Some(server) = Self::try_script_with(interpreter, script, port, args, env) {
                return server;
            }
        }
        panic!("{script} could not bind a port in 5 tries");
    }

    /// `tests/servers/<script>` run by `node` on a free port (the script
    /// takes the port and prints "listening"); None when node is not
    /// installed.
    pub fn node(script: &str) -> Option<Server> {
        Command::new("node").arg("--version").output().ok()?;
        for _ in 0..5 {
            if let Some(server) = Self::try_script_on("node", script, free_port()) {
                return Some(server);
            }
        }
        panic!("{script} could not bind a port in 5 tries");
    }

    /// `tests/servers/<script>` run by `node` on `port`; None when node is
    /// not installed or the script cannot listen there.
    pub fn node_on(script: &str, port: u16) -> Option<Server> {
        Command::new("node").arg("--version").output().ok()?;
        Self::try_script_on("node", script, port)
    }

    fn try_python_app_on(port: u16) -> Option<Server> {
        Self::try_script_on("python3", "http_app.py", port)
    }

    /// `interpreter script port`; None when the server exits before saying
    /// it listens (port taken).
    fn try_script_on(interpreter: &str, script: &str, port: u16) -> Option<Server> {
        Self::try_script_with(interpreter, script, port, &[], &[])
    }

    /// [`Self::try_script_on`] with `args` after the port and `env` added.
    fn try_script_with(
        interpreter: &str,
        script: &str,
        port: u16,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Option<Server> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("servers")
            .join(script);
        let mut child = Command::new(interpreter)
            .arg(script)
            .arg(port.to_string())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {interpreter}: {e}"));
        // It prints "listening" once its own socket is bound: a connection
        // alone could reach another test's server on the same port.
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        if line.trim() != "listening" {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let server = Server { child, port };
        server.wait_listening();
        Some(server)
    }

    pub fn wait_listening(&self) {
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
        assert!(up.is_some(), "server on port {} never listened", self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file the worker (its own unprivileged user) can read:
/// `file` in a directory of this test binary named after `dir`, the
/// directory and the file readable by all.
pub fn readable_config(dir: &str, file: &str, yaml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zt-{dir}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    path
}

/// The `User-Agent` curl sends: `curl/<version>` (`curl --version`'s second word).
pub fn curl_user_agent() -> String {
    let output = Command::new("curl")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("curl --version: {text}"));
    format!("curl/{version}")
}

/// Runs curl with the given arguments; returns its stdout.
pub fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    assert!(output.status.success(), "curl {args:?} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs h2load (nghttp2-client) with `args` (options, then the URIs, taken
/// in turn) and returns its report, after checking that it holds each of
/// `expected` ("400 done", "1000 2xx").
pub fn h2load<S: AsRef<std::ffi::OsStr>>(args: &[S], expected: &[&str]) -> String {
    let output = Command::new("h2load")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run h2load: {e}"));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    for want in expected {
        assert!(report.contains(want), "h2load: no {want:?} in\n{report}");
    }
    report
}

/// Sends raw HTTP/1.1 requests on one connection and reads one response per
/// request (Content-Length framed), as a minimal Rust client.
pub fn raw_keepalive_requests(port: u16, requests: &[&str]) -> (u16, Vec<String>) {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut reader = BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));
    let mut responses = Vec::new();
    for request in requests {
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let mut body = vec![0u8; content_length];
        let _ = reader.read_exact(&mut body);
        responses.push(head);
    }
    (local_port, responses)
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| status_field(*pid, "PPid:").as_deref() == Some(&parent.to_string()))
        .collect()
}

pub fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// One field of /proc/PID/status, e.g. "CapEff:".
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
}

/// BPF program ids held open by a process (from /proc/PID/fdinfo).
pub fn bpf_prog_ids_of(pid: u32) -> Vec<u32> {
    bpf_object_ids_of(pid, "prog_id:")
}

/// BPF map ids held open by a process (from /proc/PID/fdinfo).
pub fn bpf_map_ids_of(pid: u32) -> Vec<u32> {
    bpf_object_ids_of(pid, "map_id:")
}

fn bpf_object_ids_of(pid: u32, key: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(id) = line.strip_prefix(key) {
                if let Ok(id) = id.trim().parse() {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A loaded BPF map's name (as the kernel keeps it: 15 bytes at most).
pub fn bpf_map_name(id: u32) -> Option<String> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "show", "id", &id.to_string()])
        .output()
        .ok()?;
    let map: Value = serde_json::from_slice(&out.stdout).ok()?;
    map.get("name").and_then(Value::as_str).map(str::to_owned)
}

/// The entries of the map named `name` that process `pid` holds, each as
/// bpftool formats it with the map's BTF (`{"key": …, "value": …}`); None when
/// the process holds no such map or bpftool cannot dump it.
pub fn bpf_map_entries_of(pid: u32, name: &str) -> Option<Vec<Value>> {
    let id = bpf_map_ids_of(pid)
        .into_iter()
        .find(|id| bpf_map_name(*id).as_deref() == Some(name))?;
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "id", &id.to_string()])
        .output()
        .ok()?;
    let dump: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        dump.into_iter()
            .map(|entry| entry.get("formatted").cloned().unwrap_or(entry))
            .collect(),
    )
}

/// The settings the loader gave the data programs (`zt_settings` in their
/// `.rodata`, as bpftool formats it with the map's BTF), from the maps
/// `loader` holds.
pub fn bpf_program_settings(loader: u32) -> Option<Value> {
    let rodata = bpf_map_ids_of(loader)
        .into_iter()
        .find(|id| bpf_map_name(*id).is_some_and(|name| name.ends_with(".rodata")))?;
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "id", &rodata.to_string()])
        .output()
        .ok()?;
    let dump: Value = serde_json::from_slice(&out.stdout).ok()?;
    dump.pointer("/0/formatted/value/.rodata")?
        .as_array()?
        .iter()
        .find_map(|global| global.get("zt_settings"))
        .cloned()
}

/// Shorthands for reading span fields.
pub trait SpanFields {
    fn str_of(&self, key: &str) -> &str;
    fn u64_of(&self, key: &str) -> u64;
}

impl SpanFields for Value {
    fn str_of(&self, key: &str) -> &str {
        self.get(key).and_then(Value::as_str).unwrap_or("")
    }
    fn u64_of(&self, key: &str) -> u64 {
        self.get(key).and_then(Value::as_u64).unwrap_or(u64::MAX)
    }
}

/// Whether a BPF program with this id is still loaded in the kernel.
pub fn bpf_prog_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: bpf() reads the attr buffer we own; a returned fd is closed at once.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned to us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

pub mod amqp_broker;
pub mod db_servers;
pub mod go_build;
pub mod kafka_broker;
pub mod mongo_stand_in;
pub mod mqtt_broker;
pub mod nats_server;
pub mod otel_sdk;
pub mod otlp_receiver;
pub mod prometheus_server;
pub mod semconv;
pub mod stand_in;

/// A real nginx (the Debian package) in the foreground with 2 worker
/// processes, serving `server_block`; stopped and cleaned up on drop.
pub struct Nginx {
    pub child: Child,
    pub dir: PathBuf,
}

impl Nginx {
    /// `server_block` is the body of nginx's `server { }`; `{dir}` in it is
    /// replaced by the instance's scratch directory.
    pub fn start(name: &str, port: u16, server_block: &str) -> Nginx {
        let dir =
            std::env::temp_dir().join(format!("zt-nginx-{name}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let d = dir.display();
        let config = format!(
            "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  server {{\n{}\n  }}\n}}\n",
            server_block.replace("{dir}", &d.to_string())
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nginx: {e}"));
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "nginx did not listen: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        Nginx { child, dir }
    }
}

impl Drop for Nginx {
    /// SIGKILL on the master alone would leave its workers running (they
    /// are reparented to init): the workers are killed too.
    fn drop(&mut self) {
        let workers = children_of(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate for 127.0.0.1/localhost made with the openssl
/// command in `dir`: (certificate path, key path).
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// A scratch directory with a fresh self-signed certificate, removed on drop.
pub struct Certificate {
    pub dir: PathBuf,
    pub cert: String,
    pub key: String,
}

impl Certificate {
    pub fn new(name: &str) -> Certificate {
        let dir = std::env::temp_dir().join(format!("zt-cert-{name}-{}", std::process::id()));
        let (cert, key) = self_signed_certificate(&dir);
        Certificate {
            dir,
            cert: cert.display().to_string(),
            key: key.display().to_string(),
        }
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
