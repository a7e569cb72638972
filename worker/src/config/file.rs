//! The YAML configuration file (`--config PATH` / `OTEL_EBPF_CONFIG_PATH`),
//! with OBI's key names, merged with the environment into one
//! [`EffectiveConfig`].
//!
//! # Schema (OBI's keys unless marked *zerotrace*)
//!
//! ```yaml
//! discovery:
//!   instrument:                    # a process is instrumented if it matches ANY entry…
//!     - open_ports: 8080           # …and within an entry ALL given criteria match
//!       exe_path: /usr/bin/*       # glob on the executable's full path ({a,b}, [!/], ?, *)
//!       containers_only: true      # only processes with a container id (/proc/PID/cgroup)
//!       target_pids: [1234]
//!       name: checkout             # service.name of the matched processes
//!       namespace: shop            # service.namespace
//!   exclude_instrument: [...]      # same entries; a match here is never instrumented
//!   default_exclude_instrument: [] # built-in: other agents and collectors (`[]` turns it off)
//!   services: [...]                # OBI's deprecated regex form (exe_path is a regex), used
//!   exclude_services: [...]        # only when `instrument` is absent; exe_path_regexp too
//! routes: {patterns, ignored_patterns, ignore_mode, unmatched, wildcard_char, ...}
//! trace_printer: text              # text | json | disabled (json_indent prints json)
//! otel_traces_export:
//!   endpoint: http://collector:4318   # HTTP: /v1/traces is appended unless present
//!   protocol: http/protobuf           # grpc | http/protobuf | http/json
//!   headers: {Authorization: Bearer x}  # zerotrace: headers for `endpoint`
//!   sampler: {name: parentbased_traceidratio, arg: "0.1"}
//!   batch_max_size: 512               # → OTEL_BSP_MAX_EXPORT_BATCH_SIZE
//!   batch_timeout: 5s                 # → OTEL_BSP_SCHEDULE_DELAY
//!   queue_size: 2048                  # → OTEL_BSP_MAX_QUEUE_SIZE
//!   endpoints:                        # zerotrace: more destinations (fan-out)
//!     - {endpoint: https://b.example, protocol: grpc, headers: {...}, timeout: 10s, compression: gzip}
//! otel_metrics_export:
//!   endpoint, protocol, headers, endpoints   # as above, /v1/metrics
//!   interval: 60s
//! prometheus_export: {port: 9400, path: /metrics}   # port ≥ 1024 (0 = off)
//! open_port: 8080            # top level, like OTEL_EBPF_OPEN_PORT
//! executable_path: nginx     # top level, deprecated regex, like OTEL_EBPF_EXECUTABLE_PATH
//! service_name: checkout     # top level, like OTEL_SERVICE_NAME
//! ```
//!
//! # Precedence: the environment overrides the file
//!
//! Every file value is a default for its environment variable: a non-empty
//! variable wins. `OTEL_EBPF_OPEN_PORT` and `OTEL_EBPF_AUTO_TARGET_EXE`
//! (or `OTEL_GO_AUTO_TARGET_EXE`; else the regex `OTEL_EBPF_EXECUTABLE_PATH`)
//! form one more selector, appended after the file's (lowest preference, as
//! in OBI), both criteria together. An OTLP endpoint variable for a signal
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or the signal's own) replaces the file's
//! `endpoint` (OBI lets the file win over the general variable: zerotrace
//! keeps one rule); the file's `headers` then stay unsent, so credentials
//! never follow an endpoint to another host. `endpoints` entries are always
//! added; each carries only its own headers (default protocol
//! `http/protobuf`, timeout 10 s, no compression). `OTEL_SDK_DISABLED` and
//! `OTEL_{TRACES,METRICS}_EXPORTER=none` turn all of a signal's destinations
//! off. `OTEL_EBPF_METRICS_INTERVAL` (a duration) wins over
//! `OTEL_METRIC_EXPORT_INTERVAL`, which wins over `interval`.
//!
//! # OBI keys zerotrace does not implement
//!
//! A key is refused (an error naming it) when ignoring it could instrument
//! more processes, export more data or weaken TLS — `filter`,
//! `attributes.select`, per-entry `exports`/`sampler`/`routes`/`metrics`,
//! `insecure_skip_verify: true`, `features` without application metrics.
//! Keys whose absence only means less data or different internal tuning are
//! accepted with a warning in [`EffectiveConfig::warnings`] (`ebpf`, `log_level`,
//! `network`, batching back-off, buckets, ...). Selector criteria zerotrace
//! cannot evaluate (`k8s_*`, `languages`, `cmd_args`, `container_name`) make
//! an `instrument` entry match nothing (with a warning) and are refused in
//! exclusion lists, where skipping them would instrument more. Any other key
//! is an error with a "did you mean" hint.
//!
//! # Crates
//!
//! YAML: `serde-saphyr` (maintained, `#![forbid(unsafe_code)]`, panic-free
//! parsing with resource budgets, duplicate keys rejected). `serde_yaml` is
//! deprecated, `serde_yml` carries RUSTSEC-2025-0068, `serde_norway` wraps a
//! transliterated C parser. Key paths come from `serde_path_to_error`; globs
//! are translated to `regex` (linear-time matching, also used for OBI's
//! regex forms).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::discovery::{env_selector, selectors, vet_discovery, RawDiscovery};
use super::environment::env_value;
use super::error::{ConfigError, Ctx};
use super::export::{export_settings, vet_exports, ExportInputs, RawExport};
use super::glob::RegexField;
use super::obi_keys::{vet, vet_feature_lists, ATTRIBUTES, METRICS_TOP, TOP};
use super::otel_sdk::ExportSettings;
use super::printer::{trace_printer, PrinterFormat};
use super::prometheus::{prometheus_settings, vet_prometheus, PrometheusSettings, RawPrometheus};
use super::routes::{checked_routes, RouteSettings};
use super::selectors::{decide, ProcessFacts, Selector};
use super::values::{Extra, PortList, StringList, Text};

