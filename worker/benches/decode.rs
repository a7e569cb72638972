//! Decode throughput (issue 7, benchmark 5): captured HTTP/1 exchanges, as raw
//! ring buffer records, through the worker's real path — record decode →
//! connection tracker (HTTP/1 framing, request/response pairing) → span →
//! trace linking (on, as by default) → route classification → cumulative RED metrics; then
//! with the service graph, and with it and the live view `zerotrace top` reads (the
//! pipeline's default: `decode_span_route_red_service_graph_live_view`). The same path for the
//! database clients (issue 16): PostgreSQL simple queries and Redis commands,
//! and Kafka produces (recorded from kafka-python against tansu), seen from
//! the client, each operation a span and a duration observation. The nginx
//! benchmark's own exchanges (`nginx_wrk`) go through the default path, and
//! through it with every span exported as OTLP trace spans (`otlp_traces`),
//! and each on a connection of its own (`one_connection_per_request`).
//!
//!   cargo bench -p zerotrace-worker --bench decode
//!
//! Reported as exchanges (operations) per second (one core: the path is
//! single-threaded), twice: groups `http1`, `postgres`, `redis`, `kafka` divide by
//! wall-clock time, groups `*_cpu` by the CPU time of the benchmark thread,
//! which other processes sharing the machine do not inflate by preempting it
//! (they can still slow it down through shared caches and cores).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nix::time::{clock_gettime, ClockId};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use zerotrace_shared::event::layout::*;
use zerotrace_shared::event::KernelEvent;
use zerotrace_worker::clock::WallClock;
use zerotrace_worker::config::{RouteSettings, Temporality};
use zerotrace_worker::connections::{ConnectionTracker, Segment};
use zerotrace_worker::live_view::LiveView;
use zerotrace_worker::metrics::red::RedMetrics;
use zerotrace_worker::metrics::service_graph::ServiceGraphMetrics;
use zerotrace_worker::metrics::span_metrics::SpanMetrics;
use zerotrace_worker::otel::attribute_blocks::AttributeBlocks;
use zerotrace_worker::otel::span_wire::{append_span, export_request, scope_bytes, ProcessSpans};
use zerotrace_worker::routes::{RouteMatcher, WordMemo};
use zerotrace_worker::service_graph::{EdgeObservations, GraphNode, GraphSettings, ServiceGraph};
use zerotrace_worker::spans::Span;
use zerotrace_worker::traces::{LinkSettings, TraceLinker};

const AF_INET: u16 = 2;
/// ZT_ROLE_UNKNOWN: the socket backend does not see accept, so a server's
/// sockets carry no role; the protocol tells it from the first bytes.
const ROLE_UNKNOWN: usize = 0;
/// Keep-alive connections the exchanges are spread over.
const CONNECTIONS: u64 = 32;
/// Exchanges replayed per benchmark iteration.
const EXCHANGES: usize = 1024;
/// What the kernel captures of each read/write (ZT_PAYLOAD_MAX).
const PAYLOAD_MAX: usize = 512;

#[derive(Clone, Copy)]
struct RecordSpec<'a> {
    /// ROLE_SERVER or ROLE_CLIENT: which side of the connection the process is.
    role: usize,
    local_port: u16,
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
    r[EVENT_ROLE] = spec.role as u8;
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
        r[t + TUPLE_LOCAL_PORT..t + TUPLE_LOCAL_PORT + 2]
            .copy_from_slice(&spec.local_port.to_ne_bytes());
        r[t + TUPLE_PEER_ADDR..t + TUPLE_PEER_ADDR + 4].copy_from_slice(&[127, 0, 0, 1]);
        r[t + TUPLE_PEER_PORT..t + TUPLE_PEER_PORT + 2]
            .copy_from_slice(&spec.peer_port.to_ne_bytes());
        r[EVENT_COMM..EVENT_COMM + 5].copy_from_slice(b"nginx");
        r[EVENT_FLAGS] = EVENT_FLAG_IDENTITY as u8;
    } else {
        // Later events of a socket stop before the tuple.
        r.truncate(EVENT_COMPACT_SIZE);
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
    server_records(exchange, 2, 150_000)
}

/// The traffic of `bench/nginx_overhead.sh`, byte for byte: wrk's request
/// (its only header is Host) and nginx's 17-byte answer, on one nginx worker
/// process, as its small profile (`wrk -t1 -c16`) sends them.
fn nginx_wrk_exchange(_i: usize) -> (Vec<u8>, Vec<u8>) {
    (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 18:45:40 GMT\r\n\
          Content-Type: text/plain\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\n\
          hello from nginx\n"
            .to_vec(),
    )
}

