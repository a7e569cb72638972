//! Go test programs built here with Debian's Go: `tests/servers/<program>/main.go`
//! (stdlib only, no module, no network) into a scratch directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds run one at a time (they share the Go build cache).
static GO_BUILD: Mutex<()> = Mutex::new(());

/// How a Go program is built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `go build`: symbols and DWARF kept.
    Plain,
    /// `-ldflags='-s -w'`: no symbol table, no DWARF (only `.gopclntab`).
    Stripped,
    /// Stripped and position-independent (`-buildmode=pie`).
    StrippedPie,
}

/// Builds `tests/servers/<program>/main.go`; returns the executable's path.
pub fn go_binary(program: &str, build: Build) -> PathBuf {
    let _one_at_a_time = GO_BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = std::env::temp_dir().join("zerotrace-go-tests");
    let (suffix, flags): (&str, &[&str]) = match build {
        Build::Plain => ("", &[]),
        Build::Stripped => ("-stripped", &["-ldflags=-s -w"]),
        Build::StrippedPie => ("-stripped-pie", &["-ldflags=-s -w", "-buildmode=pie"]),
    };
    let output = scratch.join(format!("{program}{suffix}"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join(program)
        .join("main.go");
    let built = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&output)
        .args(flags)
        .arg(&source)
        .env("GOCACHE", scratch.join("cache"))
        .env("GOPATH", scratch.join("gopath"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run go (scripts/install-deps.sh installs golang-go): {e}")
        });
    assert!(built.status.success(), "go build {program}: {built:?}");
    output
}
