//! OTLP export of traces and metrics over gRPC, HTTP/protobuf or HTTP/JSON,
//! to one or more destinations. Each destination has its own bounded queue
//! and task on a small tokio runtime: a slow or dead backend only fills its
//! own queue, after which batches are dropped and counted — capture and
//! decoding never wait. Retryable failures (gRPC UNAVAILABLE and friends,
//! HTTP 429/502/503/504) are retried with exponential backoff, honouring
//! Retry-After.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::{OtlpDestination, Protocol, Signal};

/// First retry delay; doubles up to MAX_BACKOFF.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A batch still failing after this long is dropped (and counted).
const MAX_RETRY_TIME: Duration = Duration::from_secs(60);
/// Failures are logged at most this often per destination.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What one queue entry carries.
#[derive(Clone)]
pub enum Payload {
    /// An `ExportTraceServiceRequest`, serialised as spans came
    /// (`otel::span_wire`); sent and retried without a copy.
    Traces(Bytes),
    Metrics(Arc<ExportMetricsServiceRequest>),
}

struct Batch {
    payload: Payload,
    /// Spans or data points in the payload, for the counters.
    items: u64,
}

/// Export outcome counters, shared with the pipeline for self-reporting.
#[derive(Default, Debug)]
pub struct ExportCounters {
    pub spans_exported: AtomicU64,
    pub spans_dropped: AtomicU64,
    pub points_exported: AtomicU64,
    pub points_dropped: AtomicU64,
    pub failed_attempts: AtomicU64,
}

impl ExportCounters {
    fn exported(&self, signal: Signal) -> &AtomicU64 {
        match signal {
            Signal::Traces => &self.spans_exported,
            Signal::Metrics => &self.points_exported,
        }
    }

    fn dropped(&self, signal: Signal) -> &AtomicU64 {
        match signal {
            Signal::Traces => &self.spans_dropped,
            Signal::Metrics => &self.points_dropped,
        }
    }
}

struct Queue {
    signal: Signal,
    sender: mpsc::Sender<Batch>,
}

pub struct OtlpExporter {
    queues: Vec<Queue>,
    pub counters: Arc<ExportCounters>,
    shutting_down: Arc<AtomicBool>,
    finished: std::sync::mpsc::Receiver<()>,
}

enum ExportError {
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

enum Transport {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
        gzip: bool,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: Vec<(String, String)>,
        json: bool,
        gzip: bool,
    },
}

fn grpc_metadata(headers: &[(String, String)]) -> Result<MetadataMap, String> {
    let mut metadata = MetadataMap::new();
    for (key, value) in headers {
        let name = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("OTLP header name {key:?} is not valid for gRPC"))?;
        let value = MetadataValue::try_from(value.as_str())
            .map_err(|_| format!("OTLP header {key:?} has a value gRPC cannot carry"))?;
        metadata.insert(name, value);
    }
    Ok(metadata)
}

impl Transport {
    /// Must run inside the tokio runtime (the gRPC channel connects lazily on it).
    fn new(destination: &OtlpDestination) -> Result<Self, String> {
        match destination.protocol {
            Protocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(destination.endpoint.clone())
                    .map_err(|e| format!("OTLP endpoint {:?}: {e}", destination.endpoint))?
                    .timeout(destination.timeout)
                    .connect_timeout(destination.timeout);
                if destination.endpoint.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_native_roots())
                        .map_err(|e| format!("TLS for {:?}: {e}", destination.endpoint))?;
                }
                Ok(Self::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata: grpc_metadata(&destination.headers)?,
                    gzip: destination.gzip,
                })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let client = reqwest::Client::builder()
                    .timeout(destination.timeout)
                    .build()
                    .map_err(|e| format!("HTTP client: {e}"))?;
                Ok(Self::Http {
                    client,
                    url: destination.endpoint.clone(),
                    headers: destination.headers.clone(),
                    json: destination.protocol == Protocol::HttpJson,
                    gzip: destination.gzip,
                })
            }
        }
    }

    async fn send(&self, payload: &Payload) -> Result<(), ExportError> {
        match self {
            Self::Grpc {
                channel,
                metadata,
                gzip,
            } => send_grpc(channel.clone(), metadata, *gzip, payload).await,
            Self::Http {
                client,
                url,
                headers,
                json,
                gzip,
            } => send_http(client, url, headers, *json, *gzip, payload).await,
        }
    }
}