/// EXCHANGES exchanges of `exchange` over CONNECTIONS keep-alive sockets of
/// `processes` processes, `gap_ns` and more between a request and its response.
fn server_records(
    exchange: fn(usize) -> (Vec<u8>, Vec<u8>),
    processes: u64,
    gap_ns: u64,
) -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(EXCHANGES * 2);
    let mut ts = 1_000_000_000u64;
    for i in 0..EXCHANGES {
        let conn = i as u64 % CONNECTIONS;
        let (request, response) = exchange(i);
        let base = RecordSpec {
            role: ROLE_SERVER,
            local_port: 8080,
            pid: 4000 + (conn % processes) as u32,
            sock_id: 0xffff_8880_0000_0000 + conn * 0x800,
            ts_ns: ts,
            ingress: true,
            first_of_socket: (i as u64) < CONNECTIONS,
            peer_port: 40_000 + conn as u16,
            bytes: &request,
        };
        ts += gap_ns + (i as u64 % 13) * 40_000;
        push_exchange(&mut records, &base, &response, ts);
        ts += 5_000;
    }
    records
}

/// The records of one exchange: `request`'s, then the response's on the
/// same socket at `response_ts`.
fn push_exchange(
    records: &mut Vec<Vec<u8>>,
    request: &RecordSpec<'_>,
    response: &[u8],
    response_ts: u64,
) {
    records.push(data_record(request));
    records.push(data_record(&RecordSpec {
        ts_ns: response_ts,
        ingress: false,
        first_of_socket: false,
        bytes: response,
        ..*request
    }));
}

/// A KIND_CLOSE record of socket `sock_id`, as the state program writes it.
fn close_record(sock_id: u64, pid: u32, ts_ns: u64) -> Vec<u8> {
    let mut r = vec![0u8; EVENT_SIZE];
    r[EVENT_KIND] = KIND_CLOSE as u8;
    r[EVENT_PID..EVENT_PID + 4].copy_from_slice(&pid.to_ne_bytes());
    r[EVENT_TID..EVENT_TID + 4].copy_from_slice(&pid.to_ne_bytes());
    r[EVENT_TS_NS..EVENT_TS_NS + 8].copy_from_slice(&ts_ns.to_ne_bytes());
    r[EVENT_SOCK_ID..EVENT_SOCK_ID + 8].copy_from_slice(&sock_id.to_ne_bytes());
    r
}

/// EXCHANGES exchanges of `exchange`, each on a connection of its own, as
/// `bench/nginx_overhead.sh` with `WRK_HEADER="Connection: close"` makes
/// them: the request carries the new socket's identity, the response
/// follows, then the socket's close. Socket addresses come back after
/// CONNECTIONS connections, as the kernel's allocator reuses them.
fn one_connection_per_request_records(exchange: fn(usize) -> (Vec<u8>, Vec<u8>)) -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(EXCHANGES * 3);
    let mut ts = 1_000_000_000u64;
    for i in 0..EXCHANGES {
        let (request, response) = exchange(i);
        let base = RecordSpec {
            role: ROLE_UNKNOWN,
            local_port: 18080,
            pid: 4000,
            sock_id: 0xffff_8880_0000_0000 + (i as u64 % CONNECTIONS) * 0x800,
            ts_ns: ts,
            ingress: true,
            first_of_socket: true,
            peer_port: 40_000 + (i % 20_000) as u16,
            bytes: &request,
        };
        ts += 20_000;
        push_exchange(&mut records, &base, &response, ts);
        ts += 5_000;
        records.push(close_record(base.sock_id, base.pid, ts));
        ts += 5_000;
    }
    records
}

/// A PostgreSQL backend message: type, length, body.
fn pg_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A RowDescription of text columns named `names`.
fn pg_row_description(names: &[&str]) -> Vec<u8> {
    let mut body = (names.len() as u16).to_be_bytes().to_vec();
    for name in names {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&16384u32.to_be_bytes()); // table oid
        body.extend_from_slice(&1u16.to_be_bytes()); // column
        body.extend_from_slice(&25u32.to_be_bytes()); // text
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
    }
    pg_message(b'T', &body)
}

fn pg_data_row(values: &[&str]) -> Vec<u8> {
    let mut body = (values.len() as u16).to_be_bytes().to_vec();
    for value in values {
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value.as_bytes());
    }
    pg_message(b'D', &body)
}

