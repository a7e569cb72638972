//! Whom the worker runs as. The privilege split only holds if no other
//! process can become the worker, so by default the worker gets a uid of its
//! own: the `zerotrace` system user the packages create, else a per-run uid
//! (and gid) that no account and no running process has, picked from
//! systemd's DynamicUser range as `DynamicUser=` does. A shared uid such as
//! `nobody` is used only when asked for by name, with a warning.

use std::collections::HashSet;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};

/// systemd's range for dynamic service users (`DynamicUser=`).
pub const PER_RUN_FIRST: u32 = 61184;
pub const PER_RUN_LAST: u32 = 65519;
/// The account the packages create for the worker.
pub const SERVICE_USER: &str = "zerotrace";
/// The overflow uid, shared by many daemons and by NFS and user namespaces.
const NOBODY: u32 = 65534;

/// The account the worker runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub uid: Uid,
    pub gid: Gid,
    /// The real gid the worker is exec'd with (its effective and saved gid
    /// are `gid`): a gid no account and no process has. Exec'ing with real
    /// and effective ids that differ makes the kernel mark the new program
    /// non-dumpable from its first instruction, and the uid/gid triple then
    /// matches no other process, so nothing can attach before the worker's
    /// own `PR_SET_DUMPABLE`; the worker sets its real gid back to `gid`.
    /// None when the loader does not switch users (it cannot choose ids).
    pub exec_real_gid: Option<Gid>,
}

impl WorkerIdentity {
    pub fn switches_user(&self) -> bool {
        self.uid != Uid::effective() || self.gid != Gid::effective()
    }
}

/// The identity and how it was chosen, for the start-up line.
#[derive(Debug, Clone)]
pub struct ResolvedIdentity {
    pub identity: WorkerIdentity,
    pub description: String,
    /// Said once at start when the choice weakens isolation.
    pub warning: Option<String>,
}

/// Ids in use: every uid and gid (real, effective, saved, filesystem) of
/// every process the loader can see.
pub fn ids_in_use(proc_root: &Path) -> (HashSet<u32>, HashSet<u32>) {
    let mut uids = HashSet::new();
    let mut gids = HashSet::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return (uids, gids);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            let (set, rest) = if let Some(rest) = line.strip_prefix("Uid:") {
                (&mut uids, rest)
            } else if let Some(rest) = line.strip_prefix("Gid:") {
                (&mut gids, rest)
            } else {
                continue;
            };
            set.extend(
                rest.split_whitespace()
                    .filter_map(|v| v.parse::<u32>().ok()),
            );
        }
    }
    (uids, gids)
}

/// Whether `id` is free as both a uid and a gid: no account, no group, no
/// systemd dynamic-user lock, no process.
fn is_free(id: u32, used_uids: &HashSet<u32>, used_gids: &HashSet<u32>) -> bool {
    !used_uids.contains(&id)
        && !used_gids.contains(&id)
        && !matches!(User::from_uid(Uid::from_raw(id)), Ok(Some(_)))
        && !matches!(Group::from_gid(Gid::from_raw(id)), Ok(Some(_)))
        && !Path::new("/run/systemd/dynamic-uid")
            .join(id.to_string())
            .exists()
}

/// A random starting point, so two agents started at once rarely try the same id.
fn random_offset(span: u32) -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: getrandom writes at most bytes.len() bytes into our buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let seed = if n == 4 {
        u32::from_ne_bytes(bytes)
    } else {
        std::process::id()
    };
    seed % span
}

/// `count` distinct ids of the per-run range that are free as uid and gid.
pub fn free_ids(count: usize, avoid: &[u32]) -> Result<Vec<u32>, String> {
    let (used_uids, used_gids) = ids_in_use(Path::new("/proc"));
    let span = PER_RUN_LAST - PER_RUN_FIRST + 1;
    let start = random_offset(span);
    let found: Vec<u32> = (0..span)
        .map(|i| PER_RUN_FIRST + (start + i) % span)
        .filter(|id| !avoid.contains(id))
        .filter(|id| is_free(*id, &used_uids, &used_gids))
        .take(count)
        .collect();
    if found.len() < count {
        return Err(format!(
            "no free uid/gid left in {PER_RUN_FIRST}–{PER_RUN_LAST} for the worker: \
             create the {SERVICE_USER:?} system user or pass --worker-user"
        ));
    }
    Ok(found)
}

