//! The `otel_traces_export` and `otel_metrics_export` sections: the primary
//! destination (`endpoint`, `protocol`, `headers`), extra destinations
//! (`endpoints`, fan-out), the sampler, batching and the metric interval.
//! File values become defaults of the SDK's variables, which win; the file's
//! headers are sent only to the file's endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::buckets::RawBuckets;
use super::environment::{env_value, Overlay};
use super::error::{child, ConfigError, Ctx};
use super::exemplar_filter::ExemplarFilter;
use super::obi_keys::{
    unknown_key_message, vet, vet_feature_lists, vet_tls, Section, METRICS_EXPORT, TRACES,
};
use super::otel_sdk::{ExportSettings, OtlpDestination, Protocol, SamplerSetting, Signal};
use super::values::{non_empty, parse_go_duration, Extra, GoDuration, StringList, Text};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OTLP endpoint URL (`http://` or `https://`); empty means unset (as in OBI).
#[derive(Debug, Clone, Default)]
struct Endpoint(String);

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(url) = Text::deserialize(d)?;
        let url = url.trim().to_owned();
        if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
            Ok(Endpoint(url))
        } else {
            Err(de::Error::custom(format!(
                "{url:?} is not an http:// or https:// URL (expected e.g. http://collector:4318)"
            )))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ProtocolField(Option<Protocol>);

fn parse_protocol(value: &str) -> Result<Option<Protocol>, String> {
    match value.trim() {
        "" => Ok(None),
        "grpc" => Ok(Some(Protocol::Grpc)),
        "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
        "http/json" => Ok(Some(Protocol::HttpJson)),
        other => Err(format!(
            "{other:?} is not an OTLP protocol (expected grpc, http/protobuf or http/json)"
        )),
    }
}

impl<'de> Deserialize<'de> for ProtocolField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        parse_protocol(&text)
            .map(ProtocolField)
            .map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy)]
struct Gzip(bool);

impl<'de> Deserialize<'de> for Gzip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        match text.trim() {
            "gzip" => Ok(Gzip(true)),
            "none" | "" => Ok(Gzip(false)),
            other => Err(de::Error::custom(format!(
                "{other:?} is not a compression (expected gzip or none)"
            ))),
        }
    }
}

/// `otel_traces_export` or `otel_metrics_export` as written (each uses its own keys).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawExport {
    endpoint: Option<Endpoint>,
    protocol: Option<ProtocolField>,
    headers: Option<BTreeMap<String, Text>>,
    endpoints: Option<Vec<RawDestination>>,
    insecure_skip_verify: Option<bool>,
    instrumentations: Option<StringList>,
    // traces only
    sampler: Option<RawSampler>,
    batch_max_size: Option<usize>,
    batch_timeout: Option<GoDuration>,
    queue_size: Option<usize>,
    // metrics only
    interval: Option<GoDuration>,
    pub(super) features: Option<StringList>,
    pub(super) buckets: Option<RawBuckets>,
    pub(super) histogram_aggregation: Option<String>,
    pub(super) extra_span_resource_attributes: Option<StringList>,
    pub(super) allow_service_graph_self_references: Option<bool>,
    pub(super) ttl: Option<GoDuration>,
    /// zerotrace: `OTEL_METRICS_EXEMPLAR_FILTER` in the file.
    exemplar_filter: Option<Text>,
    #[serde(flatten)]
    other: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    endpoint: Endpoint,
    #[serde(default)]
    protocol: Option<ProtocolField>,
    #[serde(default)]
    headers: BTreeMap<String, Text>,
    #[serde(default)]
    timeout: Option<GoDuration>,
    #[serde(default)]
    compression: Option<Gzip>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSampler {
    name: Option<Text>,
    arg: Option<Text>,
}

impl RawExport {
    /// The section's `instrumentations` list, if written.
    pub(super) fn instrumentations(&self) -> Option<&StringList> {
        self.instrumentations.as_ref()
    }
}

/// Both export sections' own keys (each section knows only its signal's).
pub(super) fn vet_exports(
    ctx: &mut Ctx,
    traces: Option<&RawExport>,
    metrics: Option<&RawExport>,
) -> Result<(), ConfigError> {
    for (name, export, section) in [
        ("otel_traces_export", traces, &TRACES),
        ("otel_metrics_export", metrics, &METRICS_EXPORT),
    ] {
        if let Some(export) = export {
            vet_export(ctx, name, export, section)?;
        }
    }
    Ok(())
}

