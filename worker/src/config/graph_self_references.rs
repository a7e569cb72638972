//! OBI's `allow_service_graph_self_references`: whether an exporter's
//! service graph metrics keep the edges from a service to itself (a process
//! calling its own port, one service's instances calling each other), which
//! OBI leaves out by default. OTLP: `OTEL_EBPF_ALLOW_SERVICE_GRAPH_SELF_REFERENCES`
//! (or its older name `OTEL_EBPF_OTEL_ALLOW_SERVICE_GRAPH_SELF_REFERENCES`),
//! else `otel_metrics_export.allow_service_graph_self_references`; Prometheus:
//! `OTEL_EBPF_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES`, else
//! `prometheus_export.allow_service_graph_self_references`; both else the
//! `metrics` section's.

use super::environment::env_value;
use super::error::ConfigError;
use super::features::ExporterSwitch;

/// A variable's boolean, as OBI reads it.
fn env_bool(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<bool>, ConfigError> {
    let Some(text) = env_value(env, var) else {
        return Ok(None);
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(ConfigError::Env(format!(
            "{var}={text:?}: expected true or false"
        ))),
    }
}

/// The file's values, under the variables.
pub(super) fn graph_self_references(
    common: Option<bool>,
    otlp: Option<bool>,
    prometheus: Option<bool>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExporterSwitch, ConfigError> {
    let otlp_env = match env_bool(env, "OTEL_EBPF_ALLOW_SERVICE_GRAPH_SELF_REFERENCES")? {
        Some(allowed) => Some(allowed),
        None => env_bool(env, "OTEL_EBPF_OTEL_ALLOW_SERVICE_GRAPH_SELF_REFERENCES")?,
    };
    let prometheus_env = env_bool(
        env,
        "OTEL_EBPF_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
    )?;
    Ok(ExporterSwitch {
        otlp: otlp_env.or(otlp).or(common).unwrap_or(false),
        prometheus: prometheus_env.or(prometheus).or(common).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    fn switch(otlp: bool, prometheus: bool) -> ExporterSwitch {
        ExporterSwitch { otlp, prometheus }
    }

    #[test]
    fn left_out_unless_a_key_or_a_variable_allows_them_per_exporter() {
        assert_eq!(ok(BASE, &[]).graph_self_references, switch(false, false));
        let common = format!("{BASE}metrics:\n  allow_service_graph_self_references: true\n");
        assert_eq!(ok(&common, &[]).graph_self_references, switch(true, true));
        let own = format!(
            "{common}prometheus_export:\n  port: 9400\n  allow_service_graph_self_references: false\n"
        );
        assert_eq!(ok(&own, &[]).graph_self_references, switch(true, false));
        let env = [
            (
                "OTEL_EBPF_OTEL_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
                "false",
            ),
            (
                "OTEL_EBPF_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
                "TRUE",
            ),
        ];
        assert_eq!(ok(&own, &env).graph_self_references, switch(false, true));
        // The newer name wins over the older.
        let env = [
            ("OTEL_EBPF_ALLOW_SERVICE_GRAPH_SELF_REFERENCES", "true"),
            (
                "OTEL_EBPF_OTEL_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
                "false",
            ),
        ];
        assert_eq!(ok(BASE, &env).graph_self_references, switch(true, false));
    }

    #[test]
    fn a_value_that_is_no_boolean_is_refused() {
        let message = err(
            BASE,
            &[(
                "OTEL_EBPF_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES",
                "yes please",
            )],
        );
        assert!(
            message.contains("OTEL_EBPF_PROMETHEUS_ALLOW_SERVICE_GRAPH_SELF_REFERENCES"),
            "{message}"
        );
        let message = err(
            &format!("{BASE}metrics:\n  allow_service_graph_self_references: maybe\n"),
            &[],
        );
        assert!(
            message.contains("allow_service_graph_self_references"),
            "{message}"
        );
    }

    #[test]
    fn printed_values_read_back_the_same() {
        let config = ok(
            &format!("{BASE}prometheus_export:\n  port: 9400\n  allow_service_graph_self_references: true\n"),
            &[],
        );
        let printed = config.to_yaml();
        assert_eq!(
            ok(&printed, &[]).graph_self_references,
            config.graph_self_references,
            "{printed}"
        );
    }
}
