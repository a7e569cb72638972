//! A test-only OTLP receiver: the end-to-end tests point the real agent at it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`) and assert on what it decoded with the
//! official OpenTelemetry protobuf definitions (`opentelemetry-proto`).
//!
//! Two kinds, each on its own loopback port:
//! - OTLP/gRPC: a tonic server with `TraceService` and `MetricsService`,
//!   accepting gzip-compressed messages;
//! - OTLP/HTTP: `POST /v1/traces` and `POST /v1/metrics`, bodies in
//!   `application/x-protobuf` or `application/json` (OTLP/JSON: trace and span
//!   ids as hex strings), optionally `Content-Encoding: gzip`; HTTP/1.1 with
//!   keep-alive, and HTTP/2 with prior knowledge.
//!
//! Every accepted export is recorded with its headers and transport. A switch
//! makes every export fail (gRPC `UNAVAILABLE`, HTTP `503` + `Retry-After: 1`)
//! until switched back. The receiver owns a tokio runtime so the tests stay
//! synchronous; stopping it (or dropping it) shuts that runtime down, which
//! closes the listening socket and every connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, HistogramDataPoint, Metric};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tonic::codec::CompressionEncoding;

/// Largest export accepted (after decompression), for both transports.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How an export reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtlpTransport {
    Grpc,
    Http,
}

/// One accepted trace export.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedTraces {
    pub transport: OtlpTransport,
    /// OTLP/HTTP with an `application/json` body (always false for gRPC).
    pub json: bool,
    /// Request headers (gRPC: the metadata), names lowercase; repeated
    /// headers are joined with ", ". Binary (`-bin`) metadata stays base64.
    pub headers: BTreeMap<String, String>,
    pub request: ExportTraceServiceRequest,
}

/// One accepted metrics export.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMetrics {
    pub transport: OtlpTransport,
    /// OTLP/HTTP with an `application/json` body (always false for gRPC).
    pub json: bool,
    /// Request headers (gRPC: the metadata), names lowercase; repeated
    /// headers are joined with ", ". Binary (`-bin`) metadata stays base64.
    pub headers: BTreeMap<String, String>,
    pub request: ExportMetricsServiceRequest,
}

fn headers_say_gzip(headers: &BTreeMap<String, String>) -> bool {
    ["content-encoding", "grpc-encoding"].iter().any(|h| {
        headers
            .get(*h)
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    })
}

impl ReceivedTraces {
    /// Whether the body came gzip-compressed (`Content-Encoding` for HTTP,
    /// `grpc-encoding` for gRPC).
    pub fn gzip(&self) -> bool {
        headers_say_gzip(&self.headers)
    }

    /// Number of spans in this export.
    pub fn span_count(&self) -> usize {
        self.request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }
}

impl ReceivedMetrics {
    /// Whether the body came gzip-compressed (`Content-Encoding` for HTTP,
    /// `grpc-encoding` for gRPC).
    pub fn gzip(&self) -> bool {
        headers_say_gzip(&self.headers)
    }
}

/// State shared by the server tasks and the test thread.
#[derive(Default)]
struct Shared {
    traces: Mutex<Vec<ReceivedTraces>>,
    metrics: Mutex<Vec<ReceivedMetrics>>,
    failing: AtomicBool,
    failed: AtomicU64,
    rejected: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// True (and counted) when this export must be answered with a failure.
    fn inject_failure(&self) -> bool {
        if self.failing.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    fn reject(&self, what: &str) {
        self.rejected.fetch_add(1, Ordering::SeqCst);
        eprintln!("otlp test receiver: rejected an export: {what}");
    }
}

/// A running OTLP receiver on 127.0.0.1. See the module documentation.
pub struct OtlpReceiver {
    transport: OtlpTransport,
    port: u16,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

impl OtlpReceiver {
    /// OTLP/gRPC on a free loopback port.
    pub fn start_grpc() -> Self {
        Self::start(OtlpTransport::Grpc, 0)
    }

    /// OTLP/HTTP on a free loopback port.
    pub fn start_http() -> Self {
        Self::start(OtlpTransport::Http, 0)
    }

    /// OTLP/gRPC on 127.0.0.1:`port` (e.g. again after `stop`).
    pub fn start_grpc_on(port: u16) -> Self {
        Self::start(OtlpTransport::Grpc, port)
    }