/// The trace service's export method.
const TRACE_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC codec that sends a message already serialised (the trace batch)
/// and reads nothing of the reply: an export's response holds only partial
/// success counts, which the agent does not act on.
#[derive(Debug, Clone, Copy, Default)]
struct SerialisedCodec;

impl tonic::codec::Codec for SerialisedCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for SerialisedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for SerialisedCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

fn grpc_error(status: tonic::Status) -> ExportError {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Unknown => ExportError::Retryable {
            reason,
            retry_after: None,
        },
        _ => ExportError::Permanent(reason),
    }
}

async fn send_grpc(
    channel: Channel,
    metadata: &MetadataMap,
    gzip: bool,
    payload: &Payload,
) -> Result<(), ExportError> {
    match payload {
        Payload::Traces(request) => {
            let mut client = tonic::client::Grpc::new(channel);
            if gzip {
                client = client.send_compressed(CompressionEncoding::Gzip);
            }
            client.ready().await.map_err(|e| ExportError::Retryable {
                reason: format!("gRPC channel not ready: {e}"),
                retry_after: None,
            })?;
            let mut call = tonic::Request::new(request.clone());
            *call.metadata_mut() = metadata.clone();
            let path = PathAndQuery::from_static(TRACE_EXPORT_PATH);
            client
                .unary(call, path, SerialisedCodec)
                .await
                .map(|_| ())
                .map_err(grpc_error)
        }
        Payload::Metrics(request) => {
            let mut client = MetricsServiceClient::new(channel);
            if gzip {
                client = client.send_compressed(CompressionEncoding::Gzip);
            }
            let mut call = tonic::Request::new((**request).clone());
            *call.metadata_mut() = metadata.clone();
            client.export(call).await.map(|_| ()).map_err(grpc_error)
        }
    }
}

fn encode_body(payload: &Payload, json: bool) -> Result<Bytes, String> {
    match (payload, json) {
        (Payload::Traces(r), false) => Ok(r.clone()),
        (Payload::Metrics(r), false) => Ok(r.encode_to_vec().into()),
        (Payload::Traces(r), true) => {
            // JSON is written from the messages, read back from the bytes.
            let request = ExportTraceServiceRequest::decode(r.as_ref())
                .map_err(|e| format!("trace batch unreadable: {e}"))?;
            serde_json::to_vec(&request)
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        }
        (Payload::Metrics(r), true) => serde_json::to_vec(&**r)
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
    }
}

