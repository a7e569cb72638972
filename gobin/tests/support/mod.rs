//! Go programs for the tests, built once per test process with the system's Go (Debian's
//! `golang-go`, installed by `scripts/install-deps.sh test`), into cargo's scratch folder
//! for integration tests; and `go tool objdump`/`go version` as independent witnesses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One of the programs under `tests/go/`, built one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoProgram {
    /// `net/http` HTTPS server, built normally (with `.symtab` and DWARF).
    HttpsServer,
    /// The same server built with `-ldflags='-s -w'` (no `.symtab`, no DWARF).
    HttpsServerStripped,
    /// Position-independent (`-buildmode=pie`): the table is in `.data.rel.ro.gopclntab`.
    HttpsServerPie,
    /// Position-independent and stripped.
    HttpsServerPieStripped,
    /// Linked by the system's linker (`-linkmode=external`, as cgo programs often are).
    HttpsServerExternalLink,
    /// Compiled for x86-64-v3 (`GOAMD64=v3`: VEX-encoded BMI instructions in the code).
    HttpsServerAmd64V3,
    /// A program that does not import `crypto/tls`.
    NoTls,
}

impl GoProgram {
    /// The unstripped HTTPS server builds, each checked against `go tool nm` and objdump.
    pub const UNSTRIPPED_SERVERS: [GoProgram; 4] = [
        Self::HttpsServer,
        Self::HttpsServerPie,
        Self::HttpsServerExternalLink,
        Self::HttpsServerAmd64V3,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn source_dir(self) -> &'static str {
        match self {
            Self::NoTls => "no_tls",
            _ => "https_server",
        }
    }

    fn output_name(self) -> &'static str {
        match self {
            Self::HttpsServer => "https_server",
            Self::HttpsServerStripped => "https_server_stripped",
            Self::HttpsServerPie => "https_server_pie",
            Self::HttpsServerPieStripped => "https_server_pie_stripped",
            Self::HttpsServerExternalLink => "https_server_external_link",
            Self::HttpsServerAmd64V3 => "https_server_amd64_v3",
            Self::NoTls => "no_tls",
        }
    }

    fn build_args(self) -> &'static [&'static str] {
        match self {
            Self::HttpsServerStripped => &["-ldflags=-s -w"],
            Self::HttpsServerPie => &["-buildmode=pie"],
            Self::HttpsServerPieStripped => &["-buildmode=pie", "-ldflags=-s -w"],
            Self::HttpsServerExternalLink => &["-ldflags=-linkmode=external"],
            Self::HttpsServer | Self::HttpsServerAmd64V3 | Self::NoTls => &[],
        }
    }

    fn goamd64(self) -> &'static str {
        match self {
            Self::HttpsServerAmd64V3 => "v3",
            _ => "v1",
        }
    }

    /// The built executable (built on first use in this process).
    pub fn path(self) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 7] = [const { OnceLock::new() }; 7];
        BUILT[self.index()].get_or_init(|| build(self))
    }

    /// The executable's bytes.
    pub fn bytes(self) -> Vec<u8> {
        match std::fs::read(self.path()) {
            Ok(bytes) => bytes,
            Err(error) => panic!("reading {}: {error}", self.path().display()),
        }
    }
}

fn go_command() -> Command {
    let mut command = Command::new("go");
    // Everything under /tmp and offline: std-only programs need no module download.
    command
        .env("GOCACHE", "/tmp/zerotrace-gobin-gocache")
        .env("GOPATH", "/tmp/zerotrace-gobin-gopath")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local");
    command
}

fn build(program: GoProgram) -> PathBuf {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gobin-go-programs");
    if let Err(error) = std::fs::create_dir_all(&out_dir) {
        panic!("creating {}: {error}", out_dir.display());
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/go")
        .join(program.source_dir())
        .join("main.go");
    // Built under a per-process name, then renamed: test processes may build at once.
    let output = out_dir.join(program.output_name());
    let partial = out_dir.join(format!("{}.{}", program.output_name(), std::process::id()));
    let result = go_command()
        .arg("build")
        .arg("-o")
        .arg(&partial)
        .args(program.build_args())
        .env("GOAMD64", program.goamd64())
        .arg(&source)
        .output();
    let result = match result {
        Ok(result) => result,
        Err(error) => panic!("running go (install it: scripts/install-deps.sh test): {error}"),
    };
    assert!(
        result.status.success(),
        "go build {}: {}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    if let Err(error) = std::fs::rename(&partial, &output) {
        panic!("renaming {}: {error}", partial.display());
    }
    output
}

/// `go env GOVERSION`, e.g. `go1.19.8`.
pub fn go_version() -> String {
    let result = go_command().args(["env", "GOVERSION"]).output();
    match result {
        Ok(result) if result.status.success() => {
            String::from_utf8_lossy(&result.stdout).trim().to_owned()
        }
        other => panic!("go env GOVERSION: {other:?}"),
    }
}

/// One instruction as `go tool objdump` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjdumpInstruction {
    pub addr: u64,
    pub bytes: Vec<u8>,
    pub assembly: String,
}

/// `go tool objdump -s '^NAME$'` of one function.
pub fn objdump(binary: &Path, function: &str) -> Vec<ObjdumpInstruction> {
    let pattern = format!("^{}$", regex_escape(function));
    let result = go_command()
        .args(["tool", "objdump", "-s", &pattern])
        .arg(binary)
        .output();
    let result = match result {
        Ok(result) if result.status.success() => result,
        other => panic!("go tool objdump: {other:?}"),
    };
    String::from_utf8_lossy(&result.stdout)
        .lines()
        .filter(|line| !line.starts_with("TEXT "))
        .filter_map(|line| {
            // file:line \t address \t\t hex bytes \t\t assembly
            let fields: Vec<&str> = line.split('\t').filter(|f| !f.is_empty()).collect();
            let addr = u64::from_str_radix(fields.get(1)?.trim().strip_prefix("0x")?, 16).ok()?;
            let hex = fields.get(2)?.trim();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            let assembly = fields.get(3).map_or("", |a| a.trim()).to_owned();
            Some(ObjdumpInstruction {
                addr,
                bytes,
                assembly,
            })
        })
        .collect()
}

/// `go tool nm` address of a symbol (unstripped binaries only).
pub fn nm_address(binary: &Path, symbol: &str) -> Option<u64> {
    let result = go_command().args(["tool", "nm"]).arg(binary).output();
    let result = match result {
        Ok(result) if result.status.success() => result,
        other => panic!("go tool nm: {other:?}"),
    };
    String::from_utf8_lossy(&result.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.next()?;
            let _kind = fields.next()?;
            let name = fields.collect::<Vec<_>>().join(" ");
            (name == symbol).then(|| u64::from_str_radix(addr, 16).ok())?
        })
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}
