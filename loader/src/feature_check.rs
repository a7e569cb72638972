//! `zerotrace check`: what this kernel and these privileges allow, found by
//! loading and attaching one trivial program per hook family — never assumed
//! from version numbers.

use std::path::Path;

use libbpf_rs::{Link, ObjectBuilder, UprobeOpts};

use crate::privileges::{self, RunNeeds};
use crate::probes::{self, ProbeSettings, Probes};
use crate::worker_identity;

const FEATURE_PROBES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/feature_probes.bpf.o"));

/// One hook family and how to attach its probe program.
struct HookFamily {
    label: &'static str,
    program: &'static str,
    used_for: &'static str,
}

const FAMILIES: &[HookFamily] = &[
    HookFamily {
        label: "tp_btf",
        program: "probe_tp_btf",
        used_for: "HTTP capture (syscall tracepoint backend, the baseline)",
    },
    HookFamily {
        label: "raw_tracepoint",
        program: "probe_raw_tracepoint",
        used_for: "fallback for kernels without tp_btf",
    },
    HookFamily {
        label: "tracepoint",
        program: "probe_tracepoint",
        used_for: "syscall-specific tracepoints (need tracefs)",
    },
    HookFamily {
        label: "kprobe",
        program: "probe_kprobe",
        used_for: "optional kprobe backend",
    },
    HookFamily {
        label: "fentry",
        program: "probe_fentry",
        used_for: "optional fentry backend (tcp_sendmsg/tcp_recvmsg)",
    },
    HookFamily {
        label: "uprobe",
        program: "probe_uprobe",
        used_for: "not used yet: a TLS fallback for kernels < 6.6 would need it and CAP_SYS_ADMIN",
    },
    HookFamily {
        label: "uprobe_multi",
        program: "probe_uprobe_multi",
        used_for: "TLS plaintext (SSL_read/SSL_write, Go crypto/tls), CAP_BPF+CAP_PERFMON suffice",
    },
];

fn try_family(family: &HookFamily) -> Result<(), String> {
    let mut open = ObjectBuilder::default()
        .open_memory(FEATURE_PROBES)
        .map_err(|e| format!("open: {e}"))?;
    for mut prog in open.progs_mut() {
        let wanted = prog.name() == family.program;
        prog.set_autoload(wanted);
    }
    let object = open.load().map_err(|e| format!("load refused: {e}"))?;
    let prog = object
        .progs_mut()
        .find(|p| p.name() == family.program)
        .ok_or("program missing")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let link: Link = match family.label {
        "uprobe" => prog
            .attach_uprobe_with_opts(
                -1,
                &exe,
                0,
                UprobeOpts {
                    func_name: Some("main".into()),
                    ..Default::default()
                },
            )
            .map_err(|e| format!("attach refused: {e}"))?,
        "uprobe_multi" => prog
            .attach_uprobe_multi(-1, &exe, "main", false, false)
            .map_err(|e| format!("attach refused: {e}"))?,
        "raw_tracepoint" => prog
            .attach_raw_tracepoint("sys_enter")
            .map_err(|e| format!("attach refused: {e}"))?,
        _ => prog.attach().map_err(|e| format!("attach refused: {e}"))?,
    };
    drop(link);
    Ok(())
}

fn lockdown() -> String {
    let text = std::fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
    // "none [integrity] confidentiality": the bracketed one is in force.
    text.split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_owned())
        .unwrap_or_else(|| "unknown (securityfs not readable)".into())
}

/// What `zerotrace run` would keep of these capabilities (with the default
/// worker user and this environment), and why; the rest it drops at start.
fn print_kept_capabilities() {
    let held = caps::read(None, caps::CapSet::Effective).unwrap_or_default();
    let switches_user = worker_identity::resolve(None)
        .map(|resolved| resolved.identity.switches_user())
        .unwrap_or(false);
    let kept = privileges::capabilities_to_keep(RunNeeds::from_env(switches_user), &held);
    println!(
        "kept by run:   {} of {} (the rest dropped before anything is loaded)",
        kept.len(),
        held.len()
    );
    for k in &kept {
        println!("  {:<15} {}", k.capability.to_string(), k.kept_for);
    }
}

