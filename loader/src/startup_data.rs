//! What the loader hands the worker at start instead of an environment and a
//! path: the loader's `OTEL_*`/`ZEROTRACE_*` variables (OTLP headers and
//! other secrets among them) and the bytes of the configuration file, which
//! the loader opens itself, so a file only root can read works. The loader
//! reads the file but never parses it.

use std::io::Read;
use std::path::{Path, PathBuf};

use zerotrace_shared::startup::{self, ConfigFile, StartupData};

/// The variable naming the configuration file when `--config` is not given.
const CONFIG_PATH_ENV: &str = "OTEL_EBPF_CONFIG_PATH";

/// Why the start-up data could not be put together: the file's fault.
#[derive(Debug)]
pub struct ConfigFileError(pub String);

/// `--config`, else `OTEL_EBPF_CONFIG_PATH` (empty means unset).
pub fn config_path(flag: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        env(CONFIG_PATH_ENV)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    })
}

/// Reads the whole file, refusing anything but a regular file of bounded size.
pub fn read_config_file(path: &Path) -> Result<ConfigFile, ConfigFileError> {
    let fail = |reason: String| {
        ConfigFileError(format!(
            "cannot read the configuration file {}: {reason}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut contents = Vec::new();
    file.take(startup::MAX_CONFIG_FILE_BYTES as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|e| fail(e.to_string()))?;
    if contents.len() > startup::MAX_CONFIG_FILE_BYTES {
        return Err(fail(format!(
            "longer than {} bytes",
            startup::MAX_CONFIG_FILE_BYTES
        )));
    }
    Ok(ConfigFile {
        path: path.display().to_string(),
        contents,
    })
}

/// The variables the worker's environment keeps (TLS roots, proxies), and
/// the names of those left out because they carry credentials.
pub fn worker_environment() -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (name, value) in std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| startup::KEPT_IN_ENVIRONMENT.contains(&k.as_str()))
    {
        if startup::is_kept_in_environment(&name, &value) {
            kept.push((name, value));
        } else {
            dropped.push(name);
        }
    }
    (kept, dropped)
}

/// The worker's start-up data from this process's environment and the
/// configuration file, if one is named. Variables that are not valid UTF-8
/// are left out (the worker's settings are all text).
pub fn collect(config_flag: Option<&Path>) -> Result<StartupData, ConfigFileError> {
    let environment: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| startup::is_forwarded(k))
        .collect();
    let lookup = |name: &str| {
        environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let config_file = match config_path(config_flag, lookup) {
        Some(path) => Some(read_config_file(&path)?),
        None => None,
    };
    Ok(StartupData {
        environment,
        config_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_an_empty_variable_is_unset() {
        let env = |v: &'static str| move |k: &str| (k == CONFIG_PATH_ENV).then(|| v.to_owned());
        assert_eq!(
            config_path(Some(Path::new("/a.yaml")), env("/b.yaml")),
            Some(PathBuf::from("/a.yaml"))
        );
        assert_eq!(
            config_path(None, env("/b.yaml")),
            Some(PathBuf::from("/b.yaml"))
        );
        assert_eq!(config_path(None, env(" ")), None);
    }

    #[test]
    fn errors_name_the_path() {
        let missing = read_config_file(Path::new("/nonexistent/zt.yaml"));
        assert!(missing.is_err_and(|e| e.0.contains("/nonexistent/zt.yaml")));
        let dir = read_config_file(Path::new("/"));
        assert!(dir.is_err_and(|e| e.0.contains("not a regular file")));
    }
}
