//! Reading the agent's live view socket: one JSON snapshot per line. A
//! background thread reads, parses and reconnects; the UI gets [`Update`]s.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use serde_json::Value;
use zerotrace_worker::live_view::{LiveSnapshot, LIVE_PROTOCOL_VERSION};

/// A line longer than this is not a snapshot we can use.
const MAX_LINE_BYTES: u64 = 64 << 20;
/// The agent sends a snapshot every second; this long without one is a stall.
const STALL: Duration = Duration::from_secs(5);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

pub enum Update {
    Snapshot(Box<LiveSnapshot>),
    Connected,
    /// Lost the agent (the reason), reconnecting.
    Disconnected(String),
}

/// Parses one line: a snapshot, or the server's refusal / a version we do not speak.
pub fn parse_line(line: &str) -> Result<LiveSnapshot, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("unreadable live view data: {e}"))?;
    if let Some(reason) = value.get("refused").and_then(Value::as_str) {
        return Err(format!("the agent refused this connection: {reason}"));
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(LIVE_PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "the agent speaks live view version {v}, this zerotrace-top version {LIVE_PROTOCOL_VERSION}: use the zerotrace-top of the same release"
            ))
        }
        None => return Err("unreadable live view data: no version".into()),
    }
    serde_json::from_value(value).map_err(|e| format!("unreadable live view snapshot: {e}"))
}

/// What to tell someone who cannot connect.
fn connect_error(path: &Path, error: &std::io::Error) -> String {
    let shown = path.display();
    match error.kind() {
        ErrorKind::NotFound => format!(
            "no live view socket at {shown}: is the agent running? (`zerotrace run`; \
             `--socket PATH` if it was given `--live-socket PATH`) — or let top start one \
             for this session: `zerotrace top --open-port PORTS`"
        ),
        ErrorKind::PermissionDenied => format!(
            "permission denied on {shown}: only root and the agent's worker user may read the live view"
        ),
        ErrorKind::ConnectionRefused => format!(
            "nothing serves {shown} (a socket left by an agent that stopped?)"
        ),
        _ => format!("connecting to {shown}: {error}"),
    }
}

/// Reads one line of at most [`MAX_LINE_BYTES`]; `Ok(None)` at the end of the stream.
fn read_line(reader: &mut BufReader<UnixStream>) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE_BYTES)
        .read_until(b'\n', &mut line)
        .map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                format!("no snapshot for {} s", STALL.as_secs())
            }
            _ => format!("reading: {e}"),
        })?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err("the live view stream was cut mid-line".into());
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| "the live view sent bytes that are not UTF-8".into())
}

/// Connects and reads the first snapshot (or the refusal).
pub fn open(path: &Path) -> Result<(BufReader<UnixStream>, LiveSnapshot), String> {
    let stream = UnixStream::connect(path).map_err(|e| connect_error(path, &e))?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::new(stream);
    match read_line(&mut reader)? {
        Some(line) => Ok((reader, parse_line(&line)?)),
        None => Err(format!("{} closed the connection", path.display())),
    }
}

fn stream_updates(
    mut reader: BufReader<UnixStream>,
    updates: &Sender<Update>,
) -> Result<String, ()> {
    loop {
        match read_line(&mut reader) {
            Ok(Some(line)) => match parse_line(&line) {
                Ok(snapshot) => updates
                    .send(Update::Snapshot(Box::new(snapshot)))
                    .map_err(|_| ())?,
                Err(e) => return Ok(e),
            },
            Ok(None) => return Ok("the agent closed the connection".into()),
            Err(e) => return Ok(e),
        }
    }
}

