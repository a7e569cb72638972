//! The worker's event loop: kernel events in, spans out. Discovery decides
//! which processes the kernel watches; the connection tracker turns their
//! traffic into spans; exporters write them.

use std::collections::HashMap;
use std::io::Stdout;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use zerotrace_shared::event::{layout, ConnTuple, ConnectionRole, EventOrigin, KernelEvent};

use zerotrace_shared::ipc::LoaderStats;

use crate::capture::bpf_map::{possible_cpus, BpfMap};
use crate::capture::reader::{ReaderCounters, RecordSink};
use crate::clock::{monotonic_now_ns, WallClock};
use crate::config::{AttributeFilter, DatabaseSettings, ExporterSwitch, ServiceExport};
use crate::connections::{ConnectionTracker, OpenedConnection, Segment};
use crate::discovery::Discovery;
use crate::exporters::otel_export::OtelExport;
use crate::exporters::prometheus::SharedScrapeState;
use crate::exporters::trace_printer::TracePrinter;
use crate::hashing::FastMap;
use crate::live_view::LiveView;
use crate::loader_client::LoaderClient;
use crate::metrics::process::ProcessMetrics;
use crate::metrics::self_metrics::{LossNotice, SelfMetrics};
use crate::otel::resource::ResourceCatalog;
use crate::otel::sampler::Sampler;
use crate::process_usage::ProcessSampler;
use crate::protocols::db_selection::{destinations, protocol_selection};
use crate::routes::{RouteMatcher, SegmentCardinalityLimiter, ServiceRoute, WordMemo};
use crate::service_graph::{EdgeObservations, GraphNode, GraphSettings, ServiceGraph};
use crate::span_filter::SpanFilter;
use crate::spans::ids::TraceParent;
use crate::spans::{HttpText, Protocol, Span, SpanKind};
use crate::traces::{LinkCounters, LinkSettings, TraceLinker};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The name of a process: its main thread's (`/proc/PID/comm`), read once
/// per process and renewed when it execs. An event's `comm` names the thread
/// that made the call, which servers rename (grpcio's `event_engine`, Java
/// and Go pools): it stands in only when the process is already gone. Kept
/// as an `Arc<str>` that the process's connections share.
fn process_name<'a>(
    names: &'a mut FastMap<u32, Arc<str>>,
    origin: &EventOrigin<'_>,
) -> &'a Arc<str> {
    process_name_of(names, origin.pid, || origin.comm().as_ref().into())
}

/// A process's name (comm): remembered, else read from procfs, else `fallback`.
fn process_name_of(
    names: &mut FastMap<u32, Arc<str>>,
    pid: u32,
    fallback: impl FnOnce() -> Arc<str>,
) -> &Arc<str> {
    names.entry(pid).or_insert_with(
        || match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(name) if !name.trim().is_empty() => name.trim().into(),
            _ => fallback(),
        },
    )
}

fn service_name_of(
    resource: &opentelemetry_proto::tonic::resource::v1::Resource,
) -> Option<String> {
    crate::otel::resource::attribute_text(resource, "service.name")
}

/// A process as the service graph names it: its `service.name` and `service.namespace`.
fn graph_node(
    resource: &opentelemetry_proto::tonic::resource::v1::Resource,
    process_name: &str,
) -> GraphNode {
    let name = service_name_of(resource).unwrap_or_else(|| process_name.to_owned());
    let namespace =
        crate::otel::resource::attribute_text(resource, "service.namespace").unwrap_or_default();
    GraphNode::new(&name, &namespace)
}

/// A full listener scan also runs on this period, as a safety net for listen
/// events lost to a full ring buffer.
const RESCAN_EVERY: Duration = Duration::from_secs(10);
/// The agent's own metrics are refreshed this often (reading them walks every connection).
const SELF_METRICS_EVERY: Duration = Duration::from_millis(500);
/// The process metrics a Prometheus scrape reads are this old at most.
const PROCESS_READINGS_FOR_SCRAPES_EVERY: Duration = Duration::from_secs(5);
/// The Prometheus endpoint keeps an exited process's series at least this
/// long (so that scrapes see its last counts), at most twice.
const EXITED_SERIES_KEPT_FOR_SCRAPES: Duration = Duration::from_secs(60);
/// The loader's counters are asked for this often.
const LOADER_STATS_EVERY: Duration = Duration::from_secs(5);

