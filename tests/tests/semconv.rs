//! Every name the agent exports is a current OpenTelemetry semantic
//! convention: HTTP (server and client) and gRPC (both sides) spans and
//! metrics go to a real OTLP receiver, and each span, data point and
//! resource attribute name and each metric name is looked up in the PyPI
//! package opentelemetry-semantic-conventions (installed by the test when
//! missing): it must be defined, and not deprecated. The agent's own
//! `zerotrace.*` metrics are ours, not conventions, and are left out.
//! Database spans and `db.client.operation.duration` are checked from the
//! worker's own conventions (their end-to-end tests run real database servers).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric};
use opentelemetry_proto::tonic::trace::v1::span;
use zerotrace_integration_tests::otlp_receiver::*;
use zerotrace_integration_tests::semconv::{SemanticConventions, Status};
use zerotrace_integration_tests::*;

/// The package version the names are checked against.
const VERSION: &str = "0.66b2";

/// Metrics whose names must arrive before the names are checked.
const EXPECTED_METRICS: [&str; 4] = [
    "http.server.request.duration",
    "http.client.request.duration",
    "rpc.server.call.duration",
    "rpc.client.call.duration",
];

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tonic(mode: &str, port: u16) -> Process {
    let child = Command::new(bin_dir().join("zerotrace-test-grpc"))
        .arg(mode)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the tonic {mode}: {e}"));
    Process(child)
}

/// The data points' attributes of a metric, whatever its type.
fn point_attributes(metric: &Metric) -> Vec<&[KeyValue]> {
    match &metric.data {
        Some(metric::Data::Histogram(h)) => {
            h.data_points.iter().map(|p| &p.attributes[..]).collect()
        }
        Some(metric::Data::Sum(s)) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Some(metric::Data::Gauge(g)) => g.data_points.iter().map(|p| &p.attributes[..]).collect(),
        _ => Vec::new(),
    }
}

/// `where: name` for every name that is not a current convention.
fn problems(
    conventions: &SemanticConventions,
    attributes: &BTreeSet<(String, &str)>,
    metrics: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, place) in attributes {
        match conventions.attribute(name) {
            Some(Status::Stable | Status::Incubating) => {}
            Some(Status::Deprecated) => {
                problems.push(format!("{place} attribute {name}: deprecated"))
            }
            None => problems.push(format!("{place} attribute {name}: not defined")),
        }
    }
    for name in metrics {
        match conventions.metric(name) {
            Some(Status::Stable | Status::Incubating) => {}
            Some(Status::Deprecated) => problems.push(format!("metric {name}: deprecated")),
            None => problems.push(format!("metric {name}: not defined")),
        }
    }
    problems
}

