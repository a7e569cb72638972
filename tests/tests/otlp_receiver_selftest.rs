//! The test OTLP receiver against real clients: the tonic client generated in
//! opentelemetry-proto for gRPC, raw HTTP/1.1 over a TcpStream for OTLP/HTTP.
//! No root needed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use zerotrace_integration_tests::otlp_receiver::*;

const TRACE_ID: [u8; 16] = [
    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
];
const SPAN_ID: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];
const PARENT_ID: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn sample_traces(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("selftest".into())),
                    kv("process.pid", Value::IntValue(4242)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "zerotrace".into(),
                    ..Default::default()
                }),
                spans: vec![Span {
                    trace_id: TRACE_ID.to_vec(),
                    span_id: SPAN_ID.to_vec(),
                    parent_span_id: PARENT_ID.to_vec(),
                    name: name.to_owned(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_250_000_000,
                    attributes: vec![
                        kv("http.request.method", Value::StringValue("GET".into())),
                        kv("http.response.status_code", Value::IntValue(200)),
                        kv("zerotrace.retried", Value::BoolValue(false)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn sample_metrics() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("selftest".into()))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "zerotrace.spans.dropped".into(),
                    unit: "{span}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            value: Some(number_data_point::Value::AsInt(7)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no tokio runtime: {e}"))
        .block_on(future)
}

fn assert_sample_span(resource: &BTreeMap<String, String>, span: &Span, name: &str) {
    assert_eq!(span.name, name);
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(span.span_id, SPAN_ID);
    assert_eq!(span.parent_span_id, PARENT_ID);
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.kind, span::SpanKind::Server as i32);
    assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(
        attr_str(&span.attributes, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr_int(&span.attributes, "http.response.status_code"),
        Some(200)
    );
    // Typed lookups do not convert; attr_display renders any type.
    assert_eq!(
        attr_str(&span.attributes, "http.response.status_code"),
        None
    );
    assert_eq!(attr_int(&span.attributes, "http.request.method"), None);
    assert_eq!(attr_int(&span.attributes, "absent"), None);
    assert_eq!(
        attr_display(&span.attributes, "zerotrace.retried").as_deref(),
        Some("false")
    );
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some("selftest")
    );
    assert_eq!(
        resource.get("process.pid").map(String::as_str),
        Some("4242")
    );
}

async fn grpc_trace_client(endpoint: String) -> TraceServiceClient<Channel> {
    TraceServiceClient::connect(endpoint)
        .await
        .unwrap_or_else(|e| panic!("gRPC connect: {e}"))
        .send_compressed(CompressionEncoding::Gzip)
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-selftest-token",
        token
            .parse()
            .unwrap_or_else(|e| panic!("metadata value: {e}")),
    );
    request
}

#[test]
fn grpc_receiver_decodes_gzip_exports_and_metadata() {
    let receiver = OtlpReceiver::start_grpc();
    assert_eq!(receiver.transport(), OtlpTransport::Grpc);
    assert_eq!(
        receiver.endpoint(),
        format!("http://127.0.0.1:{}", receiver.port())
    );
    block_on(async {
        let mut traces = grpc_trace_client(receiver.endpoint()).await;
        let response = traces
            .export(with_token(sample_traces("GET /grpc"), "secret-1"))
            .await
            .unwrap_or_else(|e| panic!("trace export: {e}"));
        assert_eq!(response.into_inner(), ExportTraceServiceResponse::default());

        // Uncompressed on another connection works too.
        let mut metrics = MetricsServiceClient::connect(receiver.endpoint())
            .await
            .unwrap_or_else(|e| panic!("gRPC connect: {e}"));
        metrics
            .export(with_token(sample_metrics(), "secret-2"))
            .await
            .unwrap_or_else(|e| panic!("metrics export: {e}"));
    });

    let traces = receiver.traces();
    assert_eq!(traces.len(), 1);
    let export = &traces[0];
    assert_eq!(export.transport, OtlpTransport::Grpc);
    assert!(!export.json);
    assert!(export.gzip(), "headers: {:?}", export.headers);
    assert_eq!(export.request, sample_traces("GET /grpc"));
    assert_eq!(export.span_count(), 1);
    assert_eq!(
        export.headers.get("x-selftest-token").map(String::as_str),
        Some("secret-1")
    );
    assert!(
        export
            .headers
            .get("content-type")
            .is_some_and(|v| v.starts_with("application/grpc")),
        "headers: {:?}",
        export.headers
    );
    assert!(export.headers.contains_key("user-agent"));
    let spans = spans_of(&traces);
    assert_eq!(spans.len(), 1);
    assert_sample_span(&spans[0].0, &spans[0].1, "GET /grpc");
    assert_eq!(receiver.spans(), spans);

    let metrics = receiver.metrics();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].transport, OtlpTransport::Grpc);
    assert!(!metrics[0].gzip());
    assert_eq!(metrics[0].request, sample_metrics());
    assert_eq!(
        metrics[0]
            .headers
            .get("x-selftest-token")
            .map(String::as_str),
        Some("secret-2")
    );
    let flat = metrics_of(&metrics);
    assert_eq!(flat.len(), 1);
    assert_eq!(flat[0].1.name, "zerotrace.spans.dropped");
    assert_eq!(receiver.failed_attempts(), 0);
    assert_eq!(receiver.rejected_requests(), 0);
}