pub struct Pipeline {
    pub discovery: Discovery,
    pub tracker: ConnectionTracker,
    pub printer: TracePrinter<Stdout>,
    pub clock: WallClock,
    pub loader: LoaderClient,
    pub spans_emitted: u64,
    /// Requests whose `traceparent` was malformed or forged (ignored).
    invalid_traceparents: u64,
    spans: Vec<Span>,
    /// Kept between batches for their capacity (empty between them): the
    /// spans ready to go out, and per span where it may go.
    spare_spans: Vec<Span>,
    keep: Vec<(bool, bool)>,
    to_prometheus: Vec<bool>,
    /// Joins spans of one request across processes before they go out.
    linker: TraceLinker,
    /// Pairs exported client and server spans into service graph edges
    /// (when its metrics are exported or `zerotrace top` may show them).
    graph: Option<ServiceGraph>,
    /// Edges observed and not yet recorded by the exporters.
    edges: EdgeObservations,
    /// The linker's wait: the service graph holds spans longer.
    link_wait: Duration,
    last_scan: Instant,
    kernel_counters: Option<KernelCounters>,
    otel: Option<OtelExport>,
    /// Process names (comm) by pid: events carry them only now and then.
    process_names: FastMap<u32, Arc<str>>,
    /// One OpenTelemetry resource per process, for every exporter.
    resources: ResourceCatalog,
    scrape: Option<SharedScrapeState>,
    /// What `zerotrace top` reads (see live_view.rs).
    live: Option<Arc<Mutex<LiveView>>>,
    reader_counters: Option<Arc<ReaderCounters>>,
    /// The `routes` configuration: http.route and what is ignored.
    routes: RouteMatcher,
    /// Path segments the route heuristic found to be words lately.
    route_words: WordMemo,
    /// Per-process caps for `unmatched: low-cardinality` (None: mode off).
    route_limiters: HashMap<u32, Option<SegmentCardinalityLimiter>>,
    pub spans_ignored: u64,
    last_self_metrics: Instant,
    last_loader_stats: Option<Instant>,
    loader_stats: LoaderStats,
    loss_notice: LossNotice,
    /// OBI's `filter.application`: spans that do not pass go nowhere.
    span_filter: Option<SpanFilter>,
    /// Reads the instrumented processes' CPU and memory (`application_process`).
    process_sampler: Option<ProcessSampler>,
    /// Whether the Prometheus endpoint serves the process metrics.
    process_metrics_for_scrapes: bool,
    last_process_readings_for_scrapes: Option<Instant>,
    /// Processes exited since the last pruning of the Prometheus state, and
    /// in the round before (whose series go at the next pruning).
    exited_for_scrapes: [Vec<u32>; 2],
    last_scrape_pruning: Instant,
    /// Processes that exited in this run: forgotten once the spans they
    /// left (their open exchanges, closed by the exit) went out.
    exited: Vec<u32>,
    /// The processes whose discovery entry set `exports`, `sampler` or `routes`.
    service_exports: FastMap<u32, ServiceExport>,
    /// Whether HTTP spans keep the request's User-Agent (`attributes.select.traces`).
    span_user_agent: bool,
    /// Which database protocols are decoded, where they go, and the query text.
    databases: DatabaseSettings,
}

/// The kernel's per-CPU counters (events submitted, events dropped because
/// the ring buffer was full), read through the map fd the loader handed over.
pub struct KernelCounters {
    map: BpfMap,
    cpus: usize,
    reported_drops: u64,
}

impl KernelCounters {
    pub fn new(map: BpfMap) -> Self {
        Self {
            map,
            cpus: possible_cpus(),
            reported_drops: 0,
        }
    }

    fn read(&self, index: usize) -> u64 {
        self.map
            .lookup_percpu_u64_sum(&(index as u32).to_ne_bytes(), self.cpus)
            .unwrap_or(0)
    }

    pub fn ring_buffer_drops(&self) -> u64 {
        self.read(layout::COUNTER_RINGBUF_DROPS)
    }

    /// TLS plaintext the kernel dropped because its socket was never found.
    pub fn tls_unassociated(&self) -> u64 {
        self.read(layout::COUNTER_TLS_UNASSOCIATED)
    }

    /// Socket bytes the kernel did not send because their socket had
    /// already closed (the connection was ended by its close event).
    pub fn after_close(&self) -> u64 {
        self.read(layout::COUNTER_AFTER_CLOSE)
    }

    pub fn events_submitted(&self) -> u64 {
        self.read(layout::COUNTER_EVENTS_SUBMITTED)
    }

    /// Logs drops that happened since the last report.
    fn report_new_drops(&mut self) {
        let drops = self.ring_buffer_drops();
        if drops > self.reported_drops {
            tracing::warn!(
                "the kernel dropped {} event(s) because the ring buffer was full ({} in total); consider a larger --ring-buffer-bytes",
                drops - self.reported_drops,
                drops
            );
            self.reported_drops = drops;
        }
    }
}

