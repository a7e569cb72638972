//! The OpenTelemetry SDK environment variables that configure export
//! (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER*`, `OTEL_METRIC_EXPORT_*`, `OTEL_BSP_*`,
//! `OTEL_SDK_DISABLED`), read per the specification. Every bad value is an
//! error naming the variable and the value.

use std::time::Duration;

use super::exemplar_filter::ExemplarFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl Protocol {
    fn parse(var: &str, value: &str) -> Result<Self, String> {
        match value.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            other => Err(format!(
                "{var}={other:?}: expected grpc, http/protobuf or http/json"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn env_infix(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    /// The path appended to a base `OTEL_EXPORTER_OTLP_ENDPOINT` for HTTP.
    pub fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "v1/traces",
            Self::Metrics => "v1/metrics",
        }
    }
}

/// Where and how one signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpDestination {
    pub signal: Signal,
    pub protocol: Protocol,
    /// Full URL: for HTTP including `/v1/traces` or `/v1/metrics`.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub gzip: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    Delta,
}

/// Batching of spans before export (the spec's batch span processor knobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub schedule_delay: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    pub traces: Vec<OtlpDestination>,
    pub metrics: Vec<OtlpDestination>,
    pub service_name: Option<String>,
    /// OBI's `OTEL_EBPF_SERVICE_NAMESPACE` (the file's `service_namespace`):
    /// every service's namespace unless its discovery entry names one. Also
    /// in `resource_attributes`, where it wins over `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_namespace: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: SamplerSetting,
    /// `OTEL_METRICS_EXEMPLAR_FILTER`: which spans leave exemplars on the
    /// OTLP histograms (`trace_based` unless set, as in the SDKs).
    pub exemplar_filter: ExemplarFilter,
    pub temporality: Temporality,
    pub metric_export_interval: Duration,
    pub batch: BatchSettings,
}

