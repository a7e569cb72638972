//! The worker's promise to be unprivileged, checked on itself at start.

use std::fs;

/// What /proc/self/status says about this process's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnPrivileges {
    pub uid: u32,
    pub effective_capabilities: u64,
    pub permitted_capabilities: u64,
    pub no_new_privs: bool,
}

impl OwnPrivileges {
    pub fn read() -> Result<Self, String> {
        let status = fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
        Self::parse(&status)
    }

    pub fn parse(status: &str) -> Result<Self, String> {
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
        let uid = field("Uid:")?
            .split_whitespace()
            .nth(1) // effective uid
            .and_then(|v| v.parse().ok())
            .ok_or("unreadable Uid line")?;
        Ok(Self {
            uid,
            effective_capabilities: hex("CapEff:")?,
            permitted_capabilities: hex("CapPrm:")?,
            no_new_privs: field("NoNewPrivs:")? == "1",
        })
    }

    /// Why this process is too privileged to be the worker, if it is.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.uid == 0 {
            out.push("runs as uid 0".to_owned());
        }
        if self.effective_capabilities != 0 || self.permitted_capabilities != 0 {
            out.push(format!(
                "holds capabilities (CapEff={:016x}, CapPrm={:016x})",
                self.effective_capabilities, self.permitted_capabilities
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_fields() {
        let status = "Name:\tzerotrace-worker\nUid:\t65534\t65534\t65534\t65534\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n";
        let own = OwnPrivileges::parse(status);
        assert_eq!(
            own,
            Ok(OwnPrivileges {
                uid: 65534,
                effective_capabilities: 0,
                permitted_capabilities: 0,
                no_new_privs: true
            })
        );
        assert!(own.map(|o| o.violations().is_empty()).unwrap_or(false));
    }

    #[test]
    fn root_with_capabilities_is_refused() {
        let status = "Uid:\t0\t0\t0\t0\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t0\n";
        let own = OwnPrivileges::parse(status).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(own.violations().len(), 2);
    }
}