/// An export section: keys of the other signal are unknown here.
fn vet_export(
    ctx: &mut Ctx,
    path: &str,
    raw: &RawExport,
    section: &Section,
) -> Result<(), ConfigError> {
    let misplaced = |present: bool, key: &str| present && !section.typed.contains(&key);
    for (present, key) in [
        (raw.sampler.is_some(), "sampler"),
        (raw.batch_max_size.is_some(), "batch_max_size"),
        (raw.batch_timeout.is_some(), "batch_timeout"),
        (raw.queue_size.is_some(), "queue_size"),
        (raw.interval.is_some(), "interval"),
        (raw.features.is_some(), "features"),
        (raw.buckets.is_some(), "buckets"),
        (raw.ttl.is_some(), "ttl"),
        (raw.exemplar_filter.is_some(), "exemplar_filter"),
    ] {
        if misplaced(present, key) {
            return Err(ctx.err(child(path, key), unknown_key_message(key, section)));
        }
    }
    vet(ctx, section, path, &raw.other)?;
    vet_tls(ctx, path, raw.insecure_skip_verify)?;
    vet_feature_lists(
        ctx,
        path,
        raw.features.as_ref(),
        raw.instrumentations.as_ref(),
    )
}

fn signal_infix(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "TRACES",
        Signal::Metrics => "METRICS",
    }
}

/// OBI's rule for an HTTP endpoint from the file: `/v1/traces` (or
/// `/v1/metrics`) is appended unless the path already ends with it; gRPC
/// endpoints are used as they are.
fn signal_url(endpoint: &str, protocol: Protocol, signal: Signal) -> String {
    if protocol == Protocol::Grpc {
        return endpoint.to_owned();
    }
    let base = endpoint.trim_end_matches('/');
    let suffix = format!("/{}", signal.http_path());
    if base.ends_with(&suffix) {
        base.to_owned()
    } else {
        format!("{base}{suffix}")
    }
}

