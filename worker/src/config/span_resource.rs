//! OBI's `extra_span_resource_attributes`: resource attributes (say
//! `deployment.environment` from `OTEL_RESOURCE_ATTRIBUTES`, or
//! `service.version`) that the span metrics carry as attributes (OTLP) or
//! labels (Prometheus) besides their service, so that a backend that reads
//! no resources (Tempo's span metrics, a Prometheus query) can split by them.
//! OTLP: `OTEL_EBPF_EXTRA_SPAN_RESOURCE_ATTRIBUTES`, else
//! `otel_metrics_export.extra_span_resource_attributes`; Prometheus:
//! `OTEL_EBPF_PROMETHEUS_EXTRA_SPAN_RESOURCE_ATTRIBUTES`, else
//! `prometheus_export.extra_span_resource_attributes`; both else the
//! `metrics` section's. Names may be written with dots or, as Prometheus
//! labels, with underscores.

use std::sync::Arc;

use super::environment::env_value;
use super::values::StringList;

/// The resource attributes each exporter's span metrics carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanResourceAttributes {
    pub otlp: Arc<[String]>,
    pub prometheus: Arc<[String]>,
}

/// A comma-separated variable's names.
fn names_in(text: &str) -> Arc<[String]> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The file's lists, under the variables.
pub(super) fn span_resource_attributes(
    common: Option<&StringList>,
    otlp: Option<&StringList>,
    prometheus: Option<&StringList>,
    env: &dyn Fn(&str) -> Option<String>,
) -> SpanResourceAttributes {
    let one = |var: &str, own: Option<&StringList>| -> Arc<[String]> {
        match env_value(env, var) {
            Some(text) => names_in(&text),
            None => own
                .or(common)
                .map(|StringList(names)| names.iter().map(|n| n.trim().to_owned()).collect())
                .unwrap_or_default(),
        }
    };
    SpanResourceAttributes {
        otlp: one("OTEL_EBPF_EXTRA_SPAN_RESOURCE_ATTRIBUTES", otlp),
        prometheus: one(
            "OTEL_EBPF_PROMETHEUS_EXTRA_SPAN_RESOURCE_ATTRIBUTES",
            prometheus,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    fn list(names: &[&str]) -> Arc<[String]> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn each_exporter_s_list_then_the_metrics_section_s_and_the_variables_win() {
        assert_eq!(
            ok(BASE, &[]).span_resource_attributes,
            SpanResourceAttributes::default()
        );
        let yaml = format!(
            "{BASE}metrics:\n  extra_span_resource_attributes: [deployment.environment]\nprometheus_export:\n  port: 9400\n  extra_span_resource_attributes: [service_version, deployment_environment]\n"
        );
        let file = ok(&yaml, &[]);
        assert_eq!(
            file.span_resource_attributes,
            SpanResourceAttributes {
                otlp: list(&["deployment.environment"]),
                prometheus: list(&["service_version", "deployment_environment"]),
            }
        );
        let env = ok(
            &yaml,
            &[
                (
                    "OTEL_EBPF_EXTRA_SPAN_RESOURCE_ATTRIBUTES",
                    "host.name, service.version",
                ),
                // Blank counts as unset.
                ("OTEL_EBPF_PROMETHEUS_EXTRA_SPAN_RESOURCE_ATTRIBUTES", " "),
            ],
        );
        assert_eq!(
            env.span_resource_attributes,
            SpanResourceAttributes {
                otlp: list(&["host.name", "service.version"]),
                prometheus: list(&["service_version", "deployment_environment"]),
            }
        );
        // OTLP's own key wins over the metrics section's.
        let own = ok(
            &format!("{yaml}otel_metrics_export:\n  extra_span_resource_attributes: [a.b]\n"),
            &[],
        );
        assert_eq!(own.span_resource_attributes.otlp, list(&["a.b"]));
    }

    #[test]
    fn printed_lists_read_back_the_same() {
        let config = ok(
            &format!("{BASE}prometheus_export:\n  port: 9400\n  extra_span_resource_attributes: [deployment.environment]\notel_metrics_export:\n  endpoint: http://collector:4318\n  extra_span_resource_attributes: [service.version]\n"),
            &[],
        );
        let printed = config.to_yaml();
        assert_eq!(
            ok(&printed, &[]).span_resource_attributes,
            config.span_resource_attributes,
            "{printed}"
        );
    }
}
