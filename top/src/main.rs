//! `zerotrace-top` (also `zerotrace top`): a live terminal view of requests
//! per second, error rate and latency percentiles per service and route,
//! read from the running agent's read-only local socket. It never loads BPF
//! and needs no privilege beyond being allowed to read that socket (root or
//! the agent's worker user). With `--open-port` and no agent running, it
//! starts one for its own session and stops it on quit.

mod agent;
mod app;
mod client;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};
use ratatui::DefaultTerminal;
use tracing::{error, info};
use zerotrace_shared::logging::{self, LogSettings, LogSources};

use crate::agent::OwnAgent;
use crate::app::{Action, App};

const USAGE: &str = "\
zerotrace top — live requests, errors and latency per service and route

USAGE:
    zerotrace top [--socket PATH]        read the running agent's live view
    zerotrace top --open-port PORTS      no agent running: start one for this session
    zerotrace top --once [--socket PATH] print one snapshot (JSON) and exit

OPTIONS:
    --socket PATH        the agent's live view socket (default /run/zerotrace/live.sock
                         as root, else ${XDG_RUNTIME_DIR:-/tmp}/zerotrace-$UID/live.sock)
    --open-port PORTS    start `zerotrace run --open-port PORTS` (the zerotrace next to
                         this binary, or --zerotrace PATH) and stop it on quit
    --zerotrace PATH     the zerotrace binary for --open-port
    --once               print the first snapshot as one JSON line, then exit

KEYS:
    q quit · c or Tab server/client spans · s / S next / previous sort column ·
    1-8 sort by column · r reverse · / filter by service (Enter keeps, Esc clears) ·
    Esc clear the filter · ↑ ↓ PgUp PgDn select
";

#[derive(Debug, Default, PartialEq)]
struct Options {
    socket: Option<PathBuf>,
    open_port: Option<String>,
    zerotrace: Option<PathBuf>,
    once: bool,
}

enum Parsed {
    Run(Options),
    Help,
    Version,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match name.as_str() {
            "--socket" => options.socket = Some(PathBuf::from(value("--socket")?)),
            "--open-port" => options.open_port = Some(value("--open-port")?),
            "--zerotrace" => options.zerotrace = Some(PathBuf::from(value("--zerotrace")?)),
            "--once" => options.once = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    if options.socket.is_some() && options.open_port.is_some() {
        return Err(
            "--socket reads a running agent, --open-port starts one: give one of them".into(),
        );
    }
    Ok(Parsed::Run(options))
}

/// Where the loader puts the socket by default (same rule as `zerotrace run`).
fn default_socket(euid_is_root: bool, runtime_dir: Option<PathBuf>, euid: u32) -> PathBuf {
    if euid_is_root {
        return PathBuf::from("/run/zerotrace/live.sock");
    }
    runtime_dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(format!("zerotrace-{euid}"))
        .join("live.sock")
}

fn zerotrace_binary(options: &Options) -> PathBuf {
    options.zerotrace.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .map(|exe| exe.with_file_name("zerotrace"))
            .unwrap_or_else(|_| PathBuf::from("zerotrace"))
    })
}

/// Logs at `OTEL_EBPF_LOG_LEVEL` in `OTEL_EBPF_LOG_FORMAT`, like the agent.
/// A bad value is reported once the logger runs with the valid rest.
fn start_logging() -> Result<(), String> {
    let level_env = std::env::var(logging::LEVEL_ENV).ok();
    let format_env = std::env::var(logging::FORMAT_ENV).ok();
    let sources = LogSources {
        level_env: level_env.as_deref(),
        format_env: format_env.as_deref(),
        ..LogSources::default()
    };
    let resolved = LogSettings::resolve(&sources);
    let settings = resolved
        .clone()
        .unwrap_or_else(|_| LogSettings::resolve_lenient(&sources));
    logging::init("zerotrace-top", settings);
    resolved.map(|_| ())
}

