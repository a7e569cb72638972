//! The Prometheus endpoint, scraped by a real Prometheus server and checked
//! by promtool.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use zerotrace_integration_tests::prometheus_server::{query, query_exemplars, start_prometheus};
use zerotrace_integration_tests::*;

fn scrape(port: u16, accept: Option<&str>) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    match accept {
        Some(accept) => curl(&["-H", &format!("Accept: {accept}"), &url]),
        None => curl(&[&url]),
    }
}

/// The test app, and an agent instrumenting it that serves Prometheus
/// metrics on the returned port.
fn app_and_agent_with_prometheus() -> (Server, Agent, u16) {
    let server = Server::python_app();
    let metrics_port = free_port();
    let agent = Agent::start(
        &["--open-port", &server.port.to_string()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    (server, agent, metrics_port)
}

#[test]
fn a_real_prometheus_scrapes_red_metrics() {
    require_root();
    let (server, agent, metrics_port) = app_and_agent_with_prometheus();
    assert!(agent.stderr.text().contains("serving Prometheus metrics"));
    let ok = "GET /hello HTTP/1.1\r\nHost: p\r\n\r\n";
    let failing = "GET /status/500 HTTP/1.1\r\nHost: p\r\n\r\n";
    raw_keepalive_requests(server.port, &[ok; 40]);
    raw_keepalive_requests(server.port, &[failing; 10]);

    let text = wait_for(Duration::from_secs(10), || {
        let text = scrape(metrics_port, None);
        text.contains("http_server_request_duration_seconds_count")
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("no histogram exposed; stderr:\n{}", agent.stderr.text()));
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(text.contains("# HELP zerotrace_spans"));
    assert!(text.contains("service_name=\"python3\""), "{text}");

    // promtool validates the exposition format.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    if let Some(mut stdin) = promtool.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let checked = promtool
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{e}"));
    let problems = String::from_utf8_lossy(&checked.stderr).into_owned()
        + &String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "promtool: {problems}");

    let openmetrics = scrape(
        metrics_port,
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(openmetrics.ends_with("# EOF\n"));

    // A real Prometheus server scraping every second.
    let (mut prometheus, prometheus_port, work) = start_prometheus("red", metrics_port);
    let total = wait_for(Duration::from_secs(30), || {
        query(
            prometheus_port,
            "sum(http_server_request_duration_seconds_count)",
        )
        .filter(|v| *v >= 50.0)
    });
    // More traffic so rate() has an increase to see between scrapes.
    raw_keepalive_requests(server.port, &[ok; 30]);
    let rate = wait_for(Duration::from_secs(30), || {
        query(
            prometheus_port,
            "sum(rate(http_server_request_duration_seconds_count[1m]))",
        )
        .filter(|v| *v > 0.0)
    });
    let errors = query(
        prometheus_port,
        "sum(http_server_request_duration_seconds_count{http_response_status_code=\"500\"})",
    );
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&work);
    assert_eq!(total, Some(50.0), "PromQL total");
    let rate = rate.unwrap_or_else(|| panic!("rate() never positive"));
    // 30 requests in the last minute, extrapolated: a small positive rate, not more than all 80 in one second.
    assert!(rate > 0.0 && rate < 80.0, "rate {rate}");
    assert_eq!(errors, Some(10.0));
}

#[test]
fn a_privileged_prometheus_port_is_refused_clearly() {
    require_root();
    let mut agent = Agent::spawn(
        &["--open-port", "1"],
        &[("OTEL_EBPF_PROMETHEUS_PORT", "80")],
    );
    let status = wait_for(Duration::from_secs(10), || {
        agent.child.try_wait().ok().flatten()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(78));
    std::thread::sleep(Duration::from_millis(100));
    let stderr = agent.stderr.text();
    assert!(stderr.contains("below 1024"), "{stderr}");
}

/// The value of the unlabelled sample `name` in an exposition.
fn unlabelled_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of the samples of `name` over all their labels.
fn summed_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

/// A client connection kept alive across requests.
struct KeptAlive {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl KeptAlive {
    fn connect(port: u16) -> KeptAlive {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let reader = std::io::BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));
        KeptAlive { stream, reader }
    }

    /// Sends `request` and reads its whole response (head and
    /// Content-Length body); returns the status line.
    fn exchange(&mut self, request: &str) -> String {
        use std::io::{BufRead, Read};
        self.stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut status = String::new();
        let _ = self.reader.read_line(&mut status);
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        let _ = self.reader.read_exact(&mut body);
        status
    }
}

/// Whether the tracked-connections gauge reads 0 within 10 s: every
/// connection's close reached the worker.
fn no_connection_tracked(metrics_port: u16) -> bool {
    wait_for(Duration::from_secs(10), || {
        let text = scrape(metrics_port, None);
        (unlabelled_value(&text, "zerotrace_tracked_connections") == Some(0.0)).then_some(())
    })
    .is_some()
}

/// Every TCP socket of the host closes through one kernel hook, which sends
/// a close only for the sockets the agent tracks; the worker then forgets
/// the connection at once, not after its 300 s idle timeout. A connection
/// still open stays tracked.
#[test]
fn closed_connections_are_forgotten_when_they_close() {
    require_root();
    let (server, agent, metrics_port) = app_and_agent_with_prometheus();
    let request = "GET /hello HTTP/1.1\r\nHost: p\r\n\r\n";
    // One connection held open after its request...
    let mut held = KeptAlive::connect(server.port);
    assert!(
        held.exchange(request).starts_with("HTTP/1."),
        "no response on the held connection"
    );
    // ...and twenty that close after theirs.
    for _ in 0..20 {
        curl(&[&server.url("/hello")]);
    }
    let while_held = wait_for(Duration::from_secs(10), || {
        let text = scrape(metrics_port, None);
        let requests = summed_value(&text, "http_server_request_duration_seconds_count");
        let tracked = unlabelled_value(&text, "zerotrace_tracked_connections");
        (requests == 21.0 && tracked == Some(1.0)).then_some(text)
    });
    let text = scrape(metrics_port, None);
    assert!(
        while_held.is_some(),
        "expected 21 requests and only the held connection tracked:\n{text}\nstderr:\n{}",
        agent.stderr.text()
    );
    drop(held);
    assert!(
        no_connection_tracked(metrics_port),
        "the held connection is still tracked after it closed:\n{}",
        scrape(metrics_port, None)
    );
}

/// With the socket backend, a socket's state starts by address, in the
/// loader's `zt_conn_state` map, and moves into the socket's own storage when
/// its connection carries a second request: creating that storage costs
/// about a microsecond, which a connection of one request and its response
/// never pays (docs/benchmarks.md, "One connection per request"). Either way
/// the state is gone once the connection closes, and the close reaches the
/// worker.
#[test]
fn a_socket_state_moves_into_the_socket_when_its_connection_is_reused() {
    require_root();
    let (server, agent, metrics_port) = app_and_agent_with_prometheus();
    if !agent.stderr.text().contains("data from socket tracepoints") {
        eprintln!(
            "skipped: the socket storage exists with the socket backend only (kernel >= 6.3)"
        );
        return;
    }
    let loader = agent.child.id();
    let states = || bpf_map_entries_of(loader, "zt_conn_state").unwrap_or_default();
    let request = "GET /hello HTTP/1.1\r\nHost: p\r\n\r\n";
    let mut held = KeptAlive::connect(server.port);
    assert!(held.exchange(request).starts_with("HTTP/1.1 200"));
    // The request in, the response out: one turn, the state by address.
    let young = wait_for(Duration::from_secs(5), || {
        let states = states();
        (states.len() == 1 && states[0].pointer("/value/young_turns") == Some(&1.into()))
            .then_some(())
    });
    assert!(
        young.is_some(),
        "expected the held connection's state by address after one exchange: {:?}",
        states()
    );
    // The second request turns the direction again: the state moves.
    assert!(held.exchange(request).starts_with("HTTP/1.1 200"));
    let moved = wait_for(Duration::from_secs(5), || states().is_empty().then_some(()));
    assert!(
        moved.is_some(),
        "the reused connection's state is still by address: {:?}",
        states()
    );
    assert!(held.exchange(request).starts_with("HTTP/1.1 200"));
    // Connections of one exchange: their states leave with them.
    for _ in 0..20 {
        curl(&[&server.url("/hello")]);
    }
    let settled = wait_for(Duration::from_secs(10), || {
        let text = scrape(metrics_port, None);
        let requests = summed_value(&text, "http_server_request_duration_seconds_count");
        let tracked = unlabelled_value(&text, "zerotrace_tracked_connections");
        (requests == 23.0 && tracked == Some(1.0) && states().is_empty()).then_some(())
    });
    assert!(
        settled.is_some(),
        "expected 23 requests, the held connection tracked and no state by address:\n{}\nstates: {:?}",
        scrape(metrics_port, None),
        states()
    );
    // The moved state's close is found in the socket's storage.
    drop(held);
    assert!(
        no_connection_tracked(metrics_port),
        "the reused connection is still tracked after it closed:\n{}",
        scrape(metrics_port, None)
    );
}

/// Exposition lines `name{labels} value` that repeat a series (name and labels).
fn duplicate_series(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .filter(|series| !seen.insert(series.clone()))
        .collect()
}

/// nginx pre-forks: each worker is a process of its own with the same
/// service name. Their series must not collide (Prometheus would keep one of
/// the duplicates), and what a real Prometheus sums is every request sent.
#[test]
fn the_workers_of_a_pre_forking_server_are_distinct_series_that_sum_to_what_was_sent() {
    require_root();
    let port = free_port();
    let _nginx = Nginx::start(
        "prom-workers",
        port,
        &format!("listen 127.0.0.1:{port};\nlocation / {{ return 200 \"ok\\n\"; }}"),
    );
    let metrics_port = free_port();
    let agent = Agent::start(
        &["--open-port", &port.to_string()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    // h2load sends exactly -n requests (HTTP/1.1 here), spread over 16
    // connections, which nginx's two workers share.
    let sent = 4000;
    let (n, url) = (sent.to_string(), format!("http://127.0.0.1:{port}/"));
    h2load(
        &["--h1", "-n", &n, "-c", "16", "-m", "1", &url],
        &[&format!("{sent} succeeded")],
    );

    let text = wait_for(Duration::from_secs(15), || {
        let text = scrape(metrics_port, None);
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum();
        (total >= f64::from(sent)).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the endpoint never counted {sent} requests:\n{}\n{}",
            scrape(metrics_port, None),
            agent.stderr.text()
        )
    });
    assert_eq!(duplicate_series(&text), Vec::<String>::new(), "{text}");
    let instances: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .filter_map(|l| l.split("instance=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!instances.is_empty(), "{text}");
    assert!(text.contains("target_info{"), "{text}");

    let (mut prometheus, prometheus_port, work) = start_prometheus("workers", metrics_port);
    let total = wait_for(Duration::from_secs(30), || {
        query(
            prometheus_port,
            "sum(http_server_request_duration_seconds_count)",
        )
        .filter(|v| *v >= f64::from(sent))
    });
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&work);
    assert_eq!(total, Some(f64::from(sent)), "PromQL sum over the workers");
}

/// OBI's `ttl`: a series nobody updates for the TTL leaves the scrape and
/// the OTLP export, while a busy one stays; a new request brings it back.
/// OBI's `exemplar_filter: trace_based`: the OpenMetrics scrape carries, on
/// the buckets of the HTTP durations and of the span metrics' latency, the
/// ids of spans whose traces the trace export sends; a real Prometheus
/// (exemplar storage on) stores them, and each names a span the OTLP
/// receiver got, with the span's duration.
#[test]
fn exemplars_take_a_real_prometheus_from_a_bucket_to_an_exported_trace() {
    require_root();
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use zerotrace_integration_tests::otlp_receiver::*;
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let agent = Agent::start_exporting_to(
        &["--open-port", &server.port.to_string()],
        &receiver,
        &[
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
            ("OTEL_EBPF_PROMETHEUS_EXEMPLAR_FILTER", "trace_based"),
            (
                "OTEL_EBPF_PROMETHEUS_FEATURES",
                "application,application_span",
            ),
        ],
    );
    let (prometheus, prometheus_port, work) = start_prometheus("exemplars", metrics_port);
    let _prometheus =
        zerotrace_integration_tests::prometheus_server::PrometheusGuard(prometheus, work);
    for path in ["/hello", "/hello", "/status/503", "/size/100"] {
        curl(&[&server.url(path)]);
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // The server spans' trace and span ids, and durations, as exported.
    let exported: Vec<(String, String, f64)> = receiver
        .wait_for_traces(Duration::from_secs(20), |traces| {
            let server_spans: Vec<(String, String, f64)> = spans_of(traces)
                .iter()
                .filter(|(_, s)| s.kind == SpanKind::Server as i32)
                .map(|(_, s)| {
                    let seconds =
                        s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e9;
                    (hex(&s.trace_id), hex(&s.span_id), seconds)
                })
                .collect();
            (server_spans.len() >= 4).then_some(server_spans)
        })
        .unwrap_or_else(|| panic!("no 4 server spans\n{}", agent.stderr.text()));
    let openmetrics = scrape(
        metrics_port,
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(openmetrics.contains(" # {traceID=\""), "{openmetrics}");
    assert!(
        !scrape(metrics_port, None).contains("traceID"),
        "the text format has none"
    );
    for family in [
        "http_server_request_duration_seconds_bucket",
        "traces_spanmetrics_latency_bucket",
    ] {
        let exemplars = wait_for(Duration::from_secs(30), || {
            let found = query_exemplars(prometheus_port, family);
            (found.len() >= 3).then_some(found)
        })
        .unwrap_or_else(|| panic!("Prometheus stored no {family} exemplars\n{openmetrics}"));
        for (labels, value) in &exemplars {
            let (Some(trace), Some(span)) = (labels["traceID"].as_str(), labels["spanID"].as_str())
            else {
                panic!("{labels}");
            };
            let (_, _, seconds) = exported
                .iter()
                .find(|(t, s, _)| t == trace && s == span)
                .unwrap_or_else(|| {
                    panic!("{family}: exemplar {labels} names no exported span: {exported:?}")
                });
            assert!(
                (seconds - value).abs() < 1e-6,
                "{family} {labels}: {value} s, the span {seconds} s"
            );
        }
    }
}

#[test]
fn series_idle_for_the_ttl_leave_prometheus_and_otlp() {
    require_root();
    use opentelemetry_proto::tonic::metrics::v1::{metric, HistogramDataPoint};
    use zerotrace_integration_tests::otlp_receiver::*;
    let server = Server::python_app();
    let receiver = OtlpReceiver::start_http();
    let metrics_port = free_port();
    let _agent = Agent::start_exporting_to(
        &["--open-port", &server.port.to_string()],
        &receiver,
        &[
            ("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string()),
            ("OTEL_EBPF_PROMETHEUS_TTL", "3s"),
            ("OTEL_EBPF_METRICS_TTL", "3s"),
        ],
    );
    let routes_scraped = || {
        let text = scrape(metrics_port, None);
        let mut routes: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
            .filter_map(|l| {
                Some(
                    l.split("http_route=\"")
                        .nth(1)?
                        .split('"')
                        .next()?
                        .to_owned(),
                )
            })
            .collect();
        routes.sort();
        routes
    };
    // The routes of the latest export that carries the server duration.
    let routes_exported = |exports: &[ReceivedMetrics]| {
        let durations = |export: &ReceivedMetrics| -> Vec<HistogramDataPoint> {
            export
                .request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == "http.server.request.duration")
                .filter_map(|m| match &m.data {
                    Some(metric::Data::Histogram(h)) => Some(h.data_points.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        let mut routes: Vec<String> = exports
            .iter()
            .rev()
            .map(durations)
            .find(|points| !points.is_empty())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| attr_str(&p.attributes, "http.route"))
            .collect();
        routes.sort();
        routes
    };
    curl(&[&server.url("/idle")]);
    curl(&[&server.url("/busy")]);
    let both = vec!["/busy".to_owned(), "/idle".to_owned()];
    let seen = wait_for(Duration::from_secs(10), || {
        (routes_scraped() == both).then_some(())
    });
    assert!(seen.is_some(), "{:?}", routes_scraped());
    receiver
        .wait_for_metrics(Duration::from_secs(10), |exports| {
            (routes_exported(exports) == both).then_some(())
        })
        .unwrap_or_else(|| panic!("{:?}", routes_exported(&receiver.metrics())));
    // /busy keeps being asked for, /idle does not: after the TTL, /idle is gone.
    let busy_only = vec!["/busy".to_owned()];
    let gone = wait_for(Duration::from_secs(15), || {
        curl(&[&server.url("/busy")]);
        (routes_scraped() == busy_only).then_some(())
    });
    assert!(gone.is_some(), "{:?}", routes_scraped());
    receiver
        .wait_for_metrics(Duration::from_secs(15), |exports| {
            curl(&[&server.url("/busy")]);
            (routes_exported(exports) == busy_only).then_some(())
        })
        .unwrap_or_else(|| panic!("{:?}", routes_exported(&receiver.metrics())));
    // A new request of /idle: its series is back.
    curl(&[&server.url("/idle")]);
    let back = wait_for(Duration::from_secs(10), || {
        curl(&[&server.url("/busy")]);
        (routes_scraped() == both).then_some(())
    });
    assert!(back.is_some(), "{:?}", routes_scraped());
}