fn signal_disabled(env: &dyn Fn(&str) -> Option<String>, signal: Signal) -> bool {
    let exporter = format!("OTEL_{}_EXPORTER", signal_infix(signal));
    env_value(env, "OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env_value(env, &exporter).is_some_and(|v| v.trim() == "none")
}

/// Offers a signal's `endpoint` and `protocol`; true when the file's endpoint is used.
fn offer_endpoint(
    overlay: &mut Overlay,
    env: &dyn Fn(&str) -> Option<String>,
    signal: Signal,
    raw: &RawExport,
) -> bool {
    let infix = signal_infix(signal);
    let protocol_var = format!("OTEL_EXPORTER_OTLP_{infix}_PROTOCOL");
    if let Some(ProtocolField(Some(protocol))) = raw.protocol {
        let unless = [protocol_var.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"];
        overlay.offer(env, &protocol_var, protocol.as_str().to_owned(), &unless);
    }
    let Some(Endpoint(endpoint)) = raw.endpoint.as_ref().filter(|e| !e.0.is_empty()) else {
        return false;
    };
    let protocol = overlay
        .lookup(env, &protocol_var)
        .or_else(|| env_value(env, "OTEL_EXPORTER_OTLP_PROTOCOL"))
        .and_then(|p| parse_protocol(&p).ok().flatten())
        .unwrap_or(Protocol::HttpProtobuf);
    let endpoint_var = format!("OTEL_EXPORTER_OTLP_{infix}_ENDPOINT");
    let unless = [endpoint_var.as_str(), "OTEL_EXPORTER_OTLP_ENDPOINT"];
    overlay.offer(
        env,
        &endpoint_var,
        signal_url(endpoint, protocol, signal),
        &unless,
    )
}

fn offer_sampler(
    ctx: &Ctx,
    overlay: &mut Overlay,
    env: &dyn Fn(&str) -> Option<String>,
    raw: &RawSampler,
) -> Result<(), ConfigError> {
    let (name, ratio) = checked_sampler(ctx, "otel_traces_export.sampler", raw)?;
    if let Some(name) = name {
        overlay.offer(env, "OTEL_TRACES_SAMPLER", name.to_owned(), &[]);
    }
    if let Some(ratio) = ratio {
        overlay.offer(env, "OTEL_TRACES_SAMPLER_ARG", ratio.to_string(), &[]);
    }
    Ok(())
}

/// A `sampler` block's name (one of [`SamplerSetting::NAMES`]) and ratio,
/// each when written; `at` is the block's path.
fn checked_sampler(
    ctx: &Ctx,
    at: &str,
    raw: &RawSampler,
) -> Result<(Option<&'static str>, Option<f64>), ConfigError> {
    let name = match non_empty(raw.name.clone()) {
        Some(name) => Some(
            SamplerSetting::NAMES
                .into_iter()
                .find(|known| *known == name.trim())
                .ok_or_else(|| {
                    ctx.err(
                        child(at, "name"),
                        format!(
                            "{name:?} is not a sampler (expected one of {})",
                            SamplerSetting::NAMES.join(", ")
                        ),
                    )
                })?,
        ),
        None => None,
    };
    let ratio = match non_empty(raw.arg.clone()) {
        Some(arg) => match arg.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Some(ratio),
            _ => {
                return Err(ctx.err(
                    child(at, "arg"),
                    format!("{arg:?} is not a probability from 0 to 1 (expected e.g. 0.1)"),
                ))
            }
        },
        None => None,
    };
    Ok((name, ratio))
}

/// A discovery entry's own `sampler` (OBI's per-service sampler): as
/// `OTEL_TRACES_SAMPLER` reads it, `parentbased_always_on` without a name
/// and a ratio of 1 without an `arg`.
pub(super) fn service_sampler(
    ctx: &Ctx,
    at: &str,
    raw: &RawSampler,
) -> Result<SamplerSetting, ConfigError> {
    let (name, ratio) = checked_sampler(ctx, at, raw)?;
    let name = name.unwrap_or("parentbased_always_on");
    SamplerSetting::named(name, ratio.unwrap_or(1.0))
        .ok_or_else(|| ctx.err(child(at, "name"), format!("{name:?} is not a sampler")))
}

fn offer_batching(
    ctx: &Ctx,
    overlay: &mut Overlay,
    env: &dyn Fn(&str) -> Option<String>,
    raw: &RawExport,
) -> Result<(), ConfigError> {
    if let Some(size) = raw.batch_max_size {
        if size == 0 {
            return Err(ctx.err(
                "otel_traces_export.batch_max_size",
                "0: expected at least 1",
            ));
        }
        overlay.offer(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", size.to_string(), &[]);
    }
    if let Some(GoDuration(delay)) = raw.batch_timeout {
        overlay.offer(
            env,
            "OTEL_BSP_SCHEDULE_DELAY",
            delay.as_millis().to_string(),
            &[],
        );
    }
    // 0 means "the default" in OBI.
    if let Some(size) = raw.queue_size.filter(|&s| s > 0) {
        overlay.offer(env, "OTEL_BSP_MAX_QUEUE_SIZE", size.to_string(), &[]);
    }
    Ok(())
}

fn headers_of(map: &BTreeMap<String, Text>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, Text(v))| (k.clone(), v.clone()))
        .collect()
}

/// The file's `headers` go with the file's `endpoint` only; the environment's win.
fn merge_headers(
    ctx: &mut Ctx,
    path: &str,
    destination: Option<&mut OtlpDestination>,
    file_endpoint_used: bool,
    headers: Option<&BTreeMap<String, Text>>,
) {
    let Some(headers) = headers.filter(|h| !h.is_empty()) else {
        return;
    };
    match destination {
        Some(dest) if file_endpoint_used => {
            for (key, value) in headers_of(headers) {
                if !dest
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(&key))
                {
                    dest.headers.push((key, value));
                }
            }
        }
        _ => ctx.warn(
            &child(path, "headers"),
            "not sent: they belong to the file's endpoint, which is not used",
        ),
    }
}

fn destination_of(signal: Signal, raw: &RawDestination) -> OtlpDestination {
    let protocol = raw
        .protocol
        .and_then(|p| p.0)
        .unwrap_or(Protocol::HttpProtobuf);
    OtlpDestination {
        signal,
        protocol,
        endpoint: signal_url(&raw.endpoint.0, protocol, signal),
        headers: headers_of(&raw.headers),
        timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        gzip: raw.compression.is_some_and(|c| c.0),
    }
}

