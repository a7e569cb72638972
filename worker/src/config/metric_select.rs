//! `attributes.select` for metrics, as OBI reads it: each key a metric name
//! (OpenTelemetry or Prometheus form, with or without its unit and
//! `_total`/`_bucket`… suffix) or a glob of names; each value an `include`
//! list (the attributes to keep; without one, the metric's defaults) and an
//! `exclude` list (attributes removed), both globs on attribute names in
//! either form. The `traces` key is the query text switch
//! (`config/databases.rs`). The selections apply to the application (RED)
//! metrics: `crate::metrics::attribute_select` resolves them per instrument.

use super::databases::RawSelect;
use super::error::{child, ConfigError, Ctx};
use super::glob::Glob;

/// Metrics zerotrace exports that attribute selection does not reach (the
/// span, service graph and process metrics), by their normalized name: an
/// entry naming one exactly is refused, since it would keep what it removes.
const NOT_SELECTABLE: [&str; 16] = [
    "traces.spanmetrics.latency",
    "traces.spanmetrics.calls",
    "traces.spanmetrics.size",
    "traces.spanmetrics.response.size",
    "traces.service.graph.request",
    "traces.service.graph.request.failed",
    "traces.service.graph.request.client",
    "traces.service.graph.request.server",
    "process.cpu.time",
    "process.cpu.utilization",
    "process.memory.usage",
    "process.memory.virtual",
    "process.thread.count",
    "process.context.switches",
    "process.paging.faults",
    "target.info",
];

/// A metric name as OBI compares them: `_` as `.`, without one aggregation
/// suffix (`.ratio`, `.bucket`, `.sum`, `.count`, `.total`), then without one
/// unit suffix (`.bytes`, `.seconds`).
pub fn normalize_metric(name: &str) -> String {
    let mut name = name.trim().replace('_', ".");
    for suffixes in [
        &[".ratio", ".bucket", ".sum", ".count", ".total"][..],
        &[".bytes", ".seconds"][..],
    ] {
        if let Some(suffix) = suffixes.iter().find(|s| name.ends_with(*s)) {
            name.truncate(name.len() - suffix.len());
        }
    }
    name
}

/// An attribute name in its Prometheus form (`.` as `_`), which attribute
/// globs are compared in.
pub fn attribute_prometheus_form(name: &str) -> String {
    name.trim().replace('.', "_")
}

/// One `attributes.select` entry for metrics.
#[derive(Debug, Clone)]
pub struct MetricSelection {
    /// The key, normalized: entries apply in the order of these texts, as in OBI.
    pub pattern: String,
    metric: Glob,
    /// Attribute globs (Prometheus form); None when the entry has no `include`.
    include: Option<Vec<Glob>>,
    exclude: Vec<Glob>,
}

impl PartialEq for MetricSelection {
    fn eq(&self, other: &Self) -> bool {
        let texts = |globs: &[Glob]| {
            globs
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        self.pattern == other.pattern
            && self.include.as_deref().map(texts) == other.include.as_deref().map(texts)
            && texts(&self.exclude) == texts(&other.exclude)
    }
}

impl MetricSelection {
    /// Whether the entry names this metric (its OpenTelemetry name).
    pub fn applies_to(&self, metric: &str) -> bool {
        self.metric.matches(&normalize_metric(metric))
    }

    /// Whether the entry has an `include` list.
    pub fn has_include(&self) -> bool {
        self.include.is_some()
    }

    /// Whether `include` names the attribute (Prometheus form).
    pub fn includes(&self, attribute: &str) -> bool {
        self.include
            .as_ref()
            .is_some_and(|globs| globs.iter().any(|g| g.matches(attribute)))
    }

    /// Whether `exclude` names the attribute (Prometheus form).
    pub fn excludes(&self, attribute: &str) -> bool {
        self.exclude.iter().any(|g| g.matches(attribute))
    }