/// Streams updates from an open connection, then reconnects every second
/// while the receiver lives.
pub fn spawn(path: PathBuf, reader: BufReader<UnixStream>) -> Receiver<Update> {
    let (sender, receiver) = channel();
    let thread = std::thread::Builder::new()
        .name("live-reader".into())
        .spawn(move || {
            let mut reader = Some(reader);
            loop {
                if let Some(open_reader) = reader.take() {
                    match stream_updates(open_reader, &sender) {
                        Ok(reason) => {
                            if sender.send(Update::Disconnected(reason)).is_err() {
                                return;
                            }
                        }
                        Err(()) => return,
                    }
                }
                std::thread::sleep(RECONNECT_EVERY);
                match open(&path) {
                    Ok((open_reader, first)) => {
                        let sent = sender
                            .send(Update::Connected)
                            .and_then(|()| sender.send(Update::Snapshot(Box::new(first))));
                        if sent.is_err() {
                            return;
                        }
                        reader = Some(open_reader);
                    }
                    Err(e) => {
                        if sender.send(Update::Disconnected(e)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = thread {
        let (failed, receiver) = channel();
        let _ = failed.send(Update::Disconnected(format!(
            "cannot start the reader thread: {e}"
        )));
        return receiver;
    }
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use zerotrace_worker::live_view::{serve, LiveKind, LiveView};

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("zerotrace-top-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    #[test]
    fn refusals_and_versions_are_reported() {
        let err = parse_line(r#"{"refused":"uid 1000 may not read this live view"}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("refused") && err.contains("uid 1000"), "{err}");
        let err = parse_line(r#"{"version":99,"routes":[]}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("version 99"), "{err}");
        assert!(parse_line("not json").is_err());
        let ok = parse_line(r#"{"version":1,"routes":[]}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.routes.is_empty());
    }

    #[test]
    fn missing_socket_explains_what_to_do() {
        let err = open(Path::new("/nonexistent/zerotrace/live.sock"))
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("is the agent running") && err.contains("--open-port"),
            "{err}"
        );
    }

    #[test]
    fn reads_the_real_server_and_reconnects() {
        let dir = temp_dir("real");
        let path = dir.join("live.sock");
        let mut view = LiveView::new();
        use zerotrace_worker::spans::{HttpExchange, Protocol, Span, SpanKind, SpanOrigin};
        let http = HttpExchange {
            method: "GET".into(),
            target: "/hello".into(),
            status: 200,
            protocol_version: "1.1",
            ..HttpExchange::default()
        };
        let origin = SpanOrigin {
            kind: SpanKind::Server,
            pid: 1,
            process_name: "python3".into(),
            local: "127.0.0.1:80".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: "127.0.0.1:5000".parse().unwrap_or_else(|e| panic!("{e}")),
            tls: false,
        };
        let span = Span::new(origin, (0, 1_000_000), false, Protocol::Http(http));
        view.record(&span, "python3", Instant::now());
        serve(&path, Arc::new(Mutex::new(view))).unwrap_or_else(|e| panic!("{e}"));
        let (reader, first) = open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.routes[0].route, "/hello");
        assert_eq!(first.routes[0].kind, LiveKind::Server);
        let updates = spawn(path.clone(), reader);
        let next = updates.recv_timeout(Duration::from_secs(5));
        assert!(matches!(next, Ok(Update::Snapshot(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fake_agent_going_away_is_noticed_and_reconnected() {
        let dir = temp_dir("fake");
        let path = dir.join("live.sock");
        let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                if let Ok((mut client, _)) = listener.accept() {
                    let _ = client.write_all(b"{\"version\":1,\"uptime_seconds\":1.0}\n");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        let (reader, first) = open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.uptime_seconds, 1.0);
        let updates = spawn(path.clone(), reader);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline && seen.len() < 3 {
            match updates.recv_timeout(Duration::from_millis(200)) {
                Ok(Update::Disconnected(_)) => seen.push("disconnected"),
                Ok(Update::Connected) => seen.push("connected"),
                Ok(Update::Snapshot(_)) => seen.push("snapshot"),
                Err(_) => {}
            }
        }
        assert_eq!(seen, ["disconnected", "connected", "snapshot"]);
        let _ = server.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