#[test]
fn every_exported_name_is_a_current_semantic_convention() {
    require_root();
    let conventions = SemanticConventions::load();
    assert_eq!(conventions.version, VERSION);

    let http = Server::python_app();
    let grpc_port = free_port();
    let _grpc_server = tonic("server", grpc_port);
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", grpc_port)).ok()
    });
    assert!(
        up.is_some(),
        "the gRPC server never listened on {grpc_port}"
    );
    let mut grpc_client = tonic("client", grpc_port);

    let receiver = OtlpReceiver::start_grpc();
    let dir = std::env::temp_dir().join(format!("zt-semconv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("semconv.yaml");
    std::fs::write(
        &config,
        format!(
            "discovery:\n  instrument:\n    - open_ports: {}\n    - open_ports: {grpc_port}\n    - target_pids: [{}]\n",
            http.port,
            grpc_client.0.id()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _agent =
        Agent::start_exporting_to(&["--config", &config.to_string_lossy()], &receiver, &[]);

    // HTTP: server spans of every outcome, and a client span (/proxy calls the server itself).
    curl(&[&http.url("/hello?x=1")]);
    curl(&[&http.url("/missing")]);
    curl(&[&http.url("/status/503")]);
    curl(&[&http.url("/proxy")]);
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        "0123456789",
        &http.url("/echo"),
    ]);
    curl(&["-X", "PROPFIND", &http.url("/hello")]);
    // gRPC: the tonic client's calls (OK and failures), on both sides.
    if let Some(stdin) = grpc_client.0.stdin.as_mut() {
        stdin
            .write_all(b"go\n")
            .unwrap_or_else(|e| panic!("gRPC client stdin: {e}"));
    }
    let exited = wait_for(Duration::from_secs(30), || {
        grpc_client.0.try_wait().ok().flatten()
    });
    assert!(exited.is_some(), "the gRPC client did not finish");

    let arrived = receiver.wait_for_metrics(Duration::from_secs(20), |metrics| {
        let names: BTreeSet<String> = metrics_of(metrics)
            .into_iter()
            .map(|(_, m)| m.name)
            .collect();
        EXPECTED_METRICS
            .iter()
            .all(|name| names.contains(*name))
            .then_some(())
    });
    assert!(
        arrived.is_some(),
        "not every expected metric arrived: {:#?}",
        metrics_of(&receiver.metrics())
            .into_iter()
            .map(|(_, m)| m.name)
            .collect::<BTreeSet<_>>()
    );
    let kinds = receiver.wait_for_traces(Duration::from_secs(20), |traces| {
        let spans = spans_of(traces);
        let has = |kind: span::SpanKind, rpc: bool| {
            spans.iter().any(|(_, s)| {
                s.kind == kind as i32 && s.attributes.iter().any(|a| a.key == "rpc.method") == rpc
            })
        };
        (has(span::SpanKind::Server, false)
            && has(span::SpanKind::Client, false)
            && has(span::SpanKind::Server, true)
            && has(span::SpanKind::Client, true))
        .then_some(())
    });
    assert!(
        kinds.is_some(),
        "HTTP and gRPC spans of both kinds did not arrive: {:#?}",
        receiver.spans()
    );

    // Every name the agent exported.
    let mut attributes: BTreeSet<(String, &str)> = BTreeSet::new();
    let mut metric_names: BTreeSet<String> = BTreeSet::new();
    for export in receiver.traces() {
        for resource_spans in &export.request.resource_spans {
            let resource = resource_spans.resource.clone().unwrap_or_default();
            attributes.extend(
                resource
                    .attributes
                    .iter()
                    .map(|a| (a.key.clone(), "resource")),
            );
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    attributes.extend(span.attributes.iter().map(|a| (a.key.clone(), "span")));
                }
            }
        }
    }
    for export in receiver.metrics() {
        for resource_metrics in &export.request.resource_metrics {
            let resource = resource_metrics.resource.clone().unwrap_or_default();
            attributes.extend(
                resource
                    .attributes
                    .iter()
                    .map(|a| (a.key.clone(), "resource")),
            );
            for scope in &resource_metrics.scope_metrics {
                // The agent's own metrics are its own namespace, not conventions.
                for metric in scope
                    .metrics
                    .iter()
                    .filter(|m| !m.name.starts_with("zerotrace."))
                {
                    metric_names.insert(metric.name.clone());
                    for point in point_attributes(metric) {
                        attributes.extend(point.iter().map(|a| (a.key.clone(), "data point")));
                    }
                }
            }
        }
    }
    // The check reaches what matters (the names this test was written for).
    for name in [
        "rpc.system.name",
        "rpc.method",
        "rpc.response.status_code",
        "url.full",
    ] {
        assert!(
            attributes.iter().any(|(key, _)| key == name),
            "{name} was not exported: {attributes:?}"
        );
    }
    let problems = problems(&conventions, &attributes, &metric_names);
    assert!(
        problems.is_empty(),
        "names that are not current semantic conventions ({VERSION}):\n{}\nexported: {attributes:?}\n{metric_names:?}",
        problems.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every name a database span (all its optional attributes set, failed) and
/// its duration series can carry, from the worker's `semconv::db`.
#[test]
fn database_names_are_current_semantic_conventions() {
    use zerotrace_worker::semconv::{self as worker_semconv, db as db_semconv};
    use zerotrace_worker::spans::{DbExchange, DbSystem, Protocol, Span, SpanKind, SpanOrigin};

    let conventions = SemanticConventions::load();
    assert_eq!(conventions.version, VERSION);
    let db = DbExchange {
        system: DbSystem::Postgresql,
        operation: "SELECT".into(),
        collection: Some("accounts".into()),
        namespace: Some("shop".into()),
        query_text: Some("SELECT * FROM accounts WHERE id = ?".into()),
        status_code: Some("42P01".into()),
        error_type: Some("42P01".into()),
        error_message: Some("relation does not exist".into()),
        rows: Some(1),
        rows_returned: true,
        request_bytes: 10,
        response_bytes: 20,
        name: String::new(),
    }
    .named();
    let span = Span::new(
        SpanOrigin {
            kind: SpanKind::Client,
            pid: 1,
            process_name: "python3".into(),
            local: "127.0.0.1:41234".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: "127.0.0.1:5432".parse().unwrap_or_else(|e| panic!("{e}")),
            tls: false,
        },
        (0, 1_000_000),
        false,
        Protocol::Db(db.clone()),
    );
    let error = worker_semconv::error(&span);
    assert!(error.is_some(), "the span failed");
    let mut attributes: BTreeSet<(String, &str)> =
        worker_semconv::span_attributes(&span, error.as_ref())
            .into_iter()
            .map(|a| (a.key, "span"))
            .collect();
    attributes.extend(
        db_semconv::DbMetricLabels::of(&span, &db)
            .attributes()
            .into_iter()
            .map(|a| (a.key, "data point")),
    );
    let metric_names: BTreeSet<String> = db_semconv::INSTRUMENTS
        .iter()
        .map(|i| i.name.to_owned())
        .collect();
    for name in [
        "db.system.name",
        "db.operation.name",
        "db.query.summary",
        "db.collection.name",
        "db.namespace",
        "db.query.text",
        "db.response.status_code",
        "db.response.returned_rows",
        "error.type",
        "server.address",
        "server.port",
        "network.peer.address",
        "network.peer.port",
    ] {
        assert!(
            attributes.iter().any(|(key, _)| key == name),
            "{name} is not among {attributes:?}"
        );
    }
    let problems = problems(&conventions, &attributes, &metric_names);
    assert!(
        problems.is_empty(),
        "database names that are not current semantic conventions ({VERSION}):\n{}",
        problems.join("\n")
    );
}

/// Every name a Kafka span (all its optional attributes set, failed) and
/// its duration series can carry, from the worker's `semconv::messaging`.
#[test]
fn messaging_names_are_current_semantic_conventions() {
    use zerotrace_worker::semconv::{self as worker_semconv, messaging as messaging_semconv};
    use zerotrace_worker::spans::{
        MessagingExchange, MessagingOperation, MessagingSystem, Protocol, Span, SpanKind,
        SpanOrigin,
    };

    let conventions = SemanticConventions::load();
    assert_eq!(conventions.version, VERSION);
    let mut names: BTreeSet<(String, &str)> = BTreeSet::new();
    let mut metric_names: BTreeSet<String> = BTreeSet::new();
    for (system, operation) in [
        (MessagingSystem::Kafka, MessagingOperation::Send),
        (MessagingSystem::Kafka, MessagingOperation::Poll),
        (MessagingSystem::Mqtt, MessagingOperation::Publish),
        (MessagingSystem::Mqtt, MessagingOperation::Process),
        (MessagingSystem::Rabbitmq, MessagingOperation::Publish),
        (MessagingSystem::Rabbitmq, MessagingOperation::Process),
        (MessagingSystem::Nats, MessagingOperation::Publish),
        (MessagingSystem::Nats, MessagingOperation::Process),
    ] {
        let messaging = MessagingExchange {
            destination: Some("orders".into()),
            partition: Some(0),
            client_id: Some("app".into()),
            message_count: Some(3),
            // Kafka's INVALID_RECORD, MQTT's NOT_AUTHORIZED, AMQP's NOT_FOUND,
            // NATS's NO_RESPONDERS.
            error_code: Some(match system {
                MessagingSystem::Kafka => 87,
                MessagingSystem::Mqtt => 0x87,
                MessagingSystem::Rabbitmq => 404,
                MessagingSystem::Nats => 503,
            }),
            routing_key: Some("orders".into()),
            ..MessagingExchange::new(system, operation)
        }
        .named();
        let span = Span::new(
            SpanOrigin {
                kind: SpanKind::Producer,
                pid: 1,
                process_name: "python3".into(),
                local: "127.0.0.1:41234".parse().unwrap_or_else(|e| panic!("{e}")),
                peer: "127.0.0.1:9092".parse().unwrap_or_else(|e| panic!("{e}")),
                tls: false,
            },
            (0, 1_000_000),
            false,
            Protocol::Messaging(messaging.clone()),
        );
        let error = worker_semconv::error(&span);
        assert!(error.is_some(), "the span failed");
        names.extend(
            worker_semconv::span_attributes(&span, error.as_ref())
                .into_iter()
                .map(|a| (a.key, "span")),
        );
        names.extend(
            messaging_semconv::MessagingMetricLabels::of(&span, &messaging)
                .attributes()
                .into_iter()
                .map(|a| (a.key, "data point")),
        );
        metric_names.extend(
            messaging_semconv::INSTRUMENTS
                .iter()
                .map(|i| i.name.to_owned()),
        );
    }
    for name in [
        "messaging.system",
        "messaging.operation.name",
        "messaging.operation.type",
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.client.id",
        "messaging.batch.message_count",
        "messaging.rabbitmq.destination.routing_key",
        "error.type",
        "server.address",
        "server.port",
    ] {
        assert!(
            names.iter().any(|(key, _)| key == name),
            "{name} is not among {names:?}"
        );
    }
    let problems = problems(&conventions, &names, &metric_names);
    assert!(
        problems.is_empty(),
        "messaging names that are not current semantic conventions ({VERSION}):\n{}",
        problems.join("\n")
    );
}