fn main() -> ExitCode {
    if let Err(e) = start_logging() {
        error!("{e}");
        return ExitCode::from(2);
    }
    let options = match parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("zerotrace-top {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> Result<(), String> {
    let mut own_agent = None;
    let (path, (reader, first)) = match &options.open_port {
        Some(ports) => {
            let zerotrace = zerotrace_binary(&options);
            let mut agent = OwnAgent::start(&zerotrace, ports)?;
            info!(
                "started `{} run --open-port {ports}` for this session (pid {}, log {}); waiting for its live view…",
                zerotrace.display(),
                agent.pid().unwrap_or(0),
                agent.log.display()
            );
            let opened = agent.wait_ready()?;
            let path = agent.socket.clone();
            own_agent = Some(agent);
            (path, opened)
        }
        None => {
            let euid = nix::unistd::geteuid();
            let path = options.socket.clone().unwrap_or_else(|| {
                default_socket(
                    euid.is_root(),
                    std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
                    euid.as_raw(),
                )
            });
            let opened = client::open(&path)?;
            (path, opened)
        }
    };

    if options.once {
        let line = serde_json::to_string(&first).map_err(|e| format!("encoding: {e}"))?;
        println!("{line}");
        return own_agent.map_or(Ok(()), |mut agent| agent.stop());
    }

    let mut app = App::new(path.display().to_string(), first);
    if let Some(agent) = &own_agent {
        app.agent_note = Some(format!(
            "agent started by top (pid {}), stopped on quit",
            agent.pid().unwrap_or(0)
        ));
    }
    let updates = client::spawn(path, reader);

    // SIGTERM/SIGHUP/SIGINT end the view like `q`: the terminal is restored
    // and the agent top started is stopped.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("installing a signal handler: {e}"))?;
    }

    let mut terminal = ratatui::try_init().map_err(|e| format!("setting up the terminal: {e}"))?;
    let result = view_loop(&mut terminal, &mut app, &updates, &stop, &mut own_agent);
    ratatui::restore();
    let stopped = own_agent.map_or(Ok(()), |mut agent| {
        let stopped = agent.stop();
        if stopped.is_ok() {
            info!("stopped the agent started for this session");
        }
        stopped
    });
    result.and(stopped)
}

fn view_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    updates: &std::sync::mpsc::Receiver<client::Update>,
    stop: &AtomicBool,
    own_agent: &mut Option<OwnAgent>,
) -> Result<(), String> {
    while !stop.load(Ordering::Relaxed) {
        while let Ok(update) = updates.try_recv() {
            app.apply(update);
        }
        if let Some(agent) = own_agent.as_mut() {
            if let Some(reason) = agent.exited() {
                app.agent_note = Some(format!("{reason}; log: {}", agent.log.display()));
            }
        }
        terminal
            .draw(|frame| ui::draw(frame, app))
            .map_err(|e| format!("drawing: {e}"))?;
        let ready = match event::poll(Duration::from_millis(250)) {
            Ok(ready) => ready,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading keys: {e}")),
        };
        if ready {
            // Other events (resize, focus) just lead to the next draw.
            if let Event::Key(key) = event::read().map_err(|e| format!("reading keys: {e}"))? {
                if app.on_key(key) == Action::Quit {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_options() {
        let Ok(Parsed::Run(options)) = parse(args("--socket /x/live.sock --once")) else {
            panic!("parse failed");
        };
        assert_eq!(options.socket, Some(PathBuf::from("/x/live.sock")));
        assert!(options.once);
        let Ok(Parsed::Run(options)) = parse(args("--open-port=8080,9000-9100")) else {
            panic!("parse failed");
        };
        assert_eq!(options.open_port.as_deref(), Some("8080,9000-9100"));
        assert!(parse(args("--socket a --open-port 80")).is_err());
        assert!(parse(args("--socket")).is_err());
        assert!(parse(args("--bogus")).is_err());
        assert!(matches!(parse(args("--help")), Ok(Parsed::Help)));
    }

    #[test]
    fn default_socket_matches_the_loader() {
        assert_eq!(
            default_socket(true, Some("/run/user/0".into()), 0),
            PathBuf::from("/run/zerotrace/live.sock")
        );
        assert_eq!(
            default_socket(false, Some("/run/user/1000".into()), 1000),
            PathBuf::from("/run/user/1000/zerotrace-1000/live.sock")
        );
        assert_eq!(
            default_socket(false, None, 1000),
            PathBuf::from("/tmp/zerotrace-1000/live.sock")
        );
    }
}
