//! OBI's metric feature lists: which metric groups each exporter sends.
//! Application (RED) metrics are always on; the service graph metrics
//! (`application_service_graph`), the span metrics (in Tempo's names,
//! `application_span`, or in the OpenTelemetry Collector's,
//! `application_span_otel`; their body sizes, `application_span_sizes`) and
//! the process metrics (`application_process`) and `traces_host_info` alone
//! (`application_host`) are off unless a list selects
//! them (by name, or `all` / `*`), as in OBI (default list: `[application]`).
//! As in OBI, `all` chooses the Collector's span metric names, and a list
//! naming both forms is refused.
//!
//! The common list is `metrics.features`, overridden by
//! `OTEL_EBPF_METRICS_FEATURES`; an exporter's own list (OBI's older
//! per-exporter form: `otel_metrics_export.features`, overridden by
//! `OTEL_EBPF_OTEL_METRICS_FEATURES`; `prometheus_export.features`, overridden
//! by `OTEL_EBPF_PROMETHEUS_FEATURES`) wins for that exporter.

use super::environment::env_value;
use super::error::ConfigError;
use super::values::StringList;

/// Names that select the application metrics (one of them must be listed).
pub(super) const APPLICATION: [&str; 3] = ["application", "all", "*"];
/// Names that select the service graph metrics.
const SERVICE_GRAPH: [&str; 3] = ["application_service_graph", "all", "*"];
/// Names that select the process metrics.
const PROCESS: [&str; 3] = ["application_process", "all", "*"];
/// Names that select `traces_host_info` on its own (it also goes beside the
/// span and service graph metrics).
const HOST: [&str; 3] = ["application_host", "all", "*"];
/// The name that selects the span metrics in Tempo's names (`all` does not).
const SPAN_TEMPO: &str = "application_span";
/// Names that select the span metrics in the OpenTelemetry Collector's names.
const SPAN_OTEL: [&str; 3] = ["application_span_otel", "all", "*"];
/// Names that select the span metrics' body size counters.
const SPAN_SIZES: [&str; 3] = ["application_span_sizes", "all", "*"];
/// Every name zerotrace acts on.
pub(super) const KNOWN: [&str; 9] = [
    "application",
    "application_host",
    "application_service_graph",
    "application_span",
    "application_span_otel",
    "application_span_sizes",
    "application_process",
    "all",
    "*",
];
pub(super) const FEATURES_HINT: &str = "zerotrace produces application (RED) metrics, \
    service graph metrics with application_service_graph, span metrics with application_span \
    or application_span_otel (their sizes with application_span_sizes), process metrics \
    with application_process and traces_host_info with application_host: expected a list with application, all or *";
/// Why a list naming both span metric forms is refused (OBI's rule).
pub(super) const BOTH_SPAN_FORMS: &str =
    "names both application_span and application_span_otel: choose one form of span metrics";

/// Which exporters send a metric group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterSwitch {
    pub otlp: bool,
    pub prometheus: bool,
}

impl ExporterSwitch {
    pub fn any(self) -> bool {
        self.otlp || self.prometheus
    }
}

fn selects(list: &[String], names: &[&str]) -> bool {
    list.iter()
        .any(|v| names.contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// Whether a list names both span metric forms, which OBI refuses (`all`
/// alone chooses the OpenTelemetry names).
pub(super) fn names_both_span_forms(list: &[String]) -> bool {
    selects(list, &[SPAN_TEMPO]) && selects(list, &["application_span_otel"])
}

/// Whether a list names Tempo's form beside `all` or `*`, which choose the
/// OpenTelemetry form instead (OBI warns so too).
pub(super) fn tempo_form_overridden(list: &[String]) -> bool {
    selects(list, &[SPAN_TEMPO]) && selects(list, &["all", "*"])
}

/// A list from a variable, checked like the file's (it must select the application metrics).
fn env_list(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(text) = env_value(env, var) else {
        return Ok(None);
    };
    let list: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !selects(&list, &APPLICATION) {
        return Err(ConfigError::Env(format!(
            "{var}={list:?} selects nothing zerotrace produces ({FEATURES_HINT})"
        )));
    }
    if names_both_span_forms(&list) {
        return Err(ConfigError::Env(format!(
            "{var}={list:?} {BOTH_SPAN_FORMS}"
        )));
    }
    Ok(Some(list))
}

/// Which span metric families an exporter sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanMetricForms {
    /// `traces_spanmetrics_latency` and `_calls_total` (`application_span`).
    pub tempo: bool,
    /// `traces_span_metrics_duration` and `_calls` (`application_span_otel`).
    pub otel: bool,
    /// `traces_spanmetrics_size_total` and `_response_size_total` (`application_span_sizes`).
    pub sizes: bool,
}

impl SpanMetricForms {
    /// Whether any span metric family is sent (then spans are counted).
    pub fn any(self) -> bool {
        self.tempo || self.otel || self.sizes
    }

    /// What a feature list selects: `all` chooses the OpenTelemetry names.
    fn of(list: &[String]) -> Self {
        let otel = selects(list, &SPAN_OTEL);
        Self {
            tempo: selects(list, &[SPAN_TEMPO]) && !otel,
            otel,
            sizes: selects(list, &SPAN_SIZES),
        }
    }
}

/// The span metric families each exporter sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanMetricSwitch {
    pub otlp: SpanMetricForms,
    pub prometheus: SpanMetricForms,
}

