//! OBI's `buckets` sections (`metrics.buckets`, `otel_metrics_export.buckets`,
//! `prometheus_export.buckets`): histogram bucket bounds that replace the
//! semantic conventions' defaults. `duration_histogram` applies to every
//! duration histogram (HTTP, gRPC, database, messaging, span metrics,
//! service graph), `request_size_histogram` and `response_size_histogram`
//! to the HTTP body size histograms. An exporter's own list wins over the
//! `metrics` section's, list by list.

use std::sync::Arc;

use serde::Deserialize;

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

/// Bucket bounds that replace the defaults; `None` keeps them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramBuckets {
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
        duration: list(ctx, "duration_histogram", &raw.duration_histogram)?,
        request_size: list(ctx, "request_size_histogram", &raw.request_size_histogram)?,
        response_size: list(ctx, "response_size_histogram", &raw.response_size_histogram)?,
    })
}

impl HistogramBuckets {
    /// Each list of `self`, else `fallback`'s.
    fn or(self, fallback: &HistogramBuckets) -> HistogramBuckets {
        HistogramBuckets {
            duration: self.duration.or_else(|| fallback.duration.clone()),
            request_size: self.request_size.or_else(|| fallback.request_size.clone()),
            response_size: self
                .response_size
                .or_else(|| fallback.response_size.clone()),
        }
    }
}

/// Each exporter's bounds: its own section's lists, else `metrics.buckets`'.
pub(super) fn bucket_switch(
    ctx: &mut Ctx,
    common: Option<&RawBuckets>,
    otlp: Option<&RawBuckets>,
    prometheus: Option<&RawBuckets>,
) -> Result<BucketSwitch, ConfigError> {
    let common = section_buckets(ctx, "metrics", common)?;
    Ok(BucketSwitch {
        otlp: section_buckets(ctx, "otel_metrics_export", otlp)?.or(&common),
        prometheus: section_buckets(ctx, "prometheus_export", prometheus)?.or(&common),
    })
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
                duration: bounds(&[0.05, 0.2]),
                request_size: bounds(&[10.0, 100.0]),
                response_size: None,
            }
        );
        assert_eq!(
            config.buckets.prometheus,
            HistogramBuckets {
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
}
