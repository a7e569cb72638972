//! OBI's `buckets` sections (`metrics.buckets`, `otel_metrics_export.buckets`,
//! `prometheus_export.buckets`): histogram bucket bounds that replace the
//! semantic conventions' defaults. `duration_histogram` applies to every
//! duration histogram (HTTP, gRPC, database, messaging, span metrics,
//! service graph), `request_size_histogram` and `response_size_histogram`
//! to the HTTP body size histograms. An exporter's own list wins over the
//! `metrics` section's, list by list.
//!
//! OBI's `histogram_aggregation` (`OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`,
//! else `otel_metrics_export.histogram_aggregation`, else the `metrics`
//! section's) makes the OTLP export's histograms base-2 exponential
//! (`metrics/exponential.rs`) instead; Prometheus keeps explicit buckets.

use std::sync::Arc;

use serde::Deserialize;

use super::environment::env_value;
use super::error::{child, ConfigError, Ctx};
use super::obi_keys::{vet, Obi, Section};
use super::values::Extra;

/// The keys of a `buckets` section.
const BUCKETS: Section = Section {
    typed: &[
        "duration_histogram",
        "request_size_histogram",
        "response_size_histogram",
    ],
    obi: &[
        (
            "stat_tcp_rtt_histogram",
            Obi::Ignored("zerotrace has no TCP statistics metrics"),
        ),
        (
            "gen_ai_client_operation_duration_histogram",
            Obi::Ignored("zerotrace has no GenAI metrics"),
        ),
        (
            "gen_ai_client_token_usage_histogram",
            Obi::Ignored("zerotrace has no GenAI metrics"),
        ),
    ],
};

/// A `buckets` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawBuckets {
    duration_histogram: Option<Vec<f64>>,
    request_size_histogram: Option<Vec<f64>>,
    response_size_histogram: Option<Vec<f64>>,
    #[serde(flatten)]
    other: Extra,
}

/// How an exporter's histograms aggregate (OBI's `histogram_aggregation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HistogramAggregation {
    /// `explicit_bucket_histogram`: the bounds below.
    #[default]
    Explicit,
    /// `base2_exponential_bucket_histogram` (OTLP only).
    Base2Exponential,
}

impl HistogramAggregation {
    /// The name OBI and the OpenTelemetry SDKs give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Explicit => "explicit_bucket_histogram",
            Self::Base2Exponential => "base2_exponential_bucket_histogram",
        }
    }

    /// Reads a name, in any case, as the SDKs do.
    fn parse(text: &str) -> Option<Self> {
        [Self::Explicit, Self::Base2Exponential]
            .into_iter()
            .find(|aggregation| text.trim().eq_ignore_ascii_case(aggregation.name()))
    }
}

/// Bucket bounds that replace the defaults; `None` keeps them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramBuckets {
    /// Explicit bounds, or base-2 exponential buckets (OTLP only).
    pub aggregation: HistogramAggregation,
    /// Every duration histogram, in seconds.
    pub duration: Option<Arc<[f64]>>,
    /// The HTTP request body size histograms, in bytes.
    pub request_size: Option<Arc<[f64]>>,
    /// The HTTP response body size histograms, in bytes.
    pub response_size: Option<Arc<[f64]>>,
}

/// The bounds each metrics exporter uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketSwitch {
    pub otlp: HistogramBuckets,
    pub prometheus: HistogramBuckets,
}

/// A list's bounds, checked: finite and strictly increasing (an empty list
/// keeps the default, as in OBI).
fn checked(ctx: &Ctx, path: &str, list: &[f64]) -> Result<Option<Arc<[f64]>>, ConfigError> {
    if list.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = list.iter().find(|v| !v.is_finite()) {
        return Err(ctx.err(path, format!("{bad} is not a finite number")));
    }
    if let Some(pair) = list.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(ctx.err(
            path,
            format!(
                "bounds must be strictly increasing: {} then {}",
                pair[0], pair[1]
            ),
        ));
    }
    Ok(Some(list.into()))
}

/// One section's lists, checked; `path` is the section's.
fn section_buckets(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<&RawBuckets>,
) -> Result<HistogramBuckets, ConfigError> {
    let Some(raw) = raw else {
        return Ok(HistogramBuckets::default());
    };
    let path = child(path, "buckets");
    vet(ctx, &BUCKETS, &path, &raw.other)?;
    let list = |ctx: &Ctx, key: &str, list: &Option<Vec<f64>>| match list {
        Some(list) => checked(ctx, &child(&path, key), list),
        None => Ok(None),
    };
    Ok(HistogramBuckets {
        aggregation: HistogramAggregation::Explicit,
        duration: list(ctx, "duration_histogram", &raw.duration_histogram)?,
        request_size: list(ctx, "request_size_histogram", &raw.request_size_histogram)?,
        response_size: list(ctx, "response_size_histogram", &raw.response_size_histogram)?,
    })
}

