//! The loader keeps only what its run needs: started as full root, its
//! effective, permitted and bounding sets hold exactly the capabilities its
//! configuration needs (on every thread), its inheritable and ambient sets
//! are empty, and the worker it starts has an empty bounding set too. The
//! agent still captures with what is left.

use zerotrace_integration_tests::*;

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn mask(capabilities: &[u32]) -> u64 {
    capabilities.iter().fold(0, |m, c| m | (1u64 << c))
}

/// A `Cap*` line of `/proc/PID/task/TID/status` as a bit mask.
fn cap_set(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
}

/// The status of every thread of `pid`.
fn thread_statuses(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap_or_else(|e| panic!("{e}"));
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .collect()
}

fn names(bits: u64) -> String {
    format!("{bits:#x}")
}

/// Starts the agent as root, checks the loader's and the worker's sets, and
/// that a request still becomes a span.
fn check_sets(env: &[(&str, &str)], expected: u64) {
    let server = Server::python_app();
    let port = server.port.to_string();
    let agent = Agent::start(&["--open-port", &port], env);
    let loader = agent.child.id();
    let statuses = thread_statuses(loader);
    assert!(!statuses.is_empty());
    for status in &statuses {
        for field in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(
                names(cap_set(status, field)),
                names(expected),
                "loader {field}; stderr:\n{}",
                agent.stderr.text()
            );
        }
        assert_eq!(cap_set(status, "CapInh"), 0, "loader CapInh");
        assert_eq!(cap_set(status, "CapAmb"), 0, "loader CapAmb");
    }
    let worker = agent
        .worker_pid()
        .unwrap_or_else(|| panic!("no worker; stderr:\n{}", agent.stderr.text()));
    for status in thread_statuses(worker) {
        for field in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
            assert_eq!(cap_set(&status, field), 0, "worker {field}:\n{status}");
        }
    }
    assert!(
        agent
            .stderr
            .text()
            .contains("capabilities kept for the run: CAP_BPF CAP_PERFMON"),
        "{}",
        agent.stderr.text()
    );
    curl(&[&server.url("/hello?fewer-capabilities")]);
    agent.wait_for_spans(1, |s| s.str_of("target") == "/hello?fewer-capabilities");
}

#[test]
fn the_root_loader_keeps_exactly_what_its_run_needs() {
    require_root();
    // As root the worker runs under another uid, and TLS capture is on.
    check_sets(
        &[],
        mask(&[
            CAP_BPF,
            CAP_PERFMON,
            CAP_SETUID,
            CAP_SETGID,
            CAP_SETPCAP,
            CAP_SYS_PTRACE,
        ]),
    );
}

#[test]
fn without_tls_capture_the_loader_drops_cap_sys_ptrace_too() {
    require_root();
    check_sets(
        &[("ZEROTRACE_TLS_CAPTURE", "false")],
        mask(&[CAP_BPF, CAP_PERFMON, CAP_SETUID, CAP_SETGID, CAP_SETPCAP]),
    );
}

#[test]
fn check_says_what_run_would_keep_and_why() {
    require_root();
    let output = std::process::Command::new(bin_dir().join("zerotrace"))
        .arg("check")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("kept by run:"), "{stdout}");
    for (capability, reason) in [
        ("CAP_BPF", "loading the BPF programs"),
        ("CAP_PERFMON", "attaching the tracing programs"),
        ("CAP_SETUID", "starting (and restarting) the worker"),
        ("CAP_SETPCAP", "the worker's capability bounding set"),
        ("CAP_SYS_PTRACE", "/proc/PID/{maps,root,exe}"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(capability) && l.contains(reason)),
            "{capability}: {stdout}"
        );
    }
    assert!(!stdout.contains("  CAP_SYS_ADMIN "), "{stdout}");
}
