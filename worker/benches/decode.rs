//! Decode throughput (issue 7, benchmark 5): captured HTTP/1 exchanges, as raw
//! ring buffer records, through the worker's real path — record decode →
//! connection tracker (HTTP/1 framing, request/response pairing) → span →
//! route classification → cumulative RED metrics.
//!
//!   cargo bench -p zerotrace-worker --bench decode
//!
//! Reported as exchanges per second (one core: the path is single-threaded),
//! twice: group `http1` divides by wall-clock time, group `http1_cpu` by the
//! CPU time of the benchmark thread, which other processes sharing the
//! machine do not inflate by preempting it (they can still slow it down
//! through shared caches and cores).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nix::time::{clock_gettime, ClockId};
use opentelemetry_proto::tonic::resource::v1::Resource;
use zerotrace_shared::event::layout::*;
use zerotrace_shared::event::KernelEvent;
use zerotrace_worker::config::{RouteSettings, Temporality};
use zerotrace_worker::connections::{ConnectionTracker, Segment};
use zerotrace_worker::metrics::red::RedMetrics;
use zerotrace_worker::metrics::service_graph::ServiceGraphMetrics;
use zerotrace_worker::routes::RouteMatcher;
use zerotrace_worker::service_graph::{EdgeObservation, GraphNode, GraphSettings, ServiceGraph};
use zerotrace_worker::spans::Span;

const AF_INET: u16 = 2;
/// Keep-alive connections the exchanges are spread over.
const CONNECTIONS: u64 = 32;
/// Exchanges replayed per benchmark iteration.
const EXCHANGES: usize = 1024;
/// What the kernel captures of each read/write (ZT_PAYLOAD_MAX).
const PAYLOAD_MAX: usize = 512;

struct RecordSpec<'a> {
    pid: u32,
    sock_id: u64,
    ts_ns: u64,
    ingress: bool,
    first_of_socket: bool,
    peer_port: u16,
    bytes: &'a [u8],
}

/// One KIND_DATA record laid out as the BPF program writes it: header at the
/// generated offsets, then at most PAYLOAD_MAX captured bytes.
fn data_record(spec: &RecordSpec<'_>) -> Vec<u8> {
    let captured = &spec.bytes[..spec.bytes.len().min(PAYLOAD_MAX)];
    let mut r = vec![0u8; EVENT_SIZE];
    r[EVENT_KIND] = KIND_DATA as u8;
    r[EVENT_DIRECTION] = if spec.ingress {
        DIR_INGRESS
    } else {
        DIR_EGRESS
    } as u8;
    r[EVENT_ROLE] = ROLE_SERVER as u8;
    r[EVENT_PID..EVENT_PID + 4].copy_from_slice(&spec.pid.to_ne_bytes());
    r[EVENT_TID..EVENT_TID + 4].copy_from_slice(&spec.pid.to_ne_bytes());
    r[EVENT_CAPTURED_LEN..EVENT_CAPTURED_LEN + 4]
        .copy_from_slice(&(captured.len() as u32).to_ne_bytes());
    r[EVENT_TS_NS..EVENT_TS_NS + 8].copy_from_slice(&spec.ts_ns.to_ne_bytes());
    r[EVENT_SOCK_ID..EVENT_SOCK_ID + 8].copy_from_slice(&spec.sock_id.to_ne_bytes());
    r[EVENT_BYTES..EVENT_BYTES + 8].copy_from_slice(&(spec.bytes.len() as u64).to_ne_bytes());
    if spec.first_of_socket {
        // The identity comes with the first event of a socket only.
        let t = EVENT_TUPLE;
        r[t + TUPLE_FAMILY..t + TUPLE_FAMILY + 2].copy_from_slice(&AF_INET.to_ne_bytes());
        r[t + TUPLE_LOCAL_ADDR..t + TUPLE_LOCAL_ADDR + 4].copy_from_slice(&[127, 0, 0, 1]);
        r[t + TUPLE_LOCAL_PORT..t + TUPLE_LOCAL_PORT + 2].copy_from_slice(&8080u16.to_ne_bytes());
        r[t + TUPLE_PEER_ADDR..t + TUPLE_PEER_ADDR + 4].copy_from_slice(&[127, 0, 0, 1]);
        r[t + TUPLE_PEER_PORT..t + TUPLE_PEER_PORT + 2]
            .copy_from_slice(&spec.peer_port.to_ne_bytes());
        r[EVENT_COMM..EVENT_COMM + 5].copy_from_slice(b"nginx");
    }
    r.extend_from_slice(captured);
    r
}