impl HistogramBuckets {
    /// Each list of `self`, else `fallback`'s.
    fn or(self, fallback: &HistogramBuckets) -> HistogramBuckets {
        HistogramBuckets {
            aggregation: self.aggregation,
            duration: self.duration.or_else(|| fallback.duration.clone()),
            request_size: self.request_size.or_else(|| fallback.request_size.clone()),
            response_size: self
                .response_size
                .or_else(|| fallback.response_size.clone()),
        }
    }
}

/// The `histogram_aggregation` keys as written: the `metrics` section's
/// and `otel_metrics_export`'s.
pub(super) struct RawAggregation<'a> {
    pub(super) common: Option<&'a str>,
    pub(super) otlp: Option<&'a str>,
}

/// Each exporter's bounds: its own section's lists, else `metrics.buckets`';
/// and the OTLP export's aggregation.
pub(super) fn bucket_switch(
    ctx: &mut Ctx,
    common: Option<&RawBuckets>,
    otlp: Option<&RawBuckets>,
    prometheus: Option<&RawBuckets>,
    aggregation: RawAggregation<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BucketSwitch, ConfigError> {
    let common = section_buckets(ctx, "metrics", common)?;
    let mut otlp_buckets = section_buckets(ctx, "otel_metrics_export", otlp)?;
    let otlp_has_lists = otlp_buckets != HistogramBuckets::default();
    otlp_buckets.aggregation = otlp_aggregation(ctx, aggregation, env)?;
    if otlp_buckets.aggregation == HistogramAggregation::Base2Exponential && otlp_has_lists {
        ctx.warn(
            "otel_metrics_export.buckets",
            "unused: the OTLP export's histograms are base2_exponential_bucket_histogram",
        );
    }
    Ok(BucketSwitch {
        otlp: otlp_buckets.or(&common),
        prometheus: section_buckets(ctx, "prometheus_export", prometheus)?.or(&common),
    })
}

const AGGREGATION_VAR: &str = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";

/// The OTLP export's aggregation: the variable, else its section's key,
/// else the `metrics` section's; explicit when none says.
fn otlp_aggregation(
    ctx: &Ctx,
    raw: RawAggregation<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HistogramAggregation, ConfigError> {
    let expected = || {
        format!(
            "expected {} or {}",
            HistogramAggregation::Explicit.name(),
            HistogramAggregation::Base2Exponential.name()
        )
    };
    if let Some(text) = env_value(env, AGGREGATION_VAR) {
        return HistogramAggregation::parse(&text).ok_or_else(|| {
            ConfigError::Env(format!("{AGGREGATION_VAR}: {text:?}: {}", expected()))
        });
    }
    let written = [
        ("otel_metrics_export.histogram_aggregation", raw.otlp),
        ("metrics.histogram_aggregation", raw.common),
    ];
    for (path, text) in written {
        if let Some(text) = text {
            return HistogramAggregation::parse(text)
                .ok_or_else(|| ctx.err(path, format!("{text:?}: {}", expected())));
        }
    }
    Ok(HistogramAggregation::Explicit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const BASE: &str = "open_port: 8080\n";

    fn bounds(list: &[f64]) -> Option<Arc<[f64]>> {
        Some(list.into())
    }

    #[test]
    fn an_exporter_s_own_lists_win_over_the_metrics_section_s_list_by_list() {
        let config = ok(
            &format!(
                "{BASE}metrics:
  buckets:
    duration_histogram: [0.1, 0.3, 1]
    request_size_histogram: [10, 100]
otel_metrics_export:
  buckets:
    duration_histogram: [0.05, 0.2]
prometheus_export:
  port: 9400
  buckets:
    response_size_histogram: [1000, 1e6]
"
            ),
            &[],
        );
        assert_eq!(
            config.buckets.otlp,
            HistogramBuckets {
                aggregation: Default::default(),
                duration: bounds(&[0.05, 0.2]),
                request_size: bounds(&[10.0, 100.0]),
                response_size: None,
            }
        );
        assert_eq!(
            config.buckets.prometheus,
            HistogramBuckets {
                aggregation: Default::default(),
                duration: bounds(&[0.1, 0.3, 1.0]),
                request_size: bounds(&[10.0, 100.0]),
                response_size: bounds(&[1000.0, 1e6]),
            }
        );
        // Nothing written: the defaults.
        assert_eq!(ok(BASE, &[]).buckets, BucketSwitch::default());
        // An empty list keeps the default, as in OBI.
        let empty = ok(
            &format!("{BASE}metrics:\n  buckets:\n    duration_histogram: []\n"),
            &[],
        );
        assert_eq!(empty.buckets, BucketSwitch::default());
    }

    #[test]
    fn bounds_out_of_order_or_not_numbers_are_refused_where_they_are_written() {
        let message = err(
            &format!("{BASE}prometheus_export:\n  port: 9400\n  buckets:\n    duration_histogram: [0.1, 0.5, 0.5]\n"),
            &[],
        );
        assert!(
            message.contains("prometheus_export.buckets.duration_histogram")
                && message.contains("strictly increasing"),
            "{message}"
        );
        let message = err(
            &format!("{BASE}metrics:\n  buckets:\n    request_size_histogram: [10, .nan]\n"),
            &[],
        );
        assert!(
            message.contains("metrics.buckets.request_size_histogram")
                && message.contains("finite"),
            "{message}"
        );
        let message = err(
            &format!("{BASE}metrics:\n  buckets:\n    duration_histogram: [fast, slow]\n"),
            &[],
        );
        assert!(message.contains("duration_histogram"), "{message}");
        // A list zerotrace does not produce: warned about; a typo: refused.
        let config = ok(
            &format!("{BASE}metrics:\n  buckets:\n    stat_tcp_rtt_histogram: [1, 2]\n"),
            &[],
        );
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("metrics.buckets.stat_tcp_rtt_histogram")),
            "{:?}",
            config.warnings
        );
        let message = err(
            &format!("{BASE}metrics:\n  buckets:\n    duration_histograms: [1, 2]\n"),
            &[],
        );
        assert!(message.contains("duration_histogram"), "{message}");
    }

    #[test]
    fn printed_buckets_read_back_the_same() {
        let config = ok(
            &format!(
                "{BASE}otel_metrics_export:\n  endpoint: http://collector:4318\n  buckets:\n    duration_histogram: [0.05, 0.2]\nprometheus_export:\n  port: 9400\n  buckets:\n    request_size_histogram: [0, 512, 4096]\n"
            ),
            &[],
        );
        let printed = config.to_yaml();
        assert_eq!(ok(&printed, &[]).buckets, config.buckets, "{printed}");
    }

    #[test]
    fn the_otlp_export_aggregates_exponentially_when_the_variable_or_a_key_says() {
        use HistogramAggregation::{Base2Exponential, Explicit};
        let aggregations = |config: &crate::config::EffectiveConfig| {
            (
                config.buckets.otlp.aggregation,
                config.buckets.prometheus.aggregation,
            )
        };
        assert_eq!(aggregations(&ok(BASE, &[])), (Explicit, Explicit));
        let common = format!(
            "{BASE}metrics:\n  histogram_aggregation: base2_exponential_bucket_histogram\n"
        );
        // Prometheus keeps explicit buckets whatever is asked.
        assert_eq!(
            aggregations(&ok(&common, &[])),
            (Base2Exponential, Explicit)
        );
        let own = format!(
            "{common}otel_metrics_export:\n  histogram_aggregation: explicit_bucket_histogram\n"
        );
        assert_eq!(aggregations(&ok(&own, &[])), (Explicit, Explicit));
        // The variable wins, in any case, as in the SDKs.
        let env = [(AGGREGATION_VAR, "BASE2_Exponential_Bucket_Histogram")];
        assert_eq!(aggregations(&ok(&own, &env)), (Base2Exponential, Explicit));
        let env = [(AGGREGATION_VAR, "explicit_bucket_histogram")];
        assert_eq!(aggregations(&ok(&common, &env)), (Explicit, Explicit));
    }

    #[test]
    fn an_unknown_aggregation_is_refused_where_it_is_written() {
        let message = err(
            &format!("{BASE}otel_metrics_export:\n  histogram_aggregation: exponential\n"),
            &[],
        );
        assert!(
            message.contains("otel_metrics_export.histogram_aggregation")
                && message.contains("base2_exponential_bucket_histogram"),
            "{message}"
        );
        let message = err(BASE, &[(AGGREGATION_VAR, "native")]);
        assert!(message.contains(AGGREGATION_VAR), "{message}");
        // Prometheus has no such key.
        let message = err(
            &format!("{BASE}prometheus_export:\n  port: 9400\n  histogram_aggregation: explicit_bucket_histogram\n"),
            &[],
        );
        assert!(message.contains("histogram_aggregation"), "{message}");
    }

    #[test]
    fn otlp_bounds_beside_exponential_histograms_are_warned_about_and_prometheus_keeps_them() {
        let config = ok(
            &format!("{BASE}metrics:\n  buckets:\n    duration_histogram: [0.1, 1]\notel_metrics_export:\n  histogram_aggregation: base2_exponential_bucket_histogram\n  buckets:\n    duration_histogram: [0.5]\n"),
            &[],
        );
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("otel_metrics_export.buckets") && w.contains("unused")),
            "{:?}",
            config.warnings
        );
        assert_eq!(config.buckets.prometheus.duration, bounds(&[0.1, 1.0]));
        // The shared list alone is Prometheus's: no warning.
        let config = ok(
            &format!("{BASE}metrics:\n  histogram_aggregation: base2_exponential_bucket_histogram\n  buckets:\n    duration_histogram: [0.1, 1]\n"),
            &[],
        );
        assert!(
            !config.warnings.iter().any(|w| w.contains("buckets")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn a_printed_aggregation_reads_back_the_same() {
        let config = ok(
            BASE,
            &[(AGGREGATION_VAR, "base2_exponential_bucket_histogram")],
        );
        let printed = config.to_yaml();
        assert!(
            printed.contains("histogram_aggregation: base2_exponential_bucket_histogram"),
            "{printed}"
        );
        assert_eq!(ok(&printed, &[]).buckets, config.buckets, "{printed}");
    }
}
