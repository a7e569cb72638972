//! Worker isolation (#12), against the real agent: a process of the worker's
//! own uid cannot reach into it (ptrace, /proc/PID/{mem,environ,maps,fd},
//! pidfd_getfd), the OTLP token is in no file of /proc/PID that uid can read
//! and still reaches the backend, the default worker uid is its own, and a
//! configuration file only root can read works; and a pid bitmap bit set
//! without the pid filter (what a compromised worker can do) captures
//! nothing, even on a socket an instrumented process marked plain. Each check
//! has a control that shows the same probe succeeding where nothing protects
//! the target.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::*;
use zerotrace_shared::startup::KEPT_IN_ENVIRONMENT;

/// The names the worker's environment may hold: its two descriptor numbers
/// and the TLS root and proxy locations libraries read from there.
fn allowed_in_environment(name: &str) -> bool {
    ["ZEROTRACE_IPC_FD", "ZEROTRACE_STARTUP_FD"].contains(&name)
        || KEPT_IN_ENVIRONMENT.contains(&name)
}

fn reach_probe() -> PathBuf {
    let probe = bin_dir().join("zerotrace-reach-probe");
    assert!(probe.is_file(), "build the workspace first");
    probe
}

/// (uid, gid) of a process: the effective ones.
fn ids_of(pid: u32) -> (u32, u32) {
    let id = |field: &str| {
        status_field(pid, field)
            .and_then(|v| v.split_whitespace().nth(1).and_then(|x| x.parse().ok()))
            .unwrap_or_else(|| panic!("no {field} for pid {pid}"))
    };
    (id("Uid:"), id("Gid:"))
}