/// Appends the file's `endpoints` (unless the signal is off), dropping duplicates.
fn add_destinations(
    ctx: &mut Ctx,
    path: &str,
    list: &mut Vec<OtlpDestination>,
    signal: Signal,
    raw: Option<&Vec<RawDestination>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (i, entry) in raw.into_iter().flatten().enumerate() {
        let at = format!("{path}.endpoints[{i}]");
        if entry.endpoint.0.is_empty() {
            return Err(ctx.err(
                child(&at, "endpoint"),
                "empty (expected e.g. http://collector:4318)",
            ));
        }
        let destination = destination_of(signal, entry);
        if signal_disabled(env, signal) {
            ctx.warn(
                &at,
                "not used: export of this signal is turned off by the environment",
            );
        } else if list
            .iter()
            .any(|d| d.endpoint == destination.endpoint && d.protocol == destination.protocol)
        {
            ctx.warn(&at, "not used: the same endpoint is already a destination");
        } else {
            list.push(destination);
        }
    }
    Ok(())
}

/// What the export settings are read from besides the environment.
pub(super) struct ExportInputs {
    pub(super) traces: Option<RawExport>,
    pub(super) metrics: Option<RawExport>,
    /// The top-level `service_name`.
    pub(super) service_name: Option<Text>,
    /// The top-level `service_namespace` (OBI's, `OTEL_EBPF_SERVICE_NAMESPACE`).
    pub(super) service_namespace: Option<Text>,
}

