//! `host.id`: the identity of the machine the processes run on, as OBI sets
//! it when no cloud metadata answers — the override (`OTEL_EBPF_HOST_ID`,
//! `attributes.host_id.override`), else the machine id systemd or D-Bus
//! wrote (`/etc/machine-id`, `/var/lib/dbus/machine-id`, world-readable),
//! else the host name. zerotrace does not query cloud metadata services:
//! the worker talks to no other network peer than its exporters.

/// The machine id files, in the order they are read.
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// The host id, and where it came from (for the start-up log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostId {
    pub id: String,
    pub source: &'static str,
}

/// The host id from the override, the machine id files, or the host name.
pub fn resolve(override_id: Option<&str>) -> HostId {
    resolve_from(override_id, &MACHINE_ID_FILES, &host_name())
}

fn resolve_from(override_id: Option<&str>, files: &[&'static str], host_name: &str) -> HostId {
    if let Some(id) = override_id.map(str::trim).filter(|id| !id.is_empty()) {
        return HostId {
            id: id.to_owned(),
            source: "the configuration",
        };
    }
    for &file in files {
        if let Some(id) = std::fs::read_to_string(file)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|id| !id.is_empty())
        {
            return HostId { id, source: file };
        }
    }
    HostId {
        id: host_name.to_owned(),
        source: "the host name",
    }
}

/// The kernel's host name (UTS namespace), empty when unreadable.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_wins_then_the_first_machine_id_then_the_host_name() {
        let dir = std::env::temp_dir().join(format!("zt-host-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let empty = dir.join("empty");
        let id = dir.join("machine-id");
        std::fs::write(&empty, "\n").unwrap_or_default();
        std::fs::write(&id, "0123456789abcdef0123456789abcdef\n").unwrap_or_default();
        let leak = |p: &std::path::Path| -> &'static str {
            Box::leak(p.to_string_lossy().into_owned().into_boxed_str())
        };
        let files = [leak(&dir.join("absent")), leak(&empty), leak(&id)];
        assert_eq!(
            resolve_from(Some(" rack-7 "), &files, "web-1"),
            HostId {
                id: "rack-7".into(),
                source: "the configuration"
            }
        );
        let from_file = resolve_from(Some("  "), &files, "web-1");
        assert_eq!(from_file.id, "0123456789abcdef0123456789abcdef");
        assert_eq!(from_file.source, files[2]);
        assert_eq!(resolve_from(None, &files[..2], "web-1").id, "web-1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_host_has_an_id() {
        assert!(!resolve(None).id.is_empty());
    }
}
