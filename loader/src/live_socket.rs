//! Where the worker's read-only live-view socket (for `zerotrace top`) goes,
//! and preparing its directory: owned by the worker's user, mode 0700, so
//! only that user and root can reach the socket.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{chown, Uid};

use crate::worker_identity::WorkerIdentity;

/// `/run/zerotrace/live.sock` for root, else under `$XDG_RUNTIME_DIR` (or /tmp) per uid.
pub fn default_path() -> PathBuf {
    if Uid::effective().is_root() {
        return PathBuf::from("/run/zerotrace/live.sock");
    }
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join(format!("zerotrace-{}", Uid::effective()))
        .join("live.sock")
}

/// Creates the socket's directory for the worker.
pub fn prepare(socket: &Path, identity: WorkerIdentity) -> Result<(), String> {
    let dir = socket
        .parent()
        .ok_or_else(|| format!("live socket {} has no directory", socket.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Already right (e.g. made by systemd-tmpfiles): touch nothing, since a
    // loader without CAP_CHOWN/CAP_FOWNER could not change it anyway.
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() == identity.uid.as_raw()
        && meta.gid() == identity.gid.as_raw()
        && meta.mode() & 0o777 == 0o700
    {
        return Ok(());
    }
    if identity.switches_user() {
        chown(dir, Some(identity.uid), Some(identity.gid))
            .map_err(|e| format!("handing {} to the worker's user: {e}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod 0700 {}: {e}", dir.display()))
}