impl Pipeline {
    pub fn new(
        discovery: Discovery,
        printer: TracePrinter<Stdout>,
        loader: LoaderClient,
        routes: RouteMatcher,
    ) -> Self {
        Self {
            discovery,
            tracker: ConnectionTracker::new(),
            printer,
            clock: WallClock::new(),
            loader,
            spans_emitted: 0,
            invalid_traceparents: 0,
            spans: Vec::new(),
            spare_spans: Vec::new(),
            keep: Vec::new(),
            to_prometheus: Vec::new(),
            linker: TraceLinker::new(LinkSettings::default()),
            graph: None,
            edges: EdgeObservations::default(),
            link_wait: LinkSettings::default().wait,
            last_scan: Instant::now(),
            kernel_counters: None,
            otel: None,
            process_names: FastMap::default(),
            resources: ResourceCatalog::new(None, Vec::new(), false),
            scrape: None,
            live: None,
            reader_counters: None,
            routes,
            route_words: WordMemo::default(),
            route_limiters: HashMap::new(),
            spans_ignored: 0,
            last_self_metrics: Instant::now(),
            last_loader_stats: None,
            loader_stats: LoaderStats::default(),
            loss_notice: LossNotice::default(),
            span_filter: None,
            process_sampler: None,
            process_metrics_for_scrapes: false,
            last_process_readings_for_scrapes: None,
            exited_for_scrapes: [Vec::new(), Vec::new()],
            exited: Vec::new(),
            service_exports: FastMap::default(),
            span_user_agent: true,
            last_scrape_pruning: Instant::now(),
            databases: DatabaseSettings::default(),
        }
    }

    /// Drops the spans the attribute filters do not pass, before any exporter.
    pub fn with_filters(mut self, filters: Vec<AttributeFilter>) -> Self {
        self.span_filter = SpanFilter::new(filters);
        self
    }

    /// Reads the instrumented processes' CPU and memory for the exporters
    /// that send the process metrics.
    pub fn with_process_metrics(mut self, exporters: ExporterSwitch) -> Self {
        self.process_sampler = exporters.any().then(ProcessSampler::default);
        self.process_metrics_for_scrapes = exporters.prometheus;
        self
    }

    /// HTTP server spans keep their `user_agent.original` unless
    /// `attributes.select.traces` excludes it.
    pub fn with_span_user_agent(mut self, kept: bool) -> Self {
        self.span_user_agent = kept;
        self
    }

    /// Database protocols no destination wants are not even detected.
    pub fn with_databases(mut self, databases: DatabaseSettings) -> Self {
        self.tracker = ConnectionTracker::with_protocols(protocol_selection(databases.decoded()));
        self.databases = databases;
        self
    }

    pub fn with_trace_links(mut self, settings: LinkSettings) -> Self {
        self.linker = TraceLinker::new(settings);
        self.link_wait = settings.wait;
        if self.graph.is_some() {
            self.graph = Some(ServiceGraph::new(GraphSettings::after_link_wait(
                settings.wait,
            )));
        }
        self
    }

    /// Pairs spans into service graph edges: for the exporters that send
    /// them (`application_service_graph`) and for the live view.
    pub fn with_service_graph(mut self, enabled: bool) -> Self {
        if (enabled || self.live.is_some()) && self.graph.is_none() {
            self.graph = Some(ServiceGraph::new(GraphSettings::after_link_wait(
                self.link_wait,
            )));
        }
        self
    }

    pub fn trace_link_counters(&self) -> LinkCounters {
        self.linker.counters()
    }

    pub fn with_otel_export(mut self, otel: Option<OtelExport>) -> Self {
        self.otel = otel;
        self
    }

    pub fn with_resources(mut self, resources: ResourceCatalog) -> Self {
        self.resources = resources;
        self
    }

    /// Feeds the live view `zerotrace top` reads.
    pub fn with_live_view(mut self, live: Option<Arc<Mutex<LiveView>>>) -> Self {
        self.live = live;
        // Its calls view shows the service graph's edges.
        if self.live.is_some() && self.graph.is_none() {
            self.graph = Some(ServiceGraph::new(GraphSettings::after_link_wait(
                self.link_wait,
            )));
        }
        self
    }

    /// Feeds the Prometheus endpoint's state.
    pub fn with_scrape_state(
        mut self,
        scrape: Option<SharedScrapeState>,
        reader: Arc<ReaderCounters>,
    ) -> Self {
        self.scrape = scrape;
        self.reader_counters = Some(reader);
        self
    }

    pub fn with_kernel_counters(mut self, counters: KernelCounters) -> Self {
        self.kernel_counters = Some(counters);
        self
    }

    pub fn kernel_counters(&self) -> Option<&KernelCounters> {
        self.kernel_counters.as_ref()
    }

    /// Asks the loader for every listening socket and instruments the selected ones.
    pub fn scan_listeners(&mut self) {
        match self.loader.list_listeners() {
            Ok(listeners) => self.discovery.on_scan(&listeners, &self.loader),
            Err(e) => tracing::warn!("listener scan failed: {e}"),
        }
        let repaired = self.discovery.repair_pid_bits();
        if repaired > 0 {
            tracing::debug!("{repaired} pid bit(s) set again");
        }
        self.sync_identities();
        self.last_scan = Instant::now();
    }