/// Simple query `i` of a web service and the server's answer: lookups by
/// id, an update, an insert, a join, and now and then a missing table.
fn pg_exchange(i: usize) -> (Vec<u8>, Vec<u8>) {
    let id = 1000 + i * 7;
    let ready = pg_message(b'Z', b"I");
    let (sql, mut reply) = match i % 5 {
        0 => (
            format!("SELECT id, name, balance FROM accounts WHERE id = {id}"),
            [
                pg_row_description(&["id", "name", "balance"]),
                pg_data_row(&[&id.to_string(), "user name", "100.50"]),
                pg_message(b'C', b"SELECT 1\0"),
            ]
            .concat(),
        ),
        1 => (
            format!("UPDATE accounts SET balance = balance + 10 WHERE id = {id}"),
            pg_message(b'C', b"UPDATE 1\0"),
        ),
        2 => (
            format!("INSERT INTO orders (account, sku, qty) VALUES ({id}, 'A-{i}', 2)"),
            pg_message(b'C', b"INSERT 0 1\0"),
        ),
        3 if i % 50 == 3 => (
            "SELECT * FROM missing_table".to_string(),
            pg_message(
                b'E',
                b"SERROR\0VERROR\0C42P01\0Mrelation \"missing_table\" does not exist\0\0",
            ),
        ),
        _ => (
            format!(
                "SELECT o.id, o.sku FROM orders o JOIN accounts a ON a.id = o.account \
                 WHERE a.id = {id} ORDER BY o.id DESC LIMIT 20"
            ),
            [
                pg_row_description(&["id", "sku"]),
                pg_data_row(&["1", "A-1"]),
                pg_data_row(&["2", "A-2"]),
                pg_message(b'C', b"SELECT 2\0"),
            ]
            .concat(),
        ),
    };
    reply.extend_from_slice(&ready);
    let mut query = sql.into_bytes();
    query.push(0);
    (pg_message(b'Q', &query), reply)
}

/// The StartupMessage and the server's AuthenticationOk + ReadyForQuery.
fn pg_startup() -> (Vec<u8>, Vec<u8>) {
    let params = b"user\0app\0database\0shop\0\0";
    let mut startup = ((params.len() + 8) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(params);
    let reply = [
        pg_message(b'R', &0u32.to_be_bytes()),
        pg_message(b'Z', b"I"),
    ]
    .concat();
    (startup, reply)
}

/// Redis command `i` (RESP arrays, as client libraries write them) and its reply.
fn redis_exchange(i: usize) -> (Vec<u8>, Vec<u8>) {
    let resp = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        out.into_bytes()
    };
    let key = format!("session:{:08x}", i * 2_654_435_761 % 0xffff_ffff);
    let value = format!("{{\"user\":{},\"cart\":[1,2,3]}}", 1000 + i);
    match i % 4 {
        0 => (
            resp(&["SET", &key, &value, "EX", "3600"]),
            b"+OK\r\n".to_vec(),
        ),
        1 => (
            resp(&["GET", &key]),
            format!("${}\r\n{value}\r\n", value.len()).into_bytes(),
        ),
        2 => (
            resp(&["HGETALL", "user:1000"]),
            b"*4\r\n$4\r\nname\r\n$3\r\nann\r\n$4\r\nrole\r\n$5\r\nadmin\r\n".to_vec(),
        ),
        _ if i % 40 == 3 => (
            resp(&["INCR", "user:1000"]),
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".to_vec(),
        ),
        _ => (
            resp(&["INCR", "requests"]),
            format!(":{i}\r\n").into_bytes(),
        ),
    }
}