// ───────────────────────────── value types ─────────────────────────────

// ───────────────────────────── the file's shape ─────────────────────────────

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFile {
    discovery: Option<RawDiscovery>,
    routes: Option<RouteSettings>,
    trace_printer: Option<Text>,
    otel_traces_export: Option<RawExport>,
    otel_metrics_export: Option<RawExport>,
    prometheus_export: Option<RawPrometheus>,
    metrics: Option<RawFeatures>,
    attributes: Option<RawOpaque>,
    open_port: Option<PortList>,
    executable_path: Option<RegexField>,
    service_name: Option<Text>,
    #[serde(flatten)]
    other: Extra,
}

/// OBI's top-level `metrics` section: only `features` and `instrumentations` are read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFeatures {
    features: Option<StringList>,
    instrumentations: Option<StringList>,
    #[serde(flatten)]
    other: Extra,
}

/// A section read only for its keys (`attributes`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawOpaque {
    #[serde(flatten)]
    other: Extra,
}

/// Everything about the file that is not a selector, export or printer value.
fn vet_file(ctx: &mut Ctx, raw: &RawFile) -> Result<(), ConfigError> {
    vet(ctx, &TOP, "", &raw.other)?;
    if let Some(attributes) = &raw.attributes {
        vet(ctx, &ATTRIBUTES, "attributes", &attributes.other)?;
    }
    if let Some(metrics) = &raw.metrics {
        vet(ctx, &METRICS_TOP, "metrics", &metrics.other)?;
        vet_feature_lists(
            ctx,
            "metrics",
            metrics.features.as_ref(),
            metrics.instrumentations.as_ref(),
        )?;
    }
    if let Some(discovery) = &raw.discovery {
        vet_discovery(ctx, discovery)?;
    }
    vet_exports(
        ctx,
        raw.otel_traces_export.as_ref(),
        raw.otel_metrics_export.as_ref(),
    )?;
    if let Some(prometheus) = &raw.prometheus_export {
        vet_prometheus(ctx, prometheus)?;
    }
    Ok(())
}

// ───────────────────────────── printer, routes ─────────────────────────────

// ───────────────────────────── loading ─────────────────────────────

/// The configuration the agent runs with: the file, overridden by the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveConfig {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Instrument entries in order of preference (the environment's last).
    pub instrument: Vec<Selector>,
    /// Exclusions, the default ones last (`origin` starts with `discovery.default_exclude`).
    pub exclude: Vec<Selector>,
    pub routes: RouteSettings,
    pub trace_printer: PrinterFormat,
    /// OTLP destinations (fan-out: several per signal) and the SDK settings.
    pub export: ExportSettings,
    pub prometheus: Option<PrometheusSettings>,
    /// Keys accepted but ignored, entries skipped: to log at startup.
    pub warnings: Vec<String>,
}

