//! A real NATS server for the end-to-end tests: Debian's nats-server on a
//! free loopback port, JetStream on (its store in a scratch directory), one
//! user `app` (password `secret`) who may not publish to `locked.>`; and
//! the service that calls it with nats-py (`tests/servers/nats_app.py`, run
//! by the venv `tests/servers/ensure-nats-client.sh` makes).
//!
//! Each test starts its own server: nats-server starts in milliseconds,
//! and its streams then belong to that test alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::{free_port, spawn_listening, venv_python, Server};

/// Where Debian's nats-server package puts the server.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A running server, stopped (and its directory removed) on drop.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server and the service calling it.
pub struct NatsSetup {
    pub server: NatsServer,
    pub app: Server,
}

/// Starts a server, then `nats_app.py` pointed at it.
pub fn start_nats() -> NatsSetup {
    let server = start_server().unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
    let python = venv_python("ensure-nats-client.sh");
    let app = Server::script(
        &python,
        "nats_app.py",
        &[],
        &[("ZT_NATS_PORT", server.port.to_string())],
    );
    NatsSetup { server, app }
}

fn start_server() -> Result<NatsServer, String> {
    if !Path::new(NATS_SERVER).exists() {
        return Err(format!(
            "{NATS_SERVER} missing: run scripts/install-deps.sh test"
        ));
    }
    for _ in 0..3 {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("zt-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 authorization {{ users = [ {{ user: app, password: secret, \
                 permissions: {{ publish: {{ deny: [\"locked.>\"] }} }} }} ] }}\n",
                dir.join("js").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut command = Command::new(NATS_SERVER);
        command.arg("-c").arg(&config);
        if let Some(child) = spawn_listening(&mut command, port)? {
            return Ok(NatsServer { child, port, dir });
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Err("no free port in 3 tries".into())
}
