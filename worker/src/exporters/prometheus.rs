//! The Prometheus scrape endpoint (OBI's `prometheus_export`,
//! `OTEL_EBPF_PROMETHEUS_PORT` / `_PATH`): the RED histograms in Prometheus
//! naming plus the agent's own `zerotrace_*` metrics, in the text format or
//! OpenMetrics when the scraper asks for it.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::config::{ttl_cutoff_unix_ns, HistogramBuckets, SpanMetricForms, DEFAULT_SERIES_TTL};
use crate::config::{PrometheusSettings, Temporality};
use crate::metrics::exemplars::{Exemplar, ExemplarPolicy};
use crate::metrics::host_info;
use crate::metrics::process::{ProcessMetrics, ProcessSeries};
use crate::metrics::red::{HistogramState, MetricStore, Point, RedMetrics};
use crate::metrics::service_graph::{self as graph_metrics, edge_labels, ServiceGraphMetrics};
use crate::metrics::span_metrics::{
    self, SpanFamily, SpanLabels, SpanMetrics, SpanSeries, SpanSeriesKey, SpanValue, FAMILIES,
};
use crate::process_usage::ProcessUsage;

pub use crate::metrics::self_metrics::SelfMetrics;

/// What a scrape reads: cumulative RED metrics and the self metrics.
pub struct ScrapeState {
    pub red: RedMetrics,
    /// Service graph edges, when `application_service_graph` is on for this endpoint.
    pub graph: Option<ServiceGraphMetrics>,
    /// Each process's CPU and memory, when `application_process` is on for this endpoint.
    pub processes: Option<ProcessMetrics>,
    /// Spans by name, kind and status, when `application_span` is on for this endpoint.
    pub span_metrics: Option<SpanMetrics>,
    /// `host.id`, for `traces_host_info` beside the span and graph metrics.
    pub host_id: Option<String>,
    /// `application_host`: `traces_host_info` even without them.
    pub host_info_listed: bool,
    /// Histogram bounds that replace the defaults (OBI's `buckets`).
    buckets: HistogramBuckets,
    /// Resource attributes the span metrics carry (OBI's `extra_span_resource_attributes`).
    span_resource_attributes: Arc<[String]>,
    /// Whether the service graph counts a service calling itself.
    graph_self_references: bool,
    /// Which spans leave exemplars (`exemplar_filter`).
    exemplars: ExemplarPolicy,
    /// Series not updated for this long go at the next scrape (OBI's `ttl`).
    series_ttl: Option<Duration>,
    pub own: SelfMetrics,
}

impl Default for ScrapeState {
    fn default() -> Self {
        Self {
            red: RedMetrics::new(Temporality::Cumulative),
            graph: None,
            processes: None,
            span_metrics: None,
            host_id: None,
            host_info_listed: false,
            buckets: HistogramBuckets::default(),
            span_resource_attributes: Arc::default(),
            graph_self_references: false,
            exemplars: ExemplarPolicy::Off,
            series_ttl: Some(DEFAULT_SERIES_TTL),
            own: SelfMetrics::default(),
        }
    }
}

impl ScrapeState {
    /// Series not updated for `ttl` go at the next scrape; `None`: kept
    /// until their process exits (OBI's `ttl`).
    pub fn with_series_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.series_ttl = ttl;
        self
    }

    /// Drops the RED, span and service graph series last updated more than
    /// the TTL before `now_unix_ns`.
    pub fn expire_stale(&mut self, now_unix_ns: u64) {
        let Some(ttl) = self.series_ttl else {
            return;
        };
        let cutoff = ttl_cutoff_unix_ns(ttl, now_unix_ns);
        self.red.expire(cutoff);
        if let Some(graph) = self.graph.as_mut() {
            graph.expire(cutoff);
        }
        if let Some(spans) = self.span_metrics.as_mut() {
            spans.expire(cutoff);
        }
    }

    /// Histogram bounds that replace the defaults (OBI's `buckets`), for
    /// every store: those made already and those made after.
    pub fn with_buckets(mut self, buckets: &HistogramBuckets) -> Self {
        self.buckets = buckets.clone();
        let red = std::mem::replace(&mut self.red, RedMetrics::new(Temporality::Cumulative));
        self.red = red.with_buckets(buckets);
        self.graph = self.graph.map(|graph| graph.with_buckets(buckets));
        self.span_metrics = self.span_metrics.map(|spans| spans.with_buckets(buckets));
        self
    }

    /// Counts the service graph's edges from a service to itself too (OBI's
    /// `allow_service_graph_self_references`), for the store made already and one made after.
    pub fn with_graph_self_references(mut self, allowed: bool) -> Self {
        self.graph_self_references = allowed;
        self.graph = self.graph.map(|graph| graph.with_self_references(allowed));
        self
    }

    /// Serves the service graph metrics too.
    pub fn with_service_graph(mut self, enabled: bool) -> Self {
        self.graph = enabled.then(|| {
            ServiceGraphMetrics::new(Temporality::Cumulative)
                .with_buckets(&self.buckets)
                .with_self_references(self.graph_self_references)
        });
        self
    }

    /// Applies `attributes.select` to the RED metrics.
    pub fn with_attribute_selector(
        mut self,
        selector: Option<Arc<crate::metrics::attribute_select::AttributeSelector>>,
    ) -> Self {
        self.red = std::mem::replace(&mut self.red, RedMetrics::new(Temporality::Cumulative))
            .with_selector(selector);
        self
    }

    /// Which spans leave exemplars on the RED and span metrics histograms'
    /// buckets (`exemplar_filter`; written in OpenMetrics scrapes), for the
    /// stores made already and those made after.
    pub fn with_exemplars(mut self, policy: ExemplarPolicy) -> Self {
        self.exemplars = policy;
        self.red = std::mem::replace(&mut self.red, RedMetrics::new(Temporality::Cumulative))
            .with_exemplars(policy);
        self.span_metrics = self.span_metrics.map(|spans| spans.with_exemplars(policy));
        self
    }

    /// The host's id, served as `traces_host_info` when the span or service
    /// graph metrics are.
    pub fn with_host_id(mut self, host_id: &str) -> Self {
        self.host_id = Some(host_id.to_owned());
        self
    }

    /// Serves `traces_host_info` even without span or graph metrics (`application_host`).
    pub fn with_host_info(mut self, listed: bool) -> Self {
        self.host_info_listed = listed;
        self
    }

    /// Resource attributes the span metrics carry beside the service (OBI's
    /// `extra_span_resource_attributes`), for the store made already and one made after.
    pub fn with_span_resource_attributes(mut self, names: &Arc<[String]>) -> Self {
        self.span_resource_attributes = Arc::clone(names);
        self.span_metrics = self
            .span_metrics
            .map(|spans| spans.with_resource_attributes(names));
        self
    }

    /// Serves these span metric families too.
    pub fn with_span_metrics(mut self, forms: SpanMetricForms) -> Self {
        self.span_metrics = forms.any().then(|| {
            SpanMetrics::new(Temporality::Cumulative, forms)
                .with_buckets(&self.buckets)
                .with_resource_attributes(&self.span_resource_attributes)
                .with_exemplars(self.exemplars)
        });
        self
    }

    /// Serves the process metrics too.
    pub fn with_process_metrics(mut self, enabled: bool) -> Self {
        self.processes = enabled.then(|| ProcessMetrics::new(Temporality::Cumulative));
        self
    }
}

