//! `zerotrace run --print-config`: the effective configuration written back
//! as a YAML file zerotrace accepts, with header values and URL passwords
//! redacted, warnings and environment-only settings as comments.

use std::collections::BTreeMap;

use serde::Serialize;

use super::databases::DbSelection;
use super::glob::ExePattern;
use super::otel_sdk::{OtlpDestination, SamplerSetting, Temporality};
use super::printer::printer_name;
use super::routes::ServiceRoutes;
use super::selectors::Selector;
use super::values::format_duration;
use super::{EffectiveConfig, HistogramBuckets, SpanMetricForms};

const REDACTED: &str = "<redacted>";

#[derive(Serialize)]
struct YamlOut {
    discovery: DiscoveryOut,
    routes: RoutesOut,
    trace_printer: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_namespace: Option<String>,
    otel_traces_export: TracesOut,
    otel_metrics_export: MetricsOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    prometheus_export: Option<PrometheusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<AttributesOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<FilterOut>,
}

/// `filter.application`: each attribute with its `match` or `not_match` glob.
#[derive(Serialize)]
struct FilterOut {
    application: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
}

/// `attributes.select`: `traces.exclude: [db.query.text]` when the query
/// text is off, and the metrics' entries.
#[derive(Serialize)]
struct AttributesOut {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    select: BTreeMap<String, BTreeMap<&'static str, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<HostIdOut>,
}

/// `attributes.host_id.override`, when set.
#[derive(Serialize)]
struct HostIdOut {
    #[serde(rename = "override")]
    override_id: String,
}

#[derive(Serialize)]
struct DiscoveryOut {
    instrument: Vec<SelectorOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exclude_instrument: Vec<SelectorOut>,
    default_exclude_instrument: Vec<SelectorOut>,
}

#[derive(Serialize)]
struct SelectorOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    open_ports: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe_path_regexp: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    containers_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    target_pids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    languages: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exports: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sampler: Option<SamplerOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<ServiceRoutes>,
}

#[derive(Serialize)]
struct RoutesOut {
    patterns: Vec<String>,
    ignored_patterns: Vec<String>,
    ignore_mode: &'static str,
    unmatched: &'static str,
    wildcard_char: String,
    max_path_segment_cardinality: usize,
}

#[derive(Serialize)]
struct SamplerOut {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arg: Option<String>,
}

#[derive(Serialize)]
struct TracesOut {
    sampler: SamplerOut,
    batch_max_size: usize,
    batch_timeout: String,
    queue_size: usize,
    instrumentations: Vec<&'static str>,
    endpoints: Vec<DestinationOut>,
}

#[derive(Serialize)]
struct MetricsOut {
    interval: String,
    instrumentations: Vec<&'static str>,
    features: Vec<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    buckets: BTreeMap<&'static str, Vec<f64>>,
    histogram_aggregation: &'static str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    extra_span_resource_attributes: Vec<String>,
    allow_service_graph_self_references: bool,
    ttl: String,
    exemplar_filter: &'static str,
    endpoints: Vec<DestinationOut>,
}

/// An exporter's metric groups, as its `features` list.
fn features_out(
    service_graph: bool,
    span: SpanMetricForms,
    process: bool,
    host_info: bool,
) -> Vec<&'static str> {
    let mut features = vec!["application"];
    if service_graph {
        features.push("application_service_graph");
    }
    if span.tempo {
        features.push("application_span");
    }
    if span.otel {
        features.push("application_span_otel");
    }
    if span.sizes {
        features.push("application_span_sizes");
    }
    if process {
        features.push("application_process");
    }
    if host_info {
        features.push("application_host");
    }
    features
}

#[derive(Serialize)]
struct DestinationOut {
    endpoint: String,
    protocol: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    timeout: String,
    compression: &'static str,
}

#[derive(Serialize)]
struct PrometheusOut {
    port: u16,
    path: String,
    instrumentations: Vec<&'static str>,
    features: Vec<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    buckets: BTreeMap<&'static str, Vec<f64>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    extra_span_resource_attributes: Vec<String>,
    allow_service_graph_self_references: bool,
    exemplar_filter: &'static str,
    ttl: String,
}