impl EffectiveConfig {
    /// Whether to instrument a process, and the entry (name, namespace) it matched.
    pub fn decide(&self, p: &ProcessFacts) -> Option<&Selector> {
        decide(&self.instrument, &self.exclude, p)
    }
}

/// `--config PATH` if given, else `OTEL_EBPF_CONFIG_PATH`.
pub fn config_path(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| env_value(env, "OTEL_EBPF_CONFIG_PATH").map(PathBuf::from))
}

/// Reads the file (if any) and the environment into the effective configuration.
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EffectiveConfig, ConfigError> {
    let Some(path) = file else {
        return build(None, "", None, env);
    };
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: label.clone(),
        reason: e.to_string(),
    })?;
    build(Some(&text), &label, Some(path.to_path_buf()), env)
}

/// Like [`load`], for file contents already read (e.g. handed over by the loader).
pub fn load_str(
    yaml: &str,
    label: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EffectiveConfig, ConfigError> {
    build(Some(yaml), label, Some(PathBuf::from(label)), env)
}

fn is_blank_yaml(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---")
}

fn parse_file(text: &str, file: &str) -> Result<RawFile, ConfigError> {
    if is_blank_yaml(text) {
        return Ok(RawFile::default());
    }
    let mut key_path = None;
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key_path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    parsed.map_err(|e| yaml_error(file, key_path, &e))
}

/// `path: message (line L, column C)`, without the source snippet.
fn yaml_error(file: &str, key_path: Option<String>, error: &serde_saphyr::Error) -> ConfigError {
    let mut message = error.without_snippet().to_string();
    if let Some(at) = error.location() {
        let suffix = format!(" at line {}, column {}", at.line(), at.column());
        let bare = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        message = format!("{bare} (line {}, column {})", at.line(), at.column());
    }
    let mut message = message.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    if message.starts_with("invalid boolean") {
        message = message.replacen(
            "invalid boolean",
            "invalid boolean (expected true or false)",
            1,
        );
    }
    match key_path.filter(|p| p != "." && p != "?") {
        Some(path) => ConfigError::Key {
            file: file.to_owned(),
            path,
            message,
        },
        None => ConfigError::Syntax {
            file: file.to_owned(),
            message,
        },
    }
}

fn build(
    text: Option<&str>,
    label: &str,
    file: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EffectiveConfig, ConfigError> {
    let mut ctx = Ctx {
        file: label.to_owned(),
        warnings: Vec::new(),
    };
    let raw = match text {
        Some(text) => parse_file(text, label)?,
        None => RawFile::default(),
    };
    vet_file(&mut ctx, &raw)?;
    let routes = checked_routes(&ctx, raw.routes)?;
    let env_selector = env_selector(env, raw.open_port, raw.executable_path)?;
    let (instrument, exclude) = selectors(&mut ctx, raw.discovery, env_selector)?;
    let inputs = ExportInputs {
        traces: raw.otel_traces_export,
        metrics: raw.otel_metrics_export,
        service_name: raw.service_name,
    };
    let export = export_settings(&mut ctx, inputs, env)?;
    let prometheus = prometheus_settings(&ctx, raw.prometheus_export, env)?;
    let exported = !export.traces.is_empty() || !export.metrics.is_empty() || prometheus.is_some();
    let trace_printer = trace_printer(&mut ctx, raw.trace_printer, env, exported)?;
    Ok(EffectiveConfig {
        file,
        instrument,
        exclude,
        routes,
        trace_printer,
        export,
        prometheus,
        warnings: ctx.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::test_support::*;
    use crate::config::values::{DURATION_HINT, PORT_HINT};
    use crate::config::{Protocol, SamplerSetting};

    const OBI_EXAMPLE: &str = "\
discovery:
  instrument:
    - open_ports: 8080
    - exe_path: /usr/local/bin/checkout*
      containers_only: true
      name: checkout
      namespace: shop
otel_traces_export:
  endpoint: http://localhost:4318
prometheus_export:
  port: 8999
  path: /metrics
";

    #[test]
    fn obi_example_file() {
        let config = ok(OBI_EXAMPLE, &[]);
        assert_eq!(config.instrument.len(), 2);
        let first = &config.instrument[0];
        assert_eq!(first.origin, "discovery.instrument[0]");
        assert!(first.open_ports.as_ref().is_some_and(|p| p.contains(8080)));
        let second = &config.instrument[1];
        assert!(second.containers_only);
        assert_eq!(second.name.as_deref(), Some("checkout"));
        assert_eq!(second.namespace.as_deref(), Some("shop"));
        assert_eq!(config.export.traces.len(), 1);
        assert_eq!(
            config.export.traces[0].endpoint,
            "http://localhost:4318/v1/traces"
        );
        assert!(config.export.metrics.is_empty());
        assert_eq!(
            config.prometheus,
            Some(PrometheusSettings {
                port: 8999,
                path: "/metrics".into()
            })
        );
        // An exporter is on, so the printer is opt-in.
        assert_eq!(config.trace_printer, PrinterFormat::Disabled);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        let server = facts(10, "/usr/local/bin/checkout-api", &[9000], true);
        assert_eq!(
            config.decide(&server).and_then(|s| s.name.as_deref()),
            Some("checkout")
        );
        let outside = facts(11, "/usr/local/bin/checkout-api", &[9000], false);
        assert!(config.decide(&outside).is_none());
        let by_port = facts(12, "/usr/bin/python3", &[8080], false);
        assert_eq!(
            config.decide(&by_port).map(|s| s.origin.as_str()),
            Some("discovery.instrument[0]")
        );
    }

    #[test]
    fn every_export_and_top_level_key_is_read() {
        let config = ok(
            "open_port: '80, 443'
service_name: shop
trace_printer: disabled
metrics:
  features: [application]
  instrumentations: ['*']
routes:
  patterns: ['/a/{id}']
  ignored_patterns: [/health]
  ignore_mode: metrics
  unmatched: low-cardinality
  wildcard_char: '#'
  max_path_segment_cardinality: 3
otel_traces_export:
  endpoint: http://t:4318
  protocol: http/protobuf
  sampler: {name: parentbased_traceidratio, arg: 0.2}
  batch_max_size: 100
  batch_timeout: 250ms
  queue_size: 1000
  insecure_skip_verify: false
  instrumentations: [http]
otel_metrics_export:
  endpoint: http://m:4318/custom
  protocol: http/json
  headers: {X-Team: blue}
  interval: 1m
  features: '*'
prometheus_export:
  port: 9464
  path: /prom
  features: [application]
  instrumentations: [http]
",
            &[],
        );
        let ports = config.instrument[0].open_ports.as_ref();
        assert!(ports.is_some_and(|p| p.contains(80) && p.contains(443)));
        assert_eq!(config.instrument[0].origin, "open_port");
        assert_eq!(config.export.service_name.as_deref(), Some("shop"));
        assert_eq!(config.trace_printer, PrinterFormat::Disabled);
        assert_eq!(config.routes.wildcard_char, "#");
        assert_eq!(config.routes.max_path_segment_cardinality, 3);
        assert_eq!(config.routes.unmatched.as_str(), "low-cardinality");
        assert_eq!(
            config.export.sampler,
            SamplerSetting::ParentBasedTraceIdRatio(0.2)
        );
        let batch = config.export.batch;
        assert_eq!(batch.max_export_batch_size, 100);
        assert_eq!(batch.schedule_delay, Duration::from_millis(250));
        assert_eq!(batch.max_queue_size, 1000);
        let metrics = &config.export.metrics[0];
        assert_eq!(metrics.endpoint, "http://m:4318/custom/v1/metrics");
        assert_eq!(metrics.protocol, Protocol::HttpJson);
        assert_eq!(
            metrics.headers,
            vec![("X-Team".to_string(), "blue".to_string())]
        );
        assert_eq!(
            config.export.metric_export_interval,
            Duration::from_secs(60)
        );
        assert_eq!(
            config.prometheus,
            Some(PrometheusSettings {
                port: 9464,
                path: "/prom".into()
            })
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        for (value, format) in [("text", PrinterFormat::Text), ("json", PrinterFormat::Json)] {
            let config = ok(&format!("open_port: 80\ntrace_printer: {value}\n"), &[]);
            assert_eq!(config.trace_printer, format);
        }
        let off = ok("open_port: 80\nprometheus_export:\n  port: 0\n", &[]);
        assert_eq!(off.prometheus, None, "port 0 is OBI's off");
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        let cases: &[(&str, &[&str])] = &[
            (
                "discovery:\n  instrument:\n    - open_ports: 8080\n    - open_ports: 80,http\n",
                &["discovery.instrument[1].open_ports", "\"80,http\" is not a port list", PORT_HINT, "line 4"],
            ),
            ("discovery:\n  instrument:\n    - open_ports: 70000\n", &["discovery.instrument[0].open_ports", "70000"]),
            ("discovery:\n  instrument:\n    - open_ports: 9-3\n", &["open_ports", "range start is above its end"]),
            (
                "discovery:\n  instrument:\n    - exe_path: '/bin/[abc'\n",
                &["discovery.instrument[0].exe_path", "\"/bin/[abc\" is not a valid glob", "no closing ]"],
            ),
            (
                "discovery:\n  services:\n    - exe_path: '(nginx'\n",
                &["discovery.services[0].exe_path", "not a valid regular expression"],
            ),
            (
                "discovery:\n  instrument:\n    - open_ports: 80\n      containers_only: maybe\n",
                &["discovery.instrument[0].containers_only", "expected true or false"],
            ),
            ("otel_traces_export:\n  endpoint: collector:4317\n", &["otel_traces_export.endpoint", "collector:4317"]),
            ("otel_traces_export:\n  protocol: udp\n", &["otel_traces_export.protocol", "\"udp\""]),
            ("otel_metrics_export:\n  interval: soon\n", &["otel_metrics_export.interval", "\"soon\"", DURATION_HINT]),
            ("otel_traces_export:\n  sampler:\n    name: sometimes\n", &["otel_traces_export.sampler.name", "sometimes"]),
            ("otel_traces_export:\n  sampler:\n    arg: 2\n", &["otel_traces_export.sampler.arg", "\"2\""]),
            ("otel_traces_export:\n  batch_max_size: 0\n", &["otel_traces_export.batch_max_size"]),
            ("prometheus_export:\n  port: 80\n", &["prometheus_export.port", "80", "CAP_NET_BIND_SERVICE"]),
            ("prometheus_export:\n  port: http\n", &["prometheus_export.port", "\"http\""]),
            ("prometheus_export:\n  port: 9400\n  path: metrics\n", &["prometheus_export.path", "must start with /"]),
            ("trace_printer: fancy\n", &["trace_printer", "fancy"]),
            ("trace_printer: counter\n", &["trace_printer", "not supported by zerotrace"]),
            ("routes:\n  patterns: ['/users/{id']\n", &["routes.patterns[0]", "/users/{id"]),
            ("routes:\n  unmatched: sometimes\n", &["routes.unmatched", "sometimes"]),
            (
                "otel_traces_export:\n  endpoints:\n    - protocol: grpc\n",
                &["otel_traces_export.endpoints[0]", "endpoint"],
            ),
            (
                "otel_traces_export:\n  endpoints:\n    - endpoint: http://a:4318\n      compression: zstd\n",
                &["otel_traces_export.endpoints[0].compression", "zstd"],
            ),
        ];
        for (yaml, needles) in cases {
            let yaml = format!("{yaml}open_port: 8080\n");
            let message = err(&yaml, &[]);
            assert!(message.starts_with("zerotrace.yaml: "), "{message}");
            for needle in *needles {
                assert!(message.contains(needle), "{needle:?} not in {message:?}");
            }
        }
    }

    #[test]
    fn empty_files_and_yaml_errors() {
        let config = ok("# nothing here\n---\n", &[("OTEL_EBPF_OPEN_PORT", "80")]);
        assert_eq!(config.routes, RouteSettings::default());
        let message = err("- a\n- b\n", &[]);
        assert!(
            message.contains("zerotrace.yaml") && message.contains("line 1"),
            "{message}"
        );
        let message = err("open_port: 80\nopen_port: 81\n", &[]);
        assert!(
            message.contains("duplicate") && !message.contains("DuplicateKeyPolicy"),
            "{message}"
        );
    }

    #[test]
    fn config_path_prefers_the_flag() {
        let env = env_of(&[("OTEL_EBPF_CONFIG_PATH", "/etc/zerotrace/env.yaml")]);
        assert_eq!(
            config_path(Some(Path::new("/tmp/flag.yaml")), &env),
            Some(PathBuf::from("/tmp/flag.yaml"))
        );
        assert_eq!(
            config_path(None, &env),
            Some(PathBuf::from("/etc/zerotrace/env.yaml"))
        );
        assert_eq!(config_path(None, &env_of(&[])), None);
        let missing = load(Some(Path::new("/nonexistent/zerotrace.yaml")), &env_of(&[]));
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }
}