    /// Names and container ids that discovery gave newly instrumented processes.
    fn sync_identities(&mut self) {
        for (pid, identity) in self.discovery.take_new_identities() {
            if identity.export.is_default() {
                self.service_exports.remove(&pid);
            } else {
                self.service_exports.insert(pid, identity.export);
            }
            self.resources.set_identity(pid, identity);
        }
        for pid in self.discovery.take_go_processes() {
            self.linker.serves_many_per_thread(pid);
        }
    }

    /// A socket's side when the kernel did not say (the socket backend sees
    /// no accept): the server's, when its local port is one the process
    /// listens on. Client-side decoders (the databases) must not read a
    /// server's replies as a client's commands. Asked once per socket: only
    /// its first event carries the tuple.
    fn side_of(&self, pid: u32, role: ConnectionRole, tuple: Option<&ConnTuple>) -> ConnectionRole {
        match (role, tuple) {
            (ConnectionRole::Unknown, Some(t)) if self.discovery.listens_on(pid, t.local_port) => {
                ConnectionRole::Server
            }
            _ => role,
        }
    }

    fn handle(&mut self, event: KernelEvent<'_>) {
        if let KernelEvent::Data { origin, .. } | KernelEvent::Connection { origin, .. } = &event {
            // Captured from its exec or listen, then not selected (discovery.rs).
            if self.discovery.drops_records_of(origin.pid, origin.ts_ns) {
                self.discovery.pending_stats.records_dropped += 1;
                return;
            }
        }
        match event {
            KernelEvent::Data {
                origin,
                sock_id,
                role,
                direction,
                tuple,
                total_bytes,
                payload,
                tls,
                h2_notes,
                tail,
            } => {
                let role = self.side_of(origin.pid, role, tuple.as_ref());
                if let (Some(t), ConnectionRole::Client) = (tuple.as_ref(), role) {
                    self.linker.note_client_connection(
                        SocketAddr::new(t.local, t.local_port),
                        SocketAddr::new(t.peer, t.peer_port),
                    );
                }
                // Disjoint field borrows: no per-event copy of the name.
                let name = process_name(&mut self.process_names, &origin);
                let segment = |payload, total_bytes| Segment {
                    sock_id,
                    pid: origin.pid,
                    process_name: name,
                    role,
                    direction,
                    tuple,
                    ts_ns: origin.ts_ns,
                    tid: origin.tid,
                    payload,
                    total_bytes,
                    tls,
                    tail: &[],
                };
                if h2_notes.is_empty() {
                    return self.tracker.on_data(
                        Segment {
                            tail,
                            ..segment(payload, total_bytes)
                        },
                        &mut self.spans,
                    );
                }
                // The frame headers the kernel noted past the copy are read in
                // their places: the frames are followed through what was not
                // copied.
                for (bytes, stands_for) in h2_notes.pieces(payload, total_bytes) {
                    self.tracker
                        .on_data(segment(bytes, stands_for), &mut self.spans);
                }
            }
            KernelEvent::Connection {
                origin,
                sock_id,
                role,
                tuple,
            } => {
                if role == ConnectionRole::Client {
                    self.linker.note_client_connection(
                        SocketAddr::new(tuple.local, tuple.local_port),
                        SocketAddr::new(tuple.peer, tuple.peer_port),
                    );
                }
                self.tracker.on_connection(
                    OpenedConnection {
                        sock_id,
                        pid: origin.pid,
                        process_name: process_name(&mut self.process_names, &origin),
                        role,
                        tuple,
                        ts_ns: origin.ts_ns,
                    },
                    &mut self.spans,
                )
            }
            KernelEvent::Close { origin, sock_id } => {
                self.tracker.close(sock_id, origin.ts_ns, &mut self.spans)
            }
            KernelEvent::Listen { origin, port } => {
                self.discovery
                    .on_listen(origin.pid, port, &origin.comm(), &self.loader)
            }
            KernelEvent::ProcessExec { origin, exec_path } => {
                // The thread that execs becomes the main thread, named after
                // the new program (only known processes: execs of others are not kept).
                let comm = origin.comm();
                if let Some(name) = self.process_names.get_mut(&origin.pid) {
                    if !comm.is_empty() {
                        *name = comm.as_ref().into();
                    }
                }
                self.discovery
                    .on_exec(origin.pid, &comm, exec_path, &self.loader)
            }
            KernelEvent::ProcessFork {
                child_pid,
                parent_pid,
                ..
            } => self.discovery.on_fork(child_pid, parent_pid, &self.loader),
            KernelEvent::ProcessExit { origin } => {
                self.discovery.on_exit(origin.pid, &self.loader);
                self.linker.process_exited(origin.pid);
                // Only a process seen before can have series.
                let seen = self.process_names.remove(&origin.pid).is_some();
                if seen && self.scrape.is_some() {
                    self.exited_for_scrapes[0].push(origin.pid);
                }
                // Its open exchanges end here; they go out at the end of the
                // run with its name, its entry's exports, and then it is forgotten.
                self.tracker
                    .forget_process(origin.pid, origin.ts_ns, &mut self.spans);
                self.exited.push(origin.pid);
            }
        }
    }

