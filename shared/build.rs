//! Compiles bpf-programs/include/zerotrace_events.h with the host C compiler
//! and records its struct layout, so the Rust decoder reads the exact offsets
//! the BPF programs write. A field renamed or removed in the header breaks
//! this build instead of silently decoding garbage.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const HEADER: &str = "../bpf-programs/include/zerotrace_events.h";

/// (Rust constant name, C expression) pairs printed by the probe program.
const LAYOUT: &[(&str, &str)] = &[
    ("EVENT_SIZE", "sizeof(struct zt_event)"),
    ("EVENT_COMPACT_SIZE", "ZT_EVENT_COMPACT_SIZE"),
    ("EVENT_KIND", "offsetof(struct zt_event, kind)"),
    ("EVENT_DIRECTION", "offsetof(struct zt_event, direction)"),
    ("EVENT_ROLE", "offsetof(struct zt_event, role)"),
    ("EVENT_FLAGS", "offsetof(struct zt_event, flags)"),
    ("EVENT_PID", "offsetof(struct zt_event, pid)"),
    ("EVENT_TID", "offsetof(struct zt_event, tid)"),
    (
        "EVENT_CAPTURED_LEN",
        "offsetof(struct zt_event, captured_len)",
    ),
    ("EVENT_TS_NS", "offsetof(struct zt_event, ts_ns)"),
    ("EVENT_SOCK_ID", "offsetof(struct zt_event, sock_id)"),
    ("EVENT_BYTES", "offsetof(struct zt_event, bytes)"),
    ("EVENT_TUPLE", "offsetof(struct zt_event, tuple)"),
    ("EVENT_COMM", "offsetof(struct zt_event, comm)"),
    (
        "TUPLE_LOCAL_ADDR",
        "offsetof(struct zt_conn_tuple, local_addr)",
    ),
    (
        "TUPLE_PEER_ADDR",
        "offsetof(struct zt_conn_tuple, peer_addr)",
    ),
    (
        "TUPLE_LOCAL_PORT",
        "offsetof(struct zt_conn_tuple, local_port)",
    ),
    (
        "TUPLE_PEER_PORT",
        "offsetof(struct zt_conn_tuple, peer_port)",
    ),
    ("TUPLE_FAMILY", "offsetof(struct zt_conn_tuple, family)"),
    ("LISTENER_SIZE", "sizeof(struct zt_listener)"),
    ("LISTENER_PID", "offsetof(struct zt_listener, pid)"),
    ("LISTENER_PORT", "offsetof(struct zt_listener, port)"),
    ("LISTENER_FAMILY", "offsetof(struct zt_listener, family)"),
    ("KIND_DATA", "ZT_EVENT_DATA"),
    ("KIND_CONNECTION", "ZT_EVENT_CONNECTION"),
    ("KIND_CLOSE", "ZT_EVENT_CLOSE"),
    ("KIND_LISTEN", "ZT_EVENT_LISTEN"),
    ("KIND_PROCESS_EXIT", "ZT_EVENT_PROCESS_EXIT"),
    ("KIND_PROCESS_FORK", "ZT_EVENT_PROCESS_FORK"),
    ("KIND_PROCESS_EXEC", "ZT_EVENT_PROCESS_EXEC"),
    ("DIR_INGRESS", "ZT_DIR_INGRESS"),
    ("DIR_EGRESS", "ZT_DIR_EGRESS"),
    ("ROLE_SERVER", "ZT_ROLE_SERVER"),
    ("ROLE_CLIENT", "ZT_ROLE_CLIENT"),
    ("COUNTER_EVENTS_SUBMITTED", "ZT_COUNTER_EVENTS_SUBMITTED"),
    ("COUNTER_RINGBUF_DROPS", "ZT_COUNTER_RINGBUF_DROPS"),
    ("COUNTER_TLS_UNASSOCIATED", "ZT_COUNTER_TLS_UNASSOCIATED"),
    ("COUNTER_AFTER_CLOSE", "ZT_COUNTER_AFTER_CLOSE"),
    ("COUNTER_MAX", "ZT_COUNTER_MAX"),
    ("EVENT_FLAG_TLS", "ZT_EVENT_FLAG_TLS"),
    ("EVENT_FLAG_IDENTITY", "ZT_EVENT_FLAG_IDENTITY"),
    ("EVENT_FLAG_H2_NOTES", "ZT_EVENT_FLAG_H2_NOTES"),
    ("EVENT_FLAG_TAIL", "ZT_EVENT_FLAG_TAIL"),
    ("TAIL_LEN", "ZT_TAIL_LEN"),
    ("H2_NOTE_SIZE", "ZT_H2_NOTE_SIZE"),
    ("H2_NOTES", "ZT_H2_NOTES"),
    ("H2_NOTE_BODY", "ZT_H2_NOTE_BODY"),
    ("H2_BODY_MAX", "ZT_H2_BODY_MAX"),
    ("H2_BODIES_ROOM", "ZT_H2_BODIES_ROOM"),
    ("PID_INSTRUMENTED", "ZT_PID_INSTRUMENTED"),
    ("PID_TLS", "ZT_PID_TLS"),
    ("PID_EXEC_PENDING", "ZT_PID_EXEC_PENDING"),
    ("PID_FILTER_SETTINGS", "ZT_PID_FILTER_SETTINGS"),
    ("FILTER_EXEC_PENDING", "ZT_FILTER_EXEC_PENDING"),
    ("EXEC_PATH_MAX", "ZT_EXEC_PATH_MAX"),
    ("PID_FILTER_PORT_KEYS", "ZT_PID_FILTER_PORT_KEYS"),
    ("TID_GOROUTINE", "ZT_TID_GOROUTINE"),
];

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR not set")));
    let mut probe = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n#include \"zerotrace_events.h\"\nint main(void) {\n",
    );
    for (name, expr) in LAYOUT {
        probe.push_str(&format!(
            "  printf(\"pub const {name}: usize = %lu;\\n\", (unsigned long)({expr}));\n"
        ));
    }
    probe.push_str("  return 0;\n}\n");
    let source = out.join("layout_probe.c");
    let binary = out.join("layout_probe");
    fs::write(&source, probe).unwrap_or_else(|e| fail(&format!("write probe: {e}")));

    let compiler = env::var("HOST_CC")
        .or_else(|_| env::var("CC"))
        .unwrap_or_else(|_| "cc".into());
    let include = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../bpf-programs/include");
    let status = Command::new(&compiler)
        .arg("-I")
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .status()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run the C compiler `{compiler}` ({e}); install it: apt-get install gcc linux-libc-dev"
            ))
        });
    if !status.success() {
        fail("the layout probe did not compile: is linux-libc-dev installed (apt-get install linux-libc-dev)?");
    }
    let output = Command::new(&binary)
        .output()
        .unwrap_or_else(|e| fail(&format!("run layout probe: {e}")));
    if !output.status.success() {
        fail("layout probe failed");
    }
    fs::write(out.join("event_layout.rs"), output.stdout)
        .unwrap_or_else(|e| fail(&format!("write layout: {e}")));
}

fn fail(message: &str) -> ! {
    eprintln!("zerotrace-shared build: {message}");
    std::process::exit(1);
}
