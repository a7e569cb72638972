//! The OBI key table: every key OBI's configuration defines that zerotrace
//! does not read, per section, and what zerotrace does with it — accept it
//! with a warning (ignoring it means less data or other tuning), refuse it
//! (ignoring it could instrument or export more than asked, or weaken TLS), or,
//! for selector criteria, make the entry match nothing. Any other key is
//! refused with a "did you mean" hint.

use super::error::{child, ConfigError, Ctx};
use super::values::{Extra, StringList};

/// How zerotrace treats a key OBI defines but zerotrace does not implement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Obi {
    /// Accepted with a warning: ignoring it means less data or other tuning.
    Ignored(&'static str),
    /// Refused: ignoring it could instrument or export more than asked, or weaken TLS.
    Unsupported(&'static str),
    /// A selector criterion zerotrace cannot evaluate (see `vet_selector`).
    Unevaluable(&'static str),
}

pub(super) struct Section {
    /// Keys read into typed fields (for hints).
    pub(super) typed: &'static [&'static str],
    pub(super) obi: &'static [(&'static str, Obi)],
}

impl Section {
    pub(super) fn lookup(&self, key: &str) -> Option<Obi> {
        self.obi.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

const INTERNAL: Obi = Obi::Ignored("zerotrace's internal queues and caches are fixed");
const NO_K8S: Obi = Obi::Unevaluable("zerotrace has no Kubernetes metadata");
const SPAN_METRICS_FIXED: Obi = Obi::Ignored(
    "zerotrace's span metrics keep at most 10,000 series per process, with their fixed attributes",
);
const NO_TLS_SKIP: &str = "TLS certificates are always verified; point SSL_CERT_FILE at your \
                           collector's CA bundle instead";
const METRICS_ELSEWHERE: Obi =
    Obi::Unsupported("zerotrace reads OTLP metric export settings from otel_metrics_export");

pub(super) const TOP: Section = Section {
    typed: &[
        "discovery",
        "routes",
        "trace_printer",
        "otel_traces_export",
        "otel_metrics_export",
        "prometheus_export",
        "filter",
        "open_port",
        "executable_path",
        "service_name",
        "service_namespace",
        "log_level",
        "log_format",
    ],
    obi: &[
        (
            "ebpf",
            Obi::Ignored(
                "eBPF tuning, context propagation and payload extraction are built into zerotrace",
            ),
        ),
        (
            "log_config",
            Obi::Ignored("use zerotrace run --print-config"),
        ),
        ("channel_buffer_len", INTERNAL),
        ("channel_send_timeout", INTERNAL),
        ("channel_send_timeout_panic", INTERNAL),
        (
            "enforce_sys_caps",
            Obi::Ignored("zerotrace always checks its privileges (see zerotrace check)"),
        ),
        (
            "profile_port",
            Obi::Ignored("zerotrace has no profiling endpoint"),
        ),
        (
            "shutdown_timeout",
            Obi::Ignored("zerotrace flushes for at most 5 s on SIGTERM"),
        ),
        (
            "network",
            Obi::Ignored("zerotrace produces no network flow metrics"),
        ),
        (
            "stats",
            Obi::Ignored("zerotrace produces no network statistics"),
        ),
        (
            "name_resolver",
            Obi::Ignored("zerotrace does not resolve peer names"),
        ),
        (
            "internal_metrics",
            Obi::Ignored(
                "zerotrace's own metrics (zerotrace_*) are on the prometheus_export endpoint",
            ),
        ),
        (
            "javaagent",
            Obi::Ignored("zerotrace does not inject the Java agent"),
        ),
        (
            "nodejs",
            Obi::Ignored("zerotrace does not inject into Node.js"),
        ),
        (
            "target_pids",
            Obi::Unsupported("select processes by PID with discovery.instrument[].target_pids"),
        ),
    ],
};

pub(super) const ATTRIBUTES: Section = Section {
    typed: &["select", "host_id"],
    obi: &[
        (
            "kubernetes",
            Obi::Ignored("zerotrace has no Kubernetes metadata"),
        ),
        (
            "extra_group_attributes",
            Obi::Ignored("zerotrace has no Kubernetes metadata"),
        ),
        (
            "instance_id",
            Obi::Ignored("service.instance.id is always host-pid"),
        ),
        (
            "metadata_retry",
            Obi::Ignored("zerotrace does not query cloud metadata"),
        ),
        (
            "rename_unresolved_hosts",
            Obi::Ignored("zerotrace does not resolve peer names"),
        ),
        (
            "rename_unresolved_hosts_incoming",
            Obi::Ignored("zerotrace does not resolve peer names"),
        ),
        (
            "rename_unresolved_hosts_outgoing",
            Obi::Ignored("zerotrace does not resolve peer names"),
        ),
        ("metric_span_names_limit", SPAN_METRICS_FIXED),
    ],
};

pub(super) const HOST_ID: Section = Section {
    typed: &["override"],
    obi: &[(
        "fetch_timeout",
        Obi::Ignored("zerotrace does not query cloud metadata: host.id is the machine id"),
    )],
};

pub(super) const DISCOVERY: Section = Section {
    typed: &[
        "instrument",
        "exclude_instrument",
        "default_exclude_instrument",
        "services",
        "exclude_services",
        "default_exclude_services",
        "exclude_otel_instrumented_services",
    ],
    obi: &[
        ("poll_interval", Obi::Ignored("discovery follows kernel events, no polling")),
        ("skip_go_specific_tracers", Obi::Ignored("zerotrace has no Go-specific tracers")),
        ("bpf_pid_filter_off", Obi::Ignored("the kernel-side pid filter is always on")),
        ("exclude_otel_instrumented_services_span_metrics", SPAN_METRICS_FIXED),
        ("default_otlp_grpc_port", Obi::Ignored("zerotrace does not detect OpenTelemetry SDKs")),
        ("min_process_age", Obi::Ignored("processes are instrumented as soon as they listen")),
        ("route_harvester_timeout", Obi::Ignored("zerotrace does not harvest routes from binaries")),
        ("disabled_route_harvesters", Obi::Ignored("zerotrace does not harvest routes from binaries")),
        ("route_harvester_advanced", Obi::Ignored("zerotrace does not harvest routes from binaries")),
        ("excluded_linux_system_paths", Obi::Unsupported("exe_path matches every path in zerotrace; exclude system services with discovery.exclude_instrument")),
    ],
};

pub(super) const SELECTOR: Section = Section {
    typed: &[
        "open_ports",
        "exe_path",
        "exe_path_regexp",
        "containers_only",
        "target_pids",
        "languages",
        "name",
        "namespace",
        "exports",
        "sampler",
        "routes",
    ],
    obi: &[
        ("k8s_namespace", NO_K8S),
        ("k8s_pod_name", NO_K8S),
        ("k8s_deployment_name", NO_K8S),
        ("k8s_replicaset_name", NO_K8S),
        ("k8s_statefulset_name", NO_K8S),
        ("k8s_daemonset_name", NO_K8S),
        ("k8s_owner_name", NO_K8S),
        ("k8s_job_name", NO_K8S),
        ("k8s_cronjob_name", NO_K8S),
        ("k8s_container_name", NO_K8S),
        ("k8s_pod_labels", NO_K8S),
        ("k8s_pod_annotations", NO_K8S),
        (
            "container_name",
            Obi::Unevaluable("zerotrace knows container ids, not names"),
        ),
        (
            "cmd_args",
            Obi::Unevaluable("zerotrace does not match command lines"),
        ),
        (
            "metrics",
            Obi::Unsupported("per-service metric features are not implemented"),
        ),
    ],
};

const BACKOFF: Obi = Obi::Ignored("retries back off from 0.5 s to 5 s, for at most 60 s per batch");
const SDK_LOG: Obi = Obi::Ignored("zerotrace logs export failures to stderr");

pub(super) const TRACES: Section = Section {
    typed: &[
        "endpoint",
        "protocol",
        "headers",
        "endpoints",
        "sampler",
        "batch_max_size",
        "batch_timeout",
        "queue_size",
        "insecure_skip_verify",
        "instrumentations",
    ],
    obi: &[
        ("backoff_initial_interval", BACKOFF),
        ("backoff_max_elapsed_time", BACKOFF),
        ("backoff_max_interval", BACKOFF),
        ("reporters_cache_len", INTERNAL),
        ("otel_sdk_log_level", SDK_LOG),
    ],
};

pub(super) const METRICS_EXPORT: Section = Section {
    typed: &[
        "endpoint",
        "protocol",
        "headers",
        "endpoints",
        "interval",
        "insecure_skip_verify",
        "features",
        "instrumentations",
        "buckets",
        "histogram_aggregation",
        "extra_span_resource_attributes",
        "allow_service_graph_self_references",
        "ttl",
        "exemplar_filter",
    ],
    obi: &[
        ("reporters_cache_len", INTERNAL),
        ("otel_sdk_log_level", SDK_LOG),
    ],
};

pub(super) const METRICS_TOP: Section = Section {
    typed: &[
        "features",
        "instrumentations",
        "buckets",
        "histogram_aggregation",
        "extra_span_resource_attributes",
        "allow_service_graph_self_references",
        "ttl",
    ],
    obi: &[
        ("endpoint", METRICS_ELSEWHERE),
        ("protocol", METRICS_ELSEWHERE),
        ("interval", METRICS_ELSEWHERE),
        ("insecure_skip_verify", Obi::Unsupported(NO_TLS_SKIP)),
        ("reporters_cache_len", INTERNAL),
        ("otel_sdk_log_level", SDK_LOG),
    ],
};

pub(super) const PROMETHEUS: Section = Section {
    typed: &[
        "port",
        "path",
        "features",
        "instrumentations",
        "buckets",
        "extra_span_resource_attributes",
        "allow_service_graph_self_references",
        "exemplar_filter",
        "ttl",
    ],
    obi: &[
        (
            "extra_resource_attributes",
            Obi::Ignored("target_info already carries every resource attribute"),
        ),
        (
            "disable_build_info",
            Obi::Ignored("zerotrace exposes no build info metric"),
        ),
        ("service_cache_size", INTERNAL),
    ],
};

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

pub(super) fn unknown_key_message(key: &str, section: &Section) -> String {
    let candidates = section
        .typed
        .iter()
        .copied()
        .chain(section.obi.iter().map(|(k, _)| *k));
    let closest = candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= 2 && *d < key.len())
        .min();
    match closest {
        Some((_, c)) => format!("unknown key (did you mean {c}?)"),
        None if section.typed.is_empty() => "unknown key".into(),
        None => format!(
            "unknown key (expected one of: {})",
            section.typed.join(", ")
        ),
    }
}

/// Warns about or refuses the untyped keys of a section.
pub(super) fn vet(
    ctx: &mut Ctx,
    section: &Section,
    path: &str,
    extra: &Extra,
) -> Result<(), ConfigError> {
    for key in extra.keys() {
        let at = child(path, key);
        match section.lookup(key) {
            Some(Obi::Ignored(why)) => ctx.warn(&at, format!("ignored: {why}")),
            Some(Obi::Unsupported(why) | Obi::Unevaluable(why)) => {
                return Err(ctx.err(at, format!("not supported by zerotrace: {why}")))
            }
            None => return Err(ctx.err(at, unknown_key_message(key, section))),
        }
    }
    Ok(())
}

/// Checks a `features` list: it must include the application metrics zerotrace
/// always produces, and not both span metric forms; the other groups
/// zerotrace produces are known too (`config/features.rs`).
fn vet_features(ctx: &mut Ctx, path: &str, list: &StringList) -> Result<(), ConfigError> {
    let hint = super::features::FEATURES_HINT;
    let listed = |names: &[&str]| {
        list.0
            .iter()
            .any(|v| names.contains(&v.to_ascii_lowercase().as_str()))
    };
    if !listed(&super::features::APPLICATION) {
        return Err(ctx.err(
            path,
            format!("{:?} selects nothing zerotrace produces ({hint})", list.0),
        ));
    }
    if super::features::names_both_span_forms(&list.0) {
        return Err(ctx.err(
            path,
            format!("{:?} {}", list.0, super::features::BOTH_SPAN_FORMS),
        ));
    }
    if super::features::tempo_form_overridden(&list.0) {
        ctx.warn(
            path,
            "application_span and application_span_otel cannot be used together: all selects \
             application_span_otel",
        );
    }
    let other: Vec<&String> = list
        .0
        .iter()
        .filter(|v| !super::features::KNOWN.contains(&v.to_ascii_lowercase().as_str()))
        .collect();
    if !other.is_empty() {
        ctx.warn(path, format!("{other:?} ignored ({hint})"));
    }
    Ok(())
}

/// The instrumentations zerotrace reads from a list (see `databases.rs`).
pub(super) const INSTRUMENTATIONS: &[&str] = &[
    "http",
    "grpc",
    "sql",
    "redis",
    "memcached",
    "mongo",
    "kafka",
    "mqtt",
    "amqp",
    "nats",
    "*",
];
/// What a list must name: HTTP (and gRPC) spans are not filtered by the lists.
pub(super) const INSTRUMENTATIONS_HINT: &str =
    "zerotrace always exports HTTP and gRPC and selects databases and Kafka with sql, redis, \
     memcached, mongo, kafka, mqtt, amqp and nats: \
     expected a list with http or *";

/// Checks an `instrumentations` list: it must include HTTP.
fn vet_instrumentations(ctx: &mut Ctx, path: &str, list: &StringList) -> Result<(), ConfigError> {
    let (known, other): (Vec<&String>, Vec<&String>) = list
        .0
        .iter()
        .partition(|v| INSTRUMENTATIONS.contains(&v.to_ascii_lowercase().as_str()));
    if !known
        .iter()
        .any(|v| matches!(v.to_ascii_lowercase().as_str(), "http" | "*"))
    {
        return Err(ctx.err(
            path,
            format!(
                "{:?} selects nothing zerotrace produces ({INSTRUMENTATIONS_HINT})",
                list.0
            ),
        ));
    }
    if !other.is_empty() {
        ctx.warn(path, format!("{other:?} ignored ({INSTRUMENTATIONS_HINT})"));
    }
    Ok(())
}

pub(super) fn vet_tls(ctx: &Ctx, path: &str, skip_verify: Option<bool>) -> Result<(), ConfigError> {
    match skip_verify {
        Some(true) => Err(ctx.err(
            child(path, "insecure_skip_verify"),
            format!("not supported by zerotrace: {NO_TLS_SKIP}"),
        )),
        _ => Ok(()),
    }
}

pub(super) fn vet_feature_lists(
    ctx: &mut Ctx,
    path: &str,
    features: Option<&StringList>,
    instrumentations: Option<&StringList>,
) -> Result<(), ConfigError> {
    if let Some(list) = features {
        vet_features(ctx, &child(path, "features"), list)?;
    }
    if let Some(list) = instrumentations {
        vet_instrumentations(ctx, &child(path, "instrumentations"), list)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::PrinterFormat;

    #[test]
    fn unknown_keys_are_refused_with_hints() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "discovery:\n  instrument:\n    - open_port: 80\n",
                "discovery.instrument[0].open_port",
                "did you mean open_ports?",
            ),
            (
                "discovery:\n  instrumnet: []\n",
                "discovery.instrumnet",
                "did you mean instrument?",
            ),
            (
                "otel_traces_export:\n  endpiont: http://a\n",
                "otel_traces_export.endpiont",
                "did you mean endpoint?",
            ),
            (
                "otel_metrics_export:\n  batch_max_size: 5\n",
                "otel_metrics_export.batch_max_size",
                "unknown key",
            ),
            (
                "otel_traces_export:\n  interval: 5s\n",
                "otel_traces_export.interval",
                "unknown key",
            ),
            (
                "prometheus_export:\n  portt: 9400\n",
                "prometheus_export.portt",
                "did you mean port?",
            ),
            (
                "frobnicate: true\n",
                "frobnicate",
                "expected one of: discovery",
            ),
            ("routes:\n  pattern: [/a]\n", "routes", "pattern"),
        ];
        for (yaml, path, hint) in cases {
            let message = err(&format!("{yaml}open_port: 8080\n"), &[]);
            assert!(
                message.contains(path) && message.contains(hint),
                "{message}"
            );
        }
    }

    #[test]
    fn known_obi_keys_warn_or_refuse() {
        let config = ok(
            "log_level: DEBUG
ebpf:
  context_propagation: all
  wakeup_len: 100
network:
  enable: true
attributes:
  kubernetes:
    enable: true
discovery:
  poll_interval: 5s
  exclude_otel_instrumented_services: true
  instrument:
    - open_ports: 8080
    - k8s_namespace: frontend
      open_ports: 9090
otel_traces_export:
  endpoint: http://a:4318
  backoff_max_interval: 5s
  instrumentations: [http, grpc, gpu]
otel_metrics_export:
  endpoint: http://a:4318
  features: [application, network]
  buckets:
    duration_histogram: [0, 1]
trace_printer: json_indent
",
            &[],
        );
        let warnings = config.warnings.join("\n");
        assert_eq!(
            config.log_level,
            Some(zerotrace_shared::logging::LogLevel::Debug)
        );
        for needle in [
            "ebpf: ignored",
            "network: ignored",
            "attributes.kubernetes: ignored",
            "discovery.poll_interval: ignored",
            "discovery.exclude_otel_instrumented_services: ignored",
            "discovery.instrument[1]: never matches (k8s_namespace",
            "otel_traces_export.backoff_max_interval: ignored",
            "otel_traces_export.instrumentations: [\"gpu\"] ignored",
            "otel_metrics_export.features: [\"network\"] ignored",
            "trace_printer: json_indent",
        ] {
            assert!(warnings.contains(needle), "{needle:?} not in\n{warnings}");
        }
        assert_eq!(
            config.instrument.len(),
            1,
            "the Kubernetes entry is skipped"
        );
        // Read now, not ignored.
        assert!(!warnings.contains("buckets"), "{warnings}");
        assert_eq!(
            config.buckets.otlp.duration.as_deref(),
            Some([0.0, 1.0].as_slice())
        );
        assert_eq!(config.trace_printer, PrinterFormat::Json);

        let refused: &[(&str, &str)] = &[
            ("attributes:\n  select:\n    traces_spanmetrics_latency: {exclude: [span.name]}\n", "attributes.select.traces_spanmetrics_latency"),
            ("discovery:\n  exclude_instrument:\n    - k8s_namespace: dev\n", "discovery.exclude_instrument[0].k8s_namespace"),
            ("discovery:\n  instrument:\n    - open_ports: 80\n      metrics: {features: [application]}\n", "discovery.instrument[0].metrics"),
            ("discovery:\n  excluded_linux_system_paths: [/sbin/]\n", "discovery.excluded_linux_system_paths"),
            ("otel_traces_export:\n  insecure_skip_verify: true\n", "otel_traces_export.insecure_skip_verify"),
            ("otel_metrics_export:\n  features: [network]\n", "otel_metrics_export.features"),
            ("prometheus_export:\n  instrumentations: [sql]\n", "prometheus_export.instrumentations"),
            ("metrics:\n  endpoint: http://a:4318\n", "metrics.endpoint"),
            ("target_pids: [1]\n", "target_pids"),
        ];
        for (yaml, path) in refused {
            let message = err(&format!("{yaml}open_port: 8080\n"), &[]);
            assert!(message.contains(path), "{path} not in {message}");
            assert!(
                message.contains("not supported by zerotrace")
                    || message.contains("selects nothing"),
                "{message}"
            );
        }
    }
}
