//! Real database and cache servers for the end-to-end tests: PostgreSQL 15
//! (with TLS), MariaDB, Redis and memcached from the Debian packages
//! (`scripts/install-deps.sh test`), each on a free loopback port with its
//! files in one scratch directory, run as `nobody`, never the system
//! instances.
//!
//! They start once per test binary, on first use ([`db_servers`]), and stop
//! when it exits: an `atexit` handler ends them and removes the directory,
//! and each server also gets a signal if the test binary dies without it
//! (`PR_SET_PDEATHSIG`, from a keeper thread that lives as long as the binary).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::{free_port, self_signed_certificate, wait_for};

/// The PostgreSQL server programs (Debian's postgresql-15).
pub const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database both SQL servers hold, with a table each (`accounts`, `items`).
pub const DATABASE: &str = "shop";

/// `nobody`/`nogroup` on Debian: the servers refuse (PostgreSQL, MariaDB) or
/// should not run as root.
const SERVER_UID: u32 = 65534;
const SERVER_GID: u32 = 65534;

/// Where the running servers listen (all on 127.0.0.1).
#[derive(Debug)]
pub struct DbServers {
    pub postgres: u16,
    pub mariadb: u16,
    pub redis: u16,
    pub memcached: u16,
    /// The scratch directory holding their data and logs.
    pub dir: PathBuf,
}

impl DbServers {
    /// Environment for `tests/servers/db_app.py`: where each server is.
    pub fn app_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ZT_PG_PORT", self.postgres.to_string()),
            ("ZT_MARIADB_PORT", self.mariadb.to_string()),
            ("ZT_REDIS_PORT", self.redis.to_string()),
            ("ZT_MEMCACHED_PORT", self.memcached.to_string()),
            ("ZT_DATABASE", DATABASE.to_owned()),
        ]
    }
}

/// A started server and the signal that stops it cleanly.
struct Running {
    child: Child,
    stop_signal: i32,
}

/// What the `atexit` handler stops and removes.
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The servers, started on the first call; panics (in every test that asks)
/// when they could not start.
pub fn db_servers() -> &'static DbServers {
    static SERVERS: OnceLock<Result<DbServers, String>> = OnceLock::new();
    let started = SERVERS.get_or_init(|| {
        // The children's parent-death signal fires when the thread that
        // spawned them ends: a test thread would end too soon, this one never does.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = std::panic::catch_unwind(start_all).unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()));
                Err(text.unwrap_or_else(|| "a panic while starting them".into()))
            });
            let _ = sender.send(started);
            loop {
                std::thread::park();
            }
        });
        receiver
            .recv()
            .unwrap_or_else(|_| Err("the server keeper thread died".into()))
    });
    match started {
        Ok(servers) => servers,
        Err(e) => panic!("database servers did not start: {e}"),
    }
}

fn start_all() -> Result<DbServers, String> {
    // Not $TMPDIR: it may lie under a directory `nobody` cannot enter (/root/tmp).
    let dir = Path::new("/tmp").join(format!("zt-db-servers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    chown(&dir)?;
    if let Ok(mut scratch) = SCRATCH.lock() {
        *scratch = Some(dir.clone());
    }
    // SAFETY: registers a plain function with no arguments.
    unsafe { libc::atexit(stop_all) };
    Ok(DbServers {
        postgres: start_postgres(&dir)?,
        mariadb: start_mariadb(&dir)?,
        redis: start_redis(&dir)?,
        memcached: start_memcached(&dir)?,
        dir,
    })
}

/// Ends every server (its clean-stop signal, then SIGKILL after 10 s) and
/// removes the scratch directory.
extern "C" fn stop_all() {
    let Ok(mut running) = RUNNING.lock() else {
        return;
    };
    for server in running.iter() {
        if let Ok(pid) = i32::try_from(server.child.id()) {
            // SAFETY: kill has no memory preconditions; the pid is our own child.
            unsafe { libc::kill(pid, server.stop_signal) };
        }
    }
    for server in running.iter_mut() {
        let ended = wait_for(Duration::from_secs(10), || {
            server.child.try_wait().ok().flatten()
        });
        if ended.is_none() {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }
    running.clear();
    if let Some(dir) = SCRATCH.lock().ok().and_then(|mut d| d.take()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn chown(path: &Path) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(SERVER_UID), Some(SERVER_GID))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

/// `program` as `nobody`; with a parent-death signal when it is a server.
fn as_server_user(program: &str, death_signal: Option<i32>) -> Command {
    let mut command = Command::new(program);
    command.stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(SERVER_GID) != 0
                || libc::setuid(SERVER_UID) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // After setuid: changing credentials clears the parent-death signal.
            if let Some(signal) = death_signal {
                libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0);
            }
            Ok(())
        });
    }
    command
}

/// Runs a one-shot command to completion, its output in `log`.
fn run_logged(mut command: Command, log: &Path) -> Result<(), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = command
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        return Err(format!("{command:?} failed ({status}):\n{text}"));
    }
    Ok(())
}