#[test]
fn grpc_receiver_fails_on_demand_and_restarts_on_the_same_port() {
    let receiver = OtlpReceiver::start_grpc();
    let port = receiver.port();
    let endpoint = receiver.endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no tokio runtime: {e}"));
    let mut client = runtime.block_on(grpc_trace_client(endpoint.clone()));

    receiver.set_failing(true);
    for _ in 0..2 {
        let status = runtime
            .block_on(client.export(sample_traces("GET /fail")))
            .err()
            .unwrap_or_else(|| panic!("export succeeded while failing"));
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    assert_eq!(receiver.failed_attempts(), 2);
    assert!(receiver.traces().is_empty());

    receiver.set_failing(false);
    runtime
        .block_on(client.export(sample_traces("GET /ok")))
        .unwrap_or_else(|e| panic!("export after recovery: {e}"));
    assert_eq!(receiver.failed_attempts(), 2);
    assert_eq!(spans_of(&receiver.traces())[0].1.name, "GET /ok");

    receiver.stop();
    let refused = TcpStream::connect(("127.0.0.1", port))
        .err()
        .unwrap_or_else(|| panic!("port {port} still accepts after stop"));
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(runtime
        .block_on(client.export(sample_traces("GET /down")))
        .is_err());

    let again = OtlpReceiver::start_grpc_on(port);
    assert_eq!(again.port(), port);
    assert_eq!(again.endpoint(), endpoint);
    // The same client channel reconnects by itself (the first call may still
    // see the old, closed connection).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match runtime.block_on(client.export(sample_traces("GET /again"))) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying after {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("no export after restart: {e}"),
        }
    }
    let spans = spans_of(&again.traces());
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].1.name, "GET /again");
    assert_eq!(again.failed_attempts(), 0);
}

/// A minimal HTTP/1.1 client on one keep-alive connection.
struct RawHttp {
    reader: BufReader<TcpStream>,
    port: u16,
}

struct RawResponse {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl RawHttp {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("read timeout: {e}"));
        Self {
            reader: BufReader::new(stream),
            port,
        }
    }

    fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        // One write: head then body in two would meet Nagle and delayed ACKs.
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.reader
            .get_mut()
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("send {path}: {e}"));
        self.read_response()
    }

    fn read_response(&mut self) -> RawResponse {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("status line: {e}"));
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("header line: {e}"));
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("response without Content-Length: {headers:?}"));
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("response body: {e}"));
        RawResponse {
            status,
            headers,
            body,
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .unwrap_or_else(|e| panic!("gzip: {e}"))
}

/// OTLP/JSON as the spec writes it: hex ids, 64-bit integers as strings,
/// enums as integers.
const JSON_TRACES: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "selftest"}},
      {"key": "process.pid", "value": {"intValue": "4242"}}
    ]},
    "scopeSpans": [{
      "scope": {"name": "zerotrace"},
      "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "0102030405060708",
        "name": "GET /json",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000250000000",
        "attributes": [
          {"key": "http.request.method", "value": {"stringValue": "GET"}},
          {"key": "http.response.status_code", "value": {"intValue": 200}},
          {"key": "zerotrace.retried", "value": {"boolValue": false}}
        ]
      }]
    }]
  }]
}"#;

