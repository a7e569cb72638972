//! The worker's configuration: the loader's flags ([`flags`]), the YAML file
//! (`--config PATH` / `OTEL_EBPF_CONFIG_PATH`, with OBI's key names) and the
//! environment, merged into one [`EffectiveConfig`] inside [`WorkerConfig`].
//! One module per section reads its schema and checks it; the types the rest
//! of the worker runs with (selectors, export, Prometheus, printer and route
//! settings) are defined here, below every other module of the worker.
//!
//! # Schema (OBI's keys unless marked *zerotrace*)
//!
//! ```yaml
//! discovery:
//!   instrument:                    # a process is instrumented if it matches ANY entry…
//!     - open_ports: 8080           # …and within an entry ALL given criteria match
//!       exe_path: /usr/bin/*       # glob on the executable's full path ({a,b}, [!/], ?, *)
//!       containers_only: true      # only processes with a container id (/proc/PID/cgroup)
//!       target_pids: [1234]
//!       name: checkout             # service.name of the matched processes
//!       namespace: shop            # service.namespace
//!   exclude_instrument: [...]      # same entries; a match here is never instrumented
//!   default_exclude_instrument: [] # built-in: other agents and collectors (`[]` turns it off)
//!   services: [...]                # OBI's deprecated regex form (exe_path is a regex), used
//!   exclude_services: [...]        # only when `instrument` is absent; exe_path_regexp too
//! routes: {patterns, ignored_patterns, ignore_mode, unmatched, wildcard_char, ...}
//! trace_printer: text              # text | json | disabled (json_indent prints json)
//! otel_traces_export:
//!   endpoint: http://collector:4318   # HTTP: /v1/traces is appended unless present
//!   protocol: http/protobuf           # grpc | http/protobuf | http/json
//!   headers: {Authorization: Bearer x}  # zerotrace: headers for `endpoint`
//!   sampler: {name: parentbased_traceidratio, arg: "0.1"}
//!   batch_max_size: 512               # → OTEL_BSP_MAX_EXPORT_BATCH_SIZE
//!   batch_timeout: 5s                 # → OTEL_BSP_SCHEDULE_DELAY
//!   queue_size: 2048                  # → OTEL_BSP_MAX_QUEUE_SIZE
//!   endpoints:                        # zerotrace: more destinations (fan-out)
//!     - {endpoint: https://b.example, protocol: grpc, headers: {...}, timeout: 10s, compression: gzip}
//! otel_metrics_export:
//!   endpoint, protocol, headers, endpoints   # as above, /v1/metrics
//!   interval: 60s
//! prometheus_export: {port: 9400, path: /metrics}   # port ≥ 1024 (0 = off)
//! metrics:
//!   features: [application, application_service_graph, application_process]  # OTEL_EBPF_METRICS_FEATURES
//!   buckets: {duration_histogram: [0.01, 0.1, 1]}   # also per exporter (config/buckets.rs)
//!   histogram_aggregation: base2_exponential_bucket_histogram   # OTLP only
//! open_port: 8080            # top level, like OTEL_EBPF_OPEN_PORT
//! executable_path: nginx     # top level, deprecated regex, like OTEL_EBPF_EXECUTABLE_PATH
//! service_name: checkout     # top level, like OTEL_SERVICE_NAME
//! ```
//!
//! # Precedence: the environment overrides the file
//!
//! Every file value is a default for its environment variable: a non-empty
//! variable wins. `OTEL_EBPF_OPEN_PORT` and `OTEL_EBPF_AUTO_TARGET_EXE`
//! (or `OTEL_GO_AUTO_TARGET_EXE`; else the regex `OTEL_EBPF_EXECUTABLE_PATH`)
//! form one more selector, appended after the file's (lowest preference, as
//! in OBI), both criteria together. An OTLP endpoint variable for a signal
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or the signal's own) replaces the file's
//! `endpoint` (OBI lets the file win over the general variable: zerotrace
//! keeps one rule); the file's `headers` then stay unsent, so credentials
//! never follow an endpoint to another host. `endpoints` entries are always
//! added; each carries only its own headers (default protocol
//! `http/protobuf`, timeout 10 s, no compression). `OTEL_SDK_DISABLED` and
//! `OTEL_{TRACES,METRICS}_EXPORTER=none` turn all of a signal's destinations
//! off. `OTEL_EBPF_METRICS_INTERVAL` (a duration) wins over
//! `OTEL_METRIC_EXPORT_INTERVAL`, which wins over `interval`.
//!
//! # OBI keys zerotrace does not implement
//!
//! A key is refused (an error naming it) when ignoring it could instrument
//! more processes, export more data or weaken TLS — a per-entry `metrics`
//! (an entry's `exports`, `sampler` and `routes` are read: `discovery.rs`),
//! `insecure_skip_verify: true`, `features` without application metrics.
//! Keys whose absence only means less data or different internal tuning are
//! accepted with a warning in [`EffectiveConfig::warnings`] (`ebpf`,
//! `network`, batching back-off, ...). Selector criteria zerotrace
//! cannot evaluate (`k8s_*`, `cmd_args`, `container_name`) make
//! an `instrument` entry match nothing (with a warning) and are refused in
//! exclusion lists, where skipping them would instrument more. Any other key
//! is an error with a "did you mean" hint.
//!
//! # Crates
//!
//! YAML: `serde-saphyr` (maintained, `#![forbid(unsafe_code)]`, panic-free
//! parsing with resource budgets, duplicate keys rejected). `serde_yaml` is
//! deprecated, `serde_yml` carries RUSTSEC-2025-0068, `serde_norway` wraps a
//! transliterated C parser. Key paths come from `serde_path_to_error`; globs
//! are translated to `regex` (linear-time matching, also used for OBI's
//! regex forms).

mod buckets;
pub mod databases;
mod discovery;
mod effective;
mod environment;
mod error;
mod exemplar_filter;
mod export;
mod features;
mod file;
pub mod filters;
pub mod flags;
pub mod glob;
mod graph_self_references;
pub mod metric_select;
mod obi_keys;
pub mod otel_sdk;
mod print;
pub mod printer;
pub mod prometheus;
pub mod routes;
pub mod selectors;
mod series_ttl;
mod span_resource;
#[cfg(test)]
mod test_support;
pub mod trace_links;
mod trace_select;
mod values;

pub use buckets::{BucketSwitch, HistogramAggregation, HistogramBuckets};
pub use databases::{DatabaseSettings, DbInstrumentation, DbSelection};
pub use effective::{config_path, load, load_str, EffectiveConfig};
pub use error::ConfigError;
pub use features::{ExporterSwitch, SpanMetricForms, SpanMetricSwitch};
pub use filters::AttributeFilter;
pub use flags::{SeccompMode, WorkerConfig};
pub use glob::{ExePattern, Glob};
pub use metric_select::MetricSelection;
pub use otel_sdk::{
    BatchSettings, ExportSettings, OtlpDestination, Protocol, SamplerSetting, Signal, Temporality,
};
pub use printer::PrinterFormat;
pub use prometheus::{ExemplarFilter, PrometheusSettings};
pub use routes::RouteSettings;
pub use selectors::{container_id_from_cgroup, decide, ProcessFacts, Selector, ServiceExport};
pub use series_ttl::{ttl_cutoff_unix_ns, SeriesTtl, DEFAULT_SERIES_TTL};
pub use span_resource::SpanResourceAttributes;
pub use trace_links::LinkSettings;