/// Runs the probe as uid:gid against `pid`; its JSON report.
fn probe_as(uid: u32, gid: u32, pid: u32, args: &[&str]) -> Value {
    let output = Command::new(reach_probe())
        .args([uid.to_string(), gid.to_string(), pid.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// A plain (dumpable) process of uid:gid, with `env` in its environment.
struct Control(Child);

impl Control {
    fn start(uid: u32, gid: u32, env: &[(&str, &str)]) -> Control {
        let child = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--", "sleep", "60"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("setpriv: {e}"));
        let control = Control(child);
        let pid = control.0.id();
        let ready = wait_for(Duration::from_secs(5), || {
            (comm_of(pid) == "sleep" && ids_of(pid) == (uid, gid)).then_some(())
        });
        assert!(ready.is_some(), "the control process did not start");
        control
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker_of(agent: &Agent) -> u32 {
    agent
        .worker_pid()
        .unwrap_or_else(|| panic!("no worker:\n{}", agent.stderr.text()))
}

fn strings(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_process_of_the_workers_uid_cannot_reach_into_it() {
    require_root();
    let agent = Agent::start(&["--open-port", "1"], &[]);
    let worker = worker_of(&agent);
    let (uid, gid) = ids_of(worker);
    assert_ne!(uid, 0);
    // Once running, the worker has settled its start-up real gid: one identity.
    let gids = status_field(worker, "Gid:").unwrap_or_default();
    assert!(
        gids.split_whitespace().all(|g| g == gid.to_string()),
        "{gids}"
    );

    // Control: the same probe, same uid, against a process nothing protects.
    let control = Control::start(uid, gid, &[]);
    let open = probe_as(uid, gid, control.0.id(), &["probe"]);
    for key in ["ptrace_attach", "maps", "mem", "environ", "fd_list"] {
        assert_eq!(open.str_of(key), "ok", "control {key}: {open}");
    }
    assert_eq!(strings(&open, "fd_opens")[0], "ok", "{open}");
    assert_eq!(strings(&open, "pidfd_getfd")[0], "ok", "{open}");

    let report = probe_as(uid, gid, worker, &["probe"]);
    assert_eq!(report.str_of("ptrace_attach"), "EPERM", "{report}");
    for key in ["maps", "mem", "environ", "fd_list"] {
        assert!(
            matches!(report.str_of(key), "EACCES" | "EPERM"),
            "{key}: {report}"
        );
    }
    let opens = strings(&report, "fd_opens");
    assert!(
        opens.len() == 16 && opens.iter().all(|o| o == "EACCES" || o == "EPERM"),
        "{report}"
    );
    let getfds = strings(&report, "pidfd_getfd");
    assert!(
        getfds.len() == 8 && getfds.iter().all(|o| o == "EPERM"),
        "{report}"
    );
    // The kernel's own view: a non-dumpable process's /proc files are root's.
    for file in ["mem", "environ", "maps", "fd"] {
        let meta = std::fs::metadata(format!("/proc/{worker}/{file}"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "/proc/{worker}/{file}");
    }
    assert_eq!(
        agent.worker_pid(),
        Some(worker),
        "the worker was not disturbed"
    );
    drop(agent);

    // Control: the development flag leaves the worker open to its uid.
    let agent = Agent::start(&["--open-port", "1", "--dumpable-worker"], &[]);
    let worker = worker_of(&agent);
    let (uid, gid) = ids_of(worker);
    let report = probe_as(uid, gid, worker, &["probe"]);
    for key in ["ptrace_attach", "mem", "environ", "fd_list"] {
        assert_eq!(
            report.str_of(key),
            "ok",
            "--dumpable-worker {key}: {report}"
        );
    }
    assert_eq!(strings(&report, "pidfd_getfd")[3], "ok", "{report}");
    assert!(agent
        .stderr
        .text()
        .contains("development: the worker is dumpable"));
}

#[test]
fn the_otlp_token_is_in_no_file_its_uid_can_read_and_still_reaches_the_receiver() {
    require_root();
    let token = format!(
        "zt-token-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let headers = format!("Authorization=Bearer%20{token}");
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let endpoint = receiver.endpoint();
    let agent = Agent::start(
        &["--open-port", &server.port.to_string()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", headers.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let worker = worker_of(&agent);
    let (uid, gid) = ids_of(worker);

    curl(&[&server.url("/hello?isolation")]);
    let authorization = receiver
        .wait_for_traces(Duration::from_secs(15), |traces| {
            traces
                .iter()
                .find_map(|t| t.headers.get("authorization").cloned())
        })
        .unwrap_or_else(|| panic!("no export:\n{}", agent.stderr.text()));
    assert_eq!(authorization, format!("Bearer {token}"));

    // The worker's environment holds descriptor numbers (and the TLS root
    // locations, if set) and nothing else.
    let environ = std::fs::read(format!("/proc/{worker}/environ")).unwrap_or_default();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            let text = String::from_utf8_lossy(v);
            text.split_once('=').map(|(k, _)| k.to_owned())
        })
        .collect();
    assert!(names.iter().all(|n| allowed_in_environment(n)), "{names:?}");
    for fd in ["ZEROTRACE_IPC_FD", "ZEROTRACE_STARTUP_FD"] {
        assert!(names.iter().any(|n| n == fd), "{names:?}");
    }

    // Control: the scanner finds the token where it is readable.
    let control = Control::start(uid, gid, &[("OTEL_EXPORTER_OTLP_HEADERS", &headers)]);
    let seen = probe_as(uid, gid, control.0.id(), &["scan", &token]);
    assert!(
        strings(&seen, "found_in")
            .iter()
            .any(|f| f.ends_with("/environ")),
        "{seen}"
    );

    let scan = probe_as(uid, gid, worker, &["scan", &token]);
    assert!(scan.u64_of("readable") > 50, "{scan}");
    assert!(strings(&scan, "found_in").is_empty(), "{scan}");
}

#[test]
fn the_default_worker_uid_is_its_own_and_nobody_needs_asking() {
    require_root();
    let agent = Agent::start(&["--open-port", "1"], &[]);
    let worker = worker_of(&agent);
    let (uid, gid) = ids_of(worker);
    assert!(uid != 65534 && uid != 0 && gid != 65534, "{uid}:{gid}");
    let service_user = Command::new("getent")
        .args(["passwd", "zerotrace"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let line = if service_user {
        format!("uid {uid} (zerotrace, the service user)")
    } else {
        format!("uid {uid}, a per-run uid")
    };
    assert!(
        agent.stderr.text().contains(&line),
        "{}",
        agent.stderr.text()
    );
    // No other process has that uid or gid, in any of its id fields.
    let others: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default();
    for pid in others.into_iter().filter(|p| *p != worker) {
        for field in ["Uid:", "Gid:"] {
            let ids = status_field(pid, field).unwrap_or_default();
            let owner = if field == "Uid:" { uid } else { gid };
            assert!(
                !ids.split_whitespace().any(|v| v == owner.to_string()),
                "pid {pid} ({}) has {field} {ids}",
                comm_of(pid)
            );
        }
    }
    drop(agent);

    let agent = Agent::start(&["--open-port", "1", "--worker-user", "nobody"], &[]);
    let worker = worker_of(&agent);
    assert_eq!(ids_of(worker).0, 65534);
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains("warning: the worker runs as uid 65534 (nobody)"),
        "{stderr}"
    );
}

/// A root-only directory holding a root-only (0600) configuration file.
fn root_only_config(name: &str, yaml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zt-iso-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("zt.yaml");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Names of the BPF maps a process holds open.
fn map_names_of(pid: u32) -> BTreeSet<String> {
    bpf_map_ids_of(pid)
        .into_iter()
        .filter_map(bpf_map_name)
        .collect()
}

/// The worker holds the four maps its job needs and nothing else: not the
/// connection state, not the programs' settings (`.rodata`) and not their
/// global data (`.bss`, which holds where the data programs find a syscall's
/// registers in the kernel stack: written there, it would send their user
/// memory reads elsewhere). The loader holds those (the control).
#[test]
fn the_worker_holds_only_the_maps_its_job_needs() {
    require_root();
    let agent = Agent::start(&["--open-port", "1"], &[]);
    let worker = worker_of(&agent);
    let expected: BTreeSet<String> = ["zt_counters", "zt_events", "zt_pid_bits", "zt_pid_filter"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let held = wait_for(Duration::from_secs(10), || {
        let held = map_names_of(worker);
        (held.len() >= expected.len()).then_some(held)
    })
    .unwrap_or_else(|| map_names_of(worker));
    assert_eq!(held, expected, "the worker's maps");
    let loader = map_names_of(agent.child.id());
    let mut kept_by_loader = vec![".bss", ".rodata", "zt_conn_state"];
    // The socket storage exists with the socket backend only (kernel >= 6.3).
    if agent.stderr.text().contains("data from socket tracepoints") {
        kept_by_loader.push("zt_conn_storage");
    }
    for kept in kept_by_loader {
        assert!(
            loader.iter().any(|name| name.ends_with(kept)),
            "the loader holds no {kept} map: {loader:?}"
        );
    }
}

#[test]
fn a_root_only_config_file_works_and_a_missing_one_is_one_loader_error() {
    require_root();
    let server = Server::python_app();
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {}\n",
        server.port
    );
    let path = root_only_config("flag", &yaml);
    let path_text = path.to_string_lossy().into_owned();
    let agent = Agent::start(&["--config", &path_text], &[]);
    let worker = worker_of(&agent);
    let (uid, gid) = ids_of(worker);
    // Control: the worker's uid really cannot read the file.
    let cat = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--", "cat"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!cat.status.success(), "the file must be root-only: {cat:?}");
    curl(&[&server.url("/hello?from-flag")]);
    agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?from-flag");
    drop(agent);

    let path = root_only_config("env", &yaml);
    let agent = Agent::start(&[], &[("OTEL_EBPF_CONFIG_PATH", &path.to_string_lossy())]);
    curl(&[&server.url("/hello?from-env")]);
    agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?from-env");
    drop(agent);

    let missing = "/nonexistent/zerotrace-iso/zt.yaml";
    let output = Command::new(bin_dir().join("zerotrace"))
        .args(["run", "--config", missing])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "zerotrace: error: cannot read the configuration file {missing}: \
             No such file or directory (os error 2)"
        )
    );
}

#[test]
fn the_loader_execs_the_worker_non_dumpable_with_its_settings_only_in_the_startup_data() {
    require_root();
    let stand_in = bin_dir().join("zerotrace-startup-report");
    assert!(stand_in.is_file(), "build the workspace first");
    let yaml = "# only root can read this\n";
    let path = root_only_config("report", yaml);
    let path_text = path.to_string_lossy().into_owned();
    let headers = "Authorization=Bearer%20startup-report";
    let mut agent = Agent::spawn(
        &[
            "--open-port",
            "1",
            "--config",
            &path_text,
            "--worker-path",
            &stand_in.to_string_lossy(),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", headers),
            ("AWS_SECRET_ACCESS_KEY", "not-for-the-worker"),
            ("HTTPS_PROXY", "http://user:proxy-password@127.0.0.1:9"),
            ("NO_PROXY", "localhost"),
        ],
    );
    let code = wait_for(Duration::from_secs(15), || {
        agent.child.try_wait().ok().flatten()
    });
    assert_eq!(
        code.and_then(|c| c.code()),
        Some(78),
        "{}",
        agent.stderr.text()
    );
    std::thread::sleep(Duration::from_millis(100));
    let report: Value = agent
        .stdout
        .snapshot()
        .iter()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report: {}", agent.stderr.text()));
    // The kernel started it non-dumpable: exec'd with real gid != effective gid.
    assert_eq!(report.u64_of("dumpable_at_start"), 0, "{report}");
    let gids: Vec<u64> = report["gids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(
        gids.len() == 3 && gids[0] != gids[1] && gids[1] == gids[2],
        "{report}"
    );
    let environment = strings(&report, "environment");
    assert!(
        environment.iter().all(|n| allowed_in_environment(n)),
        "{report}"
    );
    // A proxy address stays (reqwest reads it there); one with credentials does not.
    assert!(environment.iter().any(|n| n == "NO_PROXY"), "{report}");
    assert!(!environment.iter().any(|n| n == "HTTPS_PROXY"), "{report}");
    assert!(
        agent
            .stderr
            .text()
            .contains("warning: HTTPS_PROXY carries credentials and is not passed to the worker"),
        "{}",
        agent.stderr.text()
    );
    let handed = strings(&report, "startup_variables");
    assert!(
        handed.iter().any(|n| n == "OTEL_EXPORTER_OTLP_HEADERS"),
        "{report}"
    );
    assert!(
        !handed.iter().any(|n| n == "AWS_SECRET_ACCESS_KEY"),
        "{report}"
    );
    assert_eq!(report.str_of("otlp_headers"), headers);
    assert_eq!(report.str_of("config_file"), path_text);
    assert_eq!(report.u64_of("config_bytes"), yaml.len() as u64);
}

/// The kernel's plain-socket skip (a process's later segments on a socket it
/// marked plain need only its bitmap bit, not the pid filter's hash) grants
/// nothing to a process the filter does not hold, even with its bit set (by
/// a compromised worker, or left over from an exited process whose pid was
/// reused) and sharing a socket an instrumented process marked plain. The
/// stand-in worker (src/bin/plain_skip_probe.rs) drives one connection
/// shared by A (instrumented) and its child B and reports whose records the
/// ring carried; B's records appear once B is in the filter (the control).
#[test]
fn a_set_bit_without_the_filter_captures_nothing_even_on_a_socket_marked_plain() {
    require_root();
    let probe = bin_dir().join("zerotrace-plain-skip-probe");
    assert!(probe.is_file(), "build the workspace first");
    let (report, agent) = stand_in::report_of(&probe.to_string_lossy(), Duration::from_secs(30));
    let lines = |who: &str| strings(&report["seen"], who);
    let (a, b) = (lines("A"), lines("B"));
    let stderr = agent.stderr.text();
    // A's four segments per exchange (request out and in, response out and in).
    for path in ["/a-1", "/a-2"] {
        let request = format!("GET {path} HTTP/1.1");
        assert_eq!(
            a.iter().filter(|l| **l == request).count(),
            2,
            "{report}\n{stderr}"
        );
    }
    assert_eq!(
        a.iter().filter(|l| *l == "HTTP/1.1 200 OK").count(),
        4,
        "{report}\n{stderr}"
    );
    // B's exchanges before it was in the filter left nothing; after, all of it.
    assert!(
        !b.iter().any(|l| l.contains("/b-1") || l.contains("/b-2")),
        "{report}"
    );
    assert_eq!(
        b,
        [
            "GET /b-3 HTTP/1.1",
            "GET /b-3 HTTP/1.1",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK"
        ],
        "{report}\n{stderr}"
    );
    assert!(lines("other").is_empty(), "{report}");
}
