//! OBI's metric feature lists: which metric groups each exporter sends.
//! Application (RED) metrics are always on; the service graph metrics
//! (`application_service_graph`, or `all` / `*`) are off unless a list
//! selects them, as in OBI (default list: `[application]`).
//!
//! The common list is `metrics.features`, overridden by
//! `OTEL_EBPF_METRICS_FEATURES`; an exporter's own `features`
//! (`otel_metrics_export.features`, `prometheus_export.features`, OBI's
//! older per-exporter form) wins for that exporter.

use super::environment::env_value;
use super::error::ConfigError;
use super::values::StringList;

/// Names that select the application metrics (one of them must be listed).
pub(super) const APPLICATION: [&str; 3] = ["application", "all", "*"];
/// Names that select the service graph metrics.
const SERVICE_GRAPH: [&str; 3] = ["application_service_graph", "all", "*"];
/// Every name zerotrace acts on.
pub(super) const KNOWN: [&str; 4] = ["application", "application_service_graph", "all", "*"];
pub(super) const FEATURES_HINT: &str = "zerotrace produces application (RED) metrics, and \
    service graph metrics with application_service_graph: expected a list with application, all or *";

/// Which exporters send the service graph metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceGraphSwitch {
    pub otlp: bool,
    pub prometheus: bool,
}

impl ServiceGraphSwitch {
    pub fn any(self) -> bool {
        self.otlp || self.prometheus
    }
}

fn selects(list: &[String], names: &[&str]) -> bool {
    list.iter()
        .any(|v| names.contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// The feature lists in effect (already vetted where they come from the file).
pub(super) fn service_graph_switch(
    common: Option<&StringList>,
    otlp: Option<&StringList>,
    prometheus: Option<&StringList>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServiceGraphSwitch, ConfigError> {
    const VAR: &str = "OTEL_EBPF_METRICS_FEATURES";
    let from_env: Option<Vec<String>> = env_value(env, VAR).map(|text| {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    if let Some(list) = &from_env {
        if !selects(list, &APPLICATION) {
            return Err(ConfigError::Env(format!(
                "{VAR}={list:?} selects nothing zerotrace produces ({FEATURES_HINT})"
            )));
        }
    }
    let common: Vec<String> = from_env
        .or_else(|| common.map(|l| l.0.clone()))
        .unwrap_or_else(|| vec!["application".to_owned()]);
    let effective =
        |own: Option<&StringList>| selects(own.map_or(&common, |l| &l.0), &SERVICE_GRAPH);
    Ok(ServiceGraphSwitch {
        otlp: effective(otlp),
        prometheus: effective(prometheus),
    })
}

#[cfg(test)]
mod tests {
    use super::ServiceGraphSwitch;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    fn switch(yaml: &str, env: &[(&str, &str)]) -> ServiceGraphSwitch {
        ok(&format!("{BASE}{yaml}"), env).service_graph
    }

    #[test]
    fn service_graph_metrics_are_off_unless_a_list_selects_them() {
        assert_eq!(switch("", &[]), ServiceGraphSwitch::default());
        let both = ServiceGraphSwitch {
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
            ServiceGraphSwitch::default()
        );
        // ...and an exporter's own list wins for that exporter.
        assert_eq!(
            switch(
                "metrics:\n  features: [all]\nprometheus_export: {port: 9400, features: [application]}\n",
                &[]
            ),
            ServiceGraphSwitch {
                otlp: true,
                prometheus: false
            }
        );
    }

    #[test]
    fn a_list_without_application_metrics_is_refused() {
        let message = err(
            &format!("{BASE}metrics:\n  features: [application_service_graph]\n"),
            &[],
        );
        assert!(message.contains("metrics.features"), "{message}");
        let message = err(
            BASE,
            &[("OTEL_EBPF_METRICS_FEATURES", "application_service_graph")],
        );
        assert!(message.contains("OTEL_EBPF_METRICS_FEATURES"), "{message}");
    }
}