    fn flush(&mut self) {
        if self.spans.is_empty() && self.linker.held_count() == 0 {
            return;
        }
        self.spans_emitted += self.spans.len() as u64;
        // Spans that may still get a parent wait for it (bounded); the rest go on.
        let now = monotonic_now_ns();
        // The buffers of the last batch, emptied: no allocation per batch.
        let mut ready = std::mem::take(&mut self.spare_spans);
        for span in &self.spans {
            // The span started its own trace: the header was not a W3C context.
            if span
                .protocol
                .traceparent()
                .is_some_and(|header| TraceParent::parse(header).is_none())
            {
                self.invalid_traceparents += 1;
            }
        }
        let tracker = &mut self.tracker;
        // Requests written since the last batch: their deliveries (in this
        // batch or a later one) wait for their spans.
        for key in tracker.take_awaited_replies() {
            self.linker.note_awaited_reply(key, now);
        }
        self.linker
            .link_batch(&mut self.spans, &mut ready, now, |pid| {
                tracker.unanswered_requests(pid)
            });
        self.export(ready);
    }

    /// Routes, then every destination: printer, live view, OTLP, Prometheus.
    fn export(&mut self, ready: Vec<Span>) {
        self.spare_spans = std::mem::replace(&mut self.spans, ready);
        if self.spans.is_empty() {
            return;
        }
        // Routes first: they decide where each span may go.
        let mut keep = std::mem::take(&mut self.keep);
        // Per span: whether Prometheus may count it (the instrumentation lists).
        let mut to_prometheus = std::mem::take(&mut self.to_prometheus);
        for span in &mut self.spans {
            let (pid, kind) = (span.pid, span.kind);
            if let Some(to) = destinations(span, &self.databases) {
                keep.push((to.traces, to.otlp_metrics || to.prometheus));
                to_prometheus.push(to.prometheus);
                if let Protocol::Db(db) = &mut span.protocol {
                    if !self.databases.query_text {
                        db.query_text = None;
                    }
                }
                continue;
            }
            to_prometheus.push(true);
            // Routes are HTTP's (gRPC calls included); other protocols go everywhere.
            let Some(http) = span.http_mut() else {
                keep.push((true, true));
                continue;
            };
            if !self.span_user_agent {
                http.user_agent = None;
            }
            let decision = if self.routes.has_service_routes() {
                let service = self
                    .service_exports
                    .get(&pid)
                    .and_then(|export| export.routes)
                    .map(|index| ServiceRoute {
                        index,
                        outgoing: kind == SpanKind::Client,
                    });
                self.routes
                    .classify_for_service(&http.target, service, &mut self.route_words)
            } else {
                self.routes
                    .classify_remembering(&http.target, &mut self.route_words)
            };
            let (in_traces, in_metrics) = (!decision.ignore_traces, !decision.ignore_metrics);
            http.route = match decision.route {
                Some(route) if decision.needs_cardinality_cap => {
                    let limiter = self
                        .route_limiters
                        .entry(pid)
                        .or_insert_with(|| self.routes.new_cardinality_limiter());
                    Some(match limiter {
                        Some(limiter) => HttpText::from(limiter.limit(&route)),
                        None => HttpText::from(route),
                    })
                }
                Some(route) => Some(HttpText::from(route)),
                None => None,
            };
            keep.push((in_traces, in_metrics));
            if !in_traces || !in_metrics {
                self.spans_ignored += 1;
            }
        }
        if let Some(filter) = self.span_filter.as_mut() {
            for (span, keep) in self.spans.iter().zip(keep.iter_mut()) {
                if *keep == (false, false) {
                    continue;
                }
                let resource = self.resources.resource_for(span.pid, &span.process_name);
                if !filter.passes(span, &resource) {
                    *keep = (false, false);
                }
            }
        }
        self.printer.print(
            self.spans
                .iter()
                .zip(&keep)
                .filter(|(_, k)| k.0)
                .map(|(s, _)| s),
            &self.clock,
        );
        if let Some(live) = self.live.as_ref() {
            let now = Instant::now();
            let counted = || {
                self.spans
                    .iter()
                    .zip(&keep)
                    .filter(|(_, &(_, in_metrics))| in_metrics)
                    .map(|(span, _)| span)
            };
            // Each process's service once per batch. A batch's spans come in
            // runs of one process, so a span of the last one is not looked up.
            let mut services: FastMap<u32, String> = FastMap::default();
            let mut last_pid = None;
            for span in counted().filter(|span| last_pid.replace(span.pid) != Some(span.pid)) {
                services.entry(span.pid).or_insert_with(|| {
                    let resource = self.resources.resource_for(span.pid, &span.process_name);
                    service_name_of(&resource).unwrap_or_else(|| span.process_name.to_string())
                });
            }
            let mut last: Option<(u32, &str)> = None;
            let mut view = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            view.record_batch(
                counted().filter_map(|span| {
                    let service = match last {
                        Some((pid, service)) if pid == span.pid => service,
                        _ => services.get(&span.pid)?.as_str(),
                    };
                    last = Some((span.pid, service));
                    Some((span, service))
                }),
                now,
            );
        }
        // Past the printer and the live view, which show every span.
        if !self.service_exports.is_empty() {
            self.apply_service_exports(&mut keep);
        }
        if let Some(graph) = self.graph.as_mut() {
            let now = monotonic_now_ns();
            let mut nodes: FastMap<u32, GraphNode> = FastMap::default();
            for (span, &(_, in_metrics)) in self.spans.iter().zip(&keep) {
                if !in_metrics {
                    continue;
                }
                let node = nodes.entry(span.pid).or_insert_with(|| {
                    let resource = self.resources.resource_for(span.pid, &span.process_name);
                    graph_node(&resource, &span.process_name)
                });
                graph.observe(span, node, now, &mut self.edges);
            }
        }
        self.record_edges();
        if self.otel.is_some() || self.scrape.is_some() {
            let mut scrape = self.scrape.as_ref().and_then(|s| s.lock().ok());
            for ((span, &(in_traces, in_metrics)), &prometheus) in
                self.spans.iter().zip(&keep).zip(&to_prometheus)
            {
                let resource = self.resources.resource_for(span.pid, &span.process_name);
                if let Some(otel) = self.otel.as_mut() {
                    let otlp_metrics = in_metrics
                        && destinations(span, &self.databases).is_none_or(|to| to.otlp_metrics);
                    otel.record(span, &resource, (in_traces, otlp_metrics), &self.clock);
                }
                if let Some(state) = scrape.as_mut().filter(|_| in_metrics && prometheus) {
                    let end = self.clock.to_unix_ns(span.end_monotonic_ns);
                    state.red.record(span, &resource, end);
                    if let Some(span_metrics) = state.span_metrics.as_mut() {
                        span_metrics.record(span, &resource, end);
                    }
                }
            }
        }
        self.spans.clear();
        keep.clear();
        to_prometheus.clear();
        (self.keep, self.to_prometheus) = (keep, to_prometheus);
    }