/// Percent-decodes a header or resource value (`Bearer%20token` → `Bearer token`).
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(decoded) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key1=value1,key2=value2` (W3C baggage-like), values percent-decoded.
pub fn parse_key_values(var: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{var}: {item:?} is not key=value"))?;
        let key = percent_decode(key.trim());
        if key.is_empty() {
            return Err(format!("{var}: empty key in {item:?}"));
        }
        pairs.push((key, percent_decode(value.trim())));
    }
    Ok(pairs)
}

fn parse_millis(var: &str, value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{var}={value:?}: expected a number of milliseconds"))
}

fn parse_count(var: &str, value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{var}={value:?}: expected a positive number")),
    }
}

fn parse_bool(var: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        other => Err(format!("{var}={other:?}: expected true or false")),
    }
}

fn parse_sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerSetting, String> {
    let ratio = || -> Result<f64, String> {
        match &arg {
            None => Ok(1.0),
            Some(text) => match text.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG={text:?}: expected a probability from 0 to 1"
                )),
            },
        }
    };
    let Some(name) = name else {
        return Ok(SamplerSetting::ParentBasedAlwaysOn);
    };
    SamplerSetting::named(name.trim(), ratio()?).ok_or_else(|| {
        format!(
            "OTEL_TRACES_SAMPLER={:?}: expected {}",
            name.trim(),
            SamplerSetting::NAMES.join(", ")
        )
    })
}

impl SamplerSetting {
    /// The names `OTEL_TRACES_SAMPLER` and OBI's `sampler.name` take.
    pub const NAMES: [&'static str; 6] = [
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ];

    /// The sampler `name` gives (one of [`Self::NAMES`]), `ratio` for the
    /// ratio-based ones.
    pub fn named(name: &str, ratio: f64) -> Option<Self> {
        Some(match name {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::TraceIdRatio(ratio),
            "parentbased_always_on" => Self::ParentBasedAlwaysOn,
            "parentbased_always_off" => Self::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentBasedTraceIdRatio(ratio),
            _ => return None,
        })
    }
}

impl ExportSettings {
    /// Reads the variables through `env` (the process environment in production).
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let disabled = match get("OTEL_SDK_DISABLED") {
            Some(v) => parse_bool("OTEL_SDK_DISABLED", &v)?,
            None => false,
        };
        let mut traces = Vec::new();
        let mut metrics = Vec::new();
        if !disabled {
            if exporter_enabled(&get, "OTEL_TRACES_EXPORTER")? {
                traces.extend(destination(&get, Signal::Traces)?);
            }
            if exporter_enabled(&get, "OTEL_METRICS_EXPORTER")? {
                metrics.extend(destination(&get, Signal::Metrics)?);
            }
        }
        let mut resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(text) => parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &text)?,
            None => Vec::new(),
        };
        // OTEL_SERVICE_NAME (else OBI's OTEL_EBPF_SERVICE_NAME, its default
        // there) wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
        let service_name = get("OTEL_SERVICE_NAME")
            .or_else(|| get("OTEL_EBPF_SERVICE_NAME"))
            .or_else(|| {
                resource_attributes
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .map(|name| name.trim().to_owned());
        resource_attributes.retain(|(k, _)| k != "service.name");
        let service_namespace = get("OTEL_EBPF_SERVICE_NAMESPACE").map(|n| n.trim().to_owned());
        if let Some(namespace) = &service_namespace {
            resource_attributes.retain(|(k, _)| k != "service.namespace");
            resource_attributes.push(("service.namespace".to_owned(), namespace.clone()));
        }
        let temporality = match get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
            None => Temporality::Cumulative,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "cumulative" => Temporality::Cumulative,
                // Histograms are delta under both "delta" and "lowmemory".
                "delta" | "lowmemory" => Temporality::Delta,
                other => {
                    return Err(format!(
                        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={other:?}: expected \
                         cumulative, delta or lowmemory"
                    ))
                }
            },
        };
        let metric_export_interval = match get("OTEL_METRIC_EXPORT_INTERVAL") {
            Some(v) => {
                parse_millis("OTEL_METRIC_EXPORT_INTERVAL", &v)?.max(Duration::from_millis(100))
            }
            None => Duration::from_secs(60),
        };
        let batch = BatchSettings {
            schedule_delay: match get("OTEL_BSP_SCHEDULE_DELAY") {
                Some(v) => parse_millis("OTEL_BSP_SCHEDULE_DELAY", &v)?,
                None => Duration::from_secs(5),
            },
            max_queue_size: match get("OTEL_BSP_MAX_QUEUE_SIZE") {
                Some(v) => parse_count("OTEL_BSP_MAX_QUEUE_SIZE", &v)?,
                None => 2048,
            },
            max_export_batch_size: match get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
                Some(v) => parse_count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v)?,
                None => 512,
            },
        };
        Ok(Self {
            traces,
            metrics,
            service_name,
            service_namespace,
            resource_attributes,
            sampler: parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?,
            exemplar_filter: match get("OTEL_METRICS_EXEMPLAR_FILTER") {
                Some(text) => ExemplarFilter::from_var("OTEL_METRICS_EXEMPLAR_FILTER", &text)?,
                None => ExemplarFilter::TraceBased,
            },
            temporality,
            metric_export_interval,
            batch,
        })
    }
}

fn exporter_enabled(get: &impl Fn(&str) -> Option<String>, var: &str) -> Result<bool, String> {
    match get(var) {
        None => Ok(true),
        Some(v) => match v.trim() {
            "otlp" => Ok(true),
            "none" => Ok(false),
            other => Err(format!("{var}={other:?}: expected otlp or none")),
        },
    }
}

/// One signal's destination, or None when no endpoint is configured for it.
fn destination(
    get: &impl Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<Option<OtlpDestination>, String> {
    let infix = signal.env_infix();
    let specific = |suffix: &str| {
        let name = format!("OTEL_EXPORTER_OTLP_{infix}_{suffix}");
        get(&name).map(|v| (name, v))
    };
    let general = |suffix: &str| {
        let name = format!("OTEL_EXPORTER_OTLP_{suffix}");
        get(&name).map(|v| (name, v))
    };
    let either = |suffix: &str| specific(suffix).or_else(|| general(suffix));

    let protocol = match either("PROTOCOL") {
        Some((name, value)) => Protocol::parse(&name, &value)?,
        None => Protocol::HttpProtobuf,
    };
    let endpoint = match (specific("ENDPOINT"), general("ENDPOINT")) {
        // A signal-specific endpoint is used as is.
        (Some((name, url)), _) => checked_url(&name, url.trim())?,
        // A base endpoint gets the signal's path appended for HTTP.
        (None, Some((name, base))) => {
            let base = checked_url(&name, base.trim())?;
            match protocol {
                Protocol::Grpc => base,
                _ => format!("{}/{}", base.trim_end_matches('/'), signal.http_path()),
            }
        }
        (None, None) => return Ok(None),
    };
    let mut headers = match general("HEADERS") {
        Some((name, text)) => parse_key_values(&name, &text)?,
        None => Vec::new(),
    };
    if let Some((name, text)) = specific("HEADERS") {
        for (key, value) in parse_key_values(&name, &text)? {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            headers.push((key, value));
        }
    }
    let timeout = match either("TIMEOUT") {
        Some((name, value)) => parse_millis(&name, &value)?,
        None => Duration::from_secs(10),
    };
    let gzip = match either("COMPRESSION") {
        None => false,
        Some((name, value)) => match value.trim() {
            "gzip" => true,
            "none" => false,
            other => return Err(format!("{name}={other:?}: expected gzip or none")),
        },
    };
    Ok(Some(OtlpDestination {
        signal,
        protocol,
        endpoint,
        headers,
        timeout,
        gzip,
    }))
}

fn checked_url(var: &str, url: &str) -> Result<String, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{var}={url:?}: expected an http:// or https:// URL"
        ));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<ExportSettings, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportSettings::from_env(&|k: &str| map.get(k).cloned())
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let s = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.traces.is_empty() && s.metrics.is_empty());
        assert_eq!(s.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert_eq!(s.temporality, Temporality::Cumulative);
        assert_eq!(s.metric_export_interval, Duration::from_secs(60));
    }

    #[test]
    fn a_base_endpoint_gets_signal_paths_for_http_only() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.traces[0].endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.metrics[0].endpoint, "http://collector:4318/v1/metrics");
        assert_eq!(s.traces[0].protocol, Protocol::HttpProtobuf);
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://other:4317"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.traces[0].endpoint, "http://collector:4317");
        assert_eq!(s.metrics[0].endpoint, "http://other:4317");
    }

    #[test]
    fn headers_are_decoded_and_signal_headers_override() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://logfire-api.example"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20secret-token,x-a=1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-A=2"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let t = &s.traces[0];
        assert!(t
            .headers
            .contains(&("Authorization".into(), "Bearer secret-token".into())));
        assert!(t.headers.contains(&("X-A".into(), "2".into())));
        assert!(!t.headers.iter().any(|(k, v)| k == "x-a" && v == "1"));
        assert!(t.gzip);
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert_eq!(s.metrics[0].timeout, Duration::from_secs(10));
    }

    #[test]
    fn resource_sampler_and_metric_settings() {
        let s = settings(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=ignored,deployment.environment=prod%2Feu",
            ),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            s.resource_attributes,
            vec![("deployment.environment".to_string(), "prod/eu".to_string())]
        );
        assert_eq!(s.sampler, SamplerSetting::TraceIdRatio(0.1));
        assert_eq!(s.temporality, Temporality::Delta);
        assert_eq!(s.metric_export_interval, Duration::from_secs(1));
    }

    #[test]
    fn obi_s_service_namespace_and_service_name_variables() {
        let s = settings(&[
            ("OTEL_EBPF_SERVICE_NAME", "checkout"),
            ("OTEL_EBPF_SERVICE_NAMESPACE", " shop "),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.namespace=other,deployment.environment=prod",
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.service_name.as_deref(), Some("checkout"));
        assert_eq!(s.service_namespace.as_deref(), Some("shop"));
        // The namespace variable wins over the resource attributes', once.
        assert_eq!(
            s.resource_attributes,
            vec![
                ("deployment.environment".to_string(), "prod".to_string()),
                ("service.namespace".to_string(), "shop".to_string()),
            ]
        );
        // OTEL_SERVICE_NAME wins over OBI's name variable.
        let s = settings(&[
            ("OTEL_SERVICE_NAME", "cart"),
            ("OTEL_EBPF_SERVICE_NAME", "checkout"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.service_name.as_deref(), Some("cart"));
        assert_eq!(s.service_namespace, None);
    }

    #[test]
    fn disabled_and_none_turn_export_off() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.traces.is_empty() && s.metrics.is_empty());
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.traces.len(), 1);
        assert!(s.metrics.is_empty());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_SDK_DISABLED", "maybe"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ] {
            let err = settings(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                (var, value),
            ])
            .err()
            .unwrap_or_default();
            assert!(err.contains(var) && err.contains(value), "{var}: {err}");
        }
        let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")])
            .err()
            .unwrap_or_default();
        assert!(err.contains("collector:4317"), "{err}");
        let err = settings(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .err()
        .unwrap_or_default();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