pub type SharedScrapeState = Arc<Mutex<ScrapeState>>;

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn value_text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// Counter values by their `reason` label.
type ReasonCounts = Vec<(&'static str, u64)>;

/// The resource attribute `key`, as label text (empty when absent).
fn resource_value(resource: &Resource, key: &str) -> String {
    resource
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| value_text(&a.value))
        .unwrap_or_default()
}

/// The labels that say which process a series belongs to, as OpenTelemetry's
/// Prometheus compatibility rules map a resource: `job` from `service.namespace`
/// and `service.name`, `instance` from `service.instance.id` (one per process,
/// so the workers of a pre-forking server never share a series), and the
/// `service_name` label dashboards already use.
fn identity_labels(resource: &Resource) -> Vec<(String, String)> {
    let service = resource_value(resource, "service.name");
    let namespace = resource_value(resource, "service.namespace");
    let job = if namespace.is_empty() {
        service.clone()
    } else {
        format!("{namespace}/{service}")
    };
    vec![
        ("service_name".to_owned(), service),
        ("job".to_owned(), job),
        (
            "instance".to_owned(),
            resource_value(resource, "service.instance.id"),
        ),
    ]
}

/// A series' labels: which process, then its attributes.
fn labels_of(point: &Point<'_>) -> Vec<(String, String)> {
    let mut labels = identity_labels(point.resource);
    labels.extend(
        point
            .attributes
            .iter()
            .map(|kv: &KeyValue| (label_name(&kv.key), value_text(&kv.value))),
    );
    labels
}

fn label_text(labels: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn format_bound(bound: f64) -> String {
    if bound.fract() == 0.0 {
        format!("{bound:.1}")
    } else {
        format!("{bound}")
    }
}

/// A histogram's samples; in OpenMetrics, each bucket's exemplar after it
/// (the text format has none).
fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    bounds: &[f64],
    state: &HistogramState,
    openmetrics: bool,
) {
    let exemplar = |index: usize| match state.exemplar(index) {
        Some(exemplar) if openmetrics => exemplar_text(exemplar),
        _ => String::new(),
    };
    let mut cumulative = 0;
    for (index, (bound, count)) in bounds.iter().zip(state.explicit_counts()).enumerate() {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{} {cumulative}{}",
            label_text(labels, Some(("le", &format_bound(*bound)))),
            exemplar(index)
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{} {}{}",
        label_text(labels, Some(("le", "+Inf"))),
        state.count,
        exemplar(bounds.len())
    );
    let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), state.sum);
    let _ = writeln!(
        out,
        "{name}_count{} {}",
        label_text(labels, None),
        state.count
    );
}

/// An exemplar as OpenMetrics writes it after a bucket: its span's ids
/// (OBI's label names), the value it counted, when (seconds).
fn exemplar_text(exemplar: &Exemplar) -> String {
    let hex = |bytes: &[u8]| {
        bytes.iter().fold(String::new(), |mut text, b| {
            let _ = write!(text, "{b:02x}");
            text
        })
    };
    format!(
        " # {{traceID=\"{}\",spanID=\"{}\"}} {} {}.{:09}",
        hex(&exemplar.trace_id),
        hex(&exemplar.span_id),
        exemplar.value,
        exemplar.unix_ns / 1_000_000_000,
        exemplar.unix_ns % 1_000_000_000
    )
}

/// `target_info`: one sample per process that has series, carrying its
/// resource attributes (the Prometheus compatibility spec's way to keep them
/// off every series).
fn write_target_info<'a>(
    out: &mut String,
    resources: impl Iterator<Item = &'a Resource>,
    openmetrics: bool,
) {
    let mut seen = std::collections::BTreeMap::new();
    for resource in resources {
        let labels = identity_labels(resource);
        let key = label_text(&labels, None);
        seen.entry(key).or_insert_with(|| {
            let mut labels = labels;
            labels.extend(
                resource
                    .attributes
                    .iter()
                    .filter(|a| {
                        !matches!(
                            a.key.as_str(),
                            "service.name" | "service.namespace" | "service.instance.id"
                        )
                    })
                    .map(|a| (label_name(&a.key), value_text(&a.value))),
            );
            labels
        });
    }
    if seen.is_empty() {
        return;
    }
    // OpenMetrics has an info type (family `target`, sample `target_info`);
    // the text format a gauge at 1.
    let (family, kind) = if openmetrics {
        ("target", "info")
    } else {
        ("target_info", "gauge")
    };
    let _ = writeln!(out, "# HELP {family} Target metadata");
    let _ = writeln!(out, "# TYPE {family} {kind}");
    for labels in seen.values() {
        let _ = writeln!(out, "target_info{} 1", label_text(labels, None));
    }
}