/// An exporter's `buckets` lists that replace the defaults.
fn buckets_out(buckets: &HistogramBuckets) -> BTreeMap<&'static str, Vec<f64>> {
    [
        ("duration_histogram", &buckets.duration),
        ("request_size_histogram", &buckets.request_size),
        ("response_size_histogram", &buckets.response_size),
    ]
    .into_iter()
    .filter_map(|(key, list)| Some((key, list.as_deref()?.to_vec())))
    .collect()
}

/// An `instrumentations` list that selects `databases` (HTTP and gRPC always).
fn instrumentations_out(databases: DbSelection) -> Vec<&'static str> {
    if databases == DbSelection::ALL {
        return vec!["*"];
    }
    let mut list = vec!["http", "grpc"];
    list.extend(databases.names());
    list
}

fn selector_out(s: &Selector) -> SelectorOut {
    let (exe_path, exe_path_regexp) = match &s.exe_path {
        Some(ExePattern::Glob(g)) => (Some(g.as_str().to_owned()), None),
        Some(ExePattern::Regex(r)) => (None, Some(r.as_str().to_owned())),
        None => (None, None),
    };
    SelectorOut {
        open_ports: s.open_ports.as_ref().map(ToString::to_string),
        exe_path,
        exe_path_regexp,
        containers_only: s.containers_only,
        target_pids: s.target_pids.clone(),
        languages: s.languages.as_ref().map(|g| g.as_str().to_owned()),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        exports: (s.export.traces_blocked || s.export.metrics_blocked).then(|| {
            [
                (!s.export.traces_blocked).then_some("traces"),
                (!s.export.metrics_blocked).then_some("metrics"),
            ]
            .into_iter()
            .flatten()
            .collect()
        }),
        sampler: s.export.sampler.map(sampler_out),
        routes: s.routes.clone(),
    }
}

/// Hides the password of `scheme://user:password@host/...`.
fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!(
                "{scheme}://{user}:{REDACTED}@{host}{}",
                &rest[authority_end..]
            )
        }
        None => url.to_owned(),
    }
}

fn destination_out(d: &OtlpDestination) -> DestinationOut {
    DestinationOut {
        endpoint: mask_url(&d.endpoint),
        protocol: d.protocol.as_str(),
        headers: d
            .headers
            .iter()
            .map(|(k, _)| (k.clone(), REDACTED.to_owned()))
            .collect(),
        timeout: format_duration(d.timeout),
        compression: if d.gzip { "gzip" } else { "none" },
    }
}

fn sampler_out(sampler: SamplerSetting) -> SamplerOut {
    let (name, ratio) = match sampler {
        SamplerSetting::AlwaysOn => ("always_on", None),
        SamplerSetting::AlwaysOff => ("always_off", None),
        SamplerSetting::TraceIdRatio(r) => ("traceidratio", Some(r)),
        SamplerSetting::ParentBasedAlwaysOn => ("parentbased_always_on", None),
        SamplerSetting::ParentBasedAlwaysOff => ("parentbased_always_off", None),
        SamplerSetting::ParentBasedTraceIdRatio(r) => ("parentbased_traceidratio", Some(r)),
    };
    SamplerOut {
        name,
        arg: ratio.map(|r| r.to_string()),
    }
}