/// The optional metric groups, and which exporters send each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricFeatures {
    pub service_graph: ExporterSwitch,
    pub span: SpanMetricSwitch,
    pub process: ExporterSwitch,
    /// `application_host`: `traces_host_info` even without span or graph metrics.
    pub host: ExporterSwitch,
}

/// The feature lists in effect (the file's are vetted where they are read).
pub(super) fn metric_features(
    common: Option<&StringList>,
    otlp: Option<&StringList>,
    prometheus: Option<&StringList>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MetricFeatures, ConfigError> {
    let file = |list: Option<&StringList>| list.map(|l| l.0.clone());
    let common = env_list(env, "OTEL_EBPF_METRICS_FEATURES")?
        .or_else(|| file(common))
        .unwrap_or_else(|| vec!["application".to_owned()]);
    let otlp = env_list(env, "OTEL_EBPF_OTEL_METRICS_FEATURES")?.or_else(|| file(otlp));
    let prometheus = env_list(env, "OTEL_EBPF_PROMETHEUS_FEATURES")?.or_else(|| file(prometheus));
    let otlp = otlp.as_ref().unwrap_or(&common);
    let prometheus = prometheus.as_ref().unwrap_or(&common);
    let switch = |names: &[&str]| ExporterSwitch {
        otlp: selects(otlp, names),
        prometheus: selects(prometheus, names),
    };
    Ok(MetricFeatures {
        service_graph: switch(&SERVICE_GRAPH),
        span: SpanMetricSwitch {
            otlp: SpanMetricForms::of(otlp),
            prometheus: SpanMetricForms::of(prometheus),
        },
        process: switch(&PROCESS),
        host: switch(&HOST),
    })
}

#[cfg(test)]
mod tests {
    use super::ExporterSwitch;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    fn switch(yaml: &str, env: &[(&str, &str)]) -> ExporterSwitch {
        ok(&format!("{BASE}{yaml}"), env).service_graph
    }

    #[test]
    fn service_graph_metrics_are_off_unless_a_list_selects_them() {
        assert_eq!(switch("", &[]), ExporterSwitch::default());
        let both = ExporterSwitch {
            otlp: true,
            prometheus: true,
        };
        assert_eq!(
            switch(
                "metrics:\n  features: [application, application_service_graph]\n",
                &[]
            ),
            both
        );
        assert_eq!(switch("metrics:\n  features: '*'\n", &[]), both);
        assert_eq!(
            switch(
                "",
                &[(
                    "OTEL_EBPF_METRICS_FEATURES",
                    "application,application_service_graph"
                )]
            ),
            both
        );
        // The variable overrides the file's common list...
        assert_eq!(
            switch(
                "metrics:\n  features: [all]\n",
                &[("OTEL_EBPF_METRICS_FEATURES", "application")]
            ),
            ExporterSwitch::default()
        );
        // ...and an exporter's own list wins for that exporter.
        assert_eq!(
            switch(
                "metrics:\n  features: [all]\nprometheus_export: {port: 9400, features: [application]}\n",
                &[]
            ),
            ExporterSwitch {
                otlp: true,
                prometheus: false
            }
        );
        // An exporter's own variable wins over its file list and the common list.
        assert_eq!(
            switch(
                "prometheus_export: {port: 9400, features: [application]}\n",
                &[("OTEL_EBPF_PROMETHEUS_FEATURES", "*")]
            ),
            ExporterSwitch {
                otlp: false,
                prometheus: true
            }
        );
        assert_eq!(
            switch(
                "",
                &[
                    ("OTEL_EBPF_METRICS_FEATURES", "all"),
                    ("OTEL_EBPF_OTEL_METRICS_FEATURES", "application")
                ]
            ),
            ExporterSwitch {
                otlp: false,
                prometheus: true
            }
        );
    }

    #[test]
    fn process_metrics_are_off_unless_a_list_selects_them() {
        let process = |yaml: &str, env: &[(&str, &str)]| ok(&format!("{BASE}{yaml}"), env);
        assert_eq!(process("", &[]).process_metrics, ExporterSwitch::default());
        let listed = process(
            "metrics:\n  features: [application, application_process]\n",
            &[],
        );
        assert!(listed.process_metrics.otlp && listed.process_metrics.prometheus);
        // Not the service graph: each group is its own.
        assert_eq!(listed.service_graph, ExporterSwitch::default());
        let all = process("metrics:\n  features: [all]\n", &[]);
        assert!(all.process_metrics.otlp && all.service_graph.otlp);
        let prometheus_only = process(
            "prometheus_export: {port: 9400, features: [application, application_process]}\n",
            &[],
        );
        assert_eq!(
            prometheus_only.process_metrics,
            ExporterSwitch {
                otlp: false,
                prometheus: true
            }
        );
        let by_variable = process(
            "",
            &[(
                "OTEL_EBPF_METRICS_FEATURES",
                "application,application_process",
            )],
        );
        assert!(by_variable.process_metrics.otlp);
    }

    #[test]
    fn a_list_without_application_metrics_is_refused() {
        let message = err(
            &format!("{BASE}metrics:\n  features: [application_service_graph]\n"),
            &[],
        );
        assert!(message.contains("metrics.features"), "{message}");
        for var in [
            "OTEL_EBPF_METRICS_FEATURES",
            "OTEL_EBPF_OTEL_METRICS_FEATURES",
            "OTEL_EBPF_PROMETHEUS_FEATURES",
        ] {
            let message = err(BASE, &[(var, "application_service_graph")]);
            assert!(message.contains(var), "{message}");
        }
    }

    #[test]
    fn span_metric_forms_follow_obi_all_chooses_the_opentelemetry_names() {
        use super::{SpanMetricForms, SpanMetricSwitch};
        let forms =
            |yaml: &str, env: &[(&str, &str)]| ok(&format!("{BASE}{yaml}"), env).span_metrics;
        let both = |forms: SpanMetricForms| SpanMetricSwitch {
            otlp: forms,
            prometheus: forms,
        };
        let tempo = SpanMetricForms {
            tempo: true,
            ..SpanMetricForms::default()
        };
        let otel = SpanMetricForms {
            otel: true,
            ..SpanMetricForms::default()
        };
        let sizes = SpanMetricForms {
            sizes: true,
            ..SpanMetricForms::default()
        };
        assert_eq!(forms("", &[]), SpanMetricSwitch::default());
        assert_eq!(
            forms(
                "metrics:\n  features: [application, application_span]\n",
                &[]
            ),
            both(tempo)
        );
        assert_eq!(
            forms(
                "metrics:\n  features: [application, application_span_otel]\n",
                &[]
            ),
            both(otel)
        );
        assert_eq!(
            forms(
                "metrics:\n  features: [application, application_span_sizes]\n",
                &[]
            ),
            both(sizes)
        );
        assert_eq!(
            forms(
                "",
                &[(
                    "OTEL_EBPF_METRICS_FEATURES",
                    "application,application_span,application_span_sizes"
                )]
            ),
            both(SpanMetricForms {
                sizes: true,
                ..tempo
            })
        );
        // `all` (or `*`) is the OpenTelemetry form with its sizes, as in OBI.
        for all in ["all", "'*'"] {
            assert_eq!(
                forms(&format!("metrics:\n  features: [{all}]\n"), &[]),
                both(SpanMetricForms {
                    sizes: true,
                    ..otel
                })
            );
        }
        // Each exporter its own form.
        assert_eq!(
            forms(
                "metrics:\n  features: [application, application_span]\nprometheus_export: {port: 9400, features: [application, application_span_otel]}\n",
                &[]
            ),
            SpanMetricSwitch {
                otlp: tempo,
                prometheus: otel
            }
        );
    }

    #[test]
    fn all_beside_application_span_warns_that_the_opentelemetry_form_is_chosen() {
        let config = ok(
            &format!("{BASE}metrics:\n  features: [all, application_span]\n"),
            &[],
        );
        assert!(config.span_metrics.otlp.otel && !config.span_metrics.otlp.tempo);
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("metrics.features")
                    && w.contains("all selects application_span_otel")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn a_list_naming_both_span_metric_forms_is_refused() {
        let message = err(
            &format!("{BASE}metrics:\n  features: [application, application_span, application_span_otel]\n"),
            &[],
        );
        assert!(
            message.contains("metrics.features") && message.contains("choose one form"),
            "{message}"
        );
        let message = err(
            BASE,
            &[(
                "OTEL_EBPF_PROMETHEUS_FEATURES",
                "application,application_span_otel,application_span",
            )],
        );
        assert!(
            message.contains("OTEL_EBPF_PROMETHEUS_FEATURES")
                && message.contains("choose one form"),
            "{message}"
        );
    }

    #[test]
    fn printed_span_metric_forms_read_back_the_same() {
        for list in [
            "[application, application_span]",
            "[application, application_span_otel, application_span_sizes]",
            "[application, application_span_sizes]",
            "[all]",
        ] {
            let config = ok(
                &format!("{BASE}metrics:\n  features: {list}\nprometheus_export: {{port: 9400}}\n"),
                &[],
            );
            let printed = config.to_yaml();
            let again = ok(&printed, &[]);
            assert_eq!(again.span_metrics, config.span_metrics, "{list}\n{printed}");
        }
    }

    #[test]
    fn application_host_sends_host_info_alone() {
        let host = |yaml: &str| ok(&format!("{BASE}{yaml}"), &[]).host_info;
        assert_eq!(host(""), ExporterSwitch::default());
        let listed = host("metrics:\n  features: [application, application_host]\n");
        assert!(listed.otlp && listed.prometheus);
        let printed = ok(
            &format!(
                "{BASE}metrics:\n  features: [application, application_host]\nprometheus_export: {{port: 9400}}\n"
            ),
            &[],
        )
        .to_yaml();
        assert_eq!(ok(&printed, &[]).host_info, listed, "{printed}");
    }
}