/// The bytes of chunk `index` of connection `conn` of a recording (`worker/testdata/`).
fn recorded(fixture: &str, conn: usize, index: usize) -> Vec<u8> {
    let hex = fixture
        .split("= conn")
        .nth(conn + 1)
        .and_then(|c| c.lines().filter(|l| !l.is_empty()).nth(index))
        .map(|l| &l[2..])
        .unwrap_or_else(|| panic!("no chunk {index} of connection {conn}"));
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

/// kafka-python's Produce of three messages to `orders` and tansu's answer,
/// as recorded (`worker/testdata/kafka/kafka_python_produce.txt`).
const KAFKA_PRODUCE: &str = include_str!("../testdata/kafka/kafka_python_produce.txt");

/// Kafka: each connection starts with an ApiVersions exchange.
fn kafka_first() -> (Vec<u8>, Vec<u8>) {
    (recorded(KAFKA_PRODUCE, 0, 0), recorded(KAFKA_PRODUCE, 0, 1))
}

/// Kafka operation `i`: the recorded Produce (same correlation id each time:
/// one is in flight at once) and its response.
fn kafka_exchange(_i: usize) -> (Vec<u8>, Vec<u8>) {
    (recorded(KAFKA_PRODUCE, 1, 0), recorded(KAFKA_PRODUCE, 1, 1))
}

/// Records of a client's operations: `setup` (each connection's first
/// exchange, replayed once) and `timed` (EXCHANGES operations over
/// CONNECTIONS connections: request egress, reply ingress).
struct ClientRecords {
    setup: Vec<Vec<u8>>,
    timed: Vec<Vec<u8>>,
}

fn client_records(
    server_port: u16,
    first: Option<(Vec<u8>, Vec<u8>)>,
    exchange: fn(usize) -> (Vec<u8>, Vec<u8>),
) -> ClientRecords {
    let mut ts = 1_000_000_000u64;
    let spec = |conn: u64, ts_ns: u64, ingress: bool, first_of_socket: bool| RecordSpec {
        role: ROLE_CLIENT,
        local_port: 40_000 + conn as u16,
        pid: 5000,
        sock_id: 0xffff_8880_1000_0000 + conn * 0x800,
        ts_ns,
        ingress,
        first_of_socket,
        peer_port: server_port,
        bytes: &[],
    };
    let mut records = ClientRecords {
        setup: Vec::new(),
        timed: Vec::new(),
    };
    for conn in 0..CONNECTIONS {
        let (request, reply) = first.clone().unwrap_or_else(|| exchange(conn as usize));
        records.setup.push(data_record(&RecordSpec {
            bytes: &request,
            ..spec(conn, ts, false, true)
        }));
        ts += 50_000;
        records.setup.push(data_record(&RecordSpec {
            bytes: &reply,
            ..spec(conn, ts, true, false)
        }));
        ts += 5_000;
    }
    for i in 0..EXCHANGES {
        let conn = i as u64 % CONNECTIONS;
        let (request, reply) = exchange(i);
        records.timed.push(data_record(&RecordSpec {
            bytes: &request,
            ..spec(conn, ts, false, false)
        }));
        ts += 150_000 + (i as u64 % 13) * 40_000;
        records.timed.push(data_record(&RecordSpec {
            bytes: &reply,
            ..spec(conn, ts, true, false)
        }));
        ts += 5_000;
    }
    records
}

/// Records the pipeline handles between two flushes in the benchmark: about
/// what the ring buffer holds when a 64 KiB backlog wakes the reader (HTTP
/// records of ~250 bytes).
const BATCH_RECORDS: usize = 256;

/// The worker's path for one batch of records; returns the spans produced.
struct Path {
    tracker: ConnectionTracker,
    /// The process's name, shared by its connections as the pipeline shares it.
    process_name: Arc<str>,
    spans: Vec<Span>,
    routes: RouteMatcher,
    route_words: WordMemo,
    red: RedMetrics,
    /// RED and service graph metrics recorded, as when an exporter wants
    /// them; the pipeline without one records neither.
    metrics: bool,
    resource: Arc<Resource>,
    linker: TraceLinker,
    /// Spans the linker let through.
    linked: Vec<Span>,
    /// The service graph's pairing and metrics, when measured too.
    graph: Option<Graph>,
    /// Every span exported as an OTLP trace span, when measured too.
    traces: Option<TraceExport>,
    /// The span metrics (`application_span`), when measured too.
    span_metrics: Option<SpanMetrics>,
}

/// What an OTLP trace export adds per span, as `OtelExport` does it: the
/// span serialised into its process's batch as it is recorded, and per batch
/// the request assembled around the batches (the sending itself is not
/// counted).
struct TraceExport {
    clock: WallClock,
    pending: ProcessSpans,
    blocks: AttributeBlocks,
    scope: Vec<u8>,
    /// Bytes serialised, so that the work is not optimised away.
    bytes: usize,
}

impl TraceExport {
    fn new(resource: &Arc<Resource>) -> Self {
        Self {
            clock: WallClock::new(),
            pending: ProcessSpans::new(Arc::clone(resource)),
            blocks: AttributeBlocks::default(),
            scope: scope_bytes(&InstrumentationScope::default()),
            bytes: 0,
        }
    }

    fn record(&mut self, span: &Span) {
        append_span(span, &self.clock, &mut self.blocks, &mut self.pending.spans);
        self.pending.count += 1;
    }

    /// The batch as one request of one process.
    fn flush(&mut self) {
        let request = export_request([&self.pending], &self.scope);
        self.bytes += black_box(request).len();
        self.pending.spans.clear();
        self.pending.count = 0;
    }
}

struct Graph {
    pairing: ServiceGraph,
    metrics: ServiceGraphMetrics,
    node: GraphNode,
    edges: EdgeObservations,
    /// What `zerotrace top` reads (on by default), when measured too.
    live: Option<LiveView>,
}

impl Path {
    fn new() -> Self {
        Self {
            tracker: ConnectionTracker::new(),
            process_name: "nginx".into(),
            spans: Vec::new(),
            routes: RouteMatcher::new(&RouteSettings::default())
                .unwrap_or_else(|e| panic!("default routes: {e}")),
            route_words: WordMemo::default(),
            red: RedMetrics::new(Temporality::Cumulative),
            metrics: true,
            resource: Arc::new(Resource::default()),
            linker: TraceLinker::new(LinkSettings::default()),
            linked: Vec::new(),
            graph: None,
            traces: None,
            span_metrics: None,
        }
    }

    /// Also pairs spans into service graph edges and records their metrics.
    fn with_graph() -> Self {
        Self {
            graph: Some(Graph {
                pairing: ServiceGraph::new(GraphSettings::default()),
                metrics: ServiceGraphMetrics::new(Temporality::Cumulative),
                node: GraphNode::new("nginx", ""),
                edges: EdgeObservations::default(),
                live: None,
            }),
            ..Self::new()
        }
    }

    /// The pipeline's default: the service graph's pairing and the live view
    /// `zerotrace top` reads (spans and edges), with the graph's metrics too.
    fn with_graph_and_live_view() -> Self {
        let mut path = Self::with_graph();
        if let Some(graph) = path.graph.as_mut() {
            graph.live = Some(LiveView::new());
        }
        path
    }

    /// What the pipeline does with no exporter (the nginx benchmark's
    /// agent): the live view and, for its calls view, the graph's pairing;
    /// no RED or service graph metrics.
    fn without_exporter() -> Self {
        Self {
            metrics: false,
            ..Self::with_graph_and_live_view()
        }
    }

    /// The default path, and every span exported as an OTLP trace span.
    fn with_trace_export() -> Self {
        let path = Self::with_graph_and_live_view();
        Self {
            traces: Some(TraceExport::new(&path.resource)),
            ..path
        }
    }

    /// The default path with the span metrics on (`application_span`).
    fn with_span_metrics() -> Self {
        Self {
            span_metrics: Some(SpanMetrics::new(
                Temporality::Cumulative,
                zerotrace_worker::config::SpanMetricForms {
                    tempo: true,
                    otel: false,
                    sizes: false,
                },
            )),
            ..Self::with_graph_and_live_view()
        }
    }

    /// The default path with OBI's `histogram_aggregation:
    /// base2_exponential_bucket_histogram`: the RED and service graph
    /// histograms exponential.
    fn with_exponential_histograms() -> Self {
        let buckets = zerotrace_worker::config::HistogramBuckets {
            aggregation: zerotrace_worker::config::HistogramAggregation::Base2Exponential,
            ..Default::default()
        };
        let mut path = Self::with_graph_and_live_view();
        path.red = RedMetrics::new(Temporality::Cumulative).with_buckets(&buckets);
        if let Some(graph) = path.graph.as_mut() {
            graph.metrics =
                ServiceGraphMetrics::new(Temporality::Cumulative).with_buckets(&buckets);
        }
        path
    }

    /// The default path as the OTLP export records it by default: exemplars
    /// on the RED histograms (`OTEL_METRICS_EXEMPLAR_FILTER=trace_based`, the
    /// sampler `parentbased_always_on`, which keeps wrk's requests).
    fn with_otlp_exemplars() -> Self {
        let mut path = Self::with_graph_and_live_view();
        path.red = RedMetrics::new(Temporality::Cumulative).with_exemplars(
            zerotrace_worker::metrics::exemplars::ExemplarPolicy::new(
                zerotrace_worker::config::ExemplarFilter::TraceBased,
                zerotrace_worker::otel::sampler::Sampler::new(
                    zerotrace_worker::config::SamplerSetting::ParentBasedAlwaysOn,
                ),
            ),
        );
        path
    }

    /// `full`: also classify the route and record RED metrics (the whole path);
    /// without, only record decode and the tracker (to split the cost).
    /// Records are handled in batches of [`BATCH_RECORDS`], spans flushed
    /// after each, as the pipeline does after each ring buffer drain: spans
    /// live (and their strings are freed) a batch at a time.
    fn replay(&mut self, records: &[Vec<u8>], full: bool) -> usize {
        let mut produced = 0;
        for batch in records.chunks(BATCH_RECORDS) {
            let mut now = 0;
            for record in batch {
                now = self.decode(record);
            }
            produced += if full {
                self.flush(now)
            } else {
                let n = self.spans.len();
                for span in self.spans.drain(..) {
                    black_box(&span);
                }
                n
            };
        }
        produced
    }

    /// One record through decode and the tracker; returns its time.
    fn decode(&mut self, record: &[u8]) -> u64 {
        let event = KernelEvent::decode(record).unwrap_or_else(|e| panic!("decode: {e}"));
        if let KernelEvent::Close { origin, sock_id } = event {
            self.tracker.close(sock_id, origin.ts_ns, &mut self.spans);
            return origin.ts_ns;
        }
        let KernelEvent::Data {
            origin,
            sock_id,
            role,
            direction,
            tuple,
            total_bytes,
            payload,
            tail,
            ..
        } = event
        else {
            panic!("neither a data nor a close record");
        };
        self.tracker.on_data(
            Segment {
                sock_id,
                pid: origin.pid,
                process_name: &self.process_name,
                role,
                direction,
                tuple,
                ts_ns: origin.ts_ns,
                tid: origin.tid,
                payload,
                total_bytes,
                tls: false,
                tail,
            },
            &mut self.spans,
        );
        origin.ts_ns
    }

    /// As the pipeline after a batch: spans go through the linker, which lets
    /// them out at once or after their parent's decision (at about the
    /// batch's last event's time), then routes, metrics and the graph.
    fn flush(&mut self, now: u64) -> usize {
        let mut produced = 0;
        let now_instant = std::time::Instant::now();
        let tracker = &mut self.tracker;
        self.linker
            .link_batch(&mut self.spans, &mut self.linked, now, |pid| {
                tracker.unanswered_requests(pid)
            });
        // Spans are dropped together after the batch, as the pipeline does.
        for span in &mut self.linked {
            produced += 1;
            if let Some(http) = span.http_mut() {
                let decision = self
                    .routes
                    .classify_remembering(&http.target, &mut self.route_words);
                http.route = decision.route.map(Into::into);
            }
            let end = span.end_monotonic_ns;
            if self.metrics {
                self.red.record(span, &self.resource, end);
                if let Some(span_metrics) = self.span_metrics.as_mut() {
                    span_metrics.record(span, &self.resource, end);
                }
            }
            if let Some(graph) = self.graph.as_mut() {
                graph
                    .pairing
                    .observe(span, &graph.node, end, &mut graph.edges);
            }
            if let Some(traces) = self.traces.as_mut() {
                traces.record(span);
            }
            black_box(&span);
        }
        if let Some(traces) = self.traces.as_mut() {
            traces.flush();
        }
        // The live view counts the batch's spans together, as the pipeline does.
        if let Some(graph) = self.graph.as_mut() {
            if let Some(live) = graph.live.as_mut() {
                let service: &str = &graph.node.name;
                live.record_batch(self.linked.iter().map(|span| (span, service)), now_instant);
            }
        }
        // Edges go out after the batch's spans, as the pipeline does.
        if let Some(graph) = self.graph.as_mut() {
            for (edge, samples) in graph.edges.runs() {
                if self.metrics {
                    graph.metrics.record_run(edge, samples, now);
                }
                if let Some(live) = graph.live.as_mut() {
                    live.record_calls(edge, samples, now_instant);
                }
            }
            graph.edges.clear();
        }
        self.linked.clear();
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
    bench_nginx_wrk(c, "nginx_wrk");
    bench_database(c, ["postgres", "redis", "kafka"]);
}

fn decode_path_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_decode(c, "http1_cpu");
    bench_nginx_wrk(c, "nginx_wrk_cpu");
    bench_database(c, ["postgres_cpu", "redis_cpu", "kafka_cpu"]);
}

/// The nginx benchmark's exchanges through the pipeline's default path
/// (graph and live view): what the worker does per request of issue 17's
/// measurements, replayed without the host's noise.
fn bench_nginx_wrk<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let records = server_records(nginx_wrk_exchange, 1, 20_000);
    let short_records = one_connection_per_request_records(nginx_wrk_exchange);
    let mut path = Path::with_graph_and_live_view();
    let mut exporting = Path::with_trace_export();
    let mut short = Path::with_graph_and_live_view();
    let mut bare = Path::without_exporter();
    let mut spans = Path::with_span_metrics();
    let mut exponential = Path::with_exponential_histograms();
    let mut exemplars = Path::with_otlp_exemplars();
    for (path, records) in [
        (&mut path, &records),
        (&mut exporting, &records),
        (&mut short, &short_records),
        (&mut bare, &records),
        (&mut spans, &records),
        (&mut exponential, &records),
        (&mut exemplars, &records),
    ] {
        let produced = path.replay(records, true);
        assert_eq!(produced, EXCHANGES, "every exchange must become one span");
    }
    assert_eq!(
        short.tracker.connection_count(),
        0,
        "every short connection must be forgotten at its close"
    );
    assert!(
        exporting.traces.as_ref().is_some_and(|t| t.bytes > 0),
        "the spans must be serialised"
    );
    // A fixed number of replays, for an exact count of exchanges under callgrind.
    if let Some(replays) = std::env::var("ZT_NGINX_WRK_REPLAYS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        // Once, not again for the CPU-time group.
        if group_name == "nginx_wrk" {
            for _ in 0..replays {
                black_box(replay_nginx_wrk(&mut path, black_box(&records)));
                black_box(replay_nginx_wrk_exporting(
                    &mut exporting,
                    black_box(&records),
                ));
                black_box(replay_one_connection_per_request(
                    &mut short,
                    black_box(&short_records),
                ));
                black_box(replay_nginx_wrk_without_exporter(
                    &mut bare,
                    black_box(&records),
                ));
                black_box(replay_nginx_wrk_span_metrics(
                    &mut spans,
                    black_box(&records),
                ));
                black_box(replay_nginx_wrk_exponential(
                    &mut exponential,
                    black_box(&records),
                ));
                black_box(replay_nginx_wrk_exemplars(
                    &mut exemplars,
                    black_box(&records),
                ));
            }
        }
        return;
    }
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(EXCHANGES as u64));
    group.bench_function("default_path", |b| {
        b.iter(|| black_box(replay_nginx_wrk(&mut path, black_box(&records))))
    });
    group.bench_function("otlp_traces", |b| {
        b.iter(|| {
            black_box(replay_nginx_wrk_exporting(
                &mut exporting,
                black_box(&records),
            ))
        })
    });
    group.bench_function("one_connection_per_request", |b| {
        b.iter(|| {
            black_box(replay_one_connection_per_request(
                &mut short,
                black_box(&short_records),
            ))
        })
    });
    group.bench_function("without_exporter", |b| {
        b.iter(|| {
            black_box(replay_nginx_wrk_without_exporter(
                &mut bare,
                black_box(&records),
            ))
        })
    });
    group.bench_function("span_metrics", |b| {
        b.iter(|| {
            black_box(replay_nginx_wrk_span_metrics(
                &mut spans,
                black_box(&records),
            ))
        })
    });
    group.bench_function("exponential_histograms", |b| {
        b.iter(|| {
            black_box(replay_nginx_wrk_exponential(
                &mut exponential,
                black_box(&records),
            ))
        })
    });
    group.bench_function("otlp_exemplars", |b| {
        b.iter(|| {
            black_box(replay_nginx_wrk_exemplars(
                &mut exemplars,
                black_box(&records),
            ))
        })
    });
    group.finish();
}

