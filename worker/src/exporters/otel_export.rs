//! The OpenTelemetry side of the pipeline: every span feeds the RED metrics;
//! sampled spans are batched per the batch span processor settings; both go
//! to the OTLP exporter, each process as its own resource. The agent's own
//! metrics (`zerotrace.*`) go with every metrics export, on its own resource.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::otlp::{OtlpExporter, Payload};
use crate::clock::WallClock;
use crate::config::{ttl_cutoff_unix_ns, HistogramBuckets, SpanMetricForms, DEFAULT_SERIES_TTL};
use crate::config::{BatchSettings, ExportSettings, Signal};
use crate::hashing::FastMap;
use crate::metrics::exemplars::ExemplarPolicy;
use crate::metrics::host_info;
use crate::metrics::process::ProcessMetrics;
use crate::metrics::red::RedMetrics;
use crate::metrics::self_metrics::{self, SelfMetrics};
use crate::metrics::service_graph::ServiceGraphMetrics;
use crate::metrics::span_metrics::SpanMetrics;
use crate::otel::attribute_blocks::AttributeBlocks;
use crate::otel::sampler::Sampler;
use crate::otel::span_wire::{append_span, export_request, scope_bytes, ProcessSpans};
use crate::service_graph::{EdgeKey, EdgeSample};

