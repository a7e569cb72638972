//! What the loader needs to hold (whom the worker runs as: `worker_identity`),
//! and which of the capabilities it holds it keeps for the run
//! (`capability_drop` drops the rest).

use std::collections::HashSet;

use caps::{CapSet, Capability};

/// A capability the loader needs and does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCapability {
    pub name: &'static str,
    pub needed_for: &'static str,
}

/// The loader's own capability requirements for `run`, given whether it must
/// switch the worker to another uid. CAP_SYS_ADMIN stands in for CAP_BPF and
/// CAP_PERFMON on kernels older than 5.8, which lack them.
pub fn missing_capabilities(switches_user: bool) -> Vec<MissingCapability> {
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    let has = |c: Capability| effective.contains(&c);
    let admin = has(Capability::CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(Capability::CAP_BPF) && !admin {
        missing.push(MissingCapability {
            name: "CAP_BPF",
            needed_for: "loading the BPF programs and creating their maps",
        });
    }
    if !has(Capability::CAP_PERFMON) && !admin {
        missing.push(MissingCapability {
            name: "CAP_PERFMON",
            needed_for: "attaching tracing programs and reading kernel memory through them",
        });
    }
    if switches_user {
        for (cap, name) in [
            (Capability::CAP_SETUID, "CAP_SETUID"),
            (Capability::CAP_SETGID, "CAP_SETGID"),
        ] {
            if !has(cap) {
                missing.push(MissingCapability {
                    name,
                    needed_for: "starting the worker under its own unprivileged user",
                });
            }
        }
    }
    missing
}

/// Names of the effective capabilities, for `check` and error messages.
pub fn effective_capability_names() -> Vec<String> {
    let mut names: Vec<String> = caps::read(None, CapSet::Effective)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    names.sort();
    names
}

/// What the loader's run needs beyond BPF: decides which capabilities it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunNeeds {
    /// The worker runs under another uid/gid (started, and restarted, by us).
    pub switches_user: bool,
    /// `ZEROTRACE_TLS_CAPTURE` is not `false`: TLS libraries of other
    /// users' processes are looked up in their `/proc/PID/{maps,root,exe}`.
    pub tls_capture: bool,
}

impl RunNeeds {
    /// From the worker's identity and the loader's environment.
    pub fn from_env(switches_user: bool) -> Self {
        let tls = std::env::var("ZEROTRACE_TLS_CAPTURE").unwrap_or_default();
        Self {
            switches_user,
            tls_capture: tls.trim() != "false",
        }
    }
}

/// A capability the loader keeps for its whole run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCapability {
    pub capability: Capability,
    pub kept_for: &'static str,
}

/// Of the capabilities `held`, those the run needs; nothing else. CAP_BPF and
/// CAP_PERFMON where the kernel has them (5.8+), else CAP_SYS_ADMIN in their
/// place; CAP_SETPCAP only to clear the worker's bounding set before exec.
pub fn capabilities_to_keep(needs: RunNeeds, held: &HashSet<Capability>) -> Vec<KeptCapability> {
    let mut kept = Vec::new();
    let mut keep = |capability: Capability, kept_for: &'static str| {
        if held.contains(&capability) {
            kept.push(KeptCapability {
                capability,
                kept_for,
            });
        }
    };
    if held.contains(&Capability::CAP_BPF) && held.contains(&Capability::CAP_PERFMON) {
        keep(
            Capability::CAP_BPF,
            "loading the BPF programs, creating their maps, the listener iterator",
        );
        keep(
            Capability::CAP_PERFMON,
            "attaching the tracing programs and the TLS uprobes (uprobe_multi)",
        );
    } else {
        keep(
            Capability::CAP_SYS_ADMIN,
            "BPF on a kernel without CAP_BPF/CAP_PERFMON (before 5.8), or where they were not granted",
        );
    }
    if needs.switches_user {
        keep(
            Capability::CAP_SETUID,
            "starting (and restarting) the worker under its own uid; the kill helper",
        );
        keep(
            Capability::CAP_SETGID,
            "starting (and restarting) the worker under its own gid",
        );
    }
    keep(
        Capability::CAP_SETPCAP,
        "clearing the worker's capability bounding set before exec",
    );
    if needs.tls_capture {
        keep(
            Capability::CAP_SYS_PTRACE,
            "reading /proc/PID/{maps,root,exe} of other users' processes (TLS hooks, exe_path)",
        );
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(needs: RunNeeds, held: &[Capability]) -> Vec<Capability> {
        let held: HashSet<Capability> = held.iter().copied().collect();
        capabilities_to_keep(needs, &held)
            .into_iter()
            .map(|k| k.capability)
            .collect()
    }

    #[test]
    fn root_keeps_only_what_its_run_needs() {
        let everything: Vec<Capability> = caps::all().into_iter().collect();
        let all_needs = RunNeeds {
            switches_user: true,
            tls_capture: true,
        };
        assert_eq!(
            kept(all_needs, &everything),
            vec![
                Capability::CAP_BPF,
                Capability::CAP_PERFMON,
                Capability::CAP_SETUID,
                Capability::CAP_SETGID,
                Capability::CAP_SETPCAP,
                Capability::CAP_SYS_PTRACE,
            ]
        );
        let same_user_no_tls = RunNeeds {
            switches_user: false,
            tls_capture: false,
        };
        assert_eq!(
            kept(same_user_no_tls, &everything),
            vec![
                Capability::CAP_BPF,
                Capability::CAP_PERFMON,
                Capability::CAP_SETPCAP
            ]
        );
    }

    #[test]
    fn sys_admin_only_stands_in_for_bpf_and_perfmon() {
        let needs = RunNeeds {
            switches_user: false,
            tls_capture: true,
        };
        // A kernel before 5.8: the bits do not exist, so they are never held.
        assert_eq!(
            kept(needs, &[Capability::CAP_SYS_ADMIN, Capability::CAP_CHOWN]),
            vec![Capability::CAP_SYS_ADMIN]
        );
        // A service granted exactly two: nothing else appears.
        assert_eq!(
            kept(needs, &[Capability::CAP_BPF, Capability::CAP_PERFMON]),
            vec![Capability::CAP_BPF, Capability::CAP_PERFMON]
        );
    }
}