/// The timed replay of [`bench_nginx_wrk`], apart so that callgrind can count
/// its instructions alone: `ZT_NGINX_WRK_REPLAYS=20 valgrind --tool=callgrind
/// --toggle-collect=decode::replay_nginx_wrk <bench binary> --bench
/// nginx_wrk/default_path` replays the exchanges exactly 20 times (no
/// criterion run), so the total divided by 20 × EXCHANGES is the count per
/// exchange.
#[inline(never)]
fn replay_nginx_wrk(path: &mut Path, records: &[Vec<u8>]) -> usize {
    path.replay(records, true)
}

/// [`replay_nginx_wrk`] on the path that also exports every span as an OTLP
/// trace span (`--toggle-collect=decode::replay_nginx_wrk_exporting`).
#[inline(never)]
fn replay_nginx_wrk_exporting(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as `replay_nginx_wrk`, which the linker would fold
    // into one function (callgrind could not tell them apart).
    black_box(path.traces.as_ref().map(|traces| traces.bytes));
    produced
}

/// [`replay_nginx_wrk`] with each exchange on a connection of its own
/// (`--toggle-collect=decode::replay_one_connection_per_request`).
#[inline(never)]
fn replay_one_connection_per_request(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as the other replay functions (see replay_nginx_wrk_exporting).
    black_box(path.tracker.connection_count());
    produced
}

