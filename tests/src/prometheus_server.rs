//! A real Prometheus server for the tests that check what the agent's
//! endpoint serves by scraping it, and the PromQL queries they ask it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::free_port;

/// A Prometheus from [`start_prometheus`], stopped and its directory removed
/// when dropped, even when an assertion fails first.
pub struct PrometheusGuard(pub Child, pub PathBuf);

impl Drop for PrometheusGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// A real Prometheus scraping the agent's endpoint on `metrics_port` every
/// second, in a scratch directory named after `name` (removed by the
/// caller): the server, its port, the directory. Exemplar storage is on
/// (a feature flag in this Prometheus), so that [`query_exemplars`] answers.
pub fn start_prometheus(name: &str, metrics_port: u16) -> (Child, u16, PathBuf) {
    let work = std::env::temp_dir().join(format!("zt-prom-{name}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&work);
    let config = work.join("prometheus.yml");
    let _ = std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: zerotrace\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    );
    let prometheus_port = free_port();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus: {e}"));
    (prometheus, prometheus_port, work)
}

/// Runs an instant PromQL query against the Prometheus HTTP API.
pub fn query(prometheus_port: u16, promql: &str) -> Option<f64> {
    // Not `curl()`: Prometheus may not be listening yet, which is not a failure here.
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-G"])
        .arg(format!("http://127.0.0.1:{prometheus_port}/api/v1/query"))
        .arg("--data-urlencode")
        .arg(format!("query={promql}"))
        .output()
        .ok()?;
    let json: Value = serde_json::from_slice(&output.stdout).ok()?;
    json.pointer("/data/result/0/value/1")?
        .as_str()?
        .parse()
        .ok()
}

/// The exemplars Prometheus stored for the series `promql` selects, over
/// the last hour: each one's labels (`traceID`, `spanID`) and value.
pub fn query_exemplars(prometheus_port: u16, promql: &str) -> Vec<(Value, f64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let Ok(output) = Command::new("curl")
        .args(["-s", "--max-time", "5", "-G"])
        .arg(format!(
            "http://127.0.0.1:{prometheus_port}/api/v1/query_exemplars"
        ))
        .arg("--data-urlencode")
        .arg(format!("query={promql}"))
        .arg("--data-urlencode")
        .arg(format!("start={}", now.saturating_sub(3600)))
        .arg("--data-urlencode")
        .arg(format!("end={}", now + 60))
        .output()
    else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_slice::<Value>(&output.stdout) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for series in json["data"].as_array().into_iter().flatten() {
        for exemplar in series["exemplars"].as_array().into_iter().flatten() {
            let value = exemplar["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            found.push((exemplar["labels"].clone(), value));
        }
    }
    found
}