/// Runs `attempt` until it succeeds, for 30 s at most; then its last error.
fn until_ready(mut attempt: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    let done = wait_for(Duration::from_secs(30), || match attempt() {
        Ok(()) => Some(()),
        Err(e) => {
            last = e;
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    });
    done.ok_or(last)
}

/// Starts the server `make(port)` builds on a free port and waits until it
/// accepts connections; another port is tried when it exits first (the
/// free port was taken meanwhile by a parallel test).
fn start_server(
    name: &str,
    dir: &Path,
    stop_signal: i32,
    make: impl Fn(u16) -> Command,
) -> Result<u16, String> {
    let log = dir.join(format!("{name}.log"));
    for _ in 0..3 {
        let port = free_port();
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = make(port);
        let mut child = command
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        let up = wait_for(Duration::from_secs(30), || {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
        });
        // A server that could not bind exits at once: a connection may have
        // reached whoever took the port meanwhile, so it must still run.
        std::thread::sleep(Duration::from_millis(200));
        if up == Some(true) && matches!(child.try_wait(), Ok(None)) {
            if let Ok(mut running) = RUNNING.lock() {
                running.push(Running { child, stop_signal });
            }
            return Ok(port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    Err(format!("{name} did not listen:\n{text}"))
}

/// PostgreSQL with TLS (a self-signed certificate), the database `shop` and
/// its table `accounts`; authentication is `trust` (user `postgres`).
fn start_postgres(dir: &Path) -> Result<u16, String> {
    let data = dir.join("postgres");
    let mut initdb = as_server_user(&format!("{POSTGRES_BIN}/initdb"), None);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
        .args(["--no-sync", "--no-instructions"]);
    run_logged(initdb, &dir.join("initdb.log"))?;
    let (cert, key) = self_signed_certificate(&dir.join("postgres-tls"));
    for file in [&dir.join("postgres-tls"), &cert, &key] {
        chown(file)?;
    }
    // PostgreSQL refuses a key others may read.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let port = start_server("postgres", dir, libc::SIGINT, |port| {
        let mut command = as_server_user(&format!("{POSTGRES_BIN}/postgres"), Some(libc::SIGINT));
        command
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()));
        command
    })?;
    // The port opens before recovery ends ("the database system is starting up").
    until_ready(|| {
        let mut command = Command::new(format!("{POSTGRES_BIN}/pg_isready"));
        command.args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()]);
        run_logged(command, &dir.join("pg_isready.log"))
    })?;
    let psql = |database: &str, sql: &str| {
        let mut command = Command::new(format!("{POSTGRES_BIN}/psql"));
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-U", "postgres", "-d", database])
            .args(["-c", sql]);
        run_logged(command, &dir.join("psql.log"))
    };
    psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
    psql(
        DATABASE,
        "CREATE TABLE accounts (id int PRIMARY KEY, name text, balance int); \
         INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 200), (3, 'cy', 300)",
    )?;
    Ok(port)
}

/// MariaDB with TLS (a self-signed certificate, for clients that ask), the
/// database `shop` and its table `items`; `root` without a password.
fn start_mariadb(dir: &Path) -> Result<u16, String> {
    let data = dir.join("mariadb");
    let (cert, key) = self_signed_certificate(&dir.join("mariadb-tls"));
    for file in [&dir.join("mariadb-tls"), &cert, &key] {
        chown(file)?;
    }
    let mut install = as_server_user("mariadb-install-db", None);
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .arg("--skip-name-resolve");
    run_logged(install, &dir.join("mariadb-install-db.log"))?;
    let port = start_server("mariadb", dir, libc::SIGTERM, |port| {
        let mut command = as_server_user("mariadbd", Some(libc::SIGTERM));
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("mariadb.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .args(["--skip-name-resolve", "--skip-log-bin"])
            .arg("--innodb-buffer-pool-size=16M")
            .arg(format!("--ssl-cert={}", cert.display()))
            .arg(format!("--ssl-key={}", key.display()));
        command
    })?;
    // Asked again while the server may still be starting: the statements are idempotent.
    until_ready(|| {
        let mut client = Command::new("mariadb");
        client
            .args(["--no-defaults", "-h", "127.0.0.1", "-P", &port.to_string()])
            .args(["-u", "root", "-e"])
            .arg(format!(
                "CREATE DATABASE IF NOT EXISTS {DATABASE}; \
                 CREATE TABLE IF NOT EXISTS {DATABASE}.items (id int PRIMARY KEY, name varchar(64)); \
                 INSERT IGNORE INTO {DATABASE}.items VALUES (1, 'pen'), (2, 'ink'), (3, 'nib')"
            ));
        run_logged(client, &dir.join("mariadb-client.log"))
    })?;
    Ok(port)
}

/// Redis without persistence.
fn start_redis(dir: &Path) -> Result<u16, String> {
    start_server("redis", dir, libc::SIGTERM, |port| {
        let mut command = as_server_user("redis-server", Some(libc::SIGTERM));
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir);
        command
    })
}

/// memcached on TCP only (`-U 0`).
fn start_memcached(dir: &Path) -> Result<u16, String> {
    start_server("memcached", dir, libc::SIGTERM, |port| {
        let mut command = as_server_user("memcached", Some(libc::SIGTERM));
        command
            .args(["-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1"])
            .args(["-m", "16"]);
        command
    })
}

/// `tests/servers/db_app.py` on a free port, told where the servers are.
pub fn start_db_app(servers: &DbServers) -> crate::Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/db_app.py");
    for _ in 0..5 {
        let port = free_port();
        // The Debian interpreter, whose site-packages hold the Debian clients.
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(port.to_string())
            .envs(servers.app_env())
            .env("PGSSLMODE", "disable")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start /usr/bin/python3: {e}"));
        // "listening" once its own socket is bound (else the port was taken).
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
    panic!("db_app.py could not bind a port in 5 tries");
}