/// [`replay_nginx_wrk`] as the pipeline runs it with no exporter, which is
/// how the nginx benchmark runs the agent: no RED or service graph metrics
/// (`--toggle-collect=decode::replay_nginx_wrk_without_exporter`).
#[inline(never)]
fn replay_nginx_wrk_without_exporter(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as the other replay functions (see replay_nginx_wrk_exporting).
    black_box(path.metrics);
    produced
}

/// [`replay_nginx_wrk`] with the span metrics on
/// (`--toggle-collect=decode::replay_nginx_wrk_span_metrics`).
#[inline(never)]
fn replay_nginx_wrk_span_metrics(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as the other replay functions (see replay_nginx_wrk_exporting).
    black_box(path.span_metrics.as_ref().map(|m| m.series().count()));
    produced
}

/// [`replay_nginx_wrk`] with exponential histograms
/// (`--toggle-collect=decode::replay_nginx_wrk_exponential`).
#[inline(never)]
fn replay_nginx_wrk_exponential(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as the other replay functions (see replay_nginx_wrk_exporting).
    black_box(path.red.stores().len());
    produced
}

/// [`replay_nginx_wrk`] with OTLP's default exemplars
/// (`--toggle-collect=decode::replay_nginx_wrk_exemplars`).
#[inline(never)]
fn replay_nginx_wrk_exemplars(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as the other replay functions (see replay_nginx_wrk_exporting).
    black_box(path.red.stores().len() + 1);
    produced
}