impl EffectiveConfig {
    fn yaml_out(&self) -> YamlOut {
        let (defaults, excludes): (Vec<&Selector>, Vec<&Selector>) = self
            .exclude
            .iter()
            .partition(|s| s.origin.starts_with("discovery.default_exclude"));
        let export = &self.export;
        YamlOut {
            discovery: DiscoveryOut {
                instrument: self.instrument.iter().map(selector_out).collect(),
                exclude_instrument: excludes.into_iter().map(selector_out).collect(),
                default_exclude_instrument: defaults.into_iter().map(selector_out).collect(),
            },
            routes: RoutesOut {
                patterns: self.routes.patterns.clone(),
                ignored_patterns: self.routes.ignored_patterns.clone(),
                ignore_mode: self.routes.ignore_mode.as_str(),
                unmatched: self.routes.unmatched.as_str(),
                wildcard_char: self.routes.wildcard_char.clone(),
                max_path_segment_cardinality: self.routes.max_path_segment_cardinality,
            },
            trace_printer: printer_name(self.trace_printer),
            service_name: export.service_name.clone(),
            service_namespace: export.service_namespace.clone(),
            otel_traces_export: TracesOut {
                sampler: sampler_out(export.sampler),
                batch_max_size: export.batch.max_export_batch_size,
                batch_timeout: format_duration(export.batch.schedule_delay),
                queue_size: export.batch.max_queue_size,
                instrumentations: instrumentations_out(self.databases.traces),
                endpoints: export.traces.iter().map(destination_out).collect(),
            },
            otel_metrics_export: MetricsOut {
                interval: format_duration(export.metric_export_interval),
                instrumentations: instrumentations_out(self.databases.otlp_metrics),
                features: features_out(
                    self.service_graph.otlp,
                    self.span_metrics.otlp,
                    self.process_metrics.otlp,
                    self.host_info.otlp,
                ),
                buckets: buckets_out(&self.buckets.otlp),
                histogram_aggregation: self.buckets.otlp.aggregation.name(),
                extra_span_resource_attributes: self.span_resource_attributes.otlp.to_vec(),
                allow_service_graph_self_references: self.graph_self_references.otlp,
                ttl: format_duration(self.series_ttl.otlp.unwrap_or_default()),
                exemplar_filter: export.exemplar_filter.name(),
                endpoints: export.metrics.iter().map(destination_out).collect(),
            },
            prometheus_export: self.prometheus.as_ref().map(|p| PrometheusOut {
                port: p.port,
                path: p.path.clone(),
                instrumentations: instrumentations_out(self.databases.prometheus),
                features: features_out(
                    self.service_graph.prometheus,
                    self.span_metrics.prometheus,
                    self.process_metrics.prometheus,
                    self.host_info.prometheus,
                ),
                buckets: buckets_out(&self.buckets.prometheus),
                extra_span_resource_attributes: self.span_resource_attributes.prometheus.to_vec(),
                allow_service_graph_self_references: self.graph_self_references.prometheus,
                exemplar_filter: p.exemplar_filter.name(),
                ttl: format_duration(self.series_ttl.prometheus.unwrap_or_default()),
            }),
            attributes: self.attributes_out(),
            filter: (!self.filters.is_empty()).then(|| FilterOut {
                application: self
                    .filters
                    .iter()
                    .map(|f| {
                        let key = if f.negate { "not_match" } else { "match" };
                        (
                            f.attribute,
                            BTreeMap::from([(key, f.glob.as_str().to_owned())]),
                        )
                    })
                    .collect(),
            }),
        }
    }

    /// `attributes.select` as it takes effect, when anything is selected.
    fn attributes_out(&self) -> Option<AttributesOut> {
        let mut select = BTreeMap::new();
        let excluded_from_spans: Vec<String> = [
            (!self.databases.query_text).then_some("db.query.text"),
            (!self.span_user_agent).then_some("user_agent.original"),
        ]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
        if !excluded_from_spans.is_empty() {
            select.insert(
                "traces".to_owned(),
                BTreeMap::from([("exclude", excluded_from_spans)]),
            );
        }
        for selection in &self.metric_selections {
            let (include, exclude) = selection.lists();
            let mut lists = BTreeMap::new();
            if let Some(include) = include {
                lists.insert("include", include);
            }
            if !exclude.is_empty() {
                lists.insert("exclude", exclude);
            }
            select.insert(selection.pattern.clone(), lists);
        }
        let host_id = self
            .host_id
            .clone()
            .map(|override_id| HostIdOut { override_id });
        (!select.is_empty() || host_id.is_some()).then_some(AttributesOut { select, host_id })
    }

    /// The effective configuration as YAML (`zerotrace run --print-config`):
    /// a file zerotrace accepts, with header values and URL passwords
    /// redacted, warnings and environment-only settings as comments.
    pub fn to_yaml(&self) -> String {
        let source = match &self.file {
            Some(file) => format!("{}, overridden by the environment", file.display()),
            None => "the environment (no configuration file)".into(),
        };
        let mut out = format!("# zerotrace effective configuration, from {source}\n");
        for warning in &self.warnings {
            out.push_str(&format!("# warning: {warning}\n"));
        }
        match serde_saphyr::to_string(&self.yaml_out()) {
            Ok(yaml) => out.push_str(&yaml),
            Err(e) => out.push_str(&format!("# cannot render the configuration: {e}\n")),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&self.environment_only_comments());
        out
    }

