//! Helpers for the configuration's unit tests: load a YAML text with a given
//! environment, and the facts of a made-up process.

use super::{load_str, ConfigError, EffectiveConfig, ProcessFacts};

pub(super) fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |key| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned())
    }
}

pub(super) fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<EffectiveConfig, ConfigError> {
    load_str(yaml, "zerotrace.yaml", &env_of(env))
}

pub(super) fn ok(yaml: &str, env: &[(&str, &str)]) -> EffectiveConfig {
    load_yaml(yaml, env).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn err(yaml: &str, env: &[(&str, &str)]) -> String {
    match load_yaml(yaml, env) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn facts(pid: u32, exe: &str, ports: &[u16], container: bool) -> ProcessFacts {
    ProcessFacts {
        pid,
        exe_path: Some(exe.to_owned()),
        comm: exe.rsplit('/').next().unwrap_or_default().to_owned(),
        open_ports: ports.to_vec(),
        container_id: container.then(|| "a".repeat(64)),
        language: None,
    }
}