#[test]
fn http_receiver_decodes_protobuf_json_and_gzip_on_one_keepalive_connection() {
    let receiver = OtlpReceiver::start_http();
    assert_eq!(receiver.transport(), OtlpTransport::Http);
    let mut http = RawHttp::connect(receiver.port());
    let protobuf = [("Content-Type", "application/x-protobuf")];

    let response = http.post(
        "/v1/traces",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("X-Selftest-Token", "secret-pb"),
        ],
        &sample_traces("GET /protobuf").encode_to_vec(),
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    ExportTraceServiceResponse::decode(response.body.as_slice())
        .unwrap_or_else(|e| panic!("response: {e}"));

    let response = http.post(
        "/v1/traces",
        &[("Content-Type", "application/json; charset=utf-8")],
        JSON_TRACES.as_bytes(),
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("response: {e}"));
    assert!(body.is_object());

    let response = http.post(
        "/v1/traces",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&sample_traces("GET /gzip").encode_to_vec()),
    );
    assert_eq!(response.status, 200);

    // Metrics: gzip-compressed JSON made by the crate's own serializer.
    let json = serde_json::to_vec(&sample_metrics()).unwrap_or_else(|e| panic!("json: {e}"));
    let response = http.post(
        "/v1/metrics",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&json),
    );
    assert_eq!(response.status, 200);
    let response = http.post("/v1/metrics", &protobuf, &sample_metrics().encode_to_vec());
    assert_eq!(response.status, 200);

    let traces = receiver.traces();
    assert_eq!(traces.len(), 3);
    assert!(traces.iter().all(|t| t.transport == OtlpTransport::Http));
    assert_eq!(
        traces.iter().map(|t| t.json).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(
        traces.iter().map(|t| t.gzip()).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(traces[0].request, sample_traces("GET /protobuf"));
    assert_eq!(traces[1].request, sample_traces("GET /json"));
    assert_eq!(traces[2].request, sample_traces("GET /gzip"));
    assert_eq!(
        traces[0]
            .headers
            .get("x-selftest-token")
            .map(String::as_str),
        Some("secret-pb")
    );
    assert_eq!(
        traces[1].headers.get("content-type").map(String::as_str),
        Some("application/json; charset=utf-8")
    );
    assert!(traces[0].headers.contains_key("host"));
    let spans = spans_of(&traces);
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(names, ["GET /protobuf", "GET /json", "GET /gzip"]);
    for (resource, span) in &spans {
        assert_sample_span(resource, span, &span.name);
    }

    let metrics = receiver.metrics();
    assert_eq!(metrics.len(), 2);
    assert!(metrics[0].json && metrics[0].gzip());
    assert!(!metrics[1].json && !metrics[1].gzip());
    for export in &metrics {
        assert_eq!(export.request, sample_metrics());
    }
    assert_eq!(receiver.rejected_requests(), 0);
}

#[test]
fn http_receiver_refuses_what_is_not_otlp() {
    let receiver = OtlpReceiver::start_http();
    let mut http = RawHttp::connect(receiver.port());
    let pb = sample_traces("GET /x").encode_to_vec();

    let response = http.post(
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &pb,
    );
    assert_eq!(response.status, 404);
    let response = http.post("/v1/traces", &[("Content-Type", "text/plain")], &pb);
    assert_eq!(response.status, 415);
    let response = http.post(
        "/v1/traces",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "br"),
        ],
        &pb,
    );
    assert_eq!(response.status, 415);
    let response = http.post(
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        b"\xff\xff\xff",
    );
    assert_eq!(response.status, 400);
    let response = http.post(
        "/v1/traces",
        &[("Content-Type", "application/json")],
        br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "AAECAwQFBgcICQoLDA0ODw=="}]}]}]}"#,
    );
    assert_eq!(response.status, 400, "base64 ids are not OTLP/JSON");
    let response = http.post(
        "/v1/traces",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
        ],
        b"not gzip",
    );
    assert_eq!(response.status, 400);
    assert_eq!(receiver.rejected_requests(), 6);

    // Still the same connection, still working.
    let response = http.post(
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &pb,
    );
    assert_eq!(response.status, 200);
    assert_eq!(receiver.traces().len(), 1);

    receiver.clear();
    assert!(receiver.traces().is_empty());
    assert_eq!(receiver.rejected_requests(), 0);
}

#[test]
fn http_receiver_fails_on_demand_and_restarts_on_the_same_port() {
    let receiver = OtlpReceiver::start_http();
    let port = receiver.port();
    let mut http = RawHttp::connect(port);
    let protobuf = [("Content-Type", "application/x-protobuf")];
    let body = sample_traces("GET /fail").encode_to_vec();

    receiver.set_failing(true);
    for _ in 0..3 {
        let response = http.post("/v1/traces", &protobuf, &body);
        assert_eq!(response.status, 503);
        assert_eq!(
            response.headers.get("retry-after").map(String::as_str),
            Some("1")
        );
    }
    let response = http.post("/v1/metrics", &protobuf, &sample_metrics().encode_to_vec());
    assert_eq!(response.status, 503);
    assert_eq!(receiver.failed_attempts(), 4);
    assert!(receiver.traces().is_empty() && receiver.metrics().is_empty());

    receiver.set_failing(false);
    let response = http.post("/v1/traces", &protobuf, &body);
    assert_eq!(response.status, 200);
    assert_eq!(receiver.traces().len(), 1);
    assert_eq!(receiver.failed_attempts(), 4);

    receiver.stop();
    let refused = TcpStream::connect(("127.0.0.1", port))
        .err()
        .unwrap_or_else(|| panic!("port {port} still accepts after stop"));
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The kept-alive connection was closed by the receiver too.
    let mut rest = Vec::new();
    let read = http.reader.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "connection still open after stop: {read:?} {rest:?}"
    );

    let again = OtlpReceiver::start_http_on(port);
    assert_eq!(again.port(), port);
    let mut http = RawHttp::connect(port);
    let response = http.post("/v1/traces", &protobuf, &body);
    assert_eq!(response.status, 200);
    let spans = again
        .wait_for_traces(Duration::from_secs(1), |t| {
            (!t.is_empty()).then(|| spans_of(t))
        })
        .unwrap_or_else(|| panic!("nothing received after restart"));
    assert_eq!(spans[0].1.name, "GET /fail");
}