/// A series ready to write: its label text (the sort key), its labels, its histogram.
type LabelledPoint<'a> = (String, Vec<(String, String)>, Point<'a>);

/// One family per instrument of a protocol's store, every instrument
/// announced even before it has series; series in label order.
fn write_store<'a>(
    out: &mut String,
    red: &RedMetrics,
    store: &'a dyn MetricStore,
    openmetrics: bool,
) -> Vec<Point<'a>> {
    let mut points: Vec<LabelledPoint<'a>> = red
        .selected_points(store)
        .into_iter()
        .map(|point| {
            let labels = labels_of(&point);
            (label_text(&labels, None), labels, point)
        })
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    for instrument in store.instruments() {
        let name = instrument.prometheus_name;
        let _ = writeln!(out, "# HELP {name} {}", instrument.description);
        let _ = writeln!(out, "# TYPE {name} histogram");
        if openmetrics {
            let _ = writeln!(out, "# UNIT {name} {}", instrument.prometheus_unit);
        }
        for (_, labels, point) in points
            .iter()
            .filter(|(_, _, p)| p.instrument.name == instrument.name)
        {
            write_histogram(
                out,
                name,
                labels,
                red.bounds(instrument),
                &point.state,
                openmetrics,
            );
        }
    }
    points.into_iter().map(|(_, _, point)| point).collect()
}

/// A counter family named `…_total`, one sample per row of labels.
fn write_counter<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    openmetrics: bool,
    rows: impl Iterator<Item = (&'a [(String, String)], u64)>,
) {
    // OpenMetrics names the family without `_total`; the text format with it.
    let family = if openmetrics {
        name.trim_end_matches("_total")
    } else {
        name
    };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} counter");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{} {value}", label_text(labels, None));
    }
}

/// A service graph family: its name, help, and what it reads of an edge.
type CounterFamily = (
    &'static str,
    &'static str,
    fn(&graph_metrics::EdgeSeries) -> u64,
);
type HistogramFamily = (
    &'static str,
    &'static str,
    fn(&graph_metrics::EdgeSeries) -> &HistogramState,
);

/// OBI's four service graph families, one series per edge; the histograms
/// only for edges whose side they measure was seen.
fn write_service_graph(out: &mut String, graph: &ServiceGraphMetrics, openmetrics: bool) {
    let series: Vec<(Vec<(String, String)>, &graph_metrics::EdgeSeries)> = graph
        .series()
        .map(|(edge, series)| {
            let labels = match edge {
                Some(edge) => edge_labels(edge)
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                None => vec![("otel_metric_overflow".to_owned(), "true".to_owned())],
            };
            (labels, series)
        })
        .collect();
    let counters: [CounterFamily; 2] = [
        (
            graph_metrics::REQUEST_TOTAL,
            graph_metrics::HELP_TOTAL,
            |s| s.total,
        ),
        (
            graph_metrics::REQUEST_FAILED_TOTAL,
            graph_metrics::HELP_FAILED,
            |s| s.failed,
        ),
    ];
    for (name, help, value) in counters {
        let rows = series
            .iter()
            .map(|(labels, s)| (labels.as_slice(), value(s)));
        write_counter(out, name, help, openmetrics, rows);
    }
    let histograms: [HistogramFamily; 2] = [
        (
            graph_metrics::REQUEST_CLIENT,
            graph_metrics::HELP_CLIENT,
            |s| &s.client,
        ),
        (
            graph_metrics::REQUEST_SERVER,
            graph_metrics::HELP_SERVER,
            |s| &s.server,
        ),
    ];
    for (name, help, state_of) in histograms {
        let name = format!("{name}_seconds");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        if openmetrics {
            let _ = writeln!(out, "# UNIT {name} seconds");
        }
        for (labels, state) in &series {
            let state = state_of(state);
            if state.count > 0 {
                write_histogram(out, &name, labels, graph.bounds(), state, openmetrics);
            }
        }
    }
}

/// A span metrics series' labels, as OBI names them on Prometheus:
/// `service` (`service_name` in the OpenTelemetry form), `service_namespace`,
/// `job`, `instance`, `span_name`, `span_kind`, `status_code`, `source`
/// (and `telemetry_sdk_language` in the OpenTelemetry form).
fn span_series_labels(
    spans: &SpanMetrics,
    key: Option<&SpanSeriesKey>,
    series: &SpanSeries,
    names: SpanLabels,
) -> Vec<(String, String)> {
    // OBI's `job`, the same as every other series' (its `instance` is `service.instance.id`).
    let job = identity_labels(&series.resource)
        .into_iter()
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut labels = Vec::with_capacity(9);
    for (name, value) in span_metrics::labels(key, &series.resource, names) {
        if name == "service.instance.id" {
            labels.push(("job".to_owned(), job.clone()));
            labels.push(("instance".to_owned(), value));
        } else {
            labels.push((label_name(name), value));
        }
    }
    // OBI's `extra_span_resource_attributes`, after its own labels.
    for attribute in spans.resource_attributes(&series.resource) {
        let name = label_name(&attribute.key);
        if !labels.iter().any(|(k, _)| *k == name) {
            labels.push((name, value_text(&attribute.value)));
        }
    }
    labels
}

