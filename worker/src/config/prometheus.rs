//! The `prometheus_export` section and `OTEL_EBPF_PROMETHEUS_PORT` / `_PATH`:
//! where the scrape endpoint listens (off unless a port is set; never below
//! 1024, a privilege the worker does not have); and which spans leave
//! exemplars (`exemplar_filter`, `OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER`).

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::buckets::RawBuckets;
use super::environment::Overlay;
use super::error::{ConfigError, Ctx};
pub use super::exemplar_filter::ExemplarFilter;
use super::obi_keys::{vet, vet_feature_lists, PROMETHEUS};
use super::values::{non_empty, Extra, GoDuration, StringList, Text};

/// Where the scrape endpoint listens (`prometheus_export`, `OTEL_EBPF_PROMETHEUS_PORT` / `_PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSettings {
    pub port: u16,
    pub path: String,
    /// Which spans leave exemplars on the histograms' buckets.
    pub exemplar_filter: ExemplarFilter,
}

impl PrometheusSettings {
    /// None when no port is configured (the endpoint is off).
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(port) = env("OTEL_EBPF_PROMETHEUS_PORT").filter(|p| !p.trim().is_empty()) else {
            return Ok(None);
        };
        let port: u16 = match port.trim().parse() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(format!(
                    "OTEL_EBPF_PROMETHEUS_PORT={port:?}: expected a port number"
                ))
            }
        };
        if port < 1024 {
            return Err(format!(
                "OTEL_EBPF_PROMETHEUS_PORT={port}: ports below 1024 need a privilege the worker \
                 deliberately does not have (CAP_NET_BIND_SERVICE); choose a port of 1024 or more"
            ));
        }
        let path = env("OTEL_EBPF_PROMETHEUS_PATH").unwrap_or_else(|| "/metrics".into());
        if !path.starts_with('/') {
            return Err(format!(
                "OTEL_EBPF_PROMETHEUS_PATH={path:?}: must start with /"
            ));
        }
        let exemplar_filter = match env("OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER")
            .filter(|text| !text.trim().is_empty())
        {
            None => ExemplarFilter::default(),
            Some(text) => ExemplarFilter::from_var("OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER", &text)?,
        };
        Ok(Some(Self {
            port,
            path,
            exemplar_filter,
        }))
    }
}

/// `prometheus_export.port`: 0 is off (OBI's default); below 1024 is refused.
#[derive(Debug, Clone, Copy)]
struct PromPort(Option<u16>);

impl<'de> Deserialize<'de> for PromPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        match text.trim().parse::<u16>() {
            Ok(0) => Ok(PromPort(None)),
            Ok(port) if port < 1024 => Err(de::Error::custom(format!(
                "{port}: ports below 1024 need a privilege the worker deliberately does not \
                 have (CAP_NET_BIND_SERVICE); choose a port of 1024 or more"
            ))),
            Ok(port) => Ok(PromPort(Some(port))),
            Err(_) => Err(de::Error::custom(format!(
                "{text:?} is not a port number (expected e.g. 9400)"
            ))),
        }
    }
}

/// The `prometheus_export` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPrometheus {
    port: Option<PromPort>,
    path: Option<Text>,
    pub(super) features: Option<StringList>,
    instrumentations: Option<StringList>,
    pub(super) buckets: Option<RawBuckets>,
    pub(super) extra_span_resource_attributes: Option<StringList>,
    pub(super) allow_service_graph_self_references: Option<bool>,
    exemplar_filter: Option<Text>,
    pub(super) ttl: Option<GoDuration>,
    #[serde(flatten)]
    other: Extra,
}

impl RawPrometheus {
    /// The section's `instrumentations` list, if written.
    pub(super) fn instrumentations(&self) -> Option<&StringList> {
        self.instrumentations.as_ref()
    }
}

/// The section's own keys and its feature lists.
pub(super) fn vet_prometheus(ctx: &mut Ctx, raw: &RawPrometheus) -> Result<(), ConfigError> {
    vet(ctx, &PROMETHEUS, "prometheus_export", &raw.other)?;
    let (features, instrumentations) = (raw.features.as_ref(), raw.instrumentations.as_ref());
    vet_feature_lists(ctx, "prometheus_export", features, instrumentations)
}

/// The file's port and path offered to `OTEL_EBPF_PROMETHEUS_*`, which win.
pub(super) fn prometheus_settings(
    ctx: &Ctx,
    raw: Option<RawPrometheus>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<PrometheusSettings>, ConfigError> {
    let mut overlay = Overlay::default();
    if let Some(raw) = raw {
        if let Some(PromPort(Some(port))) = raw.port {
            overlay.offer(env, "OTEL_EBPF_PROMETHEUS_PORT", port.to_string(), &[]);
        }
        if let Some(path) = non_empty(raw.path) {
            if !path.starts_with('/') {
                return Err(ctx.err(
                    "prometheus_export.path",
                    format!("{path:?} must start with / (expected e.g. /metrics)"),
                ));
            }
            overlay.offer(env, "OTEL_EBPF_PROMETHEUS_PATH", path, &[]);
        }
        if let Some(filter) = non_empty(raw.exemplar_filter) {
            if ExemplarFilter::parse(&filter).is_none() {
                return Err(ctx.err(
                    "prometheus_export.exemplar_filter",
                    format!("{filter:?}: expected always_off, always_on or trace_based"),
                ));
            }
            overlay.offer(env, "OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER", filter, &[]);
        }
    }
    PrometheusSettings::from_env(&|var: &str| overlay.lookup(env, var)).map_err(ConfigError::Env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_ports_and_bad_values_are_refused() {
        let env = |port: &'static str| {
            move |k: &str| (k == "OTEL_EBPF_PROMETHEUS_PORT").then(|| port.to_string())
        };
        assert!(PrometheusSettings::from_env(&env("80"))
            .err()
            .unwrap_or_default()
            .contains("below 1024"));
        assert!(PrometheusSettings::from_env(&env("x")).is_err());
        assert_eq!(
            PrometheusSettings::from_env(&env("9400"))
                .ok()
                .flatten()
                .map(|s| s.path),
            Some("/metrics".to_string())
        );
        assert_eq!(
            PrometheusSettings::from_env(&|_: &str| None).ok().flatten(),
            None
        );
    }

    #[test]
    fn the_exemplar_filter_is_read_from_the_file_under_its_variable() {
        use crate::config::test_support::*;
        let filter = |yaml: &str, env: &[(&str, &str)]| {
            ok(yaml, env)
                .prometheus
                .map(|p| p.exemplar_filter)
                .unwrap_or_default()
        };
        let base = "open_port: 8080\nprometheus_export:\n  port: 9400\n";
        assert_eq!(filter(base, &[]), ExemplarFilter::AlwaysOff);
        let file = format!("{base}  exemplar_filter: trace_based\n");
        assert_eq!(filter(&file, &[]), ExemplarFilter::TraceBased);
        let env = [("OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER", "ALWAYS_ON")];
        assert_eq!(filter(&file, &env), ExemplarFilter::AlwaysOn);
        let message = err(&format!("{base}  exemplar_filter: sometimes\n"), &[]);
        assert!(
            message.contains("prometheus_export.exemplar_filter"),
            "{message}"
        );
        let message = err(base, &[("OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER", "often")]);
        assert!(
            message.contains("OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER"),
            "{message}"
        );
        let config = ok(&file, &[]);
        let printed = config.to_yaml();
        assert_eq!(ok(&printed, &[]).prometheus, config.prometheus, "{printed}");
    }
}
