//! Discovery and configuration end to end: YAML selectors, other users'
//! processes, routes, and no leak from short-lived processes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use zerotrace_integration_tests::*;

fn config_file(name: &str, yaml: &str) -> PathBuf {
    readable_config("config", name, yaml)
}

fn ports_of_spans(agent: &Agent) -> Vec<u64> {
    agent
        .spans()
        .iter()
        .map(|s| s.u64_of("local_port"))
        .collect()
}

#[test]
fn yaml_selectors_with_exe_path_ports_and_exclusions() {
    require_root();
    let a = Server::python_app();
    let b = Server::python_app();
    let c = Server::python_app();
    // exe_path alone would take all three python servers; the exclusion drops b,
    // and a port entry that names c is ANDed with a wrong exe, so c stays out too.
    let yaml = format!(
        "discovery:\n  instrument:\n    - exe_path: \"*/python3*\"\n      open_ports: {a},{b}\n      name: shop\n      namespace: demo\n    - open_ports: {c}\n      exe_path: \"*/nginx\"\n  exclude_instrument:\n    - open_ports: {b}\n",
        a = a.port,
        b = b.port,
        c = c.port
    );
    let path = config_file("selectors.yaml", &yaml);
    let agent = Agent::start(&["--config", &path.to_string_lossy()], &[]);
    for server in [&a, &b, &c] {
        curl(&[&server.url("/hello")]);
    }
    agent.wait_for_spans(1, |s| s.u64_of("local_port") == u64::from(a.port));
    std::thread::sleep(Duration::from_millis(500));
    let ports = ports_of_spans(&agent);
    assert!(
        ports.iter().all(|p| *p == u64::from(a.port)),
        "{ports:?}\n{}",
        agent.stderr.text()
    );
    assert!(
        agent
            .stderr
            .text()
            .contains("matched by discovery.instrument[0]"),
        "{}",
        agent.stderr.text()
    );
}

#[test]
fn containers_only_skips_host_processes() {
    require_root();
    let server = Server::python_app();
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {}\n      containers_only: true\n",
        server.port
    );
    let path = config_file("containers.yaml", &yaml);
    let agent = Agent::start(&["--config", &path.to_string_lossy()], &[]);
    curl(&[&server.url("/hello")]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        agent.spans().is_empty(),
        "a host process was instrumented: {:?}",
        agent.spans()
    );
    assert!(
        agent.stderr.text().contains("(0 process(es) found)"),
        "{}",
        agent.stderr.text()
    );
}

#[test]
fn print_config_shows_the_effective_configuration_and_bad_keys_are_named() {
    require_root();
    let path = config_file(
        "print.yaml",
        "discovery:\n  instrument:\n    - open_ports: 8080\nroutes:\n  patterns: [\"/users/{id}\"]\n",
    );
    let output = Command::new(bin_dir().join("zerotrace"))
        .args(["run", "--print-config", "--config"])
        .arg(&path)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20secret",
        )
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("open_ports: \"8080\""), "{text}");
    assert!(text.contains("/users/{id}"), "{text}");
    assert!(text.contains("http://127.0.0.1:4318/v1/traces"), "{text}");
    assert!(!text.contains("secret"), "headers must be redacted: {text}");

    let bad = config_file(
        "bad.yaml",
        "discovery:\n  instrument:\n    - open_port: 8080\n",
    );
    let output = Command::new(bin_dir().join("zerotrace"))
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("discovery.instrument[0].open_port") && stderr.contains("open_ports"),
        "{stderr}"
    );
}

