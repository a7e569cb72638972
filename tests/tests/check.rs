//! `zerotrace check` against this real kernel: feature probing by loading.

use std::process::Command;

use zerotrace_integration_tests::*;

fn check_as(prefix: &[&str]) -> (Option<i32>, String) {
    let zerotrace = bin_dir().join("zerotrace");
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&zerotrace);
            c
        }
        None => Command::new(&zerotrace),
    };
    let output = command
        .arg("check")
        .output()
        .unwrap_or_else(|e| panic!("zerotrace check: {e}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn check_reports_what_loads_here() {
    require_root();
    let (code, report) = check_as(&[]);
    assert_eq!(code, Some(0), "{report}");
    for expected in [
        "kernel:",
        "BTF:           present",
        "tp_btf          yes",
        "uprobe_multi",
        "fentry",
        "kprobe",
        "HTTP/1 capture (socket tracepoints backend): WILL WORK",
        "TLS plaintext via uprobes:                   will work (uprobe_multi; CAP_SYS_PTRACE",
        "Go crypto/tls plaintext (Go 1.17+):          will work for Go 1.17+ amd64 executables",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
}

#[test]
fn check_with_only_bpf_and_perfmon_still_captures() {
    require_root();
    let (code, report) = check_as(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all,+bpf,+perfmon",
        "--ambient-caps=-all,+bpf,+perfmon",
        "--",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("capabilities:  CAP_BPF CAP_PERFMON"),
        "{report}"
    );
    assert!(report.contains("WILL WORK"), "{report}");
    assert!(report.contains("others need CAP_SYS_PTRACE"), "{report}");
}

#[test]
fn check_without_capabilities_fails_and_says_why() {
    require_root();
    let (code, report) = check_as(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("missing CAP_BPF"), "{report}");
    assert!(report.contains("will NOT work"), "{report}");
}