/// The OTLP export settings: the file's values offered to the SDK's
/// variables, then the file's headers and extra destinations added.
pub(super) fn export_settings(
    ctx: &mut Ctx,
    inputs: ExportInputs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExportSettings, ConfigError> {
    let traces = inputs.traces.unwrap_or_default();
    let metrics = inputs.metrics.unwrap_or_default();
    let mut overlay = Overlay::default();
    let traces_from_file = offer_endpoint(&mut overlay, env, Signal::Traces, &traces);
    let metrics_from_file = offer_endpoint(&mut overlay, env, Signal::Metrics, &metrics);
    if let Some(sampler) = &traces.sampler {
        offer_sampler(ctx, &mut overlay, env, sampler)?;
    }
    offer_batching(ctx, &mut overlay, env, &traces)?;
    if let Some(GoDuration(interval)) = metrics.interval.filter(|i| !i.0.is_zero()) {
        overlay.offer(
            env,
            "OTEL_METRIC_EXPORT_INTERVAL",
            interval.as_millis().to_string(),
            &[],
        );
    }
    if let Some(filter) = non_empty(metrics.exemplar_filter.clone()) {
        let filter = ExemplarFilter::from_var("exemplar_filter", &filter)
            .map_err(|e| ctx.err("otel_metrics_export.exemplar_filter", e))?;
        overlay.offer(
            env,
            "OTEL_METRICS_EXEMPLAR_FILTER",
            filter.name().to_owned(),
            &[],
        );
    }
    if let Some(name) = non_empty(inputs.service_name) {
        let named_by_env =
            env_value(env, "OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
        if !named_by_env {
            overlay.offer(env, "OTEL_SERVICE_NAME", name, &[]);
        }
    }
    if let Some(namespace) = non_empty(inputs.service_namespace) {
        overlay.offer(env, "OTEL_EBPF_SERVICE_NAMESPACE", namespace, &[]);
    }
    let mut export = ExportSettings::from_env(&|var: &str| overlay.lookup(env, var))
        .map_err(ConfigError::Env)?;
    let (t, m) = (traces.headers.as_ref(), metrics.headers.as_ref());
    merge_headers(
        ctx,
        "otel_traces_export",
        export.traces.first_mut(),
        traces_from_file,
        t,
    );
    merge_headers(
        ctx,
        "otel_metrics_export",
        export.metrics.first_mut(),
        metrics_from_file,
        m,
    );
    add_destinations(
        ctx,
        "otel_traces_export",
        &mut export.traces,
        Signal::Traces,
        traces.endpoints.as_ref(),
        env,
    )?;
    add_destinations(
        ctx,
        "otel_metrics_export",
        &mut export.metrics,
        Signal::Metrics,
        metrics.endpoints.as_ref(),
        env,
    )?;
    if let Some(text) = env_value(env, "OTEL_EBPF_METRICS_INTERVAL") {
        let interval = parse_go_duration(&text)
            .map_err(|e| ConfigError::Env(format!("OTEL_EBPF_METRICS_INTERVAL: {e}")))?;
        if !interval.is_zero() {
            export.metric_export_interval = interval.max(Duration::from_millis(100));
        }
    }
    Ok(export)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::PrinterFormat;

    #[test]
    fn otlp_exemplars_are_trace_based_unless_the_variable_or_the_file_says() {
        let filter = |yaml: &str, env: &[(&str, &str)]| ok(yaml, env).export.exemplar_filter;
        assert_eq!(filter("open_port: 80\n", &[]), ExemplarFilter::TraceBased);
        let off = [("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")];
        assert_eq!(filter("open_port: 80\n", &off), ExemplarFilter::AlwaysOff);
        let file = "open_port: 80\notel_metrics_export:\n  exemplar_filter: always_on\n";
        assert_eq!(filter(file, &[]), ExemplarFilter::AlwaysOn);
        // The variable wins over the file, as the SDK's variables do.
        assert_eq!(filter(file, &off), ExemplarFilter::AlwaysOff);
        let message = err(
            "open_port: 80\n",
            &[("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes")],
        );
        assert!(
            message.contains("OTEL_METRICS_EXEMPLAR_FILTER"),
            "{message}"
        );
        let message = err(
            "open_port: 80\notel_metrics_export:\n  exemplar_filter: sometimes\n",
            &[],
        );
        assert!(
            message.contains("otel_metrics_export.exemplar_filter"),
            "{message}"
        );
        // Not a trace export key.
        let message = err(
            "open_port: 80\notel_traces_export:\n  exemplar_filter: always_on\n",
            &[],
        );
        assert!(
            message.contains("otel_traces_export.exemplar_filter"),
            "{message}"
        );
    }

    #[test]
    fn fan_out_to_several_destinations() {
        let yaml = "open_port: 8080
otel_traces_export:
  endpoint: http://primary:4318/
  endpoints:
    - endpoint: https://backup.example/otlp
      headers: {x-api-key: secret}
      compression: gzip
      timeout: 2500ms
    - endpoint: http://tempo:4317
      protocol: grpc
    - endpoint: http://primary:4318/v1/traces
otel_metrics_export:
  endpoints:
    - endpoint: http://mimir:4318
";
        let config = ok(yaml, &[]);
        let traces: Vec<&str> = config
            .export
            .traces
            .iter()
            .map(|d| d.endpoint.as_str())
            .collect();
        assert_eq!(
            traces,
            [
                "http://primary:4318/v1/traces",
                "https://backup.example/otlp/v1/traces",
                "http://tempo:4317"
            ]
        );
        let backup = &config.export.traces[1];
        assert!(backup.gzip && backup.timeout == Duration::from_millis(2500));
        assert_eq!(
            backup.headers,
            vec![("x-api-key".to_string(), "secret".to_string())]
        );
        assert_eq!(config.export.traces[2].protocol, Protocol::Grpc);
        assert!(config
            .warnings
            .iter()
            .any(|w| w.contains("endpoints[2]: not used: the same endpoint")));
        assert_eq!(config.export.metrics.len(), 1);
        assert_eq!(
            config.export.metrics[0].endpoint,
            "http://mimir:4318/v1/metrics"
        );
        assert_eq!(config.export.metrics[0].signal, Signal::Metrics);

        // An environment endpoint replaces the primary; the extra ones stay.
        let config = ok(
            yaml,
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://env:4318/v1/traces",
            )],
        );
        let traces: Vec<&str> = config
            .export
            .traces
            .iter()
            .map(|d| d.endpoint.as_str())
            .collect();
        assert_eq!(traces[0], "http://env:4318/v1/traces");
        assert_eq!(traces.len(), 4);
        // Turning a signal off in the environment turns all its destinations off.
        let config = ok(yaml, &[("OTEL_TRACES_EXPORTER", "none")]);
        assert!(config.export.traces.is_empty());
        assert_eq!(config.export.metrics.len(), 1);
        let config = ok(yaml, &[("OTEL_SDK_DISABLED", "true")]);
        assert!(config.export.traces.is_empty() && config.export.metrics.is_empty());
        assert_eq!(config.trace_printer, PrinterFormat::Text);
    }
}
