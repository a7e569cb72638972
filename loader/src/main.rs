//! `zerotrace`: the privileged half of the agent. It loads and attaches the
//! BPF programs, starts the unprivileged `zerotrace-worker`, hands it the map
//! fds, and answers only the requests in `request_table`.

mod feature_check;
mod live_socket;
mod privileges;
mod probes;
mod request_table;
mod supervisor;
mod tls_uprobes;
mod worker_kill;
mod worker_process;

use std::path::PathBuf;
use std::process::ExitCode;

use probes::{ProbeSettings, Probes};
use supervisor::SupervisorSettings;

const USAGE: &str = "\
zerotrace — zero-code HTTP observability with eBPF

USAGE:
    zerotrace run [OPTIONS]     load the probes, start the worker, print/export spans
    zerotrace check             show what this kernel and these privileges allow
    zerotrace top               live requests/errors/latency per service and route
    zerotrace --version

RUN OPTIONS:
    --config PATH               YAML configuration (OBI's keys; env OTEL_EBPF_CONFIG_PATH);
                                it is read by the worker, so its user must be able to read it
    --print-config              print the effective configuration (file + environment) and exit
    --open-port PORTS           instrument processes listening on these ports
                                (e.g. 8080 or 80,443,8000-8999; env OTEL_EBPF_OPEN_PORT)
    --trace-printer FORMAT      text | json | disabled (env OTEL_EBPF_TRACE_PRINTER; default text)
    --worker-user USER          user (name or uid) the worker runs as
                                (default: nobody when started as root)
    --worker-path PATH          the zerotrace-worker binary (default: next to zerotrace)
    --ring-buffer-bytes N       kernel event ring buffer size (power of two; default 4194304)
    --capture-backend B         auto (default), socket (kernel 6.3+) or syscall-exit
    --live-socket PATH          the read-only socket `zerotrace top` reads (default
                                /run/zerotrace/live.sock as root; `none` turns it off)
    --allow-privileged-worker   development only: let the worker run with privileges

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
    ring_buffer_bytes: u32,
    /// None: the best the kernel offers.
    capture_backend: Option<probes::CaptureBackend>,
    worker_args: Vec<String>,
}

fn parse_run_options(mut args: impl Iterator<Item = String>) -> Result<RunOptions, String> {
    let mut options = RunOptions {
        worker_user: None,
        worker_path: None,
        ring_buffer_bytes: 4 << 20,
        capture_backend: None,
        worker_args: Vec::new(),
        live_socket: Some(live_socket::default_path()),
        print_config: false,
    };
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
            "--open-port" | "--trace-printer" | "--config" => {
                let v = value(&name)?;
                options.worker_args.push(name.clone());
                options.worker_args.push(v);
            }
            "--allow-privileged-worker" => options.worker_args.push(name.clone()),
            "--print-config" => options.print_config = true,
            "--live-socket" => {
                let v = value("--live-socket")?;
                options.live_socket = (v != "none").then(|| PathBuf::from(v));
            }
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    Ok(options)
}

fn run(options: RunOptions) -> Result<i32, String> {
    let identity = privileges::resolve_worker_identity(options.worker_user.as_deref())?;
    if options.print_config {
        return print_config(&options, identity);
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
            Err(e) => eprintln!("zerotrace: live view (zerotrace top) off: {e}"),
        }
    }
    let started = std::time::Instant::now();
    let head_capture = probes::head_capture_from_env()?;
    let probes = Probes::load_and_attach(ProbeSettings {
        ring_buffer_bytes: options.ring_buffer_bytes,
        wakeup_bytes: u64::from(options.ring_buffer_bytes / 16).min(256 * 1024),
        head_capture,
        backend: options.capture_backend,
    })?;
    eprintln!(
        "zerotrace: probes attached in {:.0} ms (payload capture {} bytes, heads up to {} bytes, data from {})",
        started.elapsed().as_secs_f64() * 1000.0,
        probes::PAYLOAD_MAX,
        head_capture,
        probes.backend().describe()
    );
    if let Some(reason) = probes.tls_unavailable() {
        eprintln!("zerotrace: TLS plaintext capture is off: {reason}");
    }
    supervisor::run(
        &probes,
        &SupervisorSettings {
            worker_path,
            identity,
            worker_args,
        },
    )
}

/// The worker parses the configuration (the loader never does): run it,
/// unprivileged as usual, in its print-and-exit mode. No BPF is loaded.
fn print_config(options: &RunOptions, identity: privileges::WorkerIdentity) -> Result<i32, String> {
    let worker_path = match &options.worker_path {
        Some(path) => path.clone(),
        None => worker_process::default_worker_path()
            .map_err(|e| format!("cannot locate zerotrace-worker: {e}"))?,
    };
    let mut args = options.worker_args.clone();
    args.push("--print-config".into());
    let mut worker = worker_process::spawn(&worker_path, identity, &args)
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
            eprintln!("zerotrace: cannot locate zerotrace-top: {e}");
            return 1;
        }
    };
    let error = std::process::Command::new(&top).args(args).exec();
    eprintln!("zerotrace: cannot run {}: {error}", top.display());
    1
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let code = match args.next().as_deref() {
        Some("run") => match parse_run_options(args).and_then(run) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("zerotrace: error: {message}");
                1
            }
        },
        Some("check") => feature_check::run(),
        Some("top") => run_top(args),
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
