//! OBI's `ttl`: how long a metric series lives without being updated before
//! it is removed (default 5 minutes, as in OBI; `0` keeps series until their
//! process exits). OTLP: `OTEL_EBPF_METRICS_TTL`, else
//! `otel_metrics_export.ttl`; Prometheus: `OTEL_EBPF_PROMETHEUS_TTL`, else
//! `prometheus_export.ttl`; both else `metrics.ttl`.

use std::time::Duration;

use super::environment::env_value;
use super::error::ConfigError;
use super::values::{parse_go_duration, GoDuration};

/// OBI's default.
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(300);

/// How long each metrics exporter keeps a series nobody updates; `None`:
/// until its process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesTtl {
    pub otlp: Option<Duration>,
    pub prometheus: Option<Duration>,
}

impl Default for SeriesTtl {
    fn default() -> Self {
        Self {
            otlp: Some(DEFAULT_SERIES_TTL),
            prometheus: Some(DEFAULT_SERIES_TTL),
        }
    }
}

/// The oldest last-update time a series may have at `now_unix_ns` and stay.
pub fn ttl_cutoff_unix_ns(ttl: Duration, now_unix_ns: u64) -> u64 {
    now_unix_ns.saturating_sub(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
}

/// The file's values (already parsed as durations), under the variables.
pub(super) fn series_ttl(
    common: Option<&GoDuration>,
    otlp: Option<&GoDuration>,
    prometheus: Option<&GoDuration>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SeriesTtl, ConfigError> {
    let one = |var: &str, own: Option<&GoDuration>| -> Result<Option<Duration>, ConfigError> {
        let ttl = match env_value(env, var) {
            Some(text) => {
                parse_go_duration(&text).map_err(|e| ConfigError::Env(format!("{var}: {e}")))?
            }
            None => own
                .or(common)
                .map_or(DEFAULT_SERIES_TTL, |GoDuration(d)| *d),
        };
        Ok((!ttl.is_zero()).then_some(ttl))
    };
    Ok(SeriesTtl {
        otlp: one("OTEL_EBPF_METRICS_TTL", otlp)?,
        prometheus: one("OTEL_EBPF_PROMETHEUS_TTL", prometheus)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    #[test]
    fn five_minutes_unless_a_file_key_or_a_variable_says_otherwise() {
        assert_eq!(ok(BASE, &[]).series_ttl, SeriesTtl::default());
        let file = ok(
            &format!("{BASE}metrics:\n  ttl: 1m\nprometheus_export:\n  port: 9400\n  ttl: 30s\n"),
            &[],
        );
        assert_eq!(
            file.series_ttl,
            SeriesTtl {
                otlp: Some(Duration::from_secs(60)),
                prometheus: Some(Duration::from_secs(30)),
            }
        );
        let own = ok(
            &format!("{BASE}otel_metrics_export:\n  ttl: 2m\n"),
            &[("OTEL_EBPF_PROMETHEUS_TTL", "0")],
        );
        assert_eq!(
            own.series_ttl,
            SeriesTtl {
                otlp: Some(Duration::from_secs(120)),
                prometheus: None,
            }
        );
        let by_env = ok(
            &format!("{BASE}otel_metrics_export:\n  ttl: 2m\n"),
            &[("OTEL_EBPF_METRICS_TTL", "250ms")],
        );
        assert_eq!(by_env.series_ttl.otlp, Some(Duration::from_millis(250)));
        let message = err(BASE, &[("OTEL_EBPF_METRICS_TTL", "soon")]);
        assert!(message.contains("OTEL_EBPF_METRICS_TTL"), "{message}");
        let message = err(&format!("{BASE}metrics:\n  ttl: later\n"), &[]);
        assert!(message.contains("ttl"), "{message}");
    }

    #[test]
    fn printed_ttls_read_back_the_same() {
        for yaml in [
            "prometheus_export:\n  port: 9400\n",
            "metrics:\n  ttl: 0\nprometheus_export:\n  port: 9400\n  ttl: 90s\n",
        ] {
            let config = ok(&format!("{BASE}{yaml}"), &[]);
            let printed = config.to_yaml();
            assert_eq!(ok(&printed, &[]).series_ttl, config.series_ttl, "{printed}");
        }
    }
}