/// PostgreSQL and Redis client operations and Kafka produces through the whole path.
fn bench_database<M: Measurement>(c: &mut Criterion<M>, [postgres, redis, kafka]: [&str; 3]) {
    let cases = [
        (
            postgres,
            client_records(5432, Some(pg_startup()), pg_exchange),
        ),
        (redis, client_records(6379, None, redis_exchange)),
        (
            kafka,
            client_records(9092, Some(kafka_first()), kafka_exchange),
        ),
    ];
    for (group_name, records) in cases {
        let mut path = Path::new();
        path.replay(&records.setup, true);
        let produced = path.replay(&records.timed, true);
        assert_eq!(
            produced, EXCHANGES,
            "{group_name}: every operation must become one span"
        );
        let series = path.red.db.series().count() + path.red.messaging.series_count();
        eprintln!(
            "{group_name}: replaying {} records ({EXCHANGES} operations on {CONNECTIONS} connections), {series} metric series",
            records.timed.len()
        );
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(EXCHANGES as u64));
        group.bench_function("decode_span_red", |b| {
            b.iter(|| black_box(path.replay(black_box(&records.timed), true)))
        });
        group.finish();
    }
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

    // A fixed number of replays on the default path, for an exact count of
    // exchanges under callgrind (as `ZT_NGINX_WRK_REPLAYS`).
    if let Some(replays) = std::env::var("ZT_HTTP1_REPLAYS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        if group_name == "http1" {
            let mut default_path = Path::with_graph_and_live_view();
            default_path.replay(&records, true);
            for _ in 0..replays {
                black_box(replay_http1(&mut default_path, black_box(&records)));
            }
        }
        return;
    }
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(EXCHANGES as u64));
    group.bench_function("decode_span_route_red", |b| {
        b.iter(|| black_box(path.replay(black_box(&records), true)))
    });
    let mut with_graph = Path::with_graph();
    group.bench_function("decode_span_route_red_service_graph", |b| {
        b.iter(|| black_box(with_graph.replay(black_box(&records), true)))
    });
    let mut with_live_view = Path::with_graph_and_live_view();
    group.bench_function("decode_span_route_red_service_graph_live_view", |b| {
        b.iter(|| black_box(with_live_view.replay(black_box(&records), true)))
    });
    let mut tracker_only = Path::new();
    group.bench_function("decode_span_only", |b| {
        b.iter(|| black_box(tracker_only.replay(black_box(&records), false)))
    });
    group.finish();
}

/// The realistic exchanges of [`bench_decode`] through the pipeline's default
/// path, apart for callgrind: `ZT_HTTP1_REPLAYS=20 valgrind --tool=callgrind
/// --toggle-collect=decode::replay_http1 <bench binary> --bench
/// http1/decode_span_route_red_service_graph_live_view` counts exactly
/// 20 × EXCHANGES exchanges.
#[inline(never)]
fn replay_http1(path: &mut Path, records: &[Vec<u8>]) -> usize {
    let produced = path.replay(records, true);
    // Not the same body as the other replay functions (see replay_nginx_wrk_exporting).
    black_box(path.red.http.series().count());
    produced
}

criterion_group!(benches, decode_path);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = decode_path_cpu
}
criterion_main!(benches, cpu);
