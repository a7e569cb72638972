//! The worker's flags (set by the loader: `--open-port`, `--trace-printer`,
//! `--live-socket`, ...) and its start-up data: OBI's environment variables
//! (the loader's, handed over: the worker's own environment holds none) and
//! the YAML file (`--config` / `OTEL_EBPF_CONFIG_PATH`, opened by the loader
//! and handed over as bytes), merged by [`super::load_str`] (environment
//! over file), with the flags applied as the variables they stand for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use zerotrace_shared::logging::{self, LogSettings, LogSources};
use zerotrace_shared::startup::{ConfigFile, StartupData};

use super::trace_links::LinkSettings;
use super::{load, load_str, EffectiveConfig};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Selectors, routes, printer, OTLP, Prometheus: everything from file and environment.
    pub effective: EffectiveConfig,
    /// `--allow-privileged-worker` (development only).
    pub allow_privileged: bool,
    /// `--dumpable` (the loader's `--dumpable-worker`; development only): be
    /// dumpable once the start-up checks are done.
    pub dumpable: bool,
    /// `ZEROTRACE_RESOURCE_COMMAND_LINE=true`: add `process.command_line` to resources.
    pub include_command_line: bool,
    /// `--live-socket PATH` (set by the loader): the read-only socket `zerotrace top` reads.
    pub live_socket: Option<PathBuf>,
    /// `--print-config`: print the effective configuration and exit.
    pub print_config: bool,
    /// `ZEROTRACE_SECCOMP` (enforce, log, off): the worker's syscall allow-list.
    pub seccomp: SeccompMode,
    /// `ZEROTRACE_TLS_CAPTURE` (default true): ask the loader to hook the TLS
    /// libraries (or Go's `crypto/tls`) of instrumented processes.
    pub tls_capture: bool,
    /// `--log-level`/`--log-format`, else `OTEL_EBPF_LOG_*`, else the file's `log_*`.
    pub log: LogSettings,
    /// `OTEL_EBPF_BPF_DISABLE_BLACK_BOX_CP` (OBI's key, default false) and
    /// `ZEROTRACE_TRACE_LINK_WAIT` (milliseconds, default 500): linking spans
    /// across processes on this host.
    pub trace_links: LinkSettings,
    /// `ZEROTRACE_BENCH_FLOOR=drain` or `drain-writes` (benchmarks only, docs/benchmarks.md):
    /// consume each ring record without decoding it, to measure what the
    /// kernel side and the reading cost without the worker's processing.
    pub discard_records: bool,
}

/// `ZEROTRACE_TRACE_LINK_WAIT`: milliseconds, 0 to 10000.
fn link_wait(value: Option<&str>) -> Result<Duration, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(LinkSettings::default().wait),
        Some(text) => match text.parse::<u64>() {
            Ok(ms) if ms <= 10_000 => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "ZEROTRACE_TRACE_LINK_WAIT={text:?}: expected milliseconds from 0 to 10000"
            )),
        },
    }
}

/// `ZEROTRACE_SECCOMP`: what happens to a syscall outside the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// Refused with EPERM (the default).
    Enforce,
    /// Allowed and logged by the kernel (audit / `dmesg`): for finding what a
    /// new environment needs.
    Log,
    /// No filter (debugging only).
    Off,
}

impl SeccompMode {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("enforce") => Ok(Self::Enforce),
            Some("log") => Ok(Self::Log),
            Some("off") => Ok(Self::Off),
            Some(other) => Err(format!(
                "ZEROTRACE_SECCOMP={other:?}: expected enforce, log or off"
            )),
        }
    }
}

/// A true/false variable; unset or empty is `default`.
fn boolean(name: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
    match value {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("{name}={other:?}: expected true or false")),
    }
}

impl WorkerConfig {
    /// The configuration from the loader's flags and start-up data: the one
    /// source of the worker's settings.
    pub fn from_startup(
        args: impl IntoIterator<Item = String>,
        startup: &StartupData,
    ) -> Result<Self, String> {
        Self::from_args_and_env(
            args,
            |k| startup.var(k).map(str::to_owned),
            startup.config_file.as_ref(),
        )
    }