    /// The entry's lists as written, for `--print-config`.
    pub fn lists(&self) -> (Option<Vec<String>>, Vec<String>) {
        let texts = |globs: &[Glob]| globs.iter().map(|g| g.as_str().to_owned()).collect();
        (self.include.as_deref().map(texts), texts(&self.exclude))
    }
}

fn globs(ctx: &Ctx, at: &str, items: &[String]) -> Result<Vec<Glob>, ConfigError> {
    items
        .iter()
        .map(|item| Glob::new(&attribute_prometheus_form(item)).map_err(|e| ctx.err(at, e)))
        .collect()
}

/// Every entry but `traces`, checked and sorted as OBI applies them.
pub(super) fn metric_selections(
    ctx: &Ctx,
    select: Option<&RawSelect>,
) -> Result<Vec<MetricSelection>, ConfigError> {
    let mut selections = Vec::new();
    for (name, lists) in select.into_iter().flatten() {
        if name == "traces" {
            continue;
        }
        let at = child("attributes.select", name);
        let pattern = normalize_metric(name);
        if NOT_SELECTABLE.contains(&pattern.as_str()) {
            return Err(ctx.err(
                at,
                "not supported by zerotrace: attributes.select applies to the application (RED) \
                 metrics; this metric would keep every attribute; remove the entry",
            ));
        }
        let metric = Glob::new(&pattern).map_err(|e| ctx.err(&at, e))?;
        let include = match &lists.include {
            Some(list) => Some(globs(ctx, &child(&at, "include"), &list.0)?),
            None => None,
        };
        let exclude = match &lists.exclude {
            Some(list) => globs(ctx, &child(&at, "exclude"), &list.0)?,
            None => Vec::new(),
        };
        selections.push(MetricSelection {
            pattern,
            metric,
            include,
            exclude,
        });
    }
    selections.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    Ok(selections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn metric_names_normalize_as_obi_s() {
        for name in [
            "http_server_request_duration_seconds",
            "http_server_request_duration_seconds_bucket",
            "http.server.request.duration",
            "http_server_request_duration",
        ] {
            assert_eq!(
                normalize_metric(name),
                "http.server.request.duration",
                "{name}"
            );
        }
        assert_eq!(
            normalize_metric("http_client_request_body_size_bytes"),
            "http.client.request.body.size"
        );
        assert_eq!(normalize_metric("http_*"), "http.*");
    }

    #[test]
    fn entries_are_read_sorted_and_the_traces_entry_left_to_the_query_text() {
        let config = ok(
            "open_port: 80\nattributes:\n  select:\n    traces: {exclude: [db.query.text]}\n    http_server_request_duration_seconds: {exclude: [http.route]}\n    http_*: {include: ['*'], exclude: ['url_*']}\n",
            &[],
        );
        let patterns: Vec<&str> = config
            .metric_selections
            .iter()
            .map(|s| s.pattern.as_str())
            .collect();
        assert_eq!(patterns, ["http.*", "http.server.request.duration"]);
        let server = &config.metric_selections[1];
        assert!(server.applies_to("http.server.request.duration"));
        assert!(!server.applies_to("http.client.request.duration"));
        assert!(server.excludes("http_route") && !server.has_include());
        let all = &config.metric_selections[0];
        assert!(all.includes("server_port") && all.excludes("url_scheme"));
        assert!(!config.databases.query_text);
    }

    #[test]
    fn entries_that_could_not_apply_are_refused() {
        for (yaml, key) in [
            (
                "    traces_spanmetrics_calls_total: {exclude: [span.name]}\n",
                "attributes.select.traces_spanmetrics_calls_total",
            ),
            (
                "    process_cpu_time_seconds_total: {exclude: [cpu.mode]}\n",
                "attributes.select.process_cpu_time_seconds_total",
            ),
            (
                "    http_*: {exclude: ['[a']}\n",
                "attributes.select.http_*.exclude",
            ),
            ("    '[x': {exclude: [a]}\n", "attributes.select.[x"),
        ] {
            let message = err(
                &format!("open_port: 80\nattributes:\n  select:\n{yaml}"),
                &[],
            );
            assert!(message.contains(key), "{yaml}: {message}");
        }
    }
}