#[test]
fn a_server_of_another_user_is_discovered_by_the_unprivileged_worker() {
    require_root();
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/http_app.py");
    let child = Command::new("setpriv")
        .args(["--reuid=4242", "--regid=4242", "--clear-groups", "--"])
        .arg("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Server { child, port };
    server.wait_listening();
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    curl(&[&server.url("/hello")]);
    let spans = agent.wait_for_spans(1, |s| s.str_of("path") == "/hello");
    assert_eq!(spans[0].u64_of("pid"), u64::from(server.pid()));
    assert_eq!(
        status_field(server.pid(), "Uid:").map(|u| u.starts_with("4242")),
        Some(true)
    );
}

#[test]
fn ignored_routes_never_reach_the_printer_and_ids_collapse() {
    require_root();
    let server = Server::python_app();
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {}\nroutes:\n  patterns: [\"/hello\"]\n  ignored_patterns: [\"/status/204\"]\n  unmatched: heuristic\n",
        server.port
    );
    let path = config_file("routes.yaml", &yaml);
    let agent = Agent::start(&["--config", &path.to_string_lossy()], &[]);
    let mut requests = Vec::new();
    for i in 0..400 {
        requests.push(format!(
            "GET /users/{} HTTP/1.1\r\nHost: r\r\n\r\n",
            100_000 + i * 7919
        ));
        requests.push(format!(
            "GET /orders/{:08x}-1b2c-4d5e-8f90-{:012x} HTTP/1.1\r\nHost: r\r\n\r\n",
            i * 31,
            i * 977
        ));
    }
    requests.push("GET /status/204 HTTP/1.1\r\nHost: r\r\n\r\n".into());
    requests.push("GET /hello HTTP/1.1\r\nHost: r\r\n\r\n".into());
    let refs: Vec<&str> = requests.iter().map(String::as_str).collect();
    raw_keepalive_requests(server.port, &refs);
    agent.wait_for_spans(1, |s| s.str_of("path") == "/hello");
    let spans = agent.wait_for_spans(801, |_| true);
    std::thread::sleep(Duration::from_millis(300));
    let spans_now = agent.spans();
    assert!(
        spans_now.iter().all(|s| s.str_of("path") != "/status/204"),
        "ignored route printed"
    );
    assert_eq!(spans.len().max(spans_now.len()), 801);
    let routes: std::collections::BTreeSet<String> = spans_now
        .iter()
        .map(|s| s.str_of("route").to_owned())
        .collect();
    assert!(routes.len() <= 3, "{routes:?}");
    assert!(
        routes.contains("/users/*") && routes.contains("/hello"),
        "{routes:?}"
    );
}

#[test]
fn short_lived_processes_leave_no_trace() {
    require_root();
    let port = free_port();
    let metrics_port = free_port();
    let agent = Agent::start(
        &["--open-port", &port.to_string()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/short_lived_listeners.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg("1000")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    // Most are gone before the worker reads their listen event (then it does
    // not instrument them at all); some are caught alive. Either way nothing may stay.
    let instrumented = agent.stderr.text().matches("instrumenting pid").count();
    assert!(
        instrumented >= 1,
        "no short-lived listener was seen:\n{}",
        agent.stderr.text()
    );
    // Every one of them left the kernel's pid filter and the worker's state.
    // This agent's pid filter (other tests' agents may run at the same time).
    let empty = wait_for(Duration::from_secs(15), || {
        // Processes only: the port the selector names has a key too (never a tgid).
        let processes = bpf_map_entries_of(agent.child.id(), "zt_pid_filter")?
            .into_iter()
            .filter(|entry| {
                entry
                    .get("key")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
                    < 1 << 22
            })
            .count();
        let gauge = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        (processes == 0 && gauge.contains("\nzerotrace_instrumented_processes 0\n")).then_some(())
    });
    let gauge = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    let gauge_line = gauge
        .lines()
        .find(|l| l.starts_with("zerotrace_instrumented_processes "))
        .unwrap_or("")
        .to_owned();
    assert!(
        empty.is_some(),
        "pid filter or worker state not empty after the processes exited ({gauge_line})"
    );
}

/// A server that forks a child per connection (socketserver's ForkingMixIn):
/// each request is read and answered by a process that did not exist a
/// moment before. The kernel's fork program puts the child in the pid filter
/// and sets its bit in the pid bitmap before the child runs, so even its
/// first and only exchange is captured, with the child's own pid; the worker
/// could only learn of the child afterwards.
#[test]
fn children_forked_per_connection_are_captured_from_their_first_bytes() {
    require_root();
    let port = free_port();
    let program = format!(
        "import http.server, socketserver\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       body = b'forked\\n'\n\
         \x20       self.send_response(200)\n\
         \x20       self.send_header('Content-Length', str(len(body)))\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(body)\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         class S(socketserver.ForkingMixIn, http.server.HTTPServer):\n\
         \x20   allow_reuse_address = True\n\
         S(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let child = Command::new("/usr/bin/python3")
        .args(["-c", &program])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Server { child, port };
    server.wait_listening();
    let agent = Agent::start(&["--open-port", &port.to_string()], &[]);
    let requests = 20;
    for i in 0..requests {
        assert_eq!(curl(&[&server.url(&format!("/f{i}"))]), "forked\n");
    }
    agent.wait_for_spans(requests, |s| s.str_of("path").starts_with("/f"));
    std::thread::sleep(Duration::from_millis(300));
    let spans: Vec<_> = agent
        .spans()
        .into_iter()
        .filter(|s| s.str_of("path").starts_with("/f"))
        .collect();
    assert_eq!(spans.len(), requests, "every request once: {spans:?}");
    let parent = u64::from(server.pid());
    let mut pids: Vec<u64> = spans.iter().map(|s| s.u64_of("pid")).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), requests, "one child per request: {pids:?}");
    assert!(!pids.contains(&parent), "served by children, not {parent}");
}

/// A program an `exe_path` selector names may be done within milliseconds,
/// before its exec event reaches the worker and the worker has read its
/// executable (a curl, a cron job). With such a selector the kernel captures
/// every program from its exec until the worker decides, so the requests of
/// one that matches are spans from its first byte; one no selector names is
/// taken out of the filter again and nothing it sent becomes a span. A
/// program gone before its executable could be read cannot be told apart:
/// it is counted, never silently lost. Before, about one curl in five was
/// seen.
#[test]
fn short_lived_programs_an_exe_path_names_are_captured_from_their_exec() {
    require_root();
    let server = Server::python_app();
    // curl under a name of its own, so that no other process matches. Copied
    // by cp: a file this multi-threaded test wrote itself could be held open
    // by another test's child between its fork and exec (ETXTBSY).
    let dir = std::env::temp_dir().join(format!("zt-exec-capture-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let fetcher = dir.join("fetcher");
    let copied = Command::new("cp")
        .arg("/usr/bin/curl")
        .arg(&fetcher)
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(copied.success());
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    let config = config_file(
        "exec-capture.yaml",
        "discovery:\n  instrument:\n    - exe_path: \"*/fetcher\"\n",
    );
    let mut agent = Agent::start(&["--config", &config.to_string_lossy()], &[]);
    assert!(
        agent
            .stderr
            .text()
            .contains("programs are captured from their exec"),
        "{}",
        agent.stderr.text()
    );
    let runs = 30;
    for i in 0..runs {
        let run = |program: &std::path::Path, path: String| {
            let status = Command::new(program)
                .args(["-s", "-o", "/dev/null", "--max-time", "10"])
                .arg(server.url(&path))
                .status()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(status.success());
        };
        run(&fetcher, format!("/exec{i}"));
        // Not named by the selector: captured from its exec all the same,
        // then dropped.
        run(std::path::Path::new("/usr/bin/curl"), format!("/other{i}"));
    }
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();
    let stderr = agent.stderr.text();
    let spans = agent.spans();
    let selected = spans
        .iter()
        .filter(|s| s.str_of("kind") == "client" && s.str_of("path").starts_with("/exec"))
        .count();
    assert!(
        spans
            .iter()
            .all(|s| !s.str_of("path").starts_with("/other")),
        "a program no selector names made spans: {spans:?}"
    );
    let counts = stderr
        .lines()
        .find(|l| l.contains("processes captured before discovery decided"))
        .unwrap_or_else(|| panic!("no exec capture summary:\n{stderr}"));
    let numbers: Vec<u64> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [rejected, _unreadable, _dropped, _judged_by_exec_path] = numbers[..] else {
        panic!("{counts}");
    };
    // Every unnamed curl was captured and rejected. Whether any of its
    // records came before the rejection is a race the worker usually loses
    // to curl's connect, but not always (a CI run saw none in 31): the
    // dropped count is not checked here; discovery.rs's unit tests check
    // what is dropped.
    assert!(rejected >= runs as u64, "{counts}");
    // Every fetcher is a span: read from /proc/PID/exe while it ran, or
    // judged by the path it was exec'd by once gone.
    assert_eq!(
        selected, runs,
        "fetchers that made a span ({counts})\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that starts while the agent runs is instrumented when it calls
/// listen(). Its bytes were captured only once the worker had read that
/// event, and the kernel's adaptive wake-up does not wake a worker that has
/// batched records of busy processes still to read (it drains them every 25
/// ms): a new server's first requests were lost under load (11 of 50 in ten
/// rounds by hand). The listen record now wakes the worker at once, and a
/// process that listens on a port a selector names is put in the pid filter
/// by the kernel itself, before the worker has decided.
#[test]
fn a_server_started_under_load_is_captured_from_its_first_request() {
    require_root();
    let busy = Server::python_app();
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let list: Vec<String> = ports
        .iter()
        .chain([&busy.port])
        .map(u16::to_string)
        .collect();
    let agent = Agent::start(&["--open-port", &list.join(",")], &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        let url = busy.url("/busy");
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "--max-time", "5", &url])
                    .status();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for (i, port) in ports.iter().enumerate() {
        // Asked as soon as it says it listens.
        let server = Server::python_app_on(*port);
        for j in 0..3 {
            curl(&[&server.url(&format!("/new{i}-{j}"))]);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
    let is_new = |s: &serde_json::Value| {
        s.str_of("kind") == "server" && s.str_of("path").starts_with("/new")
    };
    agent.wait_for_spans(ports.len() * 3, is_new);
    std::thread::sleep(Duration::from_millis(300));
    let mut paths: Vec<String> = agent
        .spans()
        .iter()
        .filter(|s| is_new(s))
        .map(|s| s.str_of("path").to_owned())
        .collect();
    paths.sort();
    assert_eq!(paths.len(), ports.len() * 3, "{paths:?}");
}

/// A process that listens on a port a selector names is captured from its
/// listen, before the worker decides; one the selector does not take (here,
/// the wrong executable) is taken out again and what it sent meanwhile makes
/// no span.
#[test]
fn a_listener_on_a_named_port_that_no_selector_takes_makes_no_span() {
    require_root();
    let port = free_port();
    let config = config_file(
        "listen-capture.yaml",
        &format!(
            "discovery:\n  instrument:\n    - open_ports: {port}\n      exe_path: \"*/nginx\"\n"
        ),
    );
    let mut agent = Agent::start(&["--config", &config.to_string_lossy()], &[]);
    let server = Server::python_app_on(port);
    for i in 0..5 {
        curl(&[&server.url(&format!("/unselected{i}"))]);
    }
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();
    let spans = agent.spans();
    assert!(spans.is_empty(), "{spans:?}");
    let stderr = agent.stderr.text();
    let summary = stderr
        .lines()
        .find(|l| l.contains("processes captured before discovery decided"))
        .unwrap_or_else(|| panic!("the listener was not captured and taken out:\n{stderr}"));
    assert!(summary.contains(": 1 not selected"), "{summary}");
    drop(server);
}

/// The pids that served `count` requests to `server`, one connection each,
/// at `/{prefix}{i}`: each answer names the worker that served it.
fn cluster_requests(server: &Server, prefix: &str, count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| {
            let answer = curl(&[&server.url(&format!("/{prefix}{i}"))]);
            answer
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{answer:?}: {e}"))
        })
        .collect()
}

/// Each of `served` (the pid that served `/{prefix}{i}`) is one server span
/// of that pid, and none is the primary's.
fn assert_served_by_workers(agent: &Agent, primary: u32, prefix: &str, served: &[u64]) {
    let spans = agent.wait_for_spans(served.len(), |s| {
        s.str_of("path").starts_with(&format!("/{prefix}"))
    });
    std::thread::sleep(Duration::from_millis(300));
    for (i, pid) in served.iter().enumerate() {
        let path = format!("/{prefix}{i}");
        let of_path: Vec<_> = spans.iter().filter(|s| s.str_of("path") == path).collect();
        assert_eq!(
            of_path.len(),
            1,
            "{path}: {spans:?}\n{}",
            agent.stderr.text()
        );
        assert_eq!(of_path[0].u64_of("pid"), *pid, "{path}: {:?}", of_path[0]);
        assert_eq!(
            of_path[0].str_of("kind"),
            "server",
            "{path}: {:?}",
            of_path[0]
        );
    }
    assert!(
        !served.contains(&u64::from(primary)),
        "the primary served: {served:?}"
    );
}

/// A Node.js cluster's primary listens and hands each connection to a worker
/// it forked before it listened, so the workers never hold the listening
/// socket and discovery by port finds only the primary. Its children are
/// instrumented with it, as the ones it forks later are: whether the cluster
/// ran before the agent started, or started after it. Before, neither
/// cluster made a single span.
#[test]
fn a_node_cluster_s_workers_are_instrumented_whether_it_started_before_the_agent_or_after() {
    require_root();
    let Some(before) = Server::node("node_cluster.js") else {
        eprintln!("node is not installed: skipping");
        return;
    };
    let after_port = free_port();
    let ports = format!("{},{after_port}", before.port);
    let agent = Agent::start(&["--open-port", &ports], &[]);
    let after = Server::node_on("node_cluster.js", after_port)
        .unwrap_or_else(|| panic!("the second cluster could not listen on {after_port}"));
    let requests = 8;
    let served = cluster_requests(&before, "before", requests);
    assert_served_by_workers(&agent, before.pid(), "before", &served);
    let served = cluster_requests(&after, "after", requests);
    assert_served_by_workers(&agent, after.pid(), "after", &served);
    let log = agent.stderr.text();
    assert!(
        log.contains(&format!(
            "forked before its instrumented ancestor pid {} was instrumented",
            before.pid()
        )),
        "{log}"
    );
}

/// A parent on one port that forked, before the agent started, a child on
/// another port: a Python program printing "listening" once both are bound.
/// The child dies with the parent (killed when the returned server drops).
fn parent_and_child_servers(parent_port: u16, child_port: u16) -> Server {
    let program = format!(
        "import ctypes, http.server, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       body = str(os.getpid()).encode()\n\
         \x20       self.send_response(200)\n\
         \x20       self.send_header('Content-Length', str(len(body)))\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(body)\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         read, write = os.pipe()\n\
         if os.fork() == 0:\n\
         \x20   ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL with the parent\n\
         \x20   server = http.server.HTTPServer(('127.0.0.1', {child_port}), H)\n\
         \x20   os.write(write, b'1')\n\
         \x20   server.serve_forever()\n\
         server = http.server.HTTPServer(('127.0.0.1', {parent_port}), H)\n\
         os.read(read, 1)\n\
         print('listening', flush=True)\n\
         server.serve_forever()\n"
    );
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", &program])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    }
    assert_eq!(
        line.trim(),
        "listening",
        "ports {parent_port}, {child_port}"
    );
    Server {
        child,
        port: parent_port,
    }
}

/// A child forked before its parent was instrumented is instrumented with
/// it, unless an exclusion names it: `exclude_instrument` wins over the
/// parent's selection, as it does for any process.
#[test]
fn a_child_forked_before_the_agent_that_an_exclusion_names_stays_out() {
    require_root();
    let (parent_port, child_port) = (free_port(), free_port());
    let parent = parent_and_child_servers(parent_port, child_port);
    let yaml = format!(
        "discovery:\n  instrument:\n    - open_ports: {parent_port}\n  exclude_instrument:\n    - open_ports: {child_port}\n"
    );
    let path = config_file("exclude-child.yaml", &yaml);
    let agent = Agent::start(&["--config", &path.to_string_lossy()], &[]);
    let child_url = format!("http://127.0.0.1:{child_port}/child");
    let child_pid = curl(&[&child_url]);
    assert_ne!(child_pid, parent.pid().to_string());
    assert_eq!(curl(&[&parent.url("/parent")]), parent.pid().to_string());
    agent.wait_for_spans(1, |s| s.str_of("path") == "/parent");
    std::thread::sleep(Duration::from_millis(500));
    let paths: Vec<String> = agent
        .spans()
        .iter()
        .map(|s| s.str_of("path").to_owned())
        .collect();
    assert_eq!(paths, ["/parent"], "{}", agent.stderr.text());
}
