//! What the loader needs to hold (whom the worker runs as: `worker_identity`).

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
