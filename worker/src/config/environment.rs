//! The environment over the file: every file value is offered as the default
//! of the variable it stands for ([`Overlay`]), so a non-empty variable wins,
//! and the settings are then read from the variables as the OpenTelemetry SDK
//! and OBI define them.

use std::collections::BTreeMap;

/// A variable's value, unless it is unset or blank (blank counts as unset).
pub(super) fn env_value(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// File values offered to `ExportSettings::from_env` as defaults of the variables.
#[derive(Default)]
pub(super) struct Overlay(BTreeMap<String, String>);

impl Overlay {
    /// Sets `var` unless one of `unless` (default: `var` itself) is in the environment.
    pub(super) fn offer(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        var: &str,
        value: String,
        unless: &[&str],
    ) -> bool {
        let taken = if unless.is_empty() {
            env_value(env, var).is_some()
        } else {
            unless.iter().any(|v| env_value(env, v).is_some())
        };
        if !taken {
            self.0.insert(var.to_owned(), value);
        }
        !taken
    }

    pub(super) fn lookup(&self, env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
        env_value(env, var).or_else(|| self.0.get(var).cloned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::*;
    use crate::config::PrinterFormat;
    use crate::config::PrometheusSettings;
    use crate::config::{Protocol, SamplerSetting};

    #[test]
    fn environment_overrides_the_file() {
        let yaml = "open_port: 8080
trace_printer: json
otel_traces_export:
  endpoint: http://file:4318
  protocol: http/json
  headers:
    Authorization: Bearer file
  sampler: {name: traceidratio, arg: 0.5}
  batch_timeout: 2s
otel_metrics_export:
  endpoint: http://file:4317
  protocol: grpc
  interval: 30s
prometheus_export:
  port: 9400
";
        let file_only = ok(yaml, &[]);
        assert!(file_only.instrument[0]
            .open_ports
            .as_ref()
            .is_some_and(|p| p.contains(8080)));
        assert_eq!(file_only.trace_printer, PrinterFormat::Json);
        let traces = &file_only.export.traces[0];
        assert_eq!(traces.endpoint, "http://file:4318/v1/traces");
        assert_eq!(traces.protocol, Protocol::HttpJson);
        assert_eq!(
            traces.headers,
            vec![("Authorization".to_string(), "Bearer file".to_string())]
        );
        assert_eq!(file_only.export.sampler, SamplerSetting::TraceIdRatio(0.5));
        assert_eq!(
            file_only.export.batch.schedule_delay,
            Duration::from_secs(2)
        );
        assert_eq!(
            file_only.export.metrics[0].endpoint, "http://file:4317",
            "gRPC: as is"
        );
        assert_eq!(
            file_only.export.metric_export_interval,
            Duration::from_secs(30)
        );
        assert_eq!(file_only.prometheus.as_ref().map(|p| p.port), Some(9400));

        let env = ok(
            yaml,
            &[
                ("OTEL_EBPF_OPEN_PORT", "9000"),
                ("OTEL_EBPF_TRACE_PRINTER", "text"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "X-Env=1"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
                ("OTEL_EBPF_PROMETHEUS_PORT", "9500"),
                ("OTEL_EBPF_PROMETHEUS_PATH", "/m"),
            ],
        );
        let selector = &env.instrument[0];
        assert!(selector
            .open_ports
            .as_ref()
            .is_some_and(|p| p.contains(9000) && !p.contains(8080)));
        assert_eq!(env.trace_printer, PrinterFormat::Text);
        let traces = &env.export.traces[0];
        // The file's protocol still applies (OBI keeps them separate)...
        assert_eq!(traces.protocol, Protocol::HttpJson);
        assert_eq!(traces.endpoint, "http://env:4318/v1/traces");
        // ...but its headers do not follow the endpoint to another host.
        assert_eq!(traces.headers, vec![("X-Env".to_string(), "1".to_string())]);
        assert!(env
            .warnings
            .iter()
            .any(|w| w.starts_with("otel_traces_export.headers: not sent")));
        assert_eq!(env.export.sampler, SamplerSetting::AlwaysOff);
        assert_eq!(env.export.metric_export_interval, Duration::from_secs(5));
        assert_eq!(
            env.prometheus,
            Some(PrometheusSettings {
                port: 9500,
                path: "/m".into(),
                exemplar_filter: Default::default(),
            })
        );

        // OBI's interval variable wins over the SDK's.
        let interval = ok(
            yaml,
            &[
                ("OTEL_EBPF_METRICS_INTERVAL", "1m"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            ],
        );
        assert_eq!(
            interval.export.metric_export_interval,
            Duration::from_secs(60)
        );
        // Environment headers apply to the file's endpoint and win on the same key.
        let headers = ok(
            yaml,
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20env",
            )],
        );
        assert_eq!(
            headers.export.traces[0].headers,
            vec![("authorization".to_string(), "Bearer env".to_string())]
        );
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EBPF_OPEN_PORT", "80,http"),
            ("OTEL_EBPF_AUTO_TARGET_EXE", "/bin/[x"),
            ("OTEL_EBPF_TRACE_PRINTER", "fancy"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ("OTEL_EBPF_PROMETHEUS_PORT", "80"),
            ("OTEL_EBPF_METRICS_INTERVAL", "often"),
        ] {
            let env = [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EBPF_OPEN_PORT", "8080"),
                (var, value),
            ];
            let env: Vec<(&str, &str)> = env.iter().rev().copied().collect();
            let message = err("", &env);
            assert!(
                message.contains(var) && message.contains(value),
                "{var}: {message}"
            );
        }
        let message = err("", &[]);
        assert!(
            message.contains("nothing to instrument") && message.contains("OTEL_EBPF_OPEN_PORT"),
            "{message}"
        );
    }
}