/// Prints the report; the exit code is 0 when HTTP capture will work.
pub fn run() -> i32 {
    libbpf_rs::set_print(None);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel:        {}", release.trim());
    let btf = probes::check_kernel_support();
    println!(
        "BTF:           {}",
        match &btf {
            Ok(()) => "present (/sys/kernel/btf/vmlinux)".to_owned(),
            Err(e) => format!("MISSING — {e}"),
        }
    );
    println!("lockdown:      {}", lockdown());
    println!(
        "tracefs:       {}",
        if Path::new("/sys/kernel/tracing/events").exists() {
            "mounted"
        } else {
            "not mounted"
        }
    );
    let names = privileges::effective_capability_names();
    println!(
        "capabilities:  {}",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(" ")
        }
    );
    let missing = privileges::missing_capabilities(false);
    for m in &missing {
        println!("  missing {} — needed for {}", m.name, m.needed_for);
    }
    print_kept_capabilities();
    println!("hook families:");
    let mut works = Vec::new();
    for family in FAMILIES {
        let result = if btf.is_err() {
            Err("no BTF".to_owned())
        } else {
            try_family(family)
        };
        match &result {
            Ok(()) => println!("  {:<15} yes  ({})", family.label, family.used_for),
            Err(e) => println!("  {:<15} no   ({}): {e}", family.label, family.used_for),
        }
        works.push((family.label, result.is_ok()));
    }
    let has = |label: &str| works.iter().any(|(l, ok)| *l == label && *ok);
    let probes = btf.as_ref().ok().and_then(|()| {
        Probes::load_and_attach(ProbeSettings {
            ring_buffer_bytes: 1 << 16,
            wakeup_bytes: 4096,
            head_capture: probes::HEAD_MAX,
            floor: probes::BenchFloor::Off,
            backend: None,
        })
        .ok()
    });
    let capture = probes.is_some();
    println!("verdict:");
    println!(
        "  HTTP/1 capture ({} backend): {}",
        probes
            .as_ref()
            .map_or("syscall tracepoint", |p| p.backend().describe()),
        if capture {
            "WILL WORK"
        } else {
            "will NOT work"
        }
    );
    println!(
        "  process discovery (listener iterator):       {}",
        if capture {
            "will work"
        } else {
            "will not work"
        }
    );
    let ptrace = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_PTRACE,
    )
    .unwrap_or(false);
    let tls = if !has("uprobe_multi") {
        "not possible here: zerotrace hooks TLS libraries with uprobe_multi (kernel 6.6+)"
    } else if ptrace {
        "will work (uprobe_multi; CAP_SYS_PTRACE: every process's libraries visible)"
    } else {
        "will work for processes the loader may inspect (its uid, no more capabilities); \
         others need CAP_SYS_PTRACE (docs/deployment.md)"
    };
    println!("  TLS plaintext via uprobes:                   {tls}");
    // The same uprobe_multi links, at offsets the loader finds in the executable.
    let go_tls = if has("uprobe_multi") {
        "will work for Go 1.17+ amd64 executables, stripped too (Read/Write hooked at \
         their stack check, Read's data at its copy, no uretprobes; older Go is reported, \
         not hooked)"
    } else {
        "not possible here: the Go TLS hooks are uprobe_multi links (kernel 6.6+)"
    };
    println!("  Go crypto/tls plaintext (Go 1.17+):          {go_tls}");
    println!(
        "  faster fentry/kprobe backend:                {}",
        if has("fentry") || has("kprobe") {
            "available"
        } else {
            "not available; the tracepoint backend is used"
        }
    );
    if capture {
        0
    } else {
        1
    }
}
