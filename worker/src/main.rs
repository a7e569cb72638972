//! `zerotrace-worker`: started by the `zerotrace` loader, never by users. It
//! makes itself non-dumpable before anything else, takes its settings from
//! the loader's start-up data (never from its environment), refuses to run
//! with privileges, takes the map fds from the loader, and turns kernel
//! events into spans.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use tracing::{error, info, warn};
use zerotrace_shared::ipc::{MapRole, IPC_FD_ENV};
use zerotrace_shared::logging::{self, LogSettings, LogSources};
use zerotrace_shared::startup::{self, StartupData};
use zerotrace_worker::capture::bpf_map::BpfMap;
use zerotrace_worker::capture::pid_bits::PidBits;
use zerotrace_worker::capture::reader::{self, ReaderCounters};
use zerotrace_worker::capture::ring_buffer::RingBuffer;
use zerotrace_worker::clock::WallClock;
use zerotrace_worker::config::SeccompMode;
use zerotrace_worker::config::WorkerConfig;
use zerotrace_worker::discovery::{Discovery, PidFilterWriter};
use zerotrace_worker::exporters::otel_export::OtelExport;
use zerotrace_worker::exporters::prometheus::{self, ScrapeState, SharedScrapeState};
use zerotrace_worker::exporters::trace_printer::TracePrinter;
use zerotrace_worker::live_view::{self, LiveView};
use zerotrace_worker::loader_client::LoaderClient;
use zerotrace_worker::metrics::attribute_select::AttributeSelector;
use zerotrace_worker::metrics::exemplars::ExemplarPolicy;
use zerotrace_worker::metrics::red::RedMetrics;
use zerotrace_worker::metrics::self_metrics;
use zerotrace_worker::otel::resource::ResourceCatalog;
use zerotrace_worker::otel::sampler::Sampler;
use zerotrace_worker::pipeline::{KernelCounters, Pipeline};
use zerotrace_worker::privileges::{self, OwnPrivileges};
use zerotrace_worker::routes::RouteMatcher;
use zerotrace_worker::sandbox;

/// Exit codes the loader understands as "do not restart me".
const EXIT_CONFIG_ERROR: u8 = 78;
const EXIT_PRIVILEGE_REFUSED: u8 = 77;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Prefixes the worker's text log lines (they share the loader's stderr).
const PROGRAM: &str = "zerotrace-worker";

/// Logging when the configuration could not be read: the loader's flags and
/// variables (already checked by the loader), without the file.
fn start_logging_without_config(startup: Option<&StartupData>) {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.windows(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str())
    };
    let sources = LogSources {
        level_flag: flag("--log-level"),
        format_flag: flag("--log-format"),
        level_env: startup.and_then(|s| s.var(logging::LEVEL_ENV)),
        format_env: startup.and_then(|s| s.var(logging::FORMAT_ENV)),
        ..LogSources::default()
    };
    logging::init(PROGRAM, LogSettings::resolve_lenient(&sources));
}

/// The loader's start-up data, from the descriptor it placed for us.
fn read_startup_data() -> Result<StartupData, String> {
    // SAFETY: called once, first thing; the loader placed this descriptor for us alone.
    let fd = unsafe { startup::take_inherited_fd() }?;
    startup::read_from(fd)
}