fn named(requested: &str) -> Result<(Uid, Gid, String), String> {
    if let Ok(uid) = requested.parse::<u32>() {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let gid = user.as_ref().map(|u| u.gid).unwrap_or(Gid::from_raw(uid));
        let name = user.map(|u| format!(" ({})", u.name)).unwrap_or_default();
        return Ok((Uid::from_raw(uid), gid, format!("uid {uid}{name}")));
    }
    match User::from_name(requested) {
        Ok(Some(user)) => Ok((
            user.uid,
            user.gid,
            format!("uid {} ({requested})", user.uid),
        )),
        Ok(None) => Err(format!("worker user {requested:?} does not exist")),
        Err(e) => Err(format!("cannot look up worker user {requested:?}: {e}")),
    }
}

/// Resolves `--worker-user` (a name or a numeric uid). Without one, as root:
/// the `zerotrace` user if it exists, else a per-run uid; not as root: the
/// loader's own uid (it cannot switch users).
pub fn resolve(requested: Option<&str>) -> Result<ResolvedIdentity, String> {
    let loader_uid = Uid::effective();
    let mut spare = None;
    let (uid, gid, description, warning) = match requested {
        Some(requested) => {
            let (uid, gid, description) = named(requested)?;
            let warning = (uid.as_raw() == NOBODY).then(|| {
                format!(
                    "the worker runs as {description}, a uid other daemons share: any process \
                     of that uid could read the captured traffic it handles (docs/security.md); \
                     drop --worker-user to give it a uid of its own"
                )
            });
            (uid, gid, format!("{description}, as asked"), warning)
        }
        None if loader_uid.is_root() => match User::from_name(SERVICE_USER) {
            Ok(Some(user)) => (
                user.uid,
                user.gid,
                format!("uid {} ({SERVICE_USER}, the service user)", user.uid),
                None,
            ),
            _ => {
                // One scan for both: the worker's id, and its real gid at exec.
                let ids = free_ids(2, &[])?;
                spare = ids.get(1).copied();
                let id = ids[0];
                (
                    Uid::from_raw(id),
                    Gid::from_raw(id),
                    format!("uid {id}, a per-run uid no account or other process has"),
                    None,
                )
            }
        },
        None => (
            loader_uid,
            Gid::effective(),
            format!("uid {loader_uid}, the loader's own (it is not root)"),
            None,
        ),
    };
    let mut identity = WorkerIdentity {
        uid,
        gid,
        exec_real_gid: None,
    };
    if identity.switches_user() {
        let real = match spare {
            Some(id) => id,
            None => free_ids(1, &[uid.as_raw(), gid.as_raw()])?[0],
        };
        identity.exec_real_gid = Some(Gid::from_raw(real));
    }
    Ok(ResolvedIdentity {
        identity,
        description,
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_running_processes_are_seen() {
        let (uids, gids) = ids_in_use(Path::new("/proc"));
        assert!(uids.contains(&Uid::effective().as_raw()), "{uids:?}");
        assert!(gids.contains(&Gid::effective().as_raw()), "{gids:?}");
    }

    #[test]
    fn free_ids_are_distinct_in_range_and_unused() {
        let ids = free_ids(3, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids.len(), 3);
        let (uids, gids) = ids_in_use(Path::new("/proc"));
        for id in &ids {
            assert!((PER_RUN_FIRST..=PER_RUN_LAST).contains(id));
            assert!(!uids.contains(id) && !gids.contains(id));
        }
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        let avoided = free_ids(1, &ids).unwrap_or_else(|e| panic!("{e}"));
        assert!(!ids.contains(&avoided[0]));
    }

    #[test]
    fn nobody_is_used_only_by_name_and_with_a_warning() {
        let resolved = resolve(Some("65534")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resolved.identity.uid.as_raw(), NOBODY);
        assert!(resolved.warning.is_some_and(|w| w.contains("share")));
        assert!(resolve(Some("no-such-user-zt")).is_err());
    }
}
