//! A real MQTT broker for the end-to-end tests: Debian's mosquitto on a
//! free loopback port, with an ACL that lets clients write `sensors/#` and
//! `alerts/#` and only read `locked/#` (an MQTT 5 publish there is refused
//! with reason 0x87); and the service that calls it with Debian's paho-mqtt
//! (`tests/servers/mqtt_app.py`).
//!
//! Each test starts its own broker: mosquitto starts in milliseconds, and
//! its clients' sessions then belong to that test alone.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::{free_port, spawn_listening, Server};

/// Where Debian's mosquitto package puts the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A running broker, stopped (and its directory removed) on drop.
pub struct MqttBroker {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Drop for MqttBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The broker and the service calling it.
pub struct MqttSetup {
    pub broker: MqttBroker,
    pub app: Server,
}

/// Starts a broker, then `mqtt_app.py` pointed at it.
pub fn start_mqtt() -> MqttSetup {
    let broker = start_broker().unwrap_or_else(|e| panic!("mosquitto did not start: {e}"));
    let app = Server::script(
        "/usr/bin/python3",
        "mqtt_app.py",
        &[],
        &[("ZT_MQTT_PORT", broker.port.to_string())],
    );
    MqttSetup { broker, app }
}

fn start_broker() -> Result<MqttBroker, String> {
    if !std::path::Path::new(MOSQUITTO).exists() {
        return Err(format!(
            "{MOSQUITTO} missing: run scripts/install-deps.sh test"
        ));
    }
    for _ in 0..3 {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("zt-mqtt-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let acl = dir.join("acl");
        std::fs::write(
            &acl,
            "topic readwrite sensors/#\ntopic readwrite alerts/#\ntopic read locked/#\n",
        )
        .map_err(|e| e.to_string())?;
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {}\npersistence false\n",
                acl.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut command = Command::new(MOSQUITTO);
        command.arg("-c").arg(&config);
        if let Some(child) = spawn_listening(&mut command, port)? {
            return Ok(MqttBroker { child, port, dir });
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Err("no free port in 3 tries".into())
}
