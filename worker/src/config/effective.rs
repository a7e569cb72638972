//! The configuration the agent runs with ([`EffectiveConfig`]): the file's
//! sections, each read by its module, with the environment over them, built
//! in one pass that collects the warnings to log at start.

use std::path::{Path, PathBuf};

use super::buckets::{bucket_switch, BucketSwitch, RawAggregation};
use super::databases::{database_settings, DatabaseSettings, DbSelection, RawInstrumentations};
use super::discovery::{env_selector, selectors};
use super::environment::env_value;
use super::error::{ConfigError, Ctx};
use super::export::{export_settings, ExportInputs};
use super::features::{metric_features, ExporterSwitch, SpanMetricSwitch};
use super::file::{parse_file, vet_file, RawFile};
use super::filters::{checked_filters, AttributeFilter};
use super::graph_self_references::graph_self_references;
use super::metric_select::{metric_selections, MetricSelection};
use super::otel_sdk::ExportSettings;
use super::printer::{trace_printer, PrinterFormat};
use super::prometheus::{prometheus_settings, PrometheusSettings};
use super::routes::{checked_routes, RouteSettings, ServiceRoutes};
use super::selectors::{decide, ProcessFacts, Selector};
use super::series_ttl::{series_ttl, SeriesTtl};
use super::span_resource::{span_resource_attributes, SpanResourceAttributes};
use super::trace_select::trace_selection;

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
    /// OBI's `filter.application`: spans pass only when every condition holds.
    pub filters: Vec<AttributeFilter>,
    /// `attributes.select` for the RED metrics, in the order they apply.
    pub metric_selections: Vec<MetricSelection>,
    pub trace_printer: PrinterFormat,
    /// OTLP destinations (fan-out: several per signal) and the SDK settings.
    pub export: ExportSettings,
    pub prometheus: Option<PrometheusSettings>,
    /// Which database protocols are decoded, where they go, and the query text.
    pub databases: DatabaseSettings,
    /// HTTP server spans carry `user_agent.original` (unless
    /// `attributes.select.traces` excludes it).
    pub span_user_agent: bool,
    /// Which exporters send the service graph metrics (`application_service_graph`).
    pub service_graph: ExporterSwitch,
    /// Which span metric families each exporter sends (`application_span`,
    /// `application_span_otel`, `application_span_sizes`).
    pub span_metrics: SpanMetricSwitch,
    /// Which exporters keep the service graph's edges from a service to
    /// itself (OBI's `allow_service_graph_self_references`).
    pub graph_self_references: ExporterSwitch,
    /// Which exporters send the process metrics (`application_process`).
    pub process_metrics: ExporterSwitch,
    /// Which exporters send `traces_host_info` even without span or service
    /// graph metrics (`application_host`).
    pub host_info: ExporterSwitch,
    /// Each metrics exporter's histogram bucket bounds (OBI's `buckets`).
    pub buckets: BucketSwitch,
    /// How long each metrics exporter keeps a series nobody updates (OBI's `ttl`).
    pub series_ttl: SeriesTtl,
    /// The resource attributes each exporter's span metrics carry (OBI's
    /// `extra_span_resource_attributes`).
    pub span_resource_attributes: SpanResourceAttributes,
    /// `host.id` as set by `OTEL_EBPF_HOST_ID` or `attributes.host_id.override`
    /// (else the machine id is read at start: `otel::host_id`).
    pub host_id: Option<String>,
    /// Keys accepted but ignored, entries skipped: to log at startup.
    pub warnings: Vec<String>,
    /// The file's `log_level` / `log_format` (flags and variables win: `config`).
    pub log_level: Option<zerotrace_shared::logging::LogLevel>,
    pub log_format: Option<zerotrace_shared::logging::LogFormat>,
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

