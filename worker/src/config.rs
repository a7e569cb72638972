//! The worker's configuration: command-line flags (passed on by the loader)
//! over OBI's environment variables.

use zerotrace_shared::ports::PortSelection;

use crate::exporters::prometheus::PrometheusSettings;
use crate::exporters::trace_printer::PrinterFormat;
use crate::otel::settings::ExportSettings;
use crate::routes::RouteSettings;

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// `OTEL_EBPF_OPEN_PORT` / `--open-port`.
    pub open_ports: PortSelection,
    /// `OTEL_EBPF_TRACE_PRINTER` / `--trace-printer`.
    pub trace_printer: PrinterFormat,
    /// `--allow-privileged-worker` (development only).
    pub allow_privileged: bool,
    /// OTLP export settings from the OpenTelemetry SDK variables.
    pub export: ExportSettings,
    /// `ZEROTRACE_RESOURCE_COMMAND_LINE=true`: add `process.command_line` to resources.
    pub include_command_line: bool,
    /// `OTEL_EBPF_PROMETHEUS_PORT` / `_PATH`: the scrape endpoint, when set.
    pub prometheus: Option<PrometheusSettings>,
    /// `--live-socket PATH` (set by the loader): the read-only socket `zerotrace top` reads.
    pub live_socket: Option<std::path::PathBuf>,
    /// OBI's `routes` section (defaults: the heuristic for unmatched paths).
    pub routes: RouteSettings,
}

impl WorkerConfig {
    /// Reads flags and the environment; errors name the setting and the value.
    pub fn from_args_and_env(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut open_ports = env("OTEL_EBPF_OPEN_PORT");
        let mut printer = env("OTEL_EBPF_TRACE_PRINTER");
        let mut allow_privileged = false;
        let mut live_socket = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--open-port" => open_ports = Some(args.next().ok_or("--open-port needs a value")?),
                "--trace-printer" => {
                    printer = Some(args.next().ok_or("--trace-printer needs a value")?)
                }
                "--allow-privileged-worker" => allow_privileged = true,
                "--live-socket" => {
                    live_socket = Some(std::path::PathBuf::from(
                        args.next().ok_or("--live-socket needs a value")?,
                    ))
                }
                other => return Err(format!("unknown worker option {other:?}")),
            }
        }
        let open_ports = match open_ports {
            Some(text) => PortSelection::parse(&text)
                .map_err(|e| format!("OTEL_EBPF_OPEN_PORT / --open-port: {e}"))?,
            None => {
                return Err(
                    "nothing to instrument: set OTEL_EBPF_OPEN_PORT or --open-port (e.g. 8080)"
                        .into(),
                )
            }
        };
        let export = ExportSettings::from_env(&env)?;
        let trace_printer = match printer {
            Some(value) => {
                PrinterFormat::parse(&value).map_err(|e| format!("OTEL_EBPF_TRACE_PRINTER: {e}"))?
            }
            // Without any exporter the printer is the output; with OTLP it is opt-in (as in OBI).
            None if export.traces.is_empty()
                && export.metrics.is_empty()
                && env("OTEL_EBPF_PROMETHEUS_PORT").is_none() =>
            {
                PrinterFormat::Text
            }
            None => PrinterFormat::Disabled,
        };
        let include_command_line = match env("ZEROTRACE_RESOURCE_COMMAND_LINE").as_deref() {
            None | Some("false") | Some("") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "ZEROTRACE_RESOURCE_COMMAND_LINE={other:?}: expected true or false"
                ))
            }
        };
        let prometheus = PrometheusSettings::from_env(&env)?;
        Ok(Self {
            open_ports,
            trace_printer,
            allow_privileged,
            export,
            include_command_line,
            prometheus,
            live_socket,
            routes: RouteSettings::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_override_the_environment() {
        let config = WorkerConfig::from_args_and_env(
            ["--open-port".to_string(), "9000".to_string()],
            env_of(&[
                ("OTEL_EBPF_OPEN_PORT", "8080"),
                ("OTEL_EBPF_TRACE_PRINTER", "json"),
            ]),
        );
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert!(config.open_ports.contains(9000) && !config.open_ports.contains(8080));
        assert_eq!(config.trace_printer, PrinterFormat::Json);
    }

    #[test]
    fn bad_values_are_named() {
        let err = WorkerConfig::from_args_and_env(
            Vec::<String>::new(),
            env_of(&[("OTEL_EBPF_OPEN_PORT", "80,http")]),
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
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("fancy"), "{err}");
    }
}
