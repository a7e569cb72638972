//! The YAML file's top level: its shape ([`RawFile`], one field per section,
//! each section typed by its own module), the file-wide key checks, and
//! parsing with key paths and line numbers in every error.

use serde::Deserialize;

use super::buckets::RawBuckets;
use super::databases::RawSelect;
use super::discovery::{vet_discovery, RawDiscovery};
use super::error::{ConfigError, Ctx};
use super::export::{vet_exports, RawExport};
use super::glob::RegexField;
use super::obi_keys::{vet, vet_feature_lists, ATTRIBUTES, HOST_ID, METRICS_TOP, TOP};
use super::prometheus::{vet_prometheus, RawPrometheus};
use super::routes::RouteSettings;
use super::values::{Extra, GoDuration, PortList, StringList, Text};

/// The file as written: typed sections, and the other keys to check.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawFile {
    pub(super) discovery: Option<RawDiscovery>,
    pub(super) routes: Option<RouteSettings>,
    pub(super) trace_printer: Option<Text>,
    pub(super) otel_traces_export: Option<RawExport>,
    pub(super) otel_metrics_export: Option<RawExport>,
    pub(super) prometheus_export: Option<RawPrometheus>,
    pub(super) metrics: Option<RawFeatures>,
    pub(super) attributes: Option<RawAttributes>,
    pub(super) filter: Option<super::filters::RawFilters>,
    pub(super) open_port: Option<PortList>,
    pub(super) executable_path: Option<RegexField>,
    pub(super) service_name: Option<Text>,
    pub(super) service_namespace: Option<Text>,
    pub(super) log_level: Option<zerotrace_shared::logging::LogLevel>,
    pub(super) log_format: Option<zerotrace_shared::logging::LogFormat>,
    #[serde(flatten)]
    other: Extra,
}

/// OBI's top-level `metrics` section: `features`, `instrumentations`,
/// `buckets`, `histogram_aggregation`, `extra_span_resource_attributes`,
/// `allow_service_graph_self_references` and `ttl` are read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawFeatures {
    pub(super) features: Option<StringList>,
    pub(super) instrumentations: Option<StringList>,
    pub(super) buckets: Option<RawBuckets>,
    pub(super) histogram_aggregation: Option<String>,
    pub(super) extra_span_resource_attributes: Option<StringList>,
    pub(super) allow_service_graph_self_references: Option<bool>,
    pub(super) ttl: Option<GoDuration>,
    #[serde(flatten)]
    other: Extra,
}

/// OBI's `attributes` section: `select` and `host_id` are read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAttributes {
    pub(super) select: Option<RawSelect>,
    pub(super) host_id: Option<RawHostId>,
    #[serde(flatten)]
    other: Extra,
}

/// OBI's `attributes.host_id`: only `override` is read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawHostId {
    #[serde(rename = "override")]
    pub(super) override_id: Option<Text>,
    #[serde(flatten)]
    other: Extra,
}

/// The keys no typed field reads, section by section, against the OBI key
/// table (and the feature lists): before any value is used.
pub(super) fn vet_file(ctx: &mut Ctx, raw: &RawFile) -> Result<(), ConfigError> {
    vet(ctx, &TOP, "", &raw.other)?;
    if let Some(attributes) = &raw.attributes {
        vet(ctx, &ATTRIBUTES, "attributes", &attributes.other)?;
        if let Some(host_id) = &attributes.host_id {
            vet(ctx, &HOST_ID, "attributes.host_id", &host_id.other)?;
        }
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

fn is_blank_yaml(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---")
}

/// The text into the file's shape; only comments and `---` read as an empty file.
pub(super) fn parse_file(text: &str, file: &str) -> Result<RawFile, ConfigError> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::*;
    use crate::config::values::{DURATION_HINT, PORT_HINT};
    use crate::config::{
        PrinterFormat, PrometheusSettings, Protocol, RouteSettings, SamplerSetting,
    };

    #[test]
    fn every_export_and_top_level_key_is_read() {
        let config = ok(
            "open_port: '80, 443'
service_name: shop
service_namespace: retail
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
        assert_eq!(config.export.service_namespace.as_deref(), Some("retail"));
        assert!(config
            .export
            .resource_attributes
            .contains(&("service.namespace".into(), "retail".into())));
        // The variable wins over the file's key, and --print-config reads back.
        let by_env = ok(
            "open_port: 80\nservice_namespace: retail\n",
            &[("OTEL_EBPF_SERVICE_NAMESPACE", "wholesale")],
        );
        assert_eq!(
            by_env.export.service_namespace.as_deref(),
            Some("wholesale")
        );
        let printed = config.to_yaml();
        assert_eq!(
            ok(&printed, &[]).export.service_namespace.as_deref(),
            Some("retail"),
            "{printed}"
        );
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
                path: "/prom".into(),
                exemplar_filter: Default::default(),
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
}