/// Checks every section's keys first, so an unknown key is reported before any value.
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
    let features = metric_features(
        raw.metrics.as_ref().and_then(|m| m.features.as_ref()),
        raw.otel_metrics_export
            .as_ref()
            .and_then(|m| m.features.as_ref()),
        raw.prometheus_export
            .as_ref()
            .and_then(|p| p.features.as_ref()),
        env,
    )?;
    let buckets = bucket_switch(
        &mut ctx,
        raw.metrics.as_ref().and_then(|m| m.buckets.as_ref()),
        raw.otel_metrics_export
            .as_ref()
            .and_then(|m| m.buckets.as_ref()),
        raw.prometheus_export
            .as_ref()
            .and_then(|p| p.buckets.as_ref()),
        RawAggregation {
            common: raw
                .metrics
                .as_ref()
                .and_then(|m| m.histogram_aggregation.as_deref()),
            otlp: raw
                .otel_metrics_export
                .as_ref()
                .and_then(|m| m.histogram_aggregation.as_deref()),
        },
        env,
    )?;
    let series_ttl = series_ttl(
        raw.metrics.as_ref().and_then(|m| m.ttl.as_ref()),
        raw.otel_metrics_export
            .as_ref()
            .and_then(|m| m.ttl.as_ref()),
        raw.prometheus_export.as_ref().and_then(|p| p.ttl.as_ref()),
        env,
    )?;
    let span_resource_attributes = span_resource_attributes(
        raw.metrics
            .as_ref()
            .and_then(|m| m.extra_span_resource_attributes.as_ref()),
        raw.otel_metrics_export
            .as_ref()
            .and_then(|m| m.extra_span_resource_attributes.as_ref()),
        raw.prometheus_export
            .as_ref()
            .and_then(|p| p.extra_span_resource_attributes.as_ref()),
        env,
    );
    let graph_self_references = graph_self_references(
        raw.metrics
            .as_ref()
            .and_then(|m| m.allow_service_graph_self_references),
        raw.otel_metrics_export
            .as_ref()
            .and_then(|m| m.allow_service_graph_self_references),
        raw.prometheus_export
            .as_ref()
            .and_then(|p| p.allow_service_graph_self_references),
        env,
    )?;
    let mut routes = checked_routes(&ctx, raw.routes)?;
    let filters = checked_filters(&mut ctx, raw.filter)?;
    let env_selector = env_selector(env, raw.open_port, raw.executable_path)?;
    let (mut instrument, exclude) = selectors(&mut ctx, raw.discovery, env_selector)?;
    routes.services = number_service_routes(&ctx, &mut instrument)?;
    let instrumentations = RawInstrumentations {
        traces: raw
            .otel_traces_export
            .as_ref()
            .and_then(|e| e.instrumentations()),
        otlp_metrics: raw
            .otel_metrics_export
            .as_ref()
            .and_then(|e| e.instrumentations()),
        prometheus: raw
            .prometheus_export
            .as_ref()
            .and_then(|p| p.instrumentations()),
        metrics: raw
            .metrics
            .as_ref()
            .and_then(|m| m.instrumentations.as_ref()),
    };
    let select = raw.attributes.as_ref().and_then(|a| a.select.as_ref());
    let host_id = env_value(env, "OTEL_EBPF_HOST_ID")
        .map(|id| id.trim().to_owned())
        .or_else(|| {
            raw.attributes
                .as_ref()
                .and_then(|a| a.host_id.as_ref())
                .and_then(|h| h.override_id.as_ref())
                .map(|t| t.0.trim().to_owned())
                .filter(|id| !id.is_empty())
        });
    let trace_selection = select
        .map(|select| trace_selection(&mut ctx, select))
        .transpose()?;
    let databases = database_settings(instrumentations, trace_selection.as_ref(), env)?;
    let metric_selections = metric_selections(&ctx, select)?;
    let inputs = ExportInputs {
        traces: raw.otel_traces_export,
        metrics: raw.otel_metrics_export,
        service_name: raw.service_name,
        service_namespace: raw.service_namespace,
    };
    let export = export_settings(&mut ctx, inputs, env)?;
    let prometheus = prometheus_settings(&ctx, raw.prometheus_export, env)?;
    let mut databases = databases;
    if prometheus.is_none() {
        // No endpoint: its list decodes nothing.
        databases.prometheus = DbSelection::NONE;
    }
    let exported = !export.traces.is_empty() || !export.metrics.is_empty() || prometheus.is_some();
    let trace_printer = trace_printer(&mut ctx, raw.trace_printer, env, exported)?;
    Ok(EffectiveConfig {
        file,
        instrument,
        exclude,
        routes,
        filters,
        metric_selections,
        trace_printer,
        export,
        prometheus,
        databases,
        span_user_agent: trace_selection.is_none_or(|selection| selection.user_agent),
        service_graph: features.service_graph,
        graph_self_references,
        span_metrics: features.span,
        process_metrics: features.process,
        host_info: features.host,
        buckets,
        series_ttl,
        span_resource_attributes,
        host_id,
        warnings: ctx.warnings,
        log_level: raw.log_level,
        log_format: raw.log_format,
    })
}

/// The entries' own `routes`, listed for the route matcher, each entry
/// given its place in the list.
fn number_service_routes(
    ctx: &Ctx,
    instrument: &mut [Selector],
) -> Result<Vec<ServiceRoutes>, ConfigError> {
    let mut services = Vec::new();
    for selector in instrument {
        if let Some(routes) = &selector.routes {
            let index = u16::try_from(services.len())
                .map_err(|_| ctx.err(&selector.origin, "too many entries with their own routes"))?;
            selector.export.routes = Some(index);
            services.push(routes.clone());
        }
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

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
                path: "/metrics".into(),
                exemplar_filter: Default::default(),
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
    fn host_id_comes_from_the_variable_then_the_file() {
        let file = "open_port: 80\nattributes:\n  host_id:\n    override: ' rack-7 '\n    fetch_timeout: 5s\n";
        let config = ok(file, &[]);
        assert_eq!(config.host_id.as_deref(), Some("rack-7"));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("attributes.host_id.fetch_timeout")),
            "{:?}",
            config.warnings
        );
        let from_env = ok(file, &[("OTEL_EBPF_HOST_ID", "node-3")]);
        assert_eq!(from_env.host_id.as_deref(), Some("node-3"));
        assert_eq!(ok("open_port: 80\n", &[]).host_id, None);
        let blank = "open_port: 80\nattributes:\n  host_id:\n    override: ''\n";
        assert_eq!(ok(blank, &[]).host_id, None);
        assert!(err(
            "open_port: 80\nattributes:\n  host_id:\n    overide: x\n",
            &[]
        )
        .contains("attributes.host_id.overide"));
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
