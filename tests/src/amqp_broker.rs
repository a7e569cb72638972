//! A real RabbitMQ broker for the AMQP end-to-end tests: Debian's
//! rabbitmq-server 3.10, started as root from its own script
//! ([`RABBITMQ_SERVER`]: Debian's wrapper would switch to the `rabbitmq`
//! user) on a free loopback port, with a node name, data and logs of its
//! own; and the service that calls it with Debian's pika
//! (`tests/servers/amqp_app.py`).
//!
//! It starts once per test binary, on first use (about 4 s), in a process
//! group of its own. An `atexit` handler stops the group (the script and the
//! Erlang VM), and the Erlang port mapper it started if none ran before, and
//! removes its directory; a parent-death signal stops the script if the test
//! binary dies first.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::{free_port, wait_for, Server};

/// RabbitMQ's own start script in Debian's package.
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The Erlang port mapper's port.
const EPMD_PORT: u16 = 4369;

/// The running broker.
#[derive(Debug)]
pub struct AmqpBroker {
    pub port: u16,
}

struct Running {
    child: Child,
    dir: PathBuf,
    /// No port mapper ran before: the broker's is stopped with it.
    own_epmd: bool,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// The broker, started on the first call; panics (in every test that asks)
/// when it could not start.
pub fn amqp_broker() -> &'static AmqpBroker {
    static BROKER: OnceLock<Result<AmqpBroker, String>> = OnceLock::new();
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
        Err(e) => panic!("RabbitMQ did not start: {e}"),
    }
}

fn start() -> Result<AmqpBroker, String> {
    if !Path::new(RABBITMQ_SERVER).exists() {
        return Err(format!(
            "{RABBITMQ_SERVER} missing: run scripts/install-deps.sh test"
        ));
    }
    let own_epmd = TcpStream::connect(("127.0.0.1", EPMD_PORT)).is_err();
    let dir = Path::new("/tmp").join(format!("zt-rabbitmq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("enabled_plugins"), "[].\n").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("rabbitmq.conf"), "loopback_users = none\n")
        .map_err(|e| e.to_string())?;
    // SAFETY: registers a plain function with no arguments.
    unsafe { libc::atexit(stop) };
    let port = free_port();
    let node = format!("zt-{}@localhost", std::process::id());
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(RABBITMQ_SERVER);
    command
        .env("HOME", &dir)
        .env("RABBITMQ_NODENAME", &node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", free_port().to_string())
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // Its own process group: the Erlang VM it starts is stopped with it.
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("{RABBITMQ_SERVER}: {e}"))?;
    let up = wait_for(Duration::from_secs(60), || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Some(false);
        }
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
    });
    if let Ok(mut running) = RUNNING.lock() {
        *running = Some(Running {
            child,
            dir: dir.clone(),
            own_epmd,
        });
    }
    if up != Some(true) {
        let text = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        return Err(format!("RabbitMQ did not listen:\n{text}"));
    }
    Ok(AmqpBroker { port })
}

extern "C" fn stop() {
    let Some(mut running) = RUNNING.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    if let Ok(group) = i32::try_from(running.child.id()) {
        // SAFETY: signals the broker's own process group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let _ = running.child.wait();
    if running.own_epmd {
        // `epmd -kill` refuses while the killed node is still registered.
        let _ = Command::new("pkill")
            .args(["-x", "epmd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(&running.dir);
}

/// Starts `tests/servers/amqp_app.py` with `/usr/bin/python3` (Debian's
/// pika) against `broker`.
pub fn start_amqp_app(broker: &AmqpBroker) -> Server {
    Server::script(
        "/usr/bin/python3",
        "amqp_app.py",
        &[],
        &[("ZT_AMQP_PORT", broker.port.to_string())],
    )
}