    /// Reads flags, the file's bytes and the environment; errors name the
    /// key or variable and the value.
    pub fn from_args_and_env(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
        file: Option<&ConfigFile>,
    ) -> Result<Self, String> {
        // Flags stand for their variables, and win over them.
        let mut overrides: HashMap<&'static str, String> = HashMap::new();
        let mut allow_privileged = false;
        let mut dumpable = false;
        let mut live_socket = None;
        let mut print_config = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--open-port" => {
                    overrides.insert("OTEL_EBPF_OPEN_PORT", value("--open-port")?);
                }
                "--trace-printer" => {
                    overrides.insert("OTEL_EBPF_TRACE_PRINTER", value("--trace-printer")?);
                }
                "--log-level" => {
                    overrides.insert(logging::LEVEL_ENV, value("--log-level")?);
                }
                "--log-format" => {
                    overrides.insert(logging::FORMAT_ENV, value("--log-format")?);
                }
                "--live-socket" => live_socket = Some(PathBuf::from(value("--live-socket")?)),
                "--allow-privileged-worker" => allow_privileged = true,
                "--dumpable" => dumpable = true,
                "--print-config" => print_config = true,
                other => return Err(format!("unknown worker option {other:?}")),
            }
        }
        let merged = |key: &str| overrides.get(key).cloned().or_else(|| env(key));
        // The worker never opens a configuration path itself: the loader did.
        let effective = match file {
            Some(file) => {
                let text = std::str::from_utf8(&file.contents)
                    .map_err(|e| format!("{}: not UTF-8 text ({e})", file.path))?;
                load_str(text, &file.path, &merged)
            }
            None => load(None, &merged),
        }
        .map_err(|e| e.to_string())?;
        let include_command_line = boolean(
            "ZEROTRACE_RESOURCE_COMMAND_LINE",
            merged("ZEROTRACE_RESOURCE_COMMAND_LINE").as_deref(),
            false,
        )?;
        let tls_capture = boolean(
            "ZEROTRACE_TLS_CAPTURE",
            merged("ZEROTRACE_TLS_CAPTURE").as_deref(),
            true,
        )?;
        let seccomp = SeccompMode::parse(merged("ZEROTRACE_SECCOMP").as_deref())?;
        let trace_links = LinkSettings {
            enabled: !boolean(
                "OTEL_EBPF_BPF_DISABLE_BLACK_BOX_CP",
                merged("OTEL_EBPF_BPF_DISABLE_BLACK_BOX_CP").as_deref(),
                false,
            )?,
            wait: link_wait(merged("ZEROTRACE_TRACE_LINK_WAIT").as_deref())?,
        };
        // The loader validated the value (the kernel's floors): only this one is the worker's.
        let discard_records = matches!(
            merged("ZEROTRACE_BENCH_FLOOR").as_deref(),
            Some("drain" | "drain-writes")
        );
        let (level_env, format_env) = (merged(logging::LEVEL_ENV), merged(logging::FORMAT_ENV));
        let log = LogSettings::resolve(&LogSources {
            level_env: level_env.as_deref(),
            format_env: format_env.as_deref(),
            level_file: effective.log_level,
            format_file: effective.log_format,
            ..LogSources::default()
        })?;
        Ok(Self {
            effective,
            allow_privileged,
            dumpable,
            include_command_line,
            live_socket,
            print_config,
            seccomp,
            tls_capture,
            trace_links,
            log,
            discard_records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrinterFormat;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    /// The configuration of `--open-port 80` and `env`.
    fn with(env: &'static [(&'static str, &'static str)]) -> Result<WorkerConfig, String> {
        WorkerConfig::from_args_and_env(
            ["--open-port".to_string(), "80".to_string()],
            env_of(env),
            None,
        )
    }

    #[test]
    fn tls_capture_is_on_unless_turned_off() {
        assert!(with(&[]).is_ok_and(|c| c.tls_capture));
        assert!(with(&[("ZEROTRACE_TLS_CAPTURE", "false")]).is_ok_and(|c| !c.tls_capture));
        assert!(with(&[("ZEROTRACE_TLS_CAPTURE", "no")])
            .is_err_and(|e| e.contains("ZEROTRACE_TLS_CAPTURE")));
    }

    #[test]
    fn records_are_discarded_only_at_the_drain_floors() {
        assert!(with(&[]).is_ok_and(|c| !c.discard_records));
        assert!(with(&[("ZEROTRACE_BENCH_FLOOR", "drain")]).is_ok_and(|c| c.discard_records));
        assert!(with(&[("ZEROTRACE_BENCH_FLOOR", "drain-writes")]).is_ok_and(|c| c.discard_records));
        // The kernel's floors leave the worker as it is.
        assert!(with(&[("ZEROTRACE_BENCH_FLOOR", "copy")]).is_ok_and(|c| !c.discard_records));
    }

    #[test]
    fn flags_override_the_environment() {
        let config = WorkerConfig::from_args_and_env(
            ["--open-port".to_string(), "9000".to_string()],
            env_of(&[
                ("OTEL_EBPF_OPEN_PORT", "8080"),
                ("OTEL_EBPF_TRACE_PRINTER", "json"),
            ]),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ports: Vec<String> = config
            .effective
            .instrument
            .iter()
            .filter_map(|s| s.open_ports.as_ref().map(|p| p.to_string()))
            .collect();
        assert_eq!(ports, vec!["9000".to_string()]);
        assert_eq!(config.effective.trace_printer, PrinterFormat::Json);
    }

    #[test]
    fn the_handed_over_file_is_used_and_environment_wins_over_it() {
        let file = ConfigFile {
            path: "/root/zt.yaml".into(),
            contents: b"discovery:\n  instrument:\n    - open_ports: 8080\ntrace_printer: json\n"
                .to_vec(),
        };
        let startup = StartupData {
            environment: vec![("OTEL_EBPF_TRACE_PRINTER".into(), "text".into())],
            config_file: Some(file.clone()),
        };
        let config = WorkerConfig::from_startup(Vec::<String>::new(), &startup)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.effective.trace_printer, PrinterFormat::Text);
        assert_eq!(config.effective.instrument.len(), 1);
        let bad = ConfigFile {
            contents: vec![0xff, 0xfe],
            ..file
        };
        let err = WorkerConfig::from_args_and_env(Vec::<String>::new(), env_of(&[]), Some(&bad))
            .err()
            .unwrap_or_default();
        assert!(err.contains("/root/zt.yaml"), "{err}");
    }

    #[test]
    fn log_settings_come_from_flags_then_environment_then_file() {
        use zerotrace_shared::logging::{LogFormat, LogLevel};
        let file = |yaml: &str| ConfigFile {
            path: "/etc/zt.yaml".into(),
            contents: format!("open_port: 80\n{yaml}").into_bytes(),
        };
        let load = |args: &[&str], env: &'static [(&'static str, &'static str)], yaml: &str| {
            WorkerConfig::from_args_and_env(
                args.iter().map(|a| a.to_string()),
                env_of(env),
                Some(&file(yaml)),
            )
        };
        let from_file = load(&[], &[], "log_level: WARN\nlog_format: json\n");
        assert!(from_file.is_ok_and(|c| c.log.level == LogLevel::Warn
            && c.log.format == LogFormat::Json
            && !c.effective.warnings.iter().any(|w| w.contains("log_"))));
        let env = load(
            &[],
            &[("OTEL_EBPF_LOG_LEVEL", "error")],
            "log_level: debug\n",
        );
        assert!(env.is_ok_and(|c| c.log.level == LogLevel::Error));
        let flag = load(
            &["--log-level", "debug"],
            &[("OTEL_EBPF_LOG_LEVEL", "error")],
            "log_level: warn\n",
        );
        assert!(flag.is_ok_and(|c| c.log.level == LogLevel::Debug));
        let bad = load(&[], &[], "log_level: loud\n");
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.contains("log_level") && e.contains("loud")),
            "{bad:?}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = WorkerConfig::from_args_and_env(
            Vec::<String>::new(),
            env_of(&[("OTEL_EBPF_OPEN_PORT", "80,http")]),
            None,
        )
        .err()
        .unwrap_or_default();
        assert!(
            err.contains("OTEL_EBPF_OPEN_PORT") && err.contains("80,http"),
            "{err}"
        );
        let err = WorkerConfig::from_args_and_env(
            Vec::<String>::new(),
            env_of(&[
                ("OTEL_EBPF_OPEN_PORT", "80"),
                ("OTEL_EBPF_TRACE_PRINTER", "fancy"),
            ]),
            None,
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("fancy"), "{err}");
        let err = WorkerConfig::from_args_and_env(Vec::<String>::new(), env_of(&[]), None)
            .err()
            .unwrap_or_default();
        assert!(err.contains("nothing to instrument"), "{err}");
    }
}
