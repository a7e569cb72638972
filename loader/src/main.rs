//! `zerotrace`: the privileged half of the agent. It loads and attaches the
//! BPF programs, starts the unprivileged `zerotrace-worker`, hands it the map
//! fds, and answers only the requests in `request_table`.

mod capability_drop;
mod feature_check;
mod go_tls_uprobes;
mod live_socket;
mod privileges;
mod probes;
mod request_table;
mod shared_hooks;
mod startup_data;
mod supervisor;
mod tls_uprobes;
mod worker_identity;
mod worker_kill;
mod worker_process;

use std::path::PathBuf;
use std::process::ExitCode;

use probes::{ProbeSettings, Probes};
use supervisor::SupervisorSettings;
use tracing::{error, info, warn};
use zerotrace_shared::logging::{self, LogSettings, LogSources};

const USAGE: &str = "\
zerotrace — zero-code HTTP observability with eBPF

USAGE:
    zerotrace run [OPTIONS]     load the probes, start the worker, print/export spans
    zerotrace check             show what this kernel and these privileges allow
    zerotrace top               live requests/errors/latency per service and route
    zerotrace --version

RUN OPTIONS:
    --config PATH               YAML configuration (OBI's keys; env OTEL_EBPF_CONFIG_PATH);
                                the loader reads it (it may be root-only) and hands its
                                bytes, unparsed, to the worker
    --print-config              print the effective configuration (file + environment) and exit
    --open-port PORTS           instrument processes listening on these ports
                                (e.g. 8080 or 80,443,8000-8999; env OTEL_EBPF_OPEN_PORT)
    --trace-printer FORMAT      text | json | disabled (env OTEL_EBPF_TRACE_PRINTER; default text)
    --log-level LEVEL           debug | info | warn | error (env OTEL_EBPF_LOG_LEVEL, YAML
                                log_level; default info)
    --log-format FORMAT         text | json: one JSON object per line (env OTEL_EBPF_LOG_FORMAT,
                                YAML log_format; default text)
    --worker-user USER          user (name or uid) the worker runs as (default as root:
                                the zerotrace user if it exists, else a per-run uid
                                that no account or other process has)
    --worker-path PATH          the zerotrace-worker binary (default: next to zerotrace)
    --ring-buffer-bytes N       kernel event ring buffer size (power of two; default 4194304)
    --ring-wakeup-bytes N       records (in bytes) the kernel lets wait before waking the
                                worker (default 65536, at most a sixteenth of the ring)
    --capture-backend B         auto (default), socket (kernel 6.3+) or syscall-exit
    --live-socket PATH          the read-only socket `zerotrace top` reads (default
                                /run/zerotrace/live.sock as root; `none` turns it off)
    --allow-privileged-worker   development only: let the worker run with privileges
    --dumpable-worker           development only: leave the worker dumpable (debuggers,
                                core dumps), which lets processes of its uid read its memory

    zerotrace top [--socket PATH | --open-port PORTS]   live RED view in the terminal
";

/// Options of `zerotrace run` the loader itself acts on; the rest are the worker's.
struct RunOptions {
    /// Only print the effective configuration (read by the worker) and exit.
    print_config: bool,
    /// None: no live view socket (`--live-socket none`).
    live_socket: Option<PathBuf>,
    worker_user: Option<String>,
    worker_path: Option<PathBuf>,
    /// `--config`: read here, handed to the worker as bytes.
    config: Option<PathBuf>,
    ring_buffer_bytes: u32,
    /// The threshold the programs get: `--ring-wakeup-bytes`, or the
    /// default for the ring's size.
    wakeup_bytes: u64,
    /// None: the best the kernel offers.
    capture_backend: Option<probes::CaptureBackend>,
    worker_args: Vec<String>,
    /// `--log-level` / `--log-format` as given (checked when logging starts).
    log_level: Option<String>,
    log_format: Option<String>,
}

fn parse_run_options(mut args: impl Iterator<Item = String>) -> Result<RunOptions, String> {
    let mut options = RunOptions {
        worker_user: None,
        worker_path: None,
        config: None,
        ring_buffer_bytes: 4 << 20,
        wakeup_bytes: 0,
        capture_backend: None,
        worker_args: Vec::new(),
        live_socket: Some(live_socket::default_path()),
        print_config: false,
        log_level: None,
        log_format: None,
    };
    let mut ring_wakeup_bytes = None;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match name.as_str() {
            "--worker-user" => options.worker_user = Some(value("--worker-user")?),
            "--capture-backend" => {
                options.capture_backend = match value("--capture-backend")?.as_str() {
                    "auto" => None,
                    "socket" => Some(probes::CaptureBackend::SocketTracepoints),
                    "syscall-exit" => Some(probes::CaptureBackend::SyscallExit),
                    other => {
                        return Err(format!(
                            "--capture-backend {other:?}: expected auto, socket or syscall-exit"
                        ))
                    }
                }
            }
            "--worker-path" => options.worker_path = Some(PathBuf::from(value("--worker-path")?)),
            "--ring-buffer-bytes" => {
                let raw = value("--ring-buffer-bytes")?;
                options.ring_buffer_bytes = match raw.parse::<u32>() {
                    Ok(n) if n.is_power_of_two() && n >= 4096 => n,
                    _ => {
                        return Err(format!(
                            "--ring-buffer-bytes {raw:?}: must be a power of two of at least 4096"
                        ))
                    }
                };
            }
            "--ring-wakeup-bytes" => {
                let raw = value("--ring-wakeup-bytes")?;
                ring_wakeup_bytes = match raw.parse::<u32>() {
                    Ok(n) if n >= 1024 => Some(n),
                    _ => {
                        return Err(format!(
                        "--ring-wakeup-bytes {raw:?}: must be a number of bytes of at least 1024"
                    ))
                    }
                };
            }
            "--config" => options.config = Some(PathBuf::from(value("--config")?)),
            "--open-port" | "--trace-printer" => {
                let v = value(&name)?;
                options.worker_args.push(name.clone());
                options.worker_args.push(v);
            }
            // The worker gets the flag too: it wins over the file's log_level there.
            "--log-level" | "--log-format" => {
                let v = value(&name)?;
                options.worker_args.push(name.clone());
                options.worker_args.push(v.clone());
                if name == "--log-level" {
                    options.log_level = Some(v);
                } else {
                    options.log_format = Some(v);
                }
            }
            "--allow-privileged-worker" => options.worker_args.push(name.clone()),
            "--dumpable-worker" => options.worker_args.push("--dumpable".into()),
            "--print-config" => options.print_config = true,
            "--live-socket" => {
                let v = value("--live-socket")?;
                options.live_socket = (v != "none").then(|| PathBuf::from(v));
            }
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    options.wakeup_bytes = probes::wakeup_bytes(options.ring_buffer_bytes, ring_wakeup_bytes)?;
    Ok(options)
}

fn run(options: RunOptions) -> Result<i32, String> {
    // A stop asked for during start-up waits for the supervisor's signalfd
    // instead of being lost: a program started in the background by a
    // shell without job control begins with SIGINT ignored, and an ignored
    // signal that is not blocked is thrown away.
    supervisor::hold_stop_signals()?;
    // The file first: a wrong path is the most likely mistake, and the
    // quickest to report.
    let startup = match startup_data::collect(options.config.as_deref()) {
        Ok(startup) => startup,
        Err(startup_data::ConfigFileError(message)) => {
            error!("{message}");
            return Ok(supervisor::EXIT_CONFIG_ERROR);
        }
    };
    tracing::debug!(
        "the worker's start-up data: {} variable(s), configuration file {}",
        startup.environment.len(),
        startup
            .config_file
            .as_ref()
            .map_or("none", |file| file.path.as_str())
    );
    let (worker_environment, dropped) = startup_data::worker_environment();
    for name in dropped {
        warn!(
            "{name} carries credentials and is not passed to the worker \
             (it would sit in its environment); OTLP/HTTP export will not use that proxy"
        );
    }
    let resolved = worker_identity::resolve(options.worker_user.as_deref())?;
    if let Some(warning) = &resolved.warning {
        warn!("{warning}");
    }
    let identity = resolved.identity;
    if options.print_config {
        return print_config(&options, identity, &worker_environment, &startup);
    }
    let missing = privileges::missing_capabilities(identity.switches_user());
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|m| format!("  {} — needed for {}", m.name, m.needed_for))
            .collect();
        return Err(format!(
            "missing capabilities:\n{}\nrun as root, or grant them (systemd AmbientCapabilities=, \
             setcap, or a container's cap_add); docs/security.md lists what each is for",
            lines.join("\n")
        ));
    }
    let worker_path = match options.worker_path {
        Some(path) => path,
        None => worker_process::default_worker_path()
            .map_err(|e| format!("cannot locate zerotrace-worker: {e}"))?,
    };
    if !worker_path.is_file() {
        return Err(format!(
            "worker binary {} not found (use --worker-path)",
            worker_path.display()
        ));
    }
    let mut worker_args = options.worker_args;
    if let Some(socket) = &options.live_socket {
        // The live view is optional: a directory we cannot prepare turns it off, not the agent.
        match live_socket::prepare(socket, identity) {
            Ok(()) => {
                worker_args.push("--live-socket".into());
                worker_args.push(socket.to_string_lossy().into_owned());
            }
            Err(e) => warn!("live view (zerotrace top) off: {e}"),
        }
    }
    drop_unneeded_capabilities(identity.switches_user())?;
    let started = std::time::Instant::now();
    let head_capture = probes::head_capture_from_env()?;
    let probes = Probes::load_and_attach(ProbeSettings {
        ring_buffer_bytes: options.ring_buffer_bytes,
        wakeup_bytes: options.wakeup_bytes,
        head_capture,
        backend: options.capture_backend,
        floor: probes::BenchFloor::from_env()?,
    })?;
    info!(
        "probes attached in {:.0} ms (payload capture {} bytes, heads up to {} bytes, data from {})",
        started.elapsed().as_secs_f64() * 1000.0,
        probes::PAYLOAD_MAX,
        head_capture,
        probes.backend().describe()
    );
    if let Some(reason) = probes.tls_unavailable() {
        warn!("TLS plaintext capture is off: {reason}");
    }
    supervisor::run(
        &probes,
        &SupervisorSettings {
            worker_path,
            identity,
            identity_description: resolved.description,
            worker_args,
            worker_environment,
            startup,
        },
    )
}