    /// What was kept for the processes that exited: their resources, route
    /// caps, OTLP series and export settings. A pid discovery instruments
    /// again by now is a new process's, and keeps what it was given.
    fn forget_exited(&mut self) {
        for pid in std::mem::take(&mut self.exited) {
            if self.discovery.instrumented().contains_key(&pid) {
                continue;
            }
            self.resources.forget(pid);
            self.route_limiters.remove(&pid);
            self.service_exports.remove(&pid);
            if let Some(otel) = self.otel.as_mut() {
                otel.forget_process(pid);
            }
        }
    }

    /// Each span's process's own discovery entry: `exports` without traces
    /// or metrics keeps its spans out of them, and its `sampler` decides
    /// for its traces (the exemplars follow that decision too).
    fn apply_service_exports(&mut self, keep: &mut [(bool, bool)]) {
        for (span, keep) in self.spans.iter_mut().zip(keep.iter_mut()) {
            let Some(export) = self.service_exports.get(&span.pid) else {
                continue;
            };
            keep.0 &= !export.traces_blocked;
            keep.1 &= !export.metrics_blocked;
            if let Some(setting) = export.sampler {
                let sampler = Sampler::new(setting);
                span.ids.service_sampled =
                    Some(sampler.should_sample(&span.ids.trace_id, span.ids.parent_sampled));
            }
        }
    }

    /// Service graph edges to every destination that keeps them.
    fn record_edges(&mut self) {
        if self.edges.is_empty() {
            return;
        }
        let now_unix_ns = self.clock.to_unix_ns(monotonic_now_ns());
        // A service calling itself stays out of the metrics unless an
        // exporter allows it (`ServiceGraphMetrics::record_run`); top shows it.
        if let Some(otel) = self.otel.as_mut() {
            for (edge, samples) in self.edges.runs() {
                otel.record_edge_run(edge, samples, now_unix_ns);
            }
        }
        if let Some(mut state) = self.scrape.as_ref().and_then(|s| s.lock().ok()) {
            if let Some(graph) = state.graph.as_mut() {
                for (edge, samples) in self.edges.runs() {
                    graph.record_run(edge, samples, now_unix_ns);
                }
            }
        }
        if let Some(live) = self.live.as_ref() {
            let now = Instant::now();
            let mut view = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (edge, samples) in self.edges.runs() {
                view.record_calls(edge, samples, now);
            }
        }
        self.edges.clear();
    }

