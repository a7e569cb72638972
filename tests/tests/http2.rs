//! HTTP/2 (h2c) from a real server (nginx) driven by curl and h2load with
//! many concurrent streams: every request appears once, right.

use std::process::{Command, Stdio};
use std::time::Duration;

use zerotrace_integration_tests::*;

struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nginx_h2c(port: u16) -> Nginx {
    let dir = std::env::temp_dir().join(format!("zt-nginx-h2-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  server {{\n    listen 127.0.0.1:{port} http2;\n    location /a {{ return 200 \"alpha\\n\"; }}\n    location /b {{ return 404; }}\n  }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("nginx: {e}"));
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "nginx did not listen");
    Nginx { child, dir }
}

#[test]
fn h2c_requests_from_curl_and_h2load_each_become_one_span() {
    require_root();
    let port = free_port();
    let _nginx = nginx_h2c(port);
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let base = format!("http://127.0.0.1:{port}");
    let body = curl(&["--http2-prior-knowledge", &format!("{base}/a")]);
    assert_eq!(body, "alpha\n");
    curl(&["--http2-prior-knowledge", &format!("{base}/b")]);
    let load = Command::new("h2load")
        .args([
            "-n",
            "300",
            "-c",
            "3",
            "-m",
            "20",
            &format!("{base}/a?load"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("h2load: {e}"));
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(report.contains("300 succeeded"), "{report}");

    let spans = agent.wait_for_spans(302, |s| s.str_of("protocol_version") == "2");
    std::thread::sleep(Duration::from_millis(500));
    let spans_now = agent.spans();
    assert_eq!(spans_now.len(), 302, "each request exactly once");
    assert!(spans.len() >= 302);
    let loaded = spans_now
        .iter()
        .filter(|s| s.str_of("target") == "/a?load")
        .count();
    assert_eq!(loaded, 300);
    for span in &spans_now {
        assert_eq!(span.str_of("kind"), "server");
        assert_eq!(span.str_of("method"), "GET");
        assert_eq!(span.str_of("process"), "nginx");
        assert_eq!(span.u64_of("local_port"), u64::from(port));
        assert!(
            !span
                .get("partial")
                .and_then(|p| p.as_bool())
                .unwrap_or(true),
            "{span}"
        );
        let expected = if span.str_of("path") == "/b" {
            404
        } else {
            200
        };
        assert_eq!(span.u64_of("status"), expected, "{span}");
    }
    let alpha = spans_now
        .iter()
        .find(|s| s.str_of("target") == "/a")
        .unwrap_or_else(|| panic!("no /a span"));
    assert_eq!(alpha.u64_of("response_body_bytes"), 6);
    assert_eq!(alpha.str_of("host"), format!("127.0.0.1:{port}"));
}