    /// OTLP/HTTP on 127.0.0.1:`port` (e.g. again after `stop`).
    pub fn start_http_on(port: u16) -> Self {
        Self::start(OtlpTransport::Http, port)
    }

    fn start(transport: OtlpTransport, port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-test-receiver")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("otlp test receiver: no tokio runtime: {e}"));
        let listener = runtime.block_on(bind_loopback(port)).unwrap_or_else(|e| {
            panic!("otlp test receiver: cannot listen on 127.0.0.1:{port}: {e}")
        });
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("otlp test receiver: no local address: {e}"))
            .port();
        let shared = Arc::new(Shared::default());
        match transport {
            OtlpTransport::Grpc => runtime.spawn(serve_grpc(listener, Arc::clone(&shared))),
            OtlpTransport::Http => runtime.spawn(serve_http(listener, Arc::clone(&shared))),
        };
        Self {
            transport,
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn transport(&self) -> OtlpTransport {
        self.transport
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every accepted trace export so far, in arrival order.
    pub fn traces(&self) -> Vec<ReceivedTraces> {
        lock(&self.shared.traces).clone()
    }

    /// Every accepted metrics export so far, in arrival order.
    pub fn metrics(&self) -> Vec<ReceivedMetrics> {
        lock(&self.shared.metrics).clone()
    }

    /// Flattened spans of every accepted trace export so far.
    pub fn spans(&self) -> Vec<(BTreeMap<String, String>, Span)> {
        spans_of(&lock(&self.shared.traces))
    }

    /// Forget everything recorded so far (counters included).
    pub fn clear(&self) {
        lock(&self.shared.traces).clear();
        lock(&self.shared.metrics).clear();
        self.shared.failed.store(0, Ordering::SeqCst);
        self.shared.rejected.store(0, Ordering::SeqCst);
    }

    /// While true, every export is answered with a failure: gRPC
    /// `UNAVAILABLE`, HTTP `503` with `Retry-After: 1`. Nothing is recorded.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Exports answered with an injected failure.
    pub fn failed_attempts(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Exports refused as malformed (undecodable body, unsupported
    /// content type or encoding); each is also logged on stderr.
    pub fn rejected_requests(&self) -> u64 {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    /// The CLIENT spans whose `url.path` starts with `prefix`, in the order
    /// they started, once `count` arrived (panics after 15 s without).
    pub fn wait_for_calls_to(&self, prefix: &str, count: usize) -> Vec<Span> {
        let calls = |traces: &[ReceivedTraces]| -> Vec<Span> {
            let mut calls: Vec<Span> = spans_of(traces)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.kind == SpanKind::Client as i32)
                .filter(|s| {
                    attr_str(&s.attributes, "url.path").is_some_and(|p| p.starts_with(prefix))
                })
                .collect();
            calls.sort_by_key(|s| s.start_time_unix_nano);
            calls
        };
        self.wait_for_traces(Duration::from_secs(15), |traces| {
            let calls = calls(traces);
            (calls.len() >= count).then_some(calls)
        })
        .unwrap_or_else(|| panic!("fewer than {count} calls to {prefix}: {:#?}", self.spans()))
    }

    /// Polls until `check` finds what it wants in the trace exports, or
    /// `timeout` passes (then `None`).
    pub fn wait_for_traces<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[ReceivedTraces]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(&lock(&self.shared.traces)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until `check` finds what it wants in the metrics exports, or
    /// `timeout` passes (then `None`).
    pub fn wait_for_metrics<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[ReceivedMetrics]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(&lock(&self.shared.metrics)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The latest data point of the histogram `name` that has `attributes`
    /// (all of them) and counts at least `count` observations, once one
    /// came within 15 s; panics with the histograms of the same namespace
    /// otherwise.
    pub fn wait_for_histogram_point(
        &self,
        name: &str,
        attributes: &[(&str, &str)],
        count: u64,
    ) -> HistogramDataPoint {
        let matches = |p: &HistogramDataPoint| {
            let map = attrs_map(&p.attributes);
            attributes
                .iter()
                .all(|(k, v)| map.get(*k).map(String::as_str) == Some(*v))
        };
        let found = self.wait_for_metrics(Duration::from_secs(15), |exports| {
            metrics_of(exports)
                .into_iter()
                .rev()
                .filter(|(_, m)| m.name == name)
                .filter_map(|(_, m)| match m.data {
                    Some(metric::Data::Histogram(h)) => Some(h.data_points),
                    _ => None,
                })
                .flatten()
                .find(|p| matches(p) && p.count >= count)
        });
        found.unwrap_or_else(|| {
            let namespace = name.split('.').next().unwrap_or(name);
            panic!(
                "no {name} point {attributes:?} counting {count}: {:#?}",
                metrics_of(&self.metrics())
                    .into_iter()
                    .filter(|(_, m)| m.name.starts_with(namespace))
                    .collect::<Vec<_>>()
            )
        })
    }

    /// Closes the listening socket and every connection: afterwards the port
    /// refuses connections. Start again with `start_grpc_on(port)` /
    /// `start_http_on(port)`. Dropping the receiver does the same.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped inside some async context: blocking is not allowed
                // there, so the sockets close shortly after, not right now.
                runtime.shutdown_background();
            } else {
                // Cancels every task (listener and connections) and waits for
                // the worker to drop them, which closes their sockets.
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A listener on 127.0.0.1:`port` with SO_REUSEADDR, so that a receiver can
/// come back on the port of one just stopped (whose closed connections may
/// linger in TIME_WAIT). Retries a little while the port is still taken.
async fn bind_loopback(port: u16) -> std::io::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        })();
        match attempt {
            Err(e)
                if port != 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------- gRPC

#[derive(Clone)]
struct GrpcSink(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.inject_failure() {
            return Err(tonic::Status::unavailable(
                "otlp test receiver: failure injected",
            ));
        }
        let headers = header_map(request.metadata().as_ref());
        lock(&self.0.traces).push(ReceivedTraces {
            transport: OtlpTransport::Grpc,
            json: false,
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if self.0.inject_failure() {
            return Err(tonic::Status::unavailable(
                "otlp test receiver: failure injected",
            ));
        }
        let headers = header_map(request.metadata().as_ref());
        lock(&self.0.metrics).push(ReceivedMetrics {
            transport: OtlpTransport::Grpc,
            json: false,
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn serve_grpc(listener: TcpListener, shared: Arc<Shared>) {
    let sink = GrpcSink(shared);
    let traces = TraceServiceServer::new(sink.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE);
    let metrics = MetricsServiceServer::new(sink)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(traces)
        .add_service(metrics)
        .serve_with_incoming(incoming)
        .await
    {
        eprintln!("otlp test receiver: gRPC server ended: {e}");
    }
}

// ---------------------------------------------------------------- HTTP

async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. EMFILE: do not spin.
                eprintln!("otlp test receiver: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle_http(request, &shared).await) }
            });
            // HTTP/1.1 (keep-alive) or HTTP/2 with prior knowledge. An error
            // here is a client that went away: nothing to record.
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn refuse(shared: &Shared, status: StatusCode, why: String) -> Response<Full<Bytes>> {
    shared.reject(&why);
    reply(status, "text/plain", why.into_bytes())
}

async fn handle_http(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let signal = match request.uri().path() {
        "/v1/traces" => Signal::Traces,
        "/v1/metrics" => Signal::Metrics,
        other => {
            let why = format!("no OTLP endpoint at {other}");
            return refuse(shared, StatusCode::NOT_FOUND, why);
        }
    };
    if request.method() != Method::POST {
        let why = format!(
            "{} not allowed: OTLP/HTTP exports are POSTs",
            request.method()
        );
        let mut response = refuse(shared, StatusCode::METHOD_NOT_ALLOWED, why);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let headers = header_map(request.headers());
    // Read the whole body first, whatever the answer, so the connection stays
    // usable for the client's next request.
    let body = match collect_body(request.into_body()).await {
        Ok(body) => body,
        Err(why) => return refuse(shared, StatusCode::BAD_REQUEST, why),
    };
    if shared.inject_failure() {
        let mut response = reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", Vec::new());
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let media_type = headers
        .get(CONTENT_TYPE.as_str())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let json = match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        other => {
            let why = format!("unsupported Content-Type {other:?}");
            return refuse(shared, StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
        }
    };
    let body = match headers.get(CONTENT_ENCODING.as_str()).map(|v| v.trim()) {
        None | Some("") => body.to_vec(),
        Some(e) if e.eq_ignore_ascii_case("identity") => body.to_vec(),
        Some(e) if e.eq_ignore_ascii_case("gzip") => match gunzip(&body) {
            Ok(plain) => plain,
            Err(why) => return refuse(shared, StatusCode::BAD_REQUEST, why),
        },
        Some(other) => {
            let why = format!("unsupported Content-Encoding {other:?}");
            return refuse(shared, StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
        }
    };
    match signal {
        Signal::Traces => match decode_traces(json, &body) {
            Ok(request) => {
                lock(&shared.traces).push(ReceivedTraces {
                    transport: OtlpTransport::Http,
                    json,
                    headers,
                    request,
                });
                accepted(json, ExportTraceServiceResponse::default().encode_to_vec())
            }
            Err(e) => {
                let why = format!("undecodable ExportTraceServiceRequest: {e}");
                refuse(shared, StatusCode::BAD_REQUEST, why)
            }
        },
        Signal::Metrics => match decode_metrics(json, &body) {
            Ok(request) => {
                lock(&shared.metrics).push(ReceivedMetrics {
                    transport: OtlpTransport::Http,
                    json,
                    headers,
                    request,
                });
                accepted(
                    json,
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            }
            Err(e) => {
                let why = format!("undecodable ExportMetricsServiceRequest: {e}");
                refuse(shared, StatusCode::BAD_REQUEST, why)
            }
        },
    }
}

/// 200 with an empty Export*ServiceResponse in the request's encoding
/// (`protobuf`: the encoded one, empty bytes in practice).
fn accepted(json: bool, protobuf: Vec<u8>) -> Response<Full<Bytes>> {
    if json {
        reply(StatusCode::OK, "application/json", b"{}".to_vec())
    } else {
        reply(StatusCode::OK, "application/x-protobuf", protobuf)
    }
}

/// OTLP/JSON goes through opentelemetry-proto's serde support: ids are hex
/// strings, 64-bit integers numbers or decimal strings, enums integers.
fn decode_traces(json: bool, body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
    }
}

fn decode_metrics(json: bool, body: &[u8]) -> Result<ExportMetricsServiceRequest, String> {
    if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        ExportMetricsServiceRequest::decode(body).map_err(|e| e.to_string())
    }
}

/// Collects a request body, refusing more than `MAX_MESSAGE` bytes.
async fn collect_body(body: Incoming) -> Result<Bytes, String> {
    http_body_util::Limited::new(body, MAX_MESSAGE)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| format!("cannot read the request body: {e}"))
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("bad gzip body: {e}"))?;
    if plain.len() > MAX_MESSAGE {
        return Err(format!("gzip body inflates past {MAX_MESSAGE} bytes"));
    }
    Ok(plain)
}

/// Header names (already lowercase in `http`) to values; repeated headers
/// joined with ", ", non-UTF-8 values converted lossily.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

// ---------------------------------------------------------------- views

/// Flattened view for assertions: (resource attributes as strings, span),
/// for every span received.
pub fn spans_of(traces: &[ReceivedTraces]) -> Vec<(BTreeMap<String, String>, Span)> {
    let mut out = Vec::new();
    for export in traces {
        for resource_spans in &export.request.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| attrs_map(&r.attributes))
                .unwrap_or_default();
            for scope_spans in &resource_spans.scope_spans {
                for span in &scope_spans.spans {
                    out.push((resource.clone(), span.clone()));
                }
            }
        }
    }
    out
}

/// Asserts that the call at each index is the child of the delivery at
/// that index (same trace, parent its span id) and lies within it: the
/// call was made while that message was processed.
pub fn assert_each_call_under_its_delivery(deliveries: &[&Span], calls: &[Span]) {
    assert_eq!(deliveries.len(), calls.len(), "{deliveries:#?}\n{calls:#?}");
    for (job, (delivery, call)) in deliveries.iter().zip(calls).enumerate() {
        assert_eq!(
            (&call.trace_id, &call.parent_span_id),
            (&delivery.trace_id, &delivery.span_id),
            "job {job}'s call is its delivery's child:\n{call:#?}\n{deliveries:#?}"
        );
        assert!(
            delivery.start_time_unix_nano <= call.start_time_unix_nano
                && call.end_time_unix_nano <= delivery.end_time_unix_nano,
            "{call:#?}\n{delivery:#?}"
        );
    }
}

/// The W3C context of an SDK-instrumented requester the messaging scenarios
/// put in a request's headers (the specification's example):
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
pub const REQUESTER_TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
pub const REQUESTER_SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

/// Asserts the two request chains of the messaging RPC scenarios. Job 0:
/// the request's delivery to the responder is the request's child, and the
/// responder's call is in that one trace; when the request was written by
/// the thread serving the scenario's HTTP request (`scenario`), the request
/// is that span's child. Job 1's request carried [`REQUESTER_SPAN_ID`]'s
/// context in its headers: the request is that span, the delivery its
/// child, the call in its trace. `requests`, `deliveries` and `calls` are
/// in job order.
pub fn assert_request_chains(
    scenario: Option<&Span>,
    requests: &[&Span],
    deliveries: &[&Span],
    calls: &[Span],
) {
    let ids = |s: &Span| (s.trace_id.clone(), s.span_id.clone());
    let parent = |s: &Span| (s.trace_id.clone(), s.parent_span_id.clone());
    if let Some(scenario) = scenario {
        assert_eq!(parent(requests[0]), ids(scenario), "{:#?}", requests[0]);
    }
    let delivery = deliveries[0];
    assert_eq!(parent(delivery), ids(requests[0]), "{delivery:#?}");
    assert_eq!(calls[0].trace_id, requests[0].trace_id, "{:#?}", calls[0]);
    assert_eq!(requests[1].span_id, REQUESTER_SPAN_ID, "{:#?}", requests[1]);
    let requester = (REQUESTER_TRACE_ID.to_vec(), REQUESTER_SPAN_ID.to_vec());
    assert_eq!(parent(deliveries[1]), requester, "{:#?}", deliveries[1]);
    assert_eq!(calls[1].trace_id, REQUESTER_TRACE_ID, "{:#?}", calls[1]);
}

/// Flattened view for assertions: (resource attributes as strings, metric),
/// for every metric received.
pub fn metrics_of(metrics: &[ReceivedMetrics]) -> Vec<(BTreeMap<String, String>, Metric)> {
    let mut out = Vec::new();
    for export in metrics {
        for resource_metrics in &export.request.resource_metrics {
            let resource = resource_metrics
                .resource
                .as_ref()
                .map(|r| attrs_map(&r.attributes))
                .unwrap_or_default();
            for scope_metrics in &resource_metrics.scope_metrics {
                for metric in &scope_metrics.metrics {
                    out.push((resource.clone(), metric.clone()));
                }
            }
        }
    }
    out
}

fn attr_value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValueKind> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The attribute's value if it is a string (`None` if absent or of another
/// type).
pub fn attr_str(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr_value(attrs, key) {
        Some(AnyValueKind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The attribute's value if it is an integer (`None` if absent or of another
/// type).
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr_value(attrs, key) {
        Some(AnyValueKind::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// The attribute's value of whatever type, rendered as a string (see
/// `display_value`); `None` if absent.
pub fn attr_display(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().map(display_value).unwrap_or_default())
}

/// Every attribute as key → `display_value`.
pub fn attrs_map(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().map(display_value).unwrap_or_default();
            (kv.key.clone(), value)
        })
        .collect()
}

/// An attribute value as text: strings as they are, numbers and booleans as
/// Rust prints them, bytes as lowercase hex, arrays as `[a, b]`, key-value
/// lists as `{k=v, ...}`, an empty value as "".
pub fn display_value(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(AnyValueKind::StringValue(s)) => s.clone(),
        Some(AnyValueKind::BoolValue(b)) => b.to_string(),
        Some(AnyValueKind::IntValue(i)) => i.to_string(),
        Some(AnyValueKind::DoubleValue(d)) => d.to_string(),
        Some(AnyValueKind::BytesValue(b)) => hex(b),
        Some(AnyValueKind::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(display_value).collect();
            format!("[{}]", items.join(", "))
        }
        Some(AnyValueKind::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map(display_value).unwrap_or_default();
                    format!("{}={v}", kv.key)
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(AnyValueKind::StringValueStrindex(i)) => format!("strindex:{i}"),
    }
}

/// Lowercase hex, as trace and span ids appear in OTLP/JSON and W3C headers.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