/// Keeps only the capabilities the run needs, before any BPF object is
/// loaded or the worker starts (reading `--config` and preparing the live
/// view's directory, done above, are the last uses of the rest).
fn drop_unneeded_capabilities(switches_user: bool) -> Result<(), String> {
    let held = caps::read(None, caps::CapSet::Effective)
        .map_err(|e| format!("reading capabilities: {e}"))?;
    let kept =
        privileges::capabilities_to_keep(privileges::RunNeeds::from_env(switches_user), &held);
    let dropped = capability_drop::drop_all_but(&kept)?;
    let names: Vec<String> = kept.iter().map(|k| k.capability.to_string()).collect();
    info!(
        "capabilities kept for the run: {} ({} dropped{})",
        names.join(" "),
        held.len().saturating_sub(dropped.kept.len()),
        if dropped.bounding_cut {
            ", bounding set cut to these"
        } else {
            ""
        }
    );
    Ok(())
}

/// The worker parses the configuration (the loader never does): run it,
/// unprivileged as usual, in its print-and-exit mode. No BPF is loaded.
fn print_config(
    options: &RunOptions,
    identity: worker_identity::WorkerIdentity,
    environment: &[(String, String)],
    startup: &zerotrace_shared::startup::StartupData,
) -> Result<i32, String> {
    let worker_path = match &options.worker_path {
        Some(path) => path.clone(),
        None => worker_process::default_worker_path()
            .map_err(|e| format!("cannot locate zerotrace-worker: {e}"))?,
    };
    let mut args = options.worker_args.clone();
    args.push("--print-config".into());
    let mut worker = worker_process::spawn(&worker_path, identity, &args, environment, startup)
        .map_err(|e| format!("cannot start {}: {e}", worker_path.display()))?;
    let status = worker
        .child
        .wait()
        .map_err(|e| format!("waiting for the worker: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

/// `zerotrace top` is a separate binary, so the privileged one carries no terminal UI code.
fn run_top(args: impl Iterator<Item = String>) -> i32 {
    use std::os::unix::process::CommandExt;
    let top = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("zerotrace-top"),
        Err(e) => {
            error!("cannot locate zerotrace-top: {e}");
            return 1;
        }
    };
    let error = std::process::Command::new(&top).args(args).exec();
    error!("cannot run {}: {error}", top.display());
    1
}

/// Installs the logger from the flags and the environment (the loader never
/// reads the YAML file). A bad value is returned once a logger with the valid
/// rest is installed, so that it can be reported.
fn start_logging(level_flag: Option<&str>, format_flag: Option<&str>) -> Result<(), String> {
    let level_env = std::env::var(logging::LEVEL_ENV).ok();
    let format_env = std::env::var(logging::FORMAT_ENV).ok();
    let sources = LogSources {
        level_flag,
        format_flag,
        level_env: level_env.as_deref(),
        format_env: format_env.as_deref(),
        ..LogSources::default()
    };
    let resolved = LogSettings::resolve(&sources);
    let settings = resolved
        .clone()
        .unwrap_or_else(|_| LogSettings::resolve_lenient(&sources));
    logging::init("zerotrace", settings);
    // libbpf's own messages, in the same format and filtered by the same level.
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, libbpf_message)));
    resolved.map(|_| ())
}

