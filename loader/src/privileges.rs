//! What the loader needs to hold, and whom the worker runs as.

use caps::{CapSet, Capability};
use nix::unistd::{Gid, Uid, User};

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

/// The account the worker runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub uid: Uid,
    pub gid: Gid,
}

impl WorkerIdentity {
    pub fn switches_user(&self) -> bool {
        self.uid != Uid::effective() || self.gid != Gid::effective()
    }
}

/// Resolves `--worker-user` (a name or a numeric uid). Without one: `nobody`
/// when started as root, otherwise the loader's own uid.
pub fn resolve_worker_identity(requested: Option<&str>) -> Result<WorkerIdentity, String> {
    let name = match requested {
        Some(name) => name.to_owned(),
        None if Uid::effective().is_root() => "nobody".to_owned(),
        None => {
            return Ok(WorkerIdentity {
                uid: Uid::effective(),
                gid: Gid::effective(),
            })
        }
    };
    if let Ok(uid) = name.parse::<u32>() {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        return Ok(WorkerIdentity {
            uid: Uid::from_raw(uid),
            gid: user.map(|u| u.gid).unwrap_or(Gid::from_raw(uid)),
        });
    }
    match User::from_name(&name) {
        Ok(Some(user)) => Ok(WorkerIdentity {
            uid: user.uid,
            gid: user.gid,
        }),
        Ok(None) => Err(format!("worker user {name:?} does not exist")),
        Err(e) => Err(format!("cannot look up worker user {name:?}: {e}")),
    }
}
