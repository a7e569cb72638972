//! The privilege split, checked on the running agent: who the worker is, how
//! the loader answers requests outside its protocol, restarts, and clean exits.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use zerotrace_integration_tests::stand_in;
use zerotrace_integration_tests::*;

#[test]
fn the_worker_runs_without_privileges() {
    require_root();
    let agent = Agent::start(&["--open-port", "1"], &[]);
    let worker = agent
        .worker_pid()
        .unwrap_or_else(|| panic!("no worker process"));
    let uid = status_field(worker, "Uid:").unwrap_or_default();
    assert!(
        uid.split_whitespace().all(|id| id != "0"),
        "worker uids: {uid}"
    );
    assert_eq!(
        status_field(worker, "CapEff:").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(
        status_field(worker, "CapPrm:").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(
        status_field(worker, "CapAmb:").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(status_field(worker, "NoNewPrivs:").as_deref(), Some("1"));
    // It holds no BPF programs: only the loader does.
    assert!(bpf_prog_ids_of(worker).is_empty());
    assert!(!bpf_prog_ids_of(agent.child.id()).is_empty());
}

fn hostile_worker() -> String {
    let hostile = bin_dir().join("zerotrace-hostile-worker");
    assert!(hostile.is_file(), "build the workspace first");
    hostile.to_string_lossy().into_owned()
}

#[test]
fn the_loader_refuses_fields_that_fail_its_checks_and_keeps_serving() {
    require_root();
    let (results, agent) = stand_in::report_of(&hostile_worker(), Duration::from_secs(15));
    let answer = |label: &str| results.str_of(label).to_owned();

    assert_eq!(answer("hello"), "Hello: 4 maps, 4 fds");
    for label in [
        "pid_zero",
        "pid_too_large",
        "too_many_pids",
        "instrument_self",
        "describe_pid_zero",
        "go_tls_self",
        "go_tls_off_list",
        "go_tls_long_path",
    ] {
        assert!(
            answer(label).starts_with("Refused(InvalidField"),
            "{label}: {}",
            answer(label)
        );
    }
    for (label, field) in [
        ("go_tls_self", "AttachGoTls.pid"),
        ("go_tls_off_list", "AttachGoTls.symbol"),
        ("go_tls_long_path", "AttachGoTls.exe_path"),
    ] {
        assert!(answer(label).contains(field), "{label}: {}", answer(label));
    }
    // Still serving after all of that: a failed field check is not a protocol violation.
    assert!(
        answer("list_listeners").starts_with("Listeners("),
        "{}",
        answer("list_listeners")
    );
    assert!(
        answer("describe_self").contains("zerotrace-hostile-worker"),
        "{}",
        answer("describe_self")
    );
    let stats = answer("stats");
    assert!(stats.contains("requests_refused: 8"), "{stats}");
    let stderr = agent.stderr.text();
    assert!(stderr.contains("refused a worker request"), "{stderr}");
    assert!(!stderr.contains("protocol violation"), "{stderr}");
}

/// The JSON lines a hostile worker printed, parsed.
fn hostile_lines(agent: &Agent) -> Vec<Value> {
    agent
        .stdout
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs the hostile worker through the given violations, one per life, under
/// a loader started by `command`; returns the agent's stderr and the lines.
fn violations_under(agent: &mut Agent, violations: &[&str]) -> (String, Vec<Value>) {
    let code = wait_for(Duration::from_secs(60), || {
        agent.child.try_wait().ok().flatten()
    });
    std::thread::sleep(Duration::from_millis(100));
    let stderr = agent.stderr.text();
    assert_eq!(code.and_then(|c| c.code()), Some(78), "{stderr}");
    let lines = hostile_lines(agent);
    assert!(
        !lines.iter().any(|l| l.get("survived").is_some()),
        "a worker outlived its violation: {lines:?}"
    );
    let mut pids = Vec::new();
    for (life, label) in violations.iter().enumerate() {
        let of_life: Vec<&Value> = lines
            .iter()
            .filter(|l| l.u64_of("life") == life as u64)
            .collect();
        assert!(
            of_life.iter().any(|l| l.str_of("violation") == *label),
            "life {life} never tried {label}: {lines:?}\n{stderr}"
        );
        // Nothing after the violation is answered.
        assert!(
            !of_life
                .iter()
                .any(|l| l.str_of("after").starts_with("Stats")),
            "served after {label}: {of_life:?}"
        );
        let pid = of_life.first().map(|l| l.u64_of("pid")).unwrap_or(0);
        assert!(
            stderr.contains(&format!("protocol violation by the worker (pid {pid})")),
            "{label}: {stderr}"
        );
        pids.push(pid);
    }
    let mut distinct = pids.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        violations.len(),
        "one process per life: {pids:?}"
    );
    // Killed (signal 9), not exited, and a new worker started each time.
    assert_eq!(
        stderr.matches("worker exited (signal: 9").count(),
        violations.len(),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("worker started").count(),
        violations.len() + 1,
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l.get("done").is_some()), "{lines:?}");
    (stderr, lines)
}

#[test]
fn a_protocol_violation_gets_the_worker_killed_and_replaced() {
    require_root();
    let hostile = hostile_worker();
    let dir = std::env::temp_dir().join(format!("zt-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    // The worker runs as nobody: let it count its lives here.
    let _ = Command::new("chmod").arg("0777").arg(&dir).status();
    let state = dir.to_string_lossy().into_owned();
    let mut agent = Agent::spawn(
        &["--open-port", "1", "--worker-path", &hostile],
        &[("ZEROTRACE_TEST_HOSTILE_STATE_DIR", state.as_str())],
    );
    let violations = [
        "stats_before_hello",
        "hello_again",
        "unknown_tag",
        "wrong_version",
        "garbage",
        "oversize",
        "with_fd",
    ];
    let (stderr, lines) = violations_under(&mut agent, &violations);
    let _ = std::fs::remove_dir_all(&dir);
    let unsupported = format!(
        "UnsupportedVersion {{ supported: {} }}",
        zerotrace_shared::ipc::PROTOCOL_VERSION
    );
    for refusal in ["NotPermittedNow", "Malformed", &unsupported, "Oversize"] {
        assert!(
            stderr.contains(&format!("): {refusal}; treating it as compromised")),
            "{refusal}: {stderr}"
        );
    }
    // Before its violation each life was served normally.
    assert!(
        lines
            .iter()
            .filter(|l| l.get("hello").is_some())
            .all(|l| l.str_of("hello") == "Hello: 4 maps, 4 fds"
                && l.str_of("stats").starts_with("Stats(")),
        "{lines:?}"
    );
}

#[test]
fn a_loader_without_cap_kill_still_ends_a_worker_of_another_uid() {
    require_root();
    let hostile = hostile_worker();
    let dir = std::env::temp_dir().join(format!("zt-hostile-uid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let _ = Command::new("chmod").arg("0777").arg(&dir).status();
    // The service unit's set: no CAP_KILL, so kill() from uid 65534 to the
    // worker's uid 1 is refused and the loader's helper has to take uid 1.
    let mut agent = Agent::spawn_with_setpriv(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf,+perfmon,+setuid,+setgid",
            "--ambient-caps=-all,+bpf,+perfmon,+setuid,+setgid",
            "--bounding-set=-all,+bpf,+perfmon,+setuid,+setgid",
        ],
        &[
            "--open-port",
            "1",
            "--live-socket",
            "none",
            "--worker-user",
            "1",
            "--worker-path",
            &hostile,
        ],
        &[
            ("ZEROTRACE_TEST_HOSTILE_STATE_DIR", &dir.to_string_lossy()),
            ("ZEROTRACE_TEST_HOSTILE_VIOLATIONS", "garbage"),
        ],
    );
    let (stderr, lines) = violations_under(&mut agent, &["garbage"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(stderr.contains("uid 1"), "{stderr}");
    assert!(lines.iter().any(|l| l.get("done").is_some()));
}

#[test]
fn a_killed_worker_is_restarted_with_the_same_probes() {
    require_root();
    let server = Server::python_app();
    let agent = Agent::start(&["--open-port", &server.port.to_string()], &[]);
    let loader_progs = bpf_prog_ids_of(agent.child.id());
    assert!(!loader_progs.is_empty());
    let first = agent.worker_pid().unwrap_or_else(|| panic!("no worker"));
    curl(&[&server.url("/hello")]);
    agent.wait_for_spans(1, |s| s.str_of("path") == "/hello");
    // A keep-alive connection that lives across the restart.
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", server.port))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let kept_port = kept.local_addr().map(|a| a.port()).unwrap_or(0);
    let ask = |stream: &mut std::net::TcpStream, path: &str| {
        use std::io::{Read, Write};
        let _ = stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: kept\r\n\r\n").as_bytes());
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
    };
    ask(&mut kept, "/hello?kept=before");
    agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?kept=before");

    // SAFETY: kill on a pid we just looked up.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let second = wait_for(Duration::from_secs(3), || {
        agent.worker_pid().filter(|pid| *pid != first)
    })
    .unwrap_or_else(|| panic!("no new worker; stderr:\n{}", agent.stderr.text()));
    assert_ne!(first, second);
    wait_for(Duration::from_secs(5), || {
        agent
            .stderr
            .text()
            .matches("ready: instrumenting")
            .nth(1)
            .map(|_| ())
    })
    .unwrap_or_else(|| panic!("restarted worker never ready:\n{}", agent.stderr.text()));

    curl(&[&server.url("/missing")]);
    let spans = agent.wait_for_spans(1, |s| s.str_of("path") == "/missing");
    assert_eq!(spans[0].u64_of("status"), 404);
    // The new worker learns the old connection's addresses again.
    ask(&mut kept, "/hello?kept=after");
    let after = agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?kept=after");
    assert_eq!(
        after[0].u64_of("peer_port"),
        u64::from(kept_port),
        "{}",
        after[0]
    );
    assert_eq!(after[0].u64_of("local_port"), u64::from(server.port));
    assert_eq!(after[0].str_of("process"), "python3");
    assert_eq!(
        bpf_prog_ids_of(agent.child.id()),
        loader_progs,
        "probes were reloaded"
    );
}

#[test]
fn sigterm_detaches_everything_and_exits_zero() {
    require_root();
    let mut agent = Agent::start(&["--open-port", "1"], &[]);
    let progs = bpf_prog_ids_of(agent.child.id());
    assert!(!progs.is_empty());
    assert_eq!(agent.stop(), Some(0));
    let still_loaded: Vec<u32> = progs
        .into_iter()
        .filter(|id| bpf_prog_exists(*id))
        .collect();
    // Program release is deferred in the kernel (RCU): give it a moment.
    let gone = wait_for(Duration::from_secs(5), || {
        still_loaded
            .iter()
            .all(|id| !bpf_prog_exists(*id))
            .then_some(())
    });
    assert!(gone.is_some(), "programs left loaded: {still_loaded:?}");
}

#[test]
fn a_worker_with_privileges_refuses_to_run() {
    require_root();
    let mut agent = Agent::spawn(&["--open-port", "1", "--worker-user", "root"], &[]);
    let status = wait_for(Duration::from_secs(10), || {
        agent.child.try_wait().ok().flatten()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(77));
    std::thread::sleep(Duration::from_millis(100));
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains("refusing to run") && stderr.contains("uid 0"),
        "{stderr}"
    );
}

#[test]
fn missing_capabilities_are_named() {
    require_root();
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(bin_dir().join("zerotrace"))
        .args(["run", "--open-port", "8080"])
        .output()
        .unwrap_or_else(|e| panic!("setpriv: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CAP_BPF") && stderr.contains("CAP_PERFMON"),
        "{stderr}"
    );
}

#[test]
fn a_bad_port_selection_is_named() {
    require_root();
    let mut agent = Agent::spawn(&[], &[("OTEL_EBPF_OPEN_PORT", "80,abc")]);
    let status = wait_for(Duration::from_secs(10), || {
        agent.child.try_wait().ok().flatten()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(78));
    std::thread::sleep(Duration::from_millis(100));
    let stderr = agent.stderr.text();
    assert!(
        stderr.contains("OTEL_EBPF_OPEN_PORT") && stderr.contains("80,abc"),
        "{stderr}"
    );
}

#[test]
fn the_agent_runs_with_only_cap_bpf_and_cap_perfmon() {
    require_root();
    let server = Server::python_app();
    let agent = Agent::spawn_with_setpriv(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf,+perfmon",
            "--ambient-caps=-all,+bpf,+perfmon",
            "--bounding-set=-all,+bpf,+perfmon",
        ],
        &["--open-port", &server.port.to_string()],
        &[],
    );
    let (stdout, stderr) = (&agent.stdout, &agent.stderr);
    let ready = wait_for(Duration::from_secs(10), || {
        stderr.text().contains("ready: instrumenting").then_some(())
    });
    assert!(ready.is_some(), "{}", stderr.text());
    curl(&[&server.url("/hello")]);
    let span = wait_for(Duration::from_secs(10), || {
        stdout
            .snapshot()
            .into_iter()
            .find(|l| l.contains("\"/hello\""))
    });
    assert!(span.is_some(), "no span; stderr:\n{}", stderr.text());
    assert!(stderr.text().contains("uid 65534"), "{}", stderr.text());
}

#[test]
fn a_stop_signal_during_start_up_is_obeyed_once_the_probes_are_in() {
    // Started in the background by a shell without job control, a program
    // begins with SIGINT ignored. A SIGINT that came while the loader was
    // still loading its probes was then thrown away, and the agent ran on.
    // It is now held until the loader can act on it: a clean stop.
    require_root();
    let zerotrace = bin_dir().join("zerotrace");
    let mut child = Command::new("sh")
        .args(["-c", "trap '' INT; exec \"$0\" run --open-port 1"])
        .arg(&zerotrace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", zerotrace.display()));
    // Loading and attaching the probes takes about a second here.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill on our own child's pid (sh has exec'd the agent by now).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let status = status.unwrap_or_else(|| panic!("still running 20 s after SIGINT:\n{stderr}"));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping: detaching probes"), "{stderr}");
}