/// One libbpf message as a log line (libbpf's Info is detail: debug here).
fn libbpf_message(level: libbpf_rs::PrintLevel, message: String) {
    let message = message.trim_end();
    match level {
        libbpf_rs::PrintLevel::Warn => warn!("libbpf: {message}"),
        libbpf_rs::PrintLevel::Info | libbpf_rs::PrintLevel::Debug => {
            tracing::debug!("libbpf: {message}")
        }
    }
}

/// `zerotrace run`: the exit code.
fn run_command(args: impl Iterator<Item = String>) -> i32 {
    let options = match parse_run_options(args) {
        Ok(options) => options,
        Err(message) => {
            let _ = start_logging(None, None);
            error!("{message}");
            return 1;
        }
    };
    if let Err(message) = start_logging(options.log_level.as_deref(), options.log_format.as_deref())
    {
        error!("{message}");
        return supervisor::EXIT_CONFIG_ERROR;
    }
    match run(options) {
        Ok(code) => code,
        Err(message) => {
            error!("{message}");
            1
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let code = match args.next().as_deref() {
        Some("run") => run_command(args),
        Some("check") => feature_check::run(),
        Some("top") => {
            let _ = start_logging(None, None);
            run_top(args)
        }
        Some("--version") | Some("-V") => {
            println!("zerotrace {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help") | Some("-h") | Some("help") => {
            print!("{USAGE}");
            0
        }
        _ => {
            eprint!("{USAGE}");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