/// A realistic request/response pair for exchange `i` (GET and POST, routes
/// with ids, JSON bodies, one body larger than the capture).
fn exchange(i: usize) -> (Vec<u8>, Vec<u8>) {
    let id = 1000 + i * 7;
    let headers = "Host: api.example.internal:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
                   AppleWebKit/537.36\r\nAccept: application/json\r\nAccept-Encoding: gzip, \
                   deflate\r\nConnection: keep-alive\r\n";
    let (request, body) = match i % 6 {
        0 => (
            format!("GET /api/users/{id} HTTP/1.1\r\n{headers}\r\n"),
            format!("{{\"id\":{id},\"name\":\"user {id}\",\"active\":true}}"),
        ),
        1 => {
            let body = format!("{{\"user\":{id},\"sku\":\"A-{i}\",\"qty\":2}}");
            (
                format!(
                    "POST /api/orders HTTP/1.1\r\n{headers}Content-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                format!("{{\"order\":{},\"status\":\"created\"}}", id * 3),
            )
        }
        2 => (
            format!("GET /api/orders/{id}/items?limit=20 HTTP/1.1\r\n{headers}\r\n"),
            "x".repeat(1800), // a body beyond the 512 captured bytes
        ),
        3 => (
            "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
            "ok".to_string(),
        ),
        4 => (
            format!(
                "GET /static/js/app.{:08x}.js HTTP/1.1\r\n{headers}\r\n",
                id * 2_654_435_761usize % 0xffff_ffff
            ),
            "y".repeat(300),
        ),
        _ => (
            format!(
                "GET /api/users/{id}/sessions/9f8e7d6c-5b4a-4321-8fed-cba987654321 HTTP/1.1\r\n\
                 {headers}Authorization: Bearer abc.def.ghi\r\n\r\n"
            ),
            "{}".to_string(),
        ),
    };
    let status = if i % 50 == 49 {
        "404 Not Found"
    } else {
        "200 OK"
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 21:00:00 GMT\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    (request.into_bytes(), response.into_bytes())
}

/// EXCHANGES exchanges over CONNECTIONS keep-alive sockets of two processes:
/// request (ingress) then response (egress), as a server sees them.
fn captured_records() -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(EXCHANGES * 2);
    let mut ts = 1_000_000_000u64;
    for i in 0..EXCHANGES {
        let conn = i as u64 % CONNECTIONS;
        let (request, response) = exchange(i);
        let base = RecordSpec {
            pid: 4000 + (conn % 2) as u32,
            sock_id: 0xffff_8880_0000_0000 + conn * 0x800,
            ts_ns: ts,
            ingress: true,
            first_of_socket: (i as u64) < CONNECTIONS,
            peer_port: 40_000 + conn as u16,
            bytes: &request,
        };
        records.push(data_record(&base));
        ts += 150_000 + (i as u64 % 13) * 40_000;
        records.push(data_record(&RecordSpec {
            ts_ns: ts,
            ingress: false,
            first_of_socket: false,
            bytes: &response,
            ..base
        }));
        ts += 5_000;
    }
    records
}

/// The worker's path for one batch of records; returns the spans produced.
struct Path {
    tracker: ConnectionTracker,
    spans: Vec<Span>,
    routes: RouteMatcher,
    red: RedMetrics,
    resource: Arc<Resource>,
    /// The service graph's pairing and metrics, when measured too.
    graph: Option<Graph>,
}

struct Graph {
    pairing: ServiceGraph,
    metrics: ServiceGraphMetrics,
    node: GraphNode,
    edges: Vec<EdgeObservation>,
}

impl Path {
    fn new() -> Self {
        Self {
            tracker: ConnectionTracker::new(),
            spans: Vec::new(),
            routes: RouteMatcher::new(&RouteSettings::default())
                .unwrap_or_else(|e| panic!("default routes: {e}")),
            red: RedMetrics::new(Temporality::Cumulative),
            resource: Arc::new(Resource::default()),
            graph: None,
        }
    }

    /// Also pairs spans into service graph edges and records their metrics.
    fn with_graph() -> Self {
        Self {
            graph: Some(Graph {
                pairing: ServiceGraph::new(GraphSettings::default()),
                metrics: ServiceGraphMetrics::new(Temporality::Cumulative),
                node: GraphNode::new("nginx", ""),
                edges: Vec::new(),
            }),
            ..Self::new()
        }
    }

    /// `full`: also classify the route and record RED metrics (the whole path);
    /// without, only record decode and the tracker (to split the cost).
    fn replay(&mut self, records: &[Vec<u8>], full: bool) -> usize {
        let mut produced = 0;
        for record in records {
            let event = KernelEvent::decode(record).unwrap_or_else(|e| panic!("decode: {e}"));
            let KernelEvent::Data {
                origin,
                sock_id,
                role,
                direction,
                tuple,
                total_bytes,
                payload,
                ..
            } = event
            else {
                panic!("not a data record");
            };
            self.tracker.on_data(
                Segment {
                    sock_id,
                    pid: origin.pid,
                    process_name: "nginx",
                    role,
                    direction,
                    tuple,
                    ts_ns: origin.ts_ns,
                    payload: &payload,
                    total_bytes,
                    tls: false,
                },
                &mut self.spans,
            );
            for mut span in self.spans.drain(..) {
                produced += 1;
                if !full {
                    black_box(&span);
                    continue;
                }
                if let Some(http) = span.http_mut() {
                    let decision = self.routes.classify(&http.target);
                    http.route = decision.route.map(|r| r.into_owned());
                }
                let end = span.end_monotonic_ns;
                self.red.record(&span, &self.resource, end);
                if let Some(graph) = self.graph.as_mut() {
                    graph
                        .pairing
                        .observe(&span, graph.node.clone(), end, &mut graph.edges);
                    for edge in graph.edges.drain(..) {
                        graph.metrics.record(&edge, end);
                    }
                }
                black_box(&span);
            }
        }
        produced
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), shown like
/// wall-clock time.
struct ThreadCpuTime {
    wall: WallTime,
}

fn thread_cpu_now() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_else(|e| panic!("thread CPU clock: {e}"))
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn decode_path(c: &mut Criterion) {
    bench_decode(c, "http1");
}

fn decode_path_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_decode(c, "http1_cpu");
}

fn bench_decode<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let records = captured_records();
    let mut path = Path::new();
    let produced = path.replay(&records, true);
    assert_eq!(produced, EXCHANGES, "every exchange must become one span");
    let routes: std::collections::BTreeSet<_> = path
        .red
        .http
        .series()
        .filter_map(|(k, _)| k.route.clone())
        .collect();
    eprintln!(
        "replaying {} records ({} exchanges on {CONNECTIONS} keep-alive connections); routes: {routes:?}",
        records.len(),
        EXCHANGES
    );

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(EXCHANGES as u64));
    group.bench_function("decode_span_route_red", |b| {
        b.iter(|| black_box(path.replay(black_box(&records), true)))
    });
    let mut with_graph = Path::with_graph();
    group.bench_function("decode_span_route_red_service_graph", |b| {
        b.iter(|| black_box(with_graph.replay(black_box(&records), true)))
    });
    let mut tracker_only = Path::new();
    group.bench_function("decode_span_only", |b| {
        b.iter(|| black_box(tracker_only.replay(black_box(&records), false)))
    });
    group.finish();
}

criterion_group!(benches, decode_path);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = decode_path_cpu
}
criterion_main!(benches, cpu);