/// The span metrics in OBI's Prometheus names, one series per process,
/// span name, kind and status, the families of the store's forms.
fn write_span_metrics(out: &mut String, spans: &SpanMetrics, openmetrics: bool) {
    let forms = spans.forms();
    let families: Vec<&SpanFamily> = FAMILIES.iter().filter(|f| f.sent(forms)).collect();
    let labelled = |names: SpanLabels| {
        if !families.iter().any(|f| f.labels(forms) == names) {
            return Vec::new();
        }
        let mut series: Vec<Labelled<'_, SpanSeries>> = spans
            .series()
            .map(|(key, series)| {
                let labels = span_series_labels(spans, key, series, names);
                (label_text(&labels, None), labels, series)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    };
    let tempo = labelled(SpanLabels::Tempo);
    let otel = labelled(SpanLabels::Otel);
    for family in families {
        let series = match family.labels(forms) {
            SpanLabels::Tempo => &tempo,
            SpanLabels::Otel => &otel,
        };
        let name = family.prometheus_name;
        if family.value != SpanValue::Latency {
            let rows = series
                .iter()
                .map(|(_, labels, s)| (labels.as_slice(), s.value(family.value)));
            write_counter(out, name, family.help, openmetrics, rows);
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        // OpenMetrics wants a unit as the name's suffix: Tempo's name has none.
        if openmetrics && name.ends_with("_seconds") {
            let _ = writeln!(out, "# UNIT {name} seconds");
        }
        for (_, labels, state) in series {
            write_histogram(
                out,
                name,
                labels,
                spans.bounds(),
                &state.latency,
                openmetrics,
            );
        }
    }
}

/// A process metric family: name, type, unit (OpenMetrics), help, the
/// attribute that splits it, and its values (one per attribute value).
struct ProcessFamily {
    name: &'static str,
    kind: &'static str,
    unit: &'static str,
    help: &'static str,
    label: &'static str,
    values: fn(&ProcessSeries) -> Vec<(&'static str, f64)>,
}

fn usage_of(series: &ProcessSeries) -> &ProcessUsage {
    &series.latest.usage
}

const PROCESS_FAMILIES: [ProcessFamily; 7] = [
    ProcessFamily {
        name: "process_cpu_time_seconds_total",
        kind: "counter",
        unit: "seconds",
        help: "Total CPU seconds broken down by different states.",
        label: "cpu_mode",
        values: |s| {
            let u = usage_of(s);
            vec![("user", u.user_seconds), ("system", u.system_seconds)]
        },
    },
    ProcessFamily {
        name: "process_cpu_utilization_ratio",
        kind: "gauge",
        unit: "ratio",
        help: "CPU time since the reading before, over the time elapsed and the CPUs available to the process.",
        label: "cpu_mode",
        values: |s| {
            s.utilization()
                .map(|(user, system)| vec![("user", user), ("system", system)])
                .unwrap_or_default()
        },
    },
    ProcessFamily {
        name: "process_memory_usage_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "The amount of physical memory in use.",
        label: "",
        values: |s| vec![("", usage_of(s).resident_bytes as f64)],
    },
    ProcessFamily {
        name: "process_memory_virtual_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "The amount of committed virtual memory.",
        label: "",
        values: |s| vec![("", usage_of(s).virtual_bytes as f64)],
    },
    ProcessFamily {
        name: "process_thread_count",
        kind: "gauge",
        unit: "",
        help: "Process threads count.",
        label: "",
        values: |s| vec![("", usage_of(s).threads as f64)],
    },
    ProcessFamily {
        name: "process_context_switches_total",
        kind: "counter",
        unit: "",
        help: "Number of times the process has been context switched.",
        label: "process_context_switch_type",
        values: |s| {
            let u = usage_of(s);
            vec![
                ("voluntary", u.voluntary_switches as f64),
                ("involuntary", u.involuntary_switches as f64),
            ]
        },
    },
    ProcessFamily {
        name: "process_paging_faults_total",
        kind: "counter",
        unit: "",
        help: "Number of page faults the process has made.",
        label: "process_paging_fault_type",
        values: |s| {
            let u = usage_of(s);
            vec![("minor", u.minor_faults as f64), ("major", u.major_faults as f64)]
        },
    },
];

/// A series' label text (the sort key), its labels, its state.
type Labelled<'a, T> = (String, Vec<(String, String)>, &'a T);

/// The process metrics, one series per process (and attribute value),
/// named as OpenTelemetry's Prometheus compatibility rules name them.
fn write_process_metrics(out: &mut String, processes: &ProcessMetrics, openmetrics: bool) {
    let mut series: Vec<Labelled<'_, ProcessSeries>> = processes
        .series()
        .map(|(_, series)| {
            let labels = identity_labels(&series.resource);
            (label_text(&labels, None), labels, series)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for family in &PROCESS_FAMILIES {
        // OpenMetrics names a counter's family without `_total`.
        let family_name = if openmetrics {
            family.name.trim_end_matches("_total")
        } else {
            family.name
        };
        let _ = writeln!(out, "# HELP {family_name} {}", family.help);
        let _ = writeln!(out, "# TYPE {family_name} {}", family.kind);
        if openmetrics && !family.unit.is_empty() {
            let _ = writeln!(out, "# UNIT {family_name} {}", family.unit);
        }
        for (_, labels, process) in &series {
            for (value_label, value) in (family.values)(process) {
                let extra = (!family.label.is_empty()).then_some((family.label, value_label));
                let _ = writeln!(out, "{}{} {value}", family.name, label_text(labels, extra));
            }
        }
    }
}

/// `traces_host_info{grafana_host_id="…"} 1`.
fn write_host_info(out: &mut String, host_id: &str) {
    let name = host_info::NAME;
    let _ = writeln!(out, "# HELP {name} {}", host_info::HELP);
    let _ = writeln!(out, "# TYPE {name} gauge");
    let labels = [(host_info::HOST_ID_LABEL.to_owned(), host_id.to_owned())];
    let _ = writeln!(out, "{name}{} 1", label_text(&labels, None));
}

/// The exposition text; `openmetrics` switches to the OpenMetrics 1.0 dialect.
pub fn render(state: &ScrapeState, openmetrics: bool) -> String {
    let mut out = String::new();
    let mut written = Vec::new();
    for store in state.red.stores() {
        written.extend(write_store(&mut out, &state.red, store, openmetrics));
    }
    if let Some(graph) = state.graph.as_ref() {
        write_service_graph(&mut out, graph, openmetrics);
    }
    if let Some(spans) = state.span_metrics.as_ref() {
        write_span_metrics(&mut out, spans, openmetrics);
    }
    if let Some(host_id) = &state.host_id {
        if state.host_info_listed || state.graph.is_some() || state.span_metrics.is_some() {
            write_host_info(&mut out, host_id);
        }
    }
    if let Some(processes) = state.processes.as_ref() {
        write_process_metrics(&mut out, processes, openmetrics);
    }
    let process_resources = state
        .processes
        .iter()
        .flat_map(|p| p.series().map(|(_, series)| &*series.resource));
    let span_resources = state
        .span_metrics
        .iter()
        .flat_map(|s| s.series().map(|(_, series)| &*series.resource));
    write_target_info(
        &mut out,
        written
            .iter()
            .map(|point| &**point.resource)
            .chain(process_resources)
            .chain(span_resources),
        openmetrics,
    );
    let own = &state.own;
    let counters: [(&str, &str, u64); 23] = [
        (
            "zerotrace_kernel_events",
            "Events the kernel programs submitted.",
            own.kernel_events,
        ),
        (
            "zerotrace_kernel_ringbuf_drops",
            "Events the kernel dropped because the ring buffer was full.",
            own.kernel_ringbuf_drops,
        ),
        (
            "zerotrace_worker_records",
            "Ring buffer records the worker read.",
            own.records_read,
        ),
        (
            "zerotrace_worker_undecodable_records",
            "Ring buffer records that could not be decoded.",
            own.undecodable_records,
        ),
        ("zerotrace_spans", "Spans built.", own.spans),
        (
            "zerotrace_garbage_segments",
            "Captured segments that were not parseable as a supported protocol.",
            own.garbage_segments,
        ),
        (
            "zerotrace_framing_lost",
            "Times a database or Kafka connection lost its message boundaries.",
            own.framing_lost,
        ),
        (
            "zerotrace_tls_record_segments",
            "Socket segments of TLS connections, recognised as TLS records and skipped.",
            own.tls_record_segments,
        ),
        (
            "zerotrace_tls_unassociated",
            "TLS plaintext the kernel dropped because its socket was never found.",
            own.tls_unassociated,
        ),
        (
            "zerotrace_segments_after_close",
            "Socket reads and writes not sent because their socket had already closed.",
            own.segments_after_close,
        ),
        (
            "zerotrace_otlp_spans_exported",
            "Spans accepted by OTLP backends.",
            own.otlp_spans_exported,
        ),
        (
            "zerotrace_otlp_spans_dropped",
            "Spans dropped by the OTLP exporter.",
            own.otlp_spans_dropped,
        ),
        (
            "zerotrace_otlp_points_exported",
            "Metric data points accepted by OTLP backends.",
            own.otlp_points_exported,
        ),
        (
            "zerotrace_otlp_points_dropped",
            "Metric data points dropped by the OTLP exporter.",
            own.otlp_points_dropped,
        ),
        (
            "zerotrace_otlp_failed_attempts",
            "Failed OTLP export attempts (each retry counts).",
            own.otlp_failed_attempts,
        ),
        (
            "zerotrace_worker_restarts",
            "Times the loader restarted the worker.",
            own.worker_restarts,
        ),
        (
            "zerotrace_loader_requests_refused",
            "Worker requests the loader refused.",
            own.loader_requests_refused,
        ),
        (
            "zerotrace_traces_linked",
            "Server spans made the child of another process's client span on this host.",
            own.traces_linked,
        ),
        (
            "zerotrace_traces_nested",
            "Client spans made the child of the server span their process was serving.",
            own.traces_nested,
        ),
        (
            "zerotrace_traces_invalid_context",
            "Requests whose traceparent header was malformed: ignored, their span started a trace.",
            own.traces_invalid_context,
        ),
        (
            "zerotrace_service_graph_evictions",
            "Spans the service graph counted without their other half because too many were waiting.",
            own.service_graph_evictions,
        ),
        (
            "zerotrace_spans_filtered",
            "Spans the attribute filters (filter.application) did not pass: sent nowhere.",
            own.spans_filtered,
        ),
        (
            "zerotrace_process_metrics_unread",
            "Readings of instrumented processes the process metrics could not take.",
            own.process_readings_lost,
        ),
    ];
    for (name, help, value) in counters {
        // The text format names the counter with its _total suffix; OpenMetrics names the family.
        let family = if openmetrics {
            name.to_owned()
        } else {
            format!("{name}_total")
        };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} counter");
        let _ = writeln!(out, "{name}_total {value}");
    }
    let by_reason: [(&str, &str, ReasonCounts); 3] = [
        (
            "zerotrace_traces_unlinked",
            "Spans whose parent could not be told, sent as roots, by reason.",
            crate::metrics::self_metrics::unlinked_traces(own)
                .into_iter()
                .collect(),
        ),
        (
            "zerotrace_exchanges_lost",
            "HTTP/1 messages that could not be made part of a span, by reason.",
            crate::metrics::self_metrics::lost_exchanges(own)
                .into_iter()
                .collect(),
        ),
        (
            "zerotrace_http2_losses",
            "What the HTTP/2 decoder could not follow, by reason (docs/protocols.md).",
            own.http2_losses().into_iter().collect(),
        ),
    ];
    for (name, help, points) in by_reason {
        let family = if openmetrics {
            name.to_owned()
        } else {
            format!("{name}_total")
        };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} counter");
        for (reason, value) in points {
            let _ = writeln!(out, "{name}_total{{reason=\"{reason}\"}} {value}");
        }
    }
    for (name, help, value) in [
        (
            "zerotrace_instrumented_processes",
            "Processes the kernel currently captures.",
            own.instrumented_processes,
        ),
        (
            "zerotrace_tracked_connections",
            "Connections the worker currently tracks.",
            own.tracked_connections,
        ),
        (
            "zerotrace_otlp_queue_depth",
            "Batches waiting in the OTLP export queues.",
            own.otlp_queue_depth,
        ),
        (
            "zerotrace_uprobes_attached",
            "TLS library probes the loader holds attached.",
            own.uprobes_attached,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Serves scrapes on its own thread, one connection at a time (scrapers are few).
pub fn start(settings: &PrometheusSettings, state: SharedScrapeState) -> Result<(), String> {
    let listener = TcpListener::bind(("0.0.0.0", settings.port)).map_err(|e| {
        format!(
            "Prometheus endpoint: cannot listen on port {}: {e}",
            settings.port
        )
    })?;
    let path = settings.path.clone();
    std::thread::Builder::new()
        .name("prometheus".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &path, &state);
            }
        })
        .map_err(|e| format!("Prometheus thread: {e}"))?;
    Ok(())
}

fn serve(stream: TcpStream, path: &str, state: &SharedScrapeState) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut openmetrics = false;
    // Read the headers (bounded) for content negotiation.
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("accept:") && lower.contains("application/openmetrics-text") {
            openmetrics = true;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let requested = target.split('?').next().unwrap_or("");
    let mut stream = stream;
    if method != "GET" || requested != path {
        let body = "not found\n";
        return write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let body = match state.lock() {
        Ok(mut state) => {
            state.expire_stale(crate::clock::unix_now_ns());
            render(&state, openmetrics)
        }
        Err(_) => String::new(),
    };
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semconv::SIZE_BOUNDS_BYTES;
    use crate::spans::{HttpExchange, Protocol, Span, SpanKind, SpanOrigin};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn span(status: u16) -> Span {
        let http = HttpExchange {
            method: "GET".into(),
            target: "/x".into(),
            status,
            protocol_version: "1.1",
            response_body_bytes: 7,
            ..HttpExchange::default()
        };
        Span::new(
            SpanOrigin::for_test(SpanKind::Server, 3, "127.0.0.1:5000"),
            (0, 30_000_000),
            false,
            Protocol::Http(http),
        )
    }

    #[test]
    fn exemplars_follow_their_buckets_in_openmetrics_only_and_as_filtered() {
        use crate::config::{ExemplarFilter, SamplerSetting};
        use crate::otel::sampler::Sampler;
        let resource = Arc::new(Resource::default());
        let scrape = |filter: ExemplarFilter, sampler: SamplerSetting, openmetrics: bool| {
            let policy = ExemplarPolicy::new(filter, Sampler::new(sampler));
            let mut state = ScrapeState::default().with_exemplars(policy);
            let span = span(200);
            state
                .red
                .record(&span, &resource, 1_700_000_000_250_000_000);
            let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
            let ids = format!(
                "{{traceID=\"{}\",spanID=\"{}\"}}",
                hex(&span.ids.trace_id),
                hex(&span.ids.span_id)
            );
            (render(&state, openmetrics), ids)
        };
        let (text, ids) = scrape(ExemplarFilter::AlwaysOn, SamplerSetting::AlwaysOn, true);
        // 30 ms: in (0.025, 0.05]; the 7-byte body: in (5, 10].
        let duration = text
            .lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_bucket")
                    && l.contains("le=\"0.05\"")
            })
            .unwrap_or_default();
        assert!(
            duration.ends_with(&format!(" 1 # {ids} 0.03 1700000000.250000000")),
            "{text}"
        );
        let size = text
            .lines()
            .find(|l| {
                l.starts_with("http_server_response_body_size_bytes_bucket")
                    && l.contains("le=\"10.0\"")
            })
            .unwrap_or_default();
        assert!(
            size.ends_with(&format!(" 1 # {ids} 7 1700000000.250000000")),
            "{text}"
        );
        // One per bucket the span fell in, none elsewhere.
        assert_eq!(text.matches(" # {traceID=").count(), 3, "{text}");
        // The text format has no exemplars; nor the filters that keep none.
        let (text, _) = scrape(ExemplarFilter::AlwaysOn, SamplerSetting::AlwaysOn, false);
        assert!(!text.contains("traceID"), "{text}");
        let (text, _) = scrape(ExemplarFilter::AlwaysOff, SamplerSetting::AlwaysOn, true);
        assert!(!text.contains("traceID"), "{text}");
        let (text, _) = scrape(ExemplarFilter::TraceBased, SamplerSetting::AlwaysOff, true);
        assert!(!text.contains("traceID"), "{text}");
        let (text, _) = scrape(
            ExemplarFilter::TraceBased,
            SamplerSetting::ParentBasedAlwaysOn,
            true,
        );
        assert_eq!(text.matches(" # {traceID=").count(), 3, "{text}");
        // The span metrics' latency too, whichever is set first.
        let policy = ExemplarPolicy::new(
            ExemplarFilter::AlwaysOn,
            Sampler::new(SamplerSetting::AlwaysOn),
        );
        let tempo = SpanMetricForms {
            tempo: true,
            ..SpanMetricForms::default()
        };
        for mut state in [
            ScrapeState::default()
                .with_exemplars(policy)
                .with_span_metrics(tempo),
            ScrapeState::default()
                .with_span_metrics(tempo)
                .with_exemplars(policy),
        ] {
            if let Some(spans) = state.span_metrics.as_mut() {
                spans.record(&span(200), &resource, 1);
            }
            let text = render(&state, true);
            assert!(
                text.lines()
                    .any(|l| l.starts_with("traces_spanmetrics_latency_bucket")
                        && l.contains("le=\"0.05\"")
                        && l.contains(" 1 # {traceID=")),
                "{text}"
            );
        }
    }

    #[test]
    fn renders_cumulative_buckets_and_self_metrics() {
        let resource = Arc::new(Resource {
            attributes: vec![crate::otel::resource::string_attribute(
                "service.name",
                "shop \"a\"",
            )],
            ..Default::default()
        });
        let mut state = ScrapeState::default();
        state.red.record(&span(200), &resource, 1);
        state.red.record(&span(200), &resource, 1);
        state.red.record(&span(500), &resource, 1);
        state.own.spans = 3;
        state.own.worker_restarts = 2;
        state.own.otlp_queue_depth = 4;
        state.own.unanswered_requests = 5;
        state.own.http2.streams_without_headers = 5;
        let text = render(&state, false);
        assert!(
            text.contains(
                "zerotrace_exchanges_lost_total{reason=\"request_without_response\"} 5\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE zerotrace_exchanges_lost_total counter"));
        assert!(text.contains("# TYPE zerotrace_http2_losses_total counter\n"));
        assert!(
            text.contains("zerotrace_http2_losses_total{reason=\"h2_stream_without_headers\"} 5\n")
        );
        assert!(text.contains("zerotrace_http2_losses_total{reason=\"hpack_lost\"} 0\n"));
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
        assert!(text.contains(r#"service_name="shop \"a\"""#), "{text}");
        let ok_labels = r#"http_response_status_code="200""#;
        let inf = text
            .lines()
            .find(|l| {
                l.contains(ok_labels)
                    && l.contains("le=\"+Inf\"")
                    && l.starts_with("http_server_request_duration_seconds_bucket")
            })
            .unwrap_or_else(|| panic!("{text}"));
        assert!(inf.ends_with(" 2"), "{inf}");
        let at_50ms = text
            .lines()
            .find(|l| {
                l.contains(ok_labels)
                    && l.contains("le=\"0.05\"")
                    && l.starts_with("http_server_request_duration_seconds_bucket")
            })
            .unwrap_or_else(|| panic!("{text}"));
        assert!(at_50ms.ends_with(" 2"), "cumulative buckets: {at_50ms}");
        assert!(text.contains("zerotrace_spans_total 3"));
        assert!(text.contains("zerotrace_worker_restarts_total 2"));
        assert!(text
            .contains("# TYPE zerotrace_otlp_queue_depth gauge\nzerotrace_otlp_queue_depth 4\n"));
        assert!(text.contains("error_type=\"500\""));
        assert!(!text.contains("# EOF"));
        assert!(render(&state, true).ends_with("# EOF\n"));
    }

    #[test]
    fn host_info_is_served_only_beside_span_or_graph_metrics_or_when_listed() {
        let plain = ScrapeState::default().with_host_id("rack-\"7\"");
        assert!(!render(&plain, false).contains("traces_host_info"));
        for state in [
            ScrapeState::default()
                .with_host_id("rack-\"7\"")
                .with_host_info(true),
            ScrapeState::default()
                .with_host_id("rack-\"7\"")
                .with_span_metrics(SpanMetricForms {
                    sizes: true,
                    ..SpanMetricForms::default()
                }),
            ScrapeState::default()
                .with_host_id("rack-\"7\"")
                .with_service_graph(true),
        ] {
            let text = render(&state, false);
            assert!(
                text.contains(
                    "# TYPE traces_host_info gauge\ntraces_host_info{grafana_host_id=\"rack-\\\"7\\\"\"} 1\n"
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn renders_the_service_graph_families_when_on() {
        use crate::service_graph::{ConnectionType, EdgeKey, EdgeObservation, GraphNode};
        let mut state = ScrapeState::default();
        assert!(!render(&state, false).contains("traces_service_graph"));
        state = state.with_service_graph(true);
        let observation = |client: &str, client_seconds| EdgeObservation {
            edge: EdgeKey {
                client: GraphNode::new(client, ""),
                server: GraphNode::new("back", "shop"),
                connection_type: ConnectionType::VirtualNode,
            },
            client_seconds,
            server_seconds: Some(0.002),
            failed: true,
        };
        if let Some(graph) = state.graph.as_mut() {
            graph.record(&observation("front", Some(0.004)), 1);
            graph.record(&observation("10.0.0.9", None), 1);
        }
        let text = render(&state, false);
        let labels = r#"{client="front",client_service_namespace="",server="back",server_service_namespace="shop",connection_type="virtual_node"}"#;
        assert!(
            text.contains("# TYPE traces_service_graph_request_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("traces_service_graph_request_total{labels} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "traces_service_graph_request_failed_total{labels} 1\n"
        )));
        assert!(text.contains("# TYPE traces_service_graph_request_client_seconds histogram"));
        assert_eq!(
            text.matches("traces_service_graph_request_client_seconds_count")
                .count(),
            1,
            "only the edge whose client side was seen: {text}"
        );
        assert_eq!(
            text.matches("traces_service_graph_request_server_seconds_count")
                .count(),
            2
        );
        let openmetrics = render(&state, true);
        assert!(openmetrics.contains("# TYPE traces_service_graph_request counter\n"));
        assert!(openmetrics.contains("# TYPE traces_service_graph_request_failed counter\n"));
        assert!(
            openmetrics.contains("# UNIT traces_service_graph_request_server_seconds seconds\n")
        );
    }

    #[test]
    fn renders_the_span_metric_families_of_the_forms_asked_for() {
        let resource = Arc::new(Resource {
            attributes: vec![
                crate::otel::resource::string_attribute("service.name", "shop"),
                crate::otel::resource::string_attribute("telemetry.sdk.language", "go"),
            ],
            ..Default::default()
        });
        let render_with = |forms: SpanMetricForms, openmetrics| {
            let mut state = ScrapeState::default().with_span_metrics(forms);
            if let Some(spans) = state.span_metrics.as_mut() {
                spans.record(&span(200), &resource, 1);
                spans.record(&span(503), &resource, 1);
            }
            render(&state, openmetrics)
        };
        let none = ScrapeState::default().with_span_metrics(SpanMetricForms::default());
        assert!(none.span_metrics.is_none());
        let tempo = render_with(
            SpanMetricForms {
                tempo: true,
                ..SpanMetricForms::default()
            },
            false,
        );
        assert!(
            tempo.contains("# TYPE traces_spanmetrics_latency histogram\n"),
            "{tempo}"
        );
        assert!(
            tempo.contains(r#"traces_spanmetrics_calls_total{service="shop",service_namespace="",job="shop",instance="",span_name="GET",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",source="zerotrace"} 1"#),
            "{tempo}"
        );
        assert!(!tempo.contains("traces_span_metrics") && !tempo.contains("size_total"));
        let otel = SpanMetricForms {
            otel: true,
            sizes: true,
            ..SpanMetricForms::default()
        };
        let text = render_with(otel, false);
        assert!(!text.contains("traces_spanmetrics_latency"), "{text}");
        assert!(text.contains("# TYPE traces_span_metrics_duration_seconds histogram\n"));
        let labels = r#"{service_name="shop",service_namespace="",job="shop",instance="",span_name="GET",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR",source="zerotrace",telemetry_sdk_language="go"}"#;
        assert!(
            text.contains(&format!("traces_span_metrics_calls_total{labels} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "traces_span_metrics_duration_seconds_count{labels} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "traces_spanmetrics_response_size_total{labels} 7\n"
            )),
            "{text}"
        );
        let openmetrics = render_with(otel, true);
        assert!(openmetrics.contains("# UNIT traces_span_metrics_duration_seconds seconds\n"));
        assert!(openmetrics.contains("# TYPE traces_span_metrics_calls counter\n"));
    }

    #[test]
    fn configured_resource_attributes_label_the_span_metrics_after_their_own() {
        let resource = Arc::new(Resource {
            attributes: vec![
                crate::otel::resource::string_attribute("service.name", "shop"),
                crate::otel::resource::string_attribute("deployment.environment", "staging"),
            ],
            ..Default::default()
        });
        let names: Arc<[String]> = ["deployment_environment".to_owned(), "missing".to_owned()]
            .into_iter()
            .collect();
        // Set before the span metrics are made, as the worker does, and after.
        let forms = SpanMetricForms {
            tempo: true,
            ..SpanMetricForms::default()
        };
        for state in [
            ScrapeState::default()
                .with_span_resource_attributes(&names)
                .with_span_metrics(forms),
            ScrapeState::default()
                .with_span_metrics(forms)
                .with_span_resource_attributes(&names),
        ] {
            let mut state = state;
            if let Some(spans) = state.span_metrics.as_mut() {
                spans.record(&span(200), &resource, 1);
            }
            let text = render(&state, false);
            assert!(
                text.contains(r#"traces_spanmetrics_calls_total{service="shop",service_namespace="",job="shop",instance="",span_name="GET",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET",source="zerotrace",deployment_environment="staging"} 1"#),
                "{text}"
            );
        }
    }

    #[test]
    fn configured_buckets_replace_the_defaults_in_every_histogram() {
        let buckets = HistogramBuckets {
            aggregation: Default::default(),
            duration: Some([0.02, 0.04].as_slice().into()),
            request_size: None,
            response_size: Some([4.0, 64.0].as_slice().into()),
        };
        let resource = Arc::new(Resource::default());
        let mut state = ScrapeState::default()
            .with_span_metrics(SpanMetricForms {
                tempo: true,
                ..SpanMetricForms::default()
            })
            .with_buckets(&buckets)
            .with_service_graph(true);
        state.red.record(&span(200), &resource, 1);
        if let Some(spans) = state.span_metrics.as_mut() {
            spans.record(&span(200), &resource, 1);
        }
        let text = render(&state, false);
        let les = |family: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}_bucket{{")))
                .filter_map(|l| Some(l.split("le=\"").nth(1)?.split('"').next()?.to_owned()))
                .collect()
        };
        assert_eq!(
            les("http_server_request_duration_seconds"),
            ["0.02", "0.04", "+Inf"],
            "{text}"
        );
        assert_eq!(
            les("traces_spanmetrics_latency"),
            ["0.02", "0.04", "+Inf"],
            "{text}"
        );
        assert_eq!(
            les("http_server_response_body_size_bytes"),
            ["4.0", "64.0", "+Inf"],
            "{text}"
        );
        // Not configured: the default.
        assert_eq!(
            les("http_server_request_body_size_bytes").len(),
            SIZE_BOUNDS_BYTES.len() + 1
        );
        // The 30 ms request lies in (0.02, 0.04]; its 7-byte response in (4, 64].
        assert!(
            text.contains("le=\"0.02\"} 0\n") && text.contains("le=\"0.04\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("le=\"4.0\"} 0\n") && text.contains("le=\"64.0\"} 1\n"),
            "{text}"
        );
        if let Some(graph) = state.graph.as_ref() {
            assert_eq!(graph.bounds(), [0.02, 0.04]);
        }
    }

    #[test]
    fn a_scrape_drops_the_series_not_updated_for_the_ttl() {
        use crate::service_graph::{ConnectionType, EdgeKey, EdgeObservation, GraphNode};
        let resource = Arc::new(Resource::default());
        let second = 1_000_000_000;
        let mut state = ScrapeState::default()
            .with_service_graph(true)
            .with_span_metrics(SpanMetricForms {
                tempo: true,
                ..SpanMetricForms::default()
            })
            .with_series_ttl(Some(Duration::from_secs(60)));
        state.red.record(&span(200), &resource, 10 * second);
        state.red.record(&span(500), &resource, 100 * second);
        if let Some(spans) = state.span_metrics.as_mut() {
            spans.record(&span(200), &resource, 10 * second);
        }
        if let Some(graph) = state.graph.as_mut() {
            let observation = EdgeObservation {
                edge: EdgeKey {
                    client: GraphNode::new("front", ""),
                    server: GraphNode::new("back", ""),
                    connection_type: ConnectionType::VirtualNode,
                },
                client_seconds: Some(0.01),
                server_seconds: None,
                failed: false,
            };
            graph.record(&observation, 10 * second);
        }
        state.expire_stale(69 * second);
        let text = render(&state, false);
        assert!(
            text.contains("http_response_status_code=\"200\""),
            "within the TTL: {text}"
        );
        state.expire_stale(71 * second);
        let text = render(&state, false);
        assert!(
            !text.contains("http_response_status_code=\"200\""),
            "{text}"
        );
        assert!(text.contains("http_response_status_code=\"500\""), "{text}");
        assert!(!text.contains("traces_spanmetrics_calls_total{"), "{text}");
        assert!(
            !text.contains("traces_service_graph_request_total{"),
            "{text}"
        );
        // No TTL: kept.
        let mut kept = ScrapeState::default().with_series_ttl(None);
        kept.red.record(&span(200), &resource, second);
        kept.expire_stale(1_000_000 * second);
        assert!(render(&kept, false).contains("http_server_request_duration_seconds_count{"));
    }
}
