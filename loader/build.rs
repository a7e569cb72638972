//! Compiles the C programs in bpf-programs/ into BPF objects (CO-RE, against
//! the hand-written bpf-programs/include/vmlinux_min.h: no vmlinux.h is
//! generated, so the build host's kernel does not matter) and leaves them in
//! OUT_DIR for `include_bytes!`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (source under bpf-programs/, object name)
const PROGRAMS: &[(&str, &str)] = &[
    (
        "syscall_tracer/syscall_tracer.bpf.c",
        "syscall_tracer.bpf.o",
    ),
    ("listener_iter/listener_iter.bpf.c", "listener_iter.bpf.o"),
    (
        "feature_probes/feature_probes.bpf.c",
        "feature_probes.bpf.o",
    ),
];

const INSTALL_HINT: &str =
    "apt-get install clang-19 llvm-19 libbpf-dev libelf-dev zlib1g-dev pkg-config";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let sources = manifest.join("../bpf-programs");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set")));
    println!("cargo:rerun-if-changed={}", sources.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=ZEROTRACE_PAYLOAD_MAX");

    let payload_max = payload_max();
    let clang = find_clang();
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(&format!(
            "libbpf headers (/usr/include/bpf/bpf_helpers.h) are missing; install them: {INSTALL_HINT}"
        ));
    }
    for (source, object) in PROGRAMS {
        let status = Command::new(&clang)
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-D__TARGET_ARCH_x86",
                "-Wall",
                "-Werror",
            ])
            .arg(format!("-DZT_PAYLOAD_MAX={payload_max}"))
            .arg("-I")
            .arg(sources.join("include"))
            .arg("-c")
            .arg(sources.join(source))
            .arg("-o")
            .arg(out.join(object))
            .status()
            .unwrap_or_else(|e| fail(&format!("cannot run {clang}: {e}")));
        if !status.success() {
            fail(&format!("{clang} failed to compile bpf-programs/{source}"));
        }
    }
    println!("cargo:rustc-env=ZEROTRACE_PAYLOAD_MAX={payload_max}");
}

/// Bytes of each payload the kernel copies; a build-time choice (power of two, 256..=4096).
fn payload_max() -> u32 {
    let value = env::var("ZEROTRACE_PAYLOAD_MAX").unwrap_or_else(|_| "512".into());
    match value.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (256..=4096).contains(&n) => n,
        _ => fail(&format!(
            "ZEROTRACE_PAYLOAD_MAX={value:?}: must be a power of two from 256 to 4096"
        )),
    }
}

fn find_clang() -> String {
    let candidates: Vec<String> = match env::var("CLANG") {
        Ok(explicit) => vec![explicit],
        Err(_) => ["clang-19", "clang-18", "clang-17", "clang-16", "clang"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    for candidate in &candidates {
        let works = Command::new(candidate)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if works {
            return candidate.clone();
        }
    }
    fail(&format!(
        "no clang found (tried {}); the BPF programs are C compiled by clang. Install it: {INSTALL_HINT}",
        candidates.join(", ")
    ))
}

fn fail(message: &str) -> ! {
    eprintln!("error: zerotrace-loader build: {message}");
    std::process::exit(1);
}
