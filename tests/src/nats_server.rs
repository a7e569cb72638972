//! A real NATS server for the end-to-end tests: Debian's nats-server on a
//! free loopback port, JetStream on (its store in a scratch directory), one
//! user `app` (password `secret`) who may not publish to `locked.>`; and
//! the service that calls it with nats-py (`tests/servers/nats_app.py`, run
//! by the venv `tests/servers/ensure-nats-client.sh` makes).
//!
//! Each test starts its own server: nats-server starts in milliseconds,
//! and its streams then belong to that test alone. [`start_nats_over_tls`]
//! starts one that speaks TLS (a self-signed certificate): nats-server
//! writes its INFO in the clear, then the client upgrades the connection.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::{free_port, self_signed_certificate, spawn_listening, venv_python, Server};

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
    start(false)
}

/// [`start_nats`] with the server requiring TLS, and the service connecting
/// with TLS (Python's `ssl`: OpenSSL), trusting the server's certificate.
pub fn start_nats_over_tls() -> NatsSetup {
    start(true)
}

fn start(tls: bool) -> NatsSetup {
    let server = start_server(tls).unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
    let python = venv_python("ensure-nats-client.sh");
    let mut env = vec![("ZT_NATS_PORT", server.port.to_string())];
    if tls {
        let cert = server.dir.join("cert.pem");
        env.push(("ZT_NATS_TLS_CA", cert.display().to_string()));
    }
    let app = Server::script(&python, "nats_app.py", &[], &env);
    NatsSetup { server, app }
}

fn start_server(tls: bool) -> Result<NatsServer, String> {
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
        let tls_block = if tls {
            let (cert, key) = self_signed_certificate(&dir);
            format!(
                "tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
                cert.display(),
                key.display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 authorization {{ users = [ {{ user: app, password: secret, \
                 permissions: {{ publish: {{ deny: [\"locked.>\"] }} }} }} ] }}\n\
                 {tls_block}",
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
