//! The worker's promises to be unprivileged and out of reach of other
//! processes, kept and checked on itself at start.

use std::fs;

/// Makes this process non-dumpable: `/proc/self/{mem,environ,fd,maps…}`
/// become root's, and `ptrace`/`pidfd_getfd` by processes of the same uid
/// are refused. The worker calls it first thing in `main`, before it holds
/// anything worth taking; its seccomp filter keeps it from undoing it.
pub fn make_undumpable() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot make the worker non-dumpable: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `--dumpable` (development): debuggers and core dumps work again, and so
/// does every other process of the worker's uid.
pub fn make_dumpable() -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot make the worker dumpable: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn is_dumpable() -> bool {
    // SAFETY: prctl with integer arguments; returns the flag.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

/// The loader execs the worker with a real gid of its own choosing that
/// differs from the effective one, so the kernel starts the worker
/// non-dumpable (see loader/src/worker_identity.rs). Once non-dumpable by
/// its own hand, the worker takes its effective gid as its real and saved
/// gid, so it has one identity. Changing only the real gid does not change
/// dumpability.
pub fn settle_real_gid() -> Result<(), String> {
    let (mut real, mut effective, mut saved) = (0, 0, 0);
    // SAFETY: getresgid writes three gid_t into our locals.
    if unsafe { libc::getresgid(&mut real, &mut effective, &mut saved) } != 0 {
        return Err(format!("getresgid: {}", std::io::Error::last_os_error()));
    }
    if real == effective && saved == effective {
        return Ok(());
    }
    // SAFETY: setresgid with integers; permitted because `effective` is one of ours.
    if unsafe { libc::setresgid(effective, effective, effective) } != 0 {
        return Err(format!(
            "cannot settle the worker's gid on {effective}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// What /proc/self/status (and prctl) say about this process's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnPrivileges {
    pub uid: u32,
    /// Real, effective and saved uid are one, and so are the gids.
    pub one_identity: bool,
    pub effective_capabilities: u64,
    pub permitted_capabilities: u64,
    pub no_new_privs: bool,
    pub dumpable: bool,
}

impl OwnPrivileges {
    pub fn read() -> Result<Self, String> {
        let status = fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
        Self::parse(&status, is_dumpable())
    }

    pub fn parse(status: &str, dumpable: bool) -> Result<Self, String> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
                .ok_or_else(|| format!("/proc/self/status has no {name} line"))
        };
        let hex = |name: &str| -> Result<u64, String> {
            u64::from_str_radix(field(name)?, 16).map_err(|e| format!("{name} {e}"))
        };
        // Real, effective, saved, filesystem.
        let ids = |name: &str| -> Result<Vec<u32>, String> {
            let ids: Vec<u32> = field(name)?
                .split_whitespace()
                .map(|v| v.parse().map_err(|_| format!("unreadable {name} line")))
                .collect::<Result<_, _>>()?;
            if ids.len() < 3 {
                return Err(format!("unreadable {name} line"));
            }
            Ok(ids)
        };
        let (uids, gids) = (ids("Uid:")?, ids("Gid:")?);
        let same = |ids: &[u32]| ids[..3].iter().all(|id| *id == ids[1]);
        Ok(Self {
            uid: uids[1],
            one_identity: same(&uids) && same(&gids),
            effective_capabilities: hex("CapEff:")?,
            permitted_capabilities: hex("CapPrm:")?,
            no_new_privs: field("NoNewPrivs:")? == "1",
            dumpable,
        })
    }

    /// Why this process is too privileged to be the worker, if it is.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.uid == 0 {
            out.push("runs as uid 0".to_owned());
        }
        if !self.one_identity {
            out.push("has real, effective and saved ids that differ".to_owned());
        }
        if self.effective_capabilities != 0 || self.permitted_capabilities != 0 {
            out.push(format!(
                "holds capabilities (CapEff={:016x}, CapPrm={:016x})",
                self.effective_capabilities, self.permitted_capabilities
            ));
        }
        out
    }

    /// Why other processes could reach into this one, if they could.
    pub fn exposures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dumpable {
            out.push(
                "is dumpable (processes of its uid could read its memory and copy its descriptors)"
                    .to_owned(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_fields() {
        let status = "Name:\tzerotrace-worker\nUid:\t61200\t61200\t61200\t61200\nGid:\t61200\t61200\t61200\t61200\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n";
        let own = OwnPrivileges::parse(status, false);
        assert_eq!(
            own,
            Ok(OwnPrivileges {
                uid: 61200,
                one_identity: true,
                effective_capabilities: 0,
                permitted_capabilities: 0,
                no_new_privs: true,
                dumpable: false,
            })
        );
        assert!(own.is_ok_and(|o| o.violations().is_empty() && o.exposures().is_empty()));
        let dumpable = OwnPrivileges::parse(status, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dumpable.exposures().len(), 1);
        let mixed = status.replace("Gid:\t61200\t61200", "Gid:\t61201\t61200");
        let mixed = OwnPrivileges::parse(&mixed, false).unwrap_or_else(|e| panic!("{e}"));
        assert!(!mixed.one_identity && mixed.violations().len() == 1);
    }

    #[test]
    fn root_with_capabilities_is_refused() {
        let status = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t0\n";
        let own = OwnPrivileges::parse(status, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(own.violations().len(), 2);
    }
}
