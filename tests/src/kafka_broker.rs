//! A real Kafka broker for the end-to-end tests: tansu 0.6.0 (Apache
//! Kafka-compatible, from crates.io, installed by `scripts/install-deps.sh
//! test` into [`TANSU`]), on a free loopback port with in-memory storage,
//! never on 9092 (so detection is tested without the port hint).
//!
//! It starts once per test binary, on first use ([`kafka_broker`]), with
//! two topics of one partition: `orders`, and `payments`, whose values the
//! broker checks against a JSON schema (a value that is not JSON is refused
//! with INVALID_RECORD). An `atexit` handler stops it and removes its
//! directory; a parent-death signal stops it if the test binary dies first.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::{free_port, wait_for};

/// Where `scripts/install-deps.sh test` installs tansu.
pub const TANSU: &str = "/usr/local/lib/zerotrace/tansu-0.6.0-dynostore/bin/tansu";
/// The topics the broker holds.
pub const TOPICS: [&str; 2] = ["orders", "payments"];

/// The running broker.
#[derive(Debug)]
pub struct KafkaBroker {
    pub port: u16,
    pub dir: PathBuf,
}

impl KafkaBroker {
    /// Environment for `tests/servers/kafka_app.py`.
    pub fn app_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ZT_KAFKA_PORT", self.port.to_string()),
            ("ZT_TANSU", TANSU.to_owned()),
        ]
    }
}

static RUNNING: Mutex<Option<Child>> = Mutex::new(None);
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The broker, started on the first call; panics (in every test that asks)
/// when it could not start.
pub fn kafka_broker() -> &'static KafkaBroker {
    static BROKER: OnceLock<Result<KafkaBroker, String>> = OnceLock::new();
    let started = BROKER.get_or_init(|| {
        // The parent-death signal fires when the spawning thread ends: this one never does.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(start());
            loop {
                std::thread::park();
            }
        });
        receiver
            .recv()
            .unwrap_or_else(|_| Err("the broker keeper thread died".into()))
    });
    match started {
        Ok(broker) => broker,
        Err(e) => panic!("the Kafka broker did not start: {e}"),
    }
}

/// The schema `payments` values must follow (tansu's JSON schema registry).
const PAYMENTS_SCHEMA: &str = r#"{"type": "object", "properties": {"value": {"type": "object", "properties": {"amount": {"type": "integer"}}, "required": ["amount"]}}}"#;

fn start() -> Result<KafkaBroker, String> {
    if !Path::new(TANSU).exists() {
        return Err(format!("{TANSU} missing: run scripts/install-deps.sh test"));
    }
    let dir = Path::new("/tmp").join(format!("zt-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let schemas = dir.join("schema");
    std::fs::create_dir_all(&schemas).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(schemas.join("payments.json"), PAYMENTS_SCHEMA).map_err(|e| e.to_string())?;
    if let Ok(mut scratch) = SCRATCH.lock() {
        *scratch = Some(dir.clone());
    }
    // SAFETY: registers a plain function with no arguments.
    unsafe { libc::atexit(stop) };
    let port = listen(&dir)?;
    for topic in TOPICS {
        let url = format!("tcp://127.0.0.1:{port}");
        let status = Command::new(TANSU)
            .args([
                "topic",
                "create",
                "--broker",
                &url,
                "--partitions",
                "1",
                topic,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("tansu topic create: {e}"))?;
        if !status.success() {
            return Err(format!("tansu topic create {topic}: {status}"));
        }
    }
    Ok(KafkaBroker { port, dir })
}

/// Starts the broker on a free port (another one when it exits first).
fn listen(dir: &Path) -> Result<u16, String> {
    let log = dir.join("tansu.log");
    for _ in 0..3 {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(TANSU);
        command
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            // tansu resolves a `file://` registry against its working directory.
            .args(["--schema-registry", "file://./schema"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| format!("{TANSU}: {e}"))?;
        let up = wait_for(Duration::from_secs(30), || {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
        });
        std::thread::sleep(Duration::from_millis(200));
        if up == Some(true) && matches!(child.try_wait(), Ok(None)) {
            if let Ok(mut running) = RUNNING.lock() {
                *running = Some(child);
            }
            return Ok(port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    Err(format!("tansu did not listen:\n{text}"))
}

extern "C" fn stop() {
    if let Some(mut child) = RUNNING.lock().ok().and_then(|mut c| c.take()) {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(dir) = SCRATCH.lock().ok().and_then(|mut d| d.take()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts `tests/servers/kafka_app.py` with `/usr/bin/python3` (Debian's
/// kafka-python) against `broker`.
pub fn start_kafka_app(broker: &KafkaBroker) -> crate::Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/kafka_app.py");
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(port.to_string())
            .envs(broker.app_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start /usr/bin/python3: {e}"));
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        }
        if line.trim() == "listening" {
            let server = crate::Server { child, port };
            server.wait_listening();
            return server;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("kafka_app.py could not bind a port in 5 tries");
}