/// How long shutdown waits for the last batches to leave.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Batch buffers kept for reuse (each process with spans in a batch has one).
const SPARE_BUFFERS: usize = 4;
/// Drops are reported at most this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Data points of every kind in an export (what the export counters count).
fn data_point_count(
    request: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

pub struct OtelExport {
    exporter: OtlpExporter,
    sampler: Sampler,
    /// Which spans leave exemplars on the histograms (`OTEL_METRICS_EXEMPLAR_FILTER`).
    exemplars: ExemplarPolicy,
    red: Option<RedMetrics>,
    /// Service graph edges (`application_service_graph`), on the agent's resource.
    graph: Option<ServiceGraphMetrics>,
    /// Each process's CPU and memory (`application_process`), on its resource.
    processes: Option<ProcessMetrics>,
    /// Spans counted by name, kind and status (`application_span`).
    span_metrics: Option<SpanMetrics>,
    /// `host.id`, for `traces_host_info` beside the span and graph metrics.
    host_id: Option<String>,
    /// `application_host`: `traces_host_info` even without them.
    host_info_listed: bool,
    /// Histogram bounds that replace the defaults (OBI's `buckets`).
    buckets: HistogramBuckets,
    /// Resource attributes the span metrics carry (OBI's `extra_span_resource_attributes`).
    span_resource_attributes: Arc<[String]>,
    /// Whether the service graph counts a service calling itself.
    graph_self_references: bool,
    /// Series not updated for this long are dropped at the next export (OBI's `ttl`).
    series_ttl: Option<Duration>,
    temporality: crate::config::Temporality,
    batch: BatchSettings,
    metric_interval: Duration,
    /// Sampled spans not yet exported, serialised, by process.
    pending: FastMap<u32, ProcessSpans>,
    pending_spans: usize,
    /// Emptied batch buffers, for the next batches.
    spare_buffers: Vec<Vec<u8>>,
    /// Connections' attributes as written, to copy for their next spans.
    attribute_blocks: AttributeBlocks,
    /// [`scope`], serialised once.
    scope: Vec<u8>,
    last_span_flush: Instant,
    last_metric_export: Instant,
    last_drop_report: Instant,
    reported_drops: (u64, u64),
    pub spans_sampled_out: u64,
    /// The agent's resource and latest own metrics, and when it started.
    agent: Resource,
    own: SelfMetrics,
    started_unix_ns: u64,
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "zerotrace".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

impl OtelExport {
    /// None when neither traces nor metrics have an endpoint.
    pub fn start(settings: &ExportSettings) -> Result<Option<Self>, String> {
        if settings.traces.is_empty() && settings.metrics.is_empty() {
            return Ok(None);
        }
        let mut destinations = settings.traces.clone();
        destinations.extend(settings.metrics.iter().cloned());
        let queue_batches = settings.batch.max_queue_size / settings.batch.max_export_batch_size;
        let exporter = OtlpExporter::start(destinations, queue_batches.max(2))?;
        // OTEL_METRICS_EXEMPLAR_FILTER: `trace_based` keeps the spans this
        // export's sampler keeps, so no exemplar names a trace not sent.
        let exemplars =
            ExemplarPolicy::new(settings.exemplar_filter, Sampler::new(settings.sampler));
        let red = exporter
            .exports(Signal::Metrics)
            .then(|| RedMetrics::new(settings.temporality).with_exemplars(exemplars));
        Ok(Some(Self {
            exporter,
            sampler: Sampler::new(settings.sampler),
            exemplars,
            red,
            graph: None,
            processes: None,
            span_metrics: None,
            host_id: None,
            host_info_listed: false,
            buckets: HistogramBuckets::default(),
            span_resource_attributes: Arc::default(),
            graph_self_references: false,
            series_ttl: Some(DEFAULT_SERIES_TTL),
            temporality: settings.temporality,
            batch: settings.batch,
            metric_interval: settings.metric_export_interval,
            pending: FastMap::default(),
            pending_spans: 0,
            spare_buffers: Vec::new(),
            attribute_blocks: AttributeBlocks::default(),
            scope: scope_bytes(&scope()),
            last_span_flush: Instant::now(),
            last_metric_export: Instant::now(),
            last_drop_report: Instant::now(),
            reported_drops: (0, 0),
            spans_sampled_out: 0,
            agent: Resource::default(),
            own: SelfMetrics::default(),
            started_unix_ns: 0,
        }))
    }

    /// Records one span: into the RED metrics unless `in_metrics` is false,
    /// and as a trace span (sampler permitting) unless `in_traces` is false.
    pub fn record(
        &mut self,
        span: &crate::spans::Span,
        resource: &Arc<Resource>,
        (in_traces, in_metrics): (bool, bool),
        clock: &WallClock,
    ) {
        // The span metrics exist only beside the RED metrics (`with_span_metrics`).
        if let Some(red) = self.red.as_mut().filter(|_| in_metrics) {
            let end = clock.to_unix_ns(span.end_monotonic_ns);
            red.record(span, resource, end);
            if let Some(span_metrics) = self.span_metrics.as_mut() {
                span_metrics.record(span, resource, end);
            }
        }
        if !in_traces || !self.exporter.exports(Signal::Traces) {
            return;
        }
        if !self.sampler.keeps(&span.ids) {
            self.spans_sampled_out += 1;
            return;
        }
        // A process's batch is on the resource it had when its first span came.
        let spare = &mut self.spare_buffers;
        let process = self
            .pending
            .entry(span.pid)
            .or_insert_with(|| ProcessSpans {
                resource: Arc::clone(resource),
                spans: spare.pop().unwrap_or_default(),
                count: 0,
            });
        append_span(span, clock, &mut self.attribute_blocks, &mut process.spans);
        process.count += 1;
        self.pending_spans += 1;
        if self.pending_spans >= self.batch.max_export_batch_size {
            self.flush_spans();
        }
    }

    /// Histogram bounds that replace the defaults (OBI's `buckets`), for
    /// every store: those made already and those made after.
    pub fn with_buckets(mut self, buckets: &HistogramBuckets) -> Self {
        self.buckets = buckets.clone();
        self.red = self.red.map(|red| red.with_buckets(buckets));
        self.graph = self.graph.map(|graph| graph.with_buckets(buckets));
        self.span_metrics = self.span_metrics.map(|spans| spans.with_buckets(buckets));
        self
    }

    /// Series not updated for `ttl` are dropped at the next export; `None`:
    /// kept until their process exits (OBI's `ttl`).
    pub fn with_series_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.series_ttl = ttl;
        self
    }

    /// Sends the service graph metrics too (when metrics are exported at all).
    pub fn with_service_graph(mut self, enabled: bool) -> Self {
        if enabled && self.red.is_some() {
            self.graph = Some(
                ServiceGraphMetrics::new(self.temporality)
                    .with_buckets(&self.buckets)
                    .with_self_references(self.graph_self_references),
            );
        }
        self
    }

    /// Counts the service graph's edges from a service to itself too (OBI's
    /// `allow_service_graph_self_references`), for the store made already and one made after.
    pub fn with_graph_self_references(mut self, allowed: bool) -> Self {
        self.graph_self_references = allowed;
        self.graph = self.graph.map(|graph| graph.with_self_references(allowed));
        self
    }

    pub fn exports_service_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Applies `attributes.select` to the RED metrics.
    pub fn with_attribute_selector(
        mut self,
        selector: Option<Arc<crate::metrics::attribute_select::AttributeSelector>>,
    ) -> Self {
        self.red = self.red.map(|red| red.with_selector(selector));
        self
    }

    /// Resource attributes the span metrics carry beside the service (OBI's
    /// `extra_span_resource_attributes`), for the store made already and one made after.
    pub fn with_span_resource_attributes(mut self, names: &Arc<[String]>) -> Self {
        self.span_resource_attributes = Arc::clone(names);
        self.span_metrics = self
            .span_metrics
            .map(|spans| spans.with_resource_attributes(names));
        self
    }

    /// Sends these span metric families too (when metrics are exported at all).
    pub fn with_span_metrics(mut self, forms: SpanMetricForms) -> Self {
        if forms.any() && self.red.is_some() {
            self.span_metrics = Some(
                SpanMetrics::new(self.temporality, forms)
                    .with_buckets(&self.buckets)
                    .with_resource_attributes(&self.span_resource_attributes)
                    .with_exemplars(self.exemplars),
            );
        }
        self
    }

    /// Sends the process metrics too (when metrics are exported at all).
    pub fn with_process_metrics(mut self, enabled: bool) -> Self {
        if enabled && self.red.is_some() {
            self.processes = Some(ProcessMetrics::new(self.temporality));
        }
        self
    }

    /// True when the next tick exports metrics that include the process
    /// metrics: the pipeline reads the processes then.
    pub fn wants_process_readings(&self) -> bool {
        self.processes.is_some() && self.metric_export_due()
    }

    fn metric_export_due(&self) -> bool {
        self.red.is_some() && self.last_metric_export.elapsed() >= self.metric_interval
    }

    /// The process metrics' store, read only.
    pub fn process_metrics_store(&self) -> Option<&ProcessMetrics> {
        self.processes.as_ref()
    }

    /// The process metrics' store, when they are exported.
    pub fn process_metrics(&mut self) -> Option<&mut ProcessMetrics> {
        self.processes.as_mut()
    }

    /// Requests between two services, for the service graph metrics.
    pub fn record_edge_run(&mut self, edge: &EdgeKey, samples: &[EdgeSample], now_unix_ns: u64) {
        if let Some(graph) = self.graph.as_mut() {
            graph.record_run(edge, samples, now_unix_ns);
        }
    }

    fn flush_spans(&mut self) {
        self.last_span_flush = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let request = export_request(self.pending.values(), &self.scope);
        let count = self.pending.values().map(|p| p.count).sum();
        // The batches' buffers are kept for the next ones (a batch grows to
        // a few hundred KiB: growing it again each time copied it over and over).
        for (_, mut process) in self.pending.drain() {
            if self.spare_buffers.len() < SPARE_BUFFERS {
                process.spans.clear();
                self.spare_buffers.push(process.spans);
            }
        }
        self.pending_spans = 0;
        self.exporter.submit(Payload::Traces(request.into()), count);
    }

    /// The host's id, sent as `traces_host_info` when the span or service
    /// graph metrics are.
    pub fn with_host_id(mut self, host_id: &str) -> Self {
        self.host_id = Some(host_id.to_owned());
        self
    }

    /// Sends `traces_host_info` even without span or graph metrics (`application_host`).
    pub fn with_host_info(mut self, listed: bool) -> Self {
        self.host_info_listed = listed;
        self
    }

    /// The resource the agent's own metrics are reported on.
    pub fn set_agent_resource(&mut self, resource: Resource, clock: &WallClock) {
        self.agent = resource;
        self.started_unix_ns = clock.to_unix_ns(crate::clock::monotonic_now_ns());
    }

    /// The latest snapshot of the agent's own metrics, for the next export.
    pub fn set_self_metrics(&mut self, own: SelfMetrics) {
        self.own = own;
    }

    pub fn queue_depth(&self) -> u64 {
        self.exporter.queue_depth()
    }

    fn export_metrics(&mut self, clock: &WallClock) {
        self.last_metric_export = Instant::now();
        if self.red.is_none() {
            return;
        }
        let now = clock.to_unix_ns(crate::clock::monotonic_now_ns());
        if let Some(ttl) = self.series_ttl {
            let cutoff = ttl_cutoff_unix_ns(ttl, now);
            if let Some(red) = self.red.as_mut() {
                red.expire(cutoff);
            }
            if let Some(graph) = self.graph.as_mut() {
                graph.expire(cutoff);
            }
            if let Some(spans) = self.span_metrics.as_mut() {
                spans.expire(cutoff);
            }
        }
        let mut request = self
            .red
            .as_mut()
            .and_then(|red| red.export(now))
            .unwrap_or_default();
        if let Some(edges) = self.graph.as_mut().and_then(|g| g.export(&self.agent, now)) {
            request.resource_metrics.push(edges);
        }
        if let Some(span_metrics) = self.span_metrics.as_mut() {
            request.resource_metrics.extend(span_metrics.export(now));
        }
        if let Some(host_id) = &self.host_id {
            if self.host_info_listed || self.graph.is_some() || self.span_metrics.is_some() {
                request
                    .resource_metrics
                    .push(host_info::to_otlp(host_id, &self.agent, now));
            }
        }
        if let Some(processes) = self.processes.as_mut() {
            request.resource_metrics.extend(processes.export());
        }
        // The agent's own metrics go out every interval, traffic or not.
        request.resource_metrics.push(self_metrics::to_otlp(
            &self.own,
            &self.agent,
            self.started_unix_ns,
            now,
        ));
        let points = data_point_count(&request);
        self.exporter
            .submit(Payload::Metrics(Arc::new(request)), points);
    }

    /// A process exited: its series go away after their last export.
    pub fn forget_process(&mut self, pid: u32) {
        if let Some(red) = self.red.as_mut() {
            red.forget_process(pid);
        }
        if let Some(processes) = self.processes.as_mut() {
            processes.forget_process(pid);
        }
        if let Some(span_metrics) = self.span_metrics.as_mut() {
            span_metrics.forget_process(pid);
        }
    }

    /// Periodic work: the span batch timer, the metric interval, drop reports.
    pub fn tick(&mut self, clock: &WallClock) {
        if self.last_span_flush.elapsed() >= self.batch.schedule_delay {
            self.flush_spans();
        }
        if self.metric_export_due() {
            self.export_metrics(clock);
        }
        if self.last_drop_report.elapsed() >= DROP_REPORT_EVERY {
            self.last_drop_report = Instant::now();
            let counters = &self.exporter.counters;
            let drops = (
                counters.spans_dropped.load(Ordering::Relaxed),
                counters.points_dropped.load(Ordering::Relaxed),
            );
            if drops != self.reported_drops {
                tracing::warn!(
                    "OTLP export dropped {} span(s) and {} metric point(s) in the last {} s ({} and {} in total)",
                    drops.0 - self.reported_drops.0,
                    drops.1 - self.reported_drops.1,
                    DROP_REPORT_EVERY.as_secs(),
                    drops.0,
                    drops.1
                );
                self.reported_drops = drops;
            }
        }
    }

    pub fn counters(&self) -> &super::otlp::ExportCounters {
        &self.exporter.counters
    }

    /// Sends what is pending and waits (bounded) for it to leave.
    pub fn shutdown(mut self, clock: &WallClock) -> String {
        self.flush_spans();
        self.export_metrics(clock);
        let counters = Arc::clone(&self.exporter.counters);
        self.exporter.shutdown(SHUTDOWN_TIMEOUT);
        format!(
            "OTLP: {} spans exported, {} dropped, {} sampled out; {} metric points exported, {} dropped; {} failed attempts",
            counters.spans_exported.load(Ordering::Relaxed),
            counters.spans_dropped.load(Ordering::Relaxed),
            self.spans_sampled_out,
            counters.points_exported.load(Ordering::Relaxed),
            counters.points_dropped.load(Ordering::Relaxed),
            counters.failed_attempts.load(Ordering::Relaxed),
        )
    }
}