/// Checks the start-up promises on ourselves: unprivileged and out of reach.
fn check_own_privileges(config: &WorkerConfig) -> Result<(), String> {
    let own = OwnPrivileges::read()?;
    let violations = own.violations();
    if !violations.is_empty() && !config.allow_privileged {
        return Err(format!(
            "refusing to run: this process {} (the worker must be unprivileged; \
             --allow-privileged-worker overrides this for development only)",
            violations.join(" and ")
        ));
    }
    let exposures = own.exposures();
    if !exposures.is_empty() {
        return Err(format!(
            "refusing to run: this process {}",
            exposures.join(" and ")
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    // First, before the worker holds any descriptor worth taking or any
    // secret: no other process of our uid may attach, read our memory or
    // copy our fds (docs/security.md, "Who can reach the worker").
    if let Err(e) = privileges::make_undumpable().and_then(|()| privileges::settle_real_gid()) {
        start_logging_without_config(None);
        error!("{e}");
        return ExitCode::from(EXIT_PRIVILEGE_REFUSED);
    }
    let startup = match read_startup_data() {
        Ok(startup) => startup,
        Err(e) => {
            start_logging_without_config(None);
            error!("configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    let config = match WorkerConfig::from_startup(std::env::args().skip(1), &startup) {
        Ok(config) => config,
        Err(e) => {
            start_logging_without_config(Some(&startup));
            error!("configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    drop(startup);
    logging::init(PROGRAM, config.log);
    if config.print_config {
        print!("{}", config.effective.to_yaml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = check_own_privileges(&config) {
        error!("{e}");
        return ExitCode::from(EXIT_PRIVILEGE_REFUSED);
    }
    if config.dumpable {
        if let Err(e) = privileges::make_dumpable() {
            error!("{e}");
            return ExitCode::from(EXIT_PRIVILEGE_REFUSED);
        }
        warn!(
            "development: the worker is dumpable (--dumpable-worker): processes of its uid \
             can read its memory, its secrets and its descriptors",
        );
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Runtime(e)) => {
            error!("{e}");
            ExitCode::FAILURE
        }
        Err(Failure::Config(e)) => {
            error!("{e}");
            ExitCode::from(EXIT_CONFIG_ERROR)
        }
    }
}

/// Why the worker stopped: a restart may help (Runtime) or not (Config).
enum Failure {
    Runtime(String),
    Config(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Self::Runtime(e)
    }
}

impl From<&str> for Failure {
    fn from(e: &str) -> Self {
        Self::Runtime(e.to_owned())
    }
}

fn install_signal_handlers() -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }.map_err(|e| format!("sigaction: {e}"))?;
    }
    Ok(())
}

fn ipc_socket() -> Result<OwnedFd, String> {
    let raw: i32 = std::env::var(IPC_FD_ENV)
        .map_err(|_| format!("{IPC_FD_ENV} is not set: the worker is started by `zerotrace run`"))?
        .parse()
        .map_err(|_| format!("{IPC_FD_ENV} is not a file descriptor number"))?;
    if raw < 3 {
        return Err(format!("{IPC_FD_ENV}={raw} is not a socket we were given"));
    }
    // SAFETY: the loader placed our end of the socketpair at this fd number for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn run(config: WorkerConfig) -> Result<(), Failure> {
    install_signal_handlers()?;
    // SAFETY: prctl with integer arguments; die with the loader.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };

    let loader = LoaderClient::new(ipc_socket()?);
    let handover = loader.hello()?;
    tracing::debug!(
        "the loader (pid {}) handed over {} map(s)",
        handover.loader_pid,
        handover.maps.len()
    );
    let mut ring = None;
    let mut pid_filter = None;
    let mut pid_bits = None;
    let mut counters_map = None;
    for (descriptor, fd) in handover.maps {
        match descriptor.role {
            MapRole::Events => {
                ring = Some(
                    RingBuffer::new(fd, descriptor.max_entries)
                        .map_err(|e| format!("mapping the ring buffer: {e}"))?,
                )
            }
            MapRole::PidFilter => {
                pid_filter = Some(BpfMap::new(fd, descriptor.key_size, descriptor.value_size))
            }
            MapRole::PidBits => {
                pid_bits = Some(
                    PidBits::new(fd, descriptor.max_entries, descriptor.value_size)
                        .map_err(|e| format!("mapping the pid bitmap: {e}"))?,
                )
            }
            MapRole::Counters => {
                counters_map = Some(BpfMap::new(fd, descriptor.key_size, descriptor.value_size))
            }
        }
    }
    let mut ring = ring.ok_or("the loader sent no ring buffer")?;
    let pid_filter = pid_filter.ok_or("the loader sent no pid filter map")?;
    let pid_bits = pid_bits.ok_or("the loader sent no pid bitmap")?;
    let writer = if pid_filter.probe_writable() {
        PidFilterWriter::Direct(pid_filter)
    } else {
        warn!("this kernel does not let the worker update maps; asking the loader instead");
        PidFilterWriter::ViaLoader
    };
    let excluded = vec![std::process::id(), handover.loader_pid];
    let effective = &config.effective;
    for warning in &effective.warnings {
        warn!("configuration: {warning}");
    }
    let mut discovery = Discovery::new(
        effective.instrument.clone(),
        effective.exclude.clone(),
        excluded,
        writer,
    )
    .with_pid_bits(pid_bits);
    match discovery.arm_exec_capture() {
        Ok(true) => info!(
            "programs are captured from their exec until discovery decides (an exe_path selector without open_ports)"
        ),
        Ok(false) => {}
        Err(e) => warn!("{e}: a short-lived program an exe_path selector names may be missed"),
    }
    match discovery.arm_listen_capture() {
        Ok(0) => {}
        Ok(ports) => info!(
            "a process that listens on one of the {ports} port(s) the selectors name is captured from its listen"
        ),
        Err(e) => warn!("{e}: a server asked as soon as it listens may lose its first requests"),
    }
    if config.tls_capture {
        discovery = discovery.with_tls_hooks();
    } else {
        info!("TLS plaintext capture off (ZEROTRACE_TLS_CAPTURE=false)");
    }
    let printer = TracePrinter::new(effective.trace_printer, std::io::stdout());
    let selector = AttributeSelector::new(&effective.metric_selections, RedMetrics::instruments())
        .map(Arc::new);
    let host_id = zerotrace_worker::otel::host_id::resolve(effective.host_id.as_deref());
    info!("host.id {} (from {})", host_id.id, host_id.source);
    let otel = OtelExport::start(&effective.export)?.map(|otel| {
        otel.with_graph_self_references(effective.graph_self_references.otlp)
            .with_service_graph(effective.service_graph.otlp)
            .with_host_id(&host_id.id)
            .with_host_info(effective.host_info.otlp)
            .with_buckets(&effective.buckets.otlp)
            .with_series_ttl(effective.series_ttl.otlp)
            .with_attribute_selector(selector.clone())
            .with_span_resource_attributes(&effective.span_resource_attributes.otlp)
            .with_span_metrics(effective.span_metrics.otlp)
            .with_process_metrics(effective.process_metrics.otlp)
    });
    if otel.is_some() {
        for destination in effective
            .export
            .traces
            .iter()
            .chain(&effective.export.metrics)
        {
            info!(
                "exporting {:?} to {} ({})",
                destination.signal,
                destination.endpoint,
                destination.protocol.as_str()
            );
        }
    }
    let scrape = match &effective.prometheus {
        Some(settings) => {
            let state: SharedScrapeState = Arc::new(Mutex::new(
                ScrapeState::default()
                    .with_host_id(&host_id.id)
                    .with_host_info(effective.host_info.prometheus)
                    .with_buckets(&effective.buckets.prometheus)
                    .with_series_ttl(effective.series_ttl.prometheus)
                    .with_attribute_selector(selector.clone())
                    .with_exemplars(ExemplarPolicy::new(
                        settings.exemplar_filter,
                        Sampler::new(effective.export.sampler),
                    ))
                    .with_graph_self_references(effective.graph_self_references.prometheus)
                    .with_service_graph(effective.service_graph.prometheus)
                    .with_span_resource_attributes(&effective.span_resource_attributes.prometheus)
                    .with_span_metrics(effective.span_metrics.prometheus)
                    .with_process_metrics(effective.process_metrics.prometheus),
            ));
            prometheus::start(settings, Arc::clone(&state))?;
            info!(
                "serving Prometheus metrics on port {}{}",
                settings.port, settings.path
            );
            Some(state)
        }
        None => None,
    };
    let live = match &config.live_socket {
        Some(path) => {
            let view = Arc::new(Mutex::new(LiveView::new()));
            match live_view::serve(path, Arc::clone(&view)) {
                Ok(()) => {
                    info!(
                        "serving the live view for `zerotrace top` on {}",
                        path.display()
                    );
                    Some(view)
                }
                // Another agent may serve the default path: run on without it.
                Err(e) => {
                    warn!("live view off: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let resources = ResourceCatalog::new(
        effective.export.service_name.clone(),
        effective.export.resource_attributes.clone(),
        config.include_command_line,
    )
    .with_host_id(host_id.id.clone());
    let mut otel = otel;
    if let Some(otel) = otel.as_mut() {
        otel.set_agent_resource(self_metrics::agent_resource(&resources), &WallClock::new());
    }
    let counters = Arc::new(ReaderCounters::default());
    let routes = RouteMatcher::new(&effective.routes).map_err(|e| format!("routes.{e}"))?;
    let mut pipeline = Pipeline::new(discovery, printer, loader, routes)
        .with_otel_export(otel)
        .with_resources(resources)
        .with_scrape_state(scrape, Arc::clone(&counters))
        .with_live_view(live)
        .with_service_graph(effective.service_graph.any())
        .with_process_metrics(effective.process_metrics)
        .with_filters(effective.filters.clone())
        .with_trace_links(config.trace_links)
        .with_databases(effective.databases.clone())
        .with_span_user_agent(effective.span_user_agent);
    if let Some(map) = counters_map {
        pipeline = pipeline.with_kernel_counters(KernelCounters::new(map));
    }
    pipeline.scan_listeners();
    let selectors: Vec<&str> = effective
        .instrument
        .iter()
        .map(|s| s.origin.as_str())
        .collect();
    info!(
        "ready: instrumenting by {} ({} process(es) found)",
        selectors.join(", "),
        pipeline.discovery.instrumented().len()
    );

    // Start-up is over: every fd, mapping, listener and thread exists.
    match sandbox::install(config.seccomp) {
        Ok(()) if config.seccomp == SeccompMode::Off => {
            warn!("seccomp filter off (ZEROTRACE_SECCOMP=off)")
        }
        Ok(()) => {}
        Err(e) => {
            return Err(Failure::Config(format!(
                "{e} (ZEROTRACE_SECCOMP=off runs without it)"
            )));
        }
    }

    if config.discard_records {
        warn!("benchmark floor: ring records are read and not decoded, no span is made (ZEROTRACE_BENCH_FLOOR=drain or drain-writes)");
    }

    // Every record committed so far, to the pipeline (or nowhere, at the drain floor).
    let discard = config.discard_records;
    let drain = |ring: &mut _, pipeline: &mut Pipeline| {
        if discard {
            reader::drain(ring, &mut reader::DiscardRecords, &counters);
        } else {
            reader::drain(ring, pipeline, &counters);
        }
    };
    // One thread reads the ring and decodes its records in place (reader.rs).
    while !STOP.load(Ordering::Relaxed) {
        if pipeline.loader.loader_gone() {
            info!("the loader closed our channel: stopping");
            break;
        }
        reader::wait_for_records(&ring, reader::POLL_PERIOD);
        drain(&mut ring, &mut pipeline);
        pipeline.tick();
    }
    // What the kernel wrote before we stopped.
    drain(&mut ring, &mut pipeline);
    if let Some(summary) = pipeline.shutdown() {
        info!("{summary}");
    }
    let pending = pipeline.discovery.pending_stats;
    if pending != Default::default() {
        info!(
            "processes captured before discovery decided (from their exec or listen): {} not selected and taken out again ({} gone before their executable could be read), {} of their records dropped; {} judged by the path they were exec'd by",
            pending.rejected,
            pending.unreadable,
            pending.records_dropped,
            pending.judged_by_exec_path
        );
    }
    let tracker = pipeline.tracker.counters();
    let (kernel_events, kernel_drops, after_close, tls_unassociated) = pipeline
        .kernel_counters()
        .map(|c| {
            (
                c.events_submitted(),
                c.ring_buffer_drops(),
                c.after_close(),
                c.tls_unassociated(),
            )
        })
        .unwrap_or_default();
    let h2 = &tracker.http2;
    info!(
        "stopping: {} spans, {} records ({} undecodable), {} garbage segments, {} TLS record segments skipped; exchanges lost: {} responses without a request, {} requests without a response, {} requests over the pipelining limit; databases and Kafka: framing lost {} times; HTTP/2: {} header blocks cut by the capture, {} with HPACK state lost, {} undecodable, framing lost {} times, {} streams without method or path (*), {} streams without headers not emitted, {} evicted; kernel: {} events submitted, {} dropped with the ring buffer full, {} reads and writes after their socket closed not sent, {} TLS plaintext records whose socket was never learnt not sent",
        pipeline.spans_emitted,
        counters.records.load(Ordering::Relaxed),
        counters.decode_errors.load(Ordering::Relaxed),
        tracker.garbage_segments,
        tracker.encrypted_segments,
        tracker.unpaired_responses,
        tracker.unanswered_requests,
        tracker.dropped_requests,
        tracker.framing_lost,
        h2.headers_truncated,
        h2.hpack_lost_blocks,
        h2.blocks_lost,
        h2.framing_lost,
        h2.streams_unnamed,
        h2.streams_without_headers,
        h2.streams_evicted,
        kernel_events,
        kernel_drops,
        after_close,
        tls_unassociated
    );
    Ok(())
}