    /// Periodic work: clock offset, idle connections, the safety-net rescan.
    pub fn tick(&mut self) {
        self.clock.refresh_if_due();
        self.discovery.look_again_for_tls(&self.loader);
        let now_ns = monotonic_now_ns();
        self.discovery.forget_old_rejections(now_ns);
        self.tracker.expire_idle(now_ns, &mut self.spans);
        if self.last_scan.elapsed() >= RESCAN_EVERY {
            self.scan_listeners();
            if let Some(counters) = self.kernel_counters.as_mut() {
                counters.report_new_drops();
            }
        }
        self.flush();
        self.forget_exited();
        if let Some(graph) = self.graph.as_mut() {
            graph.expire(monotonic_now_ns(), &mut self.edges);
            self.record_edges();
        }
        self.read_processes();
        self.prune_scrape_state();
        if let Some(otel) = self.otel.as_mut() {
            otel.tick(&self.clock);
        }
        self.refresh_self_metrics();
    }

    /// Drops the Prometheus series of processes that exited a round ago:
    /// their RED, span and process metrics.
    fn prune_scrape_state(&mut self) {
        if self.last_scrape_pruning.elapsed() < EXITED_SERIES_KEPT_FOR_SCRAPES {
            return;
        }
        self.last_scrape_pruning = Instant::now();
        let [this_round, last_round] = &mut self.exited_for_scrapes;
        let gone = std::mem::replace(last_round, std::mem::take(this_round));
        if gone.is_empty() {
            return;
        }
        if let Some(mut state) = self.scrape.as_ref().and_then(|s| s.lock().ok()) {
            state.red.drop_processes(&gone);
            if let Some(store) = state.span_metrics.as_mut() {
                store.drop_processes(&gone);
            }
            if let Some(store) = state.processes.as_mut() {
                store.drop_processes(&gone);
            }
        }
    }

    /// Reads the instrumented processes when an exporter is about to send
    /// their metrics: OTLP at its metric export, Prometheus every
    /// [`PROCESS_READINGS_FOR_SCRAPES_EVERY`].
    fn read_processes(&mut self) {
        let Some(sampler) = self.process_sampler.as_mut() else {
            return;
        };
        let for_otlp = self
            .otel
            .as_ref()
            .is_some_and(OtelExport::wants_process_readings);
        let for_scrapes = self.process_metrics_for_scrapes
            && self.scrape.is_some()
            && self
                .last_process_readings_for_scrapes
                .is_none_or(|at| at.elapsed() >= PROCESS_READINGS_FOR_SCRAPES_EVERY);
        if !for_otlp && !for_scrapes {
            return;
        }
        // Not the processes whose discovery entry exports no metrics.
        let pids = self
            .discovery
            .instrumented()
            .iter()
            .filter(|(_, process)| !process.identity.export.metrics_blocked)
            .map(|(pid, _)| *pid);
        let readings = sampler.sample(pids);
        let now = self.clock.to_unix_ns(monotonic_now_ns());
        let resources: Vec<Arc<Resource>> = readings
            .iter()
            .map(|(pid, ..)| {
                let comm = Arc::clone(process_name_of(&mut self.process_names, *pid, || "".into()));
                self.resources.resource_for(*pid, &comm)
            })
            .collect();
        let record = |store: &mut ProcessMetrics| {
            for ((pid, usage, start), resource) in readings.iter().zip(&resources) {
                store.record(*pid, resource, *usage, *start, now);
            }
        };
        if for_otlp {
            if let Some(store) = self.otel.as_mut().and_then(OtelExport::process_metrics) {
                record(store);
            }
        }
        if for_scrapes {
            self.last_process_readings_for_scrapes = Some(Instant::now());
            if let Some(mut state) = self.scrape.as_ref().and_then(|s| s.lock().ok()) {
                if let Some(store) = state.processes.as_mut() {
                    record(store);
                }
            }
        }
    }

    /// The agent's own metrics, at most every [`SELF_METRICS_EVERY`]: to the
    /// Prometheus state, the OTLP exporter, and the text printer on losses.
    fn refresh_self_metrics(&mut self) {
        if self.last_self_metrics.elapsed() < SELF_METRICS_EVERY {
            return;
        }
        self.last_self_metrics = Instant::now();
        if self
            .last_loader_stats
            .is_none_or(|at| at.elapsed() >= LOADER_STATS_EVERY)
        {
            self.last_loader_stats = Some(Instant::now());
            match self.loader.stats() {
                Ok(stats) => self.loader_stats = stats,
                Err(e) => tracing::warn!("loader stats: {e}"),
            }
        }
        let own = self.self_metrics();
        if let Some(line) = self.loss_notice.line(&own, Instant::now()) {
            self.printer.notice(&line);
        }
        if let Some(scrape) = self.scrape.as_ref() {
            if let Ok(mut state) = scrape.lock() {
                state.own = own.clone();
            }
        }
        if let Some(otel) = self.otel.as_mut() {
            otel.set_self_metrics(own);
        }
    }