fn gzipped(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

/// Retry-After in seconds (the HTTP-date form is treated as absent).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    json: bool,
    gzip: bool,
    payload: &Payload,
) -> Result<(), ExportError> {
    let mut body = encode_body(payload, json).map_err(ExportError::Permanent)?;
    let mut request = client.post(url).header(
        reqwest::header::CONTENT_TYPE,
        if json {
            "application/json"
        } else {
            "application/x-protobuf"
        },
    );
    if gzip {
        body = gzipped(&body)
            .map(Bytes::from)
            .map_err(ExportError::Permanent)?;
        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    for (key, value) in headers {
        request = request.header(key.as_str(), value.as_str());
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| ExportError::Retryable {
            reason: format!("HTTP request failed: {e}"),
            retry_after: None,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let reason = format!("HTTP {status}");
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(ExportError::Retryable {
            retry_after: retry_after(&response),
            reason,
        }),
        _ => Err(ExportError::Permanent(reason)),
    }
}

/// Rate-limited failure reporting for one destination.
struct FailureLog {
    name: String,
    last_logged: Option<Instant>,
    failures_since: u64,
}

impl FailureLog {
    fn failed(&mut self, reason: &str, dropped_total: u64) {
        self.failures_since += 1;
        let due = self.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(
                "OTLP export to {} failing ({} failure(s) since last report): {reason}; {} item(s) dropped so far",
                self.name, self.failures_since, dropped_total
            );
            self.last_logged = Some(Instant::now());
            self.failures_since = 0;
        }
    }

    fn recovered(&mut self) {
        if self.last_logged.is_some() {
            tracing::info!("OTLP export to {} recovered", self.name);
            self.last_logged = None;
            self.failures_since = 0;
        }
    }
}

async fn run_destination(
    destination: OtlpDestination,
    mut queue: mpsc::Receiver<Batch>,
    counters: Arc<ExportCounters>,
    shutting_down: Arc<AtomicBool>,
) {
    let signal = destination.signal;
    let name = format!(
        "{} ({})",
        destination.endpoint,
        destination.protocol.as_str()
    );
    let transport = match Transport::new(&destination) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("OTLP destination {name} disabled: {e}");
            while let Some(batch) = queue.recv().await {
                counters
                    .dropped(signal)
                    .fetch_add(batch.items, Ordering::Relaxed);
            }
            return;
        }
    };
    let mut log = FailureLog {
        name,
        last_logged: None,
        failures_since: 0,
    };
    while let Some(batch) = queue.recv().await {
        let first_try = Instant::now();
        let mut backoff = INITIAL_BACKOFF;
        loop {
            match transport.send(&batch.payload).await {
                Ok(()) => {
                    counters
                        .exported(signal)
                        .fetch_add(batch.items, Ordering::Relaxed);
                    log.recovered();
                    break;
                }
                Err(error) => {
                    counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let (reason, wait) = match error {
                        ExportError::Permanent(reason) => (reason, None),
                        ExportError::Retryable {
                            reason,
                            retry_after,
                        } => (reason, Some(retry_after.unwrap_or(backoff))),
                    };
                    let give_up = wait.is_none()
                        || shutting_down.load(Ordering::Relaxed)
                        || first_try.elapsed() >= MAX_RETRY_TIME;
                    if give_up {
                        let dropped = counters.dropped(signal);
                        dropped.fetch_add(batch.items, Ordering::Relaxed);
                        log.failed(&reason, dropped.load(Ordering::Relaxed));
                        break;
                    }
                    log.failed(&reason, counters.dropped(signal).load(Ordering::Relaxed));
                    tokio::time::sleep(wait.unwrap_or(backoff)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl OtlpExporter {
    /// Starts one task per destination. `queue_batches`: queued batches per destination.
    pub fn start(destinations: Vec<OtlpDestination>, queue_batches: usize) -> Result<Self, String> {
        let counters = Arc::new(ExportCounters::default());
        let shutting_down = Arc::new(AtomicBool::new(false));
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for destination in destinations {
            let (sender, receiver) = mpsc::channel(queue_batches.max(1));
            queues.push(Queue {
                signal: destination.signal,
                sender,
            });
            tasks.push((destination, receiver));
        }
        let (finished_tx, finished) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("export runtime: {e}"))?;
        let task_counters = Arc::clone(&counters);
        let task_shutdown = Arc::clone(&shutting_down);
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let handles: Vec<_> = tasks
                        .into_iter()
                        .map(|(destination, receiver)| {
                            tokio::spawn(run_destination(
                                destination,
                                receiver,
                                Arc::clone(&task_counters),
                                Arc::clone(&task_shutdown),
                            ))
                        })
                        .collect();
                    for handle in handles {
                        let _ = handle.await;
                    }
                });
                let _ = finished_tx.send(());
            })
            .map_err(|e| format!("export thread: {e}"))?;
        Ok(Self {
            queues,
            counters,
            shutting_down,
            finished,
        })
    }

    pub fn exports(&self, signal: Signal) -> bool {
        self.queues.iter().any(|q| q.signal == signal)
    }

    /// Batches waiting in the queues, all destinations together.
    pub fn queue_depth(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.sender.max_capacity().saturating_sub(q.sender.capacity()) as u64)
            .sum()
    }

    /// Queues a payload for every destination of its signal; never blocks.
    pub fn submit(&self, payload: Payload, items: u64) {
        let signal = match payload {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
        };
        for queue in self.queues.iter().filter(|q| q.signal == signal) {
            let batch = Batch {
                payload: payload.clone(),
                items,
            };
            if queue.sender.try_send(batch).is_err() {
                self.counters
                    .dropped(signal)
                    .fetch_add(items, Ordering::Relaxed);
            }
        }
    }

    /// Closes the queues, lets queued batches go out (no more retries), and
    /// waits at most `timeout` for that.
    pub fn shutdown(self, timeout: Duration) {
        self.shutting_down.store(true, Ordering::Relaxed);
        drop(self.queues);
        let _ = self.finished.recv_timeout(timeout);
    }
}
