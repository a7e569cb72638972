//! The worker's start-up data: the settings it needs that the loader must not
//! leave in the worker's environment (where `/proc/PID/environ` would show
//! them) nor make it open itself (a root-only `--config` file).
//!
//! The loader writes one versioned postcard message into a sealed memfd and
//! passes it to the worker as a descriptor at exec (`STARTUP_FD_ENV` names
//! it). The worker reads it once, first thing, and closes it. The loader
//! never parses the configuration file: it passes its bytes unread.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::ipc;

/// Environment variable through which the worker learns its start-up descriptor.
pub const STARTUP_FD_ENV: &str = "ZEROTRACE_STARTUP_FD";
/// Largest configuration file the loader hands over.
pub const MAX_CONFIG_FILE_BYTES: usize = 4 << 20;
/// Largest start-up message the worker reads (the file plus the environment).
pub const MAX_STARTUP_BYTES: usize = MAX_CONFIG_FILE_BYTES + (1 << 20);

/// The configuration file as the loader read it: its path (for messages) and
/// its bytes, unparsed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: String,
    pub contents: Vec<u8>,
}

/// Everything the worker is given at start besides its socket.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupData {
    /// The loader's variables the worker reads (see [`is_forwarded`]), in
    /// the loader's environment order.
    pub environment: Vec<(String, String)>,
    pub config_file: Option<ConfigFile>,
}

impl StartupData {
    /// The value of one forwarded variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether the worker is handed this variable of the loader's environment:
/// the OpenTelemetry and OBI settings (`OTEL_*`) and zerotrace's own
/// (`ZEROTRACE_*`), but not the descriptor numbers the loader sets itself.
pub fn is_forwarded(name: &str) -> bool {
    (name.starts_with("OTEL_") || name.starts_with("ZEROTRACE_"))
        && name != ipc::IPC_FD_ENV
        && name != STARTUP_FD_ENV
}

/// Variables the worker keeps in its real environment because libraries
/// inside it read them from there: the TLS roots' locations (rustls-native-
/// certs, for OTLP over https) and the proxies (reqwest, for OTLP/HTTP).
/// File locations and proxy addresses, never a setting of ours; a proxy
/// variable that carries credentials (`user:password@`) is not kept.
pub const KEPT_IN_ENVIRONMENT: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Whether `name=value` stays in the worker's environment (see
/// [`KEPT_IN_ENVIRONMENT`]).
pub fn is_kept_in_environment(name: &str, value: &str) -> bool {
    let is_proxy =
        name.to_ascii_lowercase().ends_with("_proxy") && !name.eq_ignore_ascii_case("no_proxy");
    KEPT_IN_ENVIRONMENT.contains(&name) && !(is_proxy && value.contains('@'))
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Writes `data` into a new memfd, seals it against any change, and rewinds it.
/// The descriptor is close-on-exec: the spawner places it for the worker.
pub fn to_sealed_memfd(data: &StartupData) -> Result<OwnedFd, String> {
    let bytes = ipc::encode(data).map_err(|e| format!("encoding the start-up data: {e}"))?;
    if bytes.len() > MAX_STARTUP_BYTES {
        return Err(format!(
            "the worker's start-up data is {} bytes, more than {MAX_STARTUP_BYTES}",
            bytes.len()
        ));
    }
    // SAFETY: memfd_create with a NUL-terminated name and flags; the returned
    // descriptor is new and wrapped exactly once.
    let fd = unsafe {
        libc::memfd_create(
            c"zerotrace-startup".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(os_error("memfd_create"));
    }
    // SAFETY: fd was just returned to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.write_all(&bytes)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| format!("writing the start-up data: {e}"))?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(os_error("sealing the start-up data"));
    }
    Ok(OwnedFd::from(file))
}

/// Reads and decodes the start-up data from its descriptor, consuming it.
pub fn read_from(fd: OwnedFd) -> Result<StartupData, String> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_STARTUP_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the start-up data: {e}"))?;
    if bytes.len() > MAX_STARTUP_BYTES {
        return Err(format!(
            "the start-up data is longer than {MAX_STARTUP_BYTES} bytes"
        ));
    }
    ipc::decode(&bytes).map_err(|e| format!("undecodable start-up data: {e:?}"))
}

/// Takes the start-up descriptor named by `STARTUP_FD_ENV` in this process's
/// environment.
///
/// # Safety
/// The caller asserts that the descriptor number in that variable was given
/// to this process for this purpose and that nothing else in the process
/// owns it (call once, at start).
pub unsafe fn take_inherited_fd() -> Result<OwnedFd, String> {
    let raw: i32 = std::env::var(STARTUP_FD_ENV)
        .map_err(|_| {
            format!("{STARTUP_FD_ENV} is not set: the worker is started by `zerotrace run`")
        })?
        .parse()
        .map_err(|_| format!("{STARTUP_FD_ENV} is not a file descriptor number"))?;
    if raw < 3 {
        return Err(format!(
            "{STARTUP_FD_ENV}={raw} is not a descriptor we were given"
        ));
    }
    // SAFETY: per this function's contract.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_settings_are_forwarded() {
        assert!(is_forwarded("OTEL_EXPORTER_OTLP_HEADERS"));
        assert!(is_forwarded("ZEROTRACE_SECCOMP"));
        assert!(!is_forwarded(ipc::IPC_FD_ENV));
        assert!(!is_forwarded(STARTUP_FD_ENV));
        assert!(!is_forwarded("AWS_SECRET_ACCESS_KEY"));
        assert!(!is_forwarded("PATH"));
    }

    #[test]
    fn proxies_with_credentials_leave_the_environment() {
        assert!(is_kept_in_environment("SSL_CERT_FILE", "/etc/ssl/ca.pem"));
        assert!(is_kept_in_environment("HTTPS_PROXY", "http://proxy:3128"));
        assert!(!is_kept_in_environment(
            "https_proxy",
            "http://u:secret@proxy:3128"
        ));
        assert!(is_kept_in_environment("NO_PROXY", "localhost,10.0.0.0/8"));
        assert!(!is_kept_in_environment("OTEL_EXPORTER_OTLP_HEADERS", "a=b"));
    }

    #[test]
    fn a_sealed_memfd_round_trips_and_refuses_writes() {
        let data = StartupData {
            environment: vec![("OTEL_SERVICE_NAME".into(), "checkout".into())],
            config_file: Some(ConfigFile {
                path: "/root/zt.yaml".into(),
                contents: b"routes: {}\n".to_vec(),
            }),
        };
        let fd = to_sealed_memfd(&data).unwrap_or_else(|e| panic!("{e}"));
        let copy = fd.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let mut file = std::fs::File::from(copy);
        assert!(file.write_all(b"x").is_err(), "the memfd must be sealed");
        let back = read_from(fd).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, data);
        assert_eq!(back.var("OTEL_SERVICE_NAME"), Some("checkout"));
        assert_eq!(back.var("OTEL_SERVICE"), None);
    }
}