    fn self_metrics(&self) -> SelfMetrics {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let tracker = self.tracker.counters();
        let (kernel_events, kernel_drops, tls_unassociated, after_close) = self
            .kernel_counters
            .as_ref()
            .map(|c| {
                (
                    c.events_submitted(),
                    c.ring_buffer_drops(),
                    c.tls_unassociated(),
                    c.after_close(),
                )
            })
            .unwrap_or_default();
        let reader = self.reader_counters.as_deref();
        let load =
            |f: fn(&ReaderCounters) -> &AtomicU64| reader.map(|r| f(r).load(Relaxed)).unwrap_or(0);
        let otlp = self.otel.as_ref().map(|o| o.counters());
        let otlp_load = |f: fn(&crate::exporters::otlp::ExportCounters) -> &AtomicU64| {
            otlp.map(|c| f(c).load(Relaxed)).unwrap_or(0)
        };
        let links = self.linker.counters();
        SelfMetrics {
            kernel_events,
            kernel_ringbuf_drops: kernel_drops,
            records_read: load(|r| &r.records),
            undecodable_records: load(|r| &r.decode_errors),
            spans: self.spans_emitted,
            garbage_segments: tracker.garbage_segments,
            tls_record_segments: tracker.encrypted_segments,
            tls_unassociated,
            segments_after_close: after_close,
            unpaired_responses: tracker.unpaired_responses,
            unanswered_requests: tracker.unanswered_requests,
            pipelined_requests_dropped: tracker.dropped_requests,
            framing_lost: tracker.framing_lost,
            instrumented_processes: self.discovery.instrumented().len() as u64,
            tracked_connections: self.tracker.connection_count() as u64,
            otlp_spans_exported: otlp_load(|c| &c.spans_exported),
            otlp_spans_dropped: otlp_load(|c| &c.spans_dropped),
            otlp_points_exported: otlp_load(|c| &c.points_exported),
            otlp_points_dropped: otlp_load(|c| &c.points_dropped),
            otlp_failed_attempts: otlp_load(|c| &c.failed_attempts),
            otlp_queue_depth: self.otel.as_ref().map_or(0, OtelExport::queue_depth),
            uprobes_attached: self.loader_stats.uprobes_attached,
            worker_restarts: self.loader_stats.worker_restarts,
            loader_requests_refused: self.loader_stats.requests_refused,
            traces_linked: links.linked_across_processes,
            traces_unlinked_no_match: links.unlinked_after_wait,
            traces_unlinked_ambiguous: links.ambiguous,
            traces_nested: links.nested_in_process,
            traces_invalid_context: self.invalid_traceparents,
            traces_unlinked_ambiguous_parent: links.ambiguous_parent,
            traces_unlinked_no_parent: links.no_parent,
            traces_unlinked_parent_still_open: links.parent_still_open,
            traces_unlinked_held_limit: links.held_limit,
            service_graph_evictions: self.graph.as_ref().map_or(0, |g| g.counters().evicted),
            process_readings_lost: self.process_readings_lost(),
            spans_filtered: self.span_filter.as_ref().map_or(0, |f| f.spans_filtered),
            http2: tracker.http2,
        }
    }

    /// Process readings failed or not kept, for the agent's own metrics.
    fn process_readings_lost(&self) -> u64 {
        let Some(sampler) = self.process_sampler.as_ref() else {
            return 0;
        };
        let otlp = self
            .otel
            .as_ref()
            .and_then(OtelExport::process_metrics_store)
            .map_or(0, |p| p.over_limit);
        let scrape = self
            .scrape
            .as_ref()
            .and_then(|s| {
                s.lock()
                    .ok()
                    .and_then(|s| s.processes.as_ref().map(|p| p.over_limit))
            })
            .unwrap_or(0);
        sampler.failed_reads + otlp + scrape
    }

    /// Emits what is still buffered and flushes the exporters (bounded wait).
    pub fn shutdown(&mut self) -> Option<String> {
        self.flush();
        let mut held = Vec::new();
        self.linker.release_all(&mut held);
        self.export(held);
        if let Some(graph) = self.graph.as_mut() {
            graph.release_all(&mut self.edges);
            self.record_edges();
        }
        self.otel.take().map(|otel| otel.shutdown(&self.clock))
    }
}

/// The ring buffer's records, decoded where the kernel wrote them.
impl RecordSink for Pipeline {
    fn record(&mut self, record: &[u8]) -> bool {
        match KernelEvent::decode(record) {
            Ok(event) => {
                self.handle(event);
                true
            }
            Err(_) => false,
        }
    }

    /// Identities that discovery learnt, then the spans built out to their
    /// destinations.
    fn end_run(&mut self) {
        self.sync_identities();
        self.flush();
        self.forget_exited();
    }
}