    fn environment_only_comments(&self) -> String {
        let export = &self.export;
        let attributes: Vec<String> = export
            .resource_attributes
            .iter()
            // The namespace printed as `service_namespace` above.
            .filter(|(k, _)| !(k == "service.namespace" && export.service_namespace.is_some()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let temporality = match export.temporality {
            Temporality::Cumulative => "cumulative",
            Temporality::Delta => "delta",
        };
        let mut out = String::from("# from the environment only:\n");
        out.push_str(&format!("#   metrics temporality: {temporality}\n"));
        if !attributes.is_empty() {
            out.push_str(&format!(
                "#   resource attributes: {}\n",
                attributes.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::{load_str, ExportSettings};

    #[test]
    fn to_yaml_round_trips_and_masks_secrets() {
        let yaml = "discovery:
  instrument:
    - open_ports: 80,8000-8999
      exe_path: /usr/bin/*
      containers_only: true
      name: web
      exports: [metrics]
    - exe_path_regexp: ^/opt/
      target_pids: [7]
      exports: []
      sampler: {name: traceidratio, arg: '0.5'}
      routes: {incoming: ['/items/{id}'], outgoing: ['/api/:version/users']}
    - open_ports: 81
      exports: [traces, metrics]
  exclude_instrument:
    - exe_path: '*debug*'
routes:
  patterns: ['/users/{id}']
trace_printer: json
service_name: shop
otel_traces_export:
  endpoint: https://user:hunter2@collector:4318
  headers: {Authorization: Bearer secret-token}
  sampler: {name: parentbased_traceidratio, arg: '0.25'}
  endpoints:
    - endpoint: http://tempo:4317
      protocol: grpc
      compression: gzip
otel_metrics_export:
  endpoint: http://mimir:4318
  interval: 15s
prometheus_export:
  port: 9400
  path: /metrics
attributes:
  select:
    http_*: {include: ['*'], exclude: [url.*]}
    http_server_request_duration_seconds: {exclude: [http.route]}
  host_id: {override: my-host-7}
filter:
  application:
    url_path: {not_match: '/health*'}
    http.request.method: {match: '{GET,POST}'}
";
        let config = ok(yaml, &[]);
        assert_eq!(config.filters.len(), 2);
        let own_exports = config.instrument.iter().filter(|s| !s.export.is_default());
        assert_eq!(own_exports.count(), 2);
        let printed = config.to_yaml();
        assert!(
            !printed.contains("secret-token") && !printed.contains("hunter2"),
            "{printed}"
        );
        assert!(printed.contains(REDACTED), "{printed}");
        let again = load_str(&printed, "printed.yaml", &env_of(&[]))
            .unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(again.instrument.len(), config.instrument.len());
        for (a, b) in again.instrument.iter().zip(&config.instrument) {
            assert_eq!(
                (
                    &a.open_ports,
                    &a.exe_path,
                    a.containers_only,
                    &a.target_pids,
                    &a.name,
                    a.export,
                    &a.routes
                ),
                (
                    &b.open_ports,
                    &b.exe_path,
                    b.containers_only,
                    &b.target_pids,
                    &b.name,
                    b.export,
                    &b.routes
                )
            );
        }
        let exes = |c: &EffectiveConfig| {
            c.exclude
                .iter()
                .map(|s| s.exe_path.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(exes(&again), exes(&config));
        assert_eq!(again.routes, config.routes);
        assert_eq!(config.routes.services.len(), 1);
        assert_eq!(again.trace_printer, config.trace_printer);
        assert_eq!(again.prometheus, config.prometheus);
        assert_eq!(config.host_id.as_deref(), Some("my-host-7"));
        assert_eq!(again.host_id, config.host_id);
        let strip = |e: &ExportSettings| {
            let mut e = e.clone();
            for d in e.traces.iter_mut().chain(e.metrics.iter_mut()) {
                d.headers.clear();
                d.endpoint = mask_url(&d.endpoint);
            }
            e
        };
        assert_eq!(strip(&again.export), strip(&config.export));
    }

    #[test]
    fn url_masking() {
        assert_eq!(
            mask_url("https://u:p@h:1/x"),
            format!("https://u:{REDACTED}@h:1/x")
        );
        assert_eq!(mask_url("https://h:1/x@y"), "https://h:1/x@y");
        assert_eq!(mask_url("http://h"), "http://h");
    }
}
