//! Spans of one request across processes on this host join one trace: a
//! server span whose caller is an instrumented process on the other end of
//! the same connection becomes that caller's client span's child — with no
//! byte of traffic changed. Three real Python services call each other.

use serde_json::Value;
use zerotrace_integration_tests::*;

/// The spans of `kind` whose target is `target`.
fn spans_of<'a>(spans: &'a [Value], kind: &str, target: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s.str_of("kind") == kind && s.str_of("target") == target)
        .collect()
}

fn one<'a>(spans: &'a [Value], kind: &str, target: &str) -> &'a Value {
    let found = spans_of(spans, kind, target);
    assert_eq!(found.len(), 1, "{kind} {target}: {spans:#?}");
    found[0]
}

fn assert_child_of(child: &Value, parent: &Value) {
    assert_eq!(
        child.str_of("trace_id"),
        parent.str_of("trace_id"),
        "same trace: {child:#} / {parent:#}"
    );
    assert_eq!(
        child.get("parent_span_id").and_then(Value::as_str),
        Some(parent.str_of("span_id")),
        "parent: {child:#} / {parent:#}"
    );
}

#[test]
fn each_server_span_of_a_chain_of_three_services_is_its_callers_child() {
    require_root();
    let (a, b, c) = (
        Server::python_app(),
        Server::python_app(),
        Server::python_app(),
    );
    let ports = format!("{},{},{}", a.port, b.port, c.port);
    let metrics_port = free_port();
    let agent = Agent::start(
        &["--open-port", &ports],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    let path_c = "/hello".to_owned();
    let path_b = format!("/call/{}{path_c}", c.port);
    let path_a = format!("/call/{}{path_b}", b.port);
    for _ in 0..3 {
        let body = curl(&[&a.url(&path_a)]);
        assert!(body.starts_with("called: called: hello"), "{body}");
    }
    // Per request: A's server span, A's call, B's server span, B's call, C's server span.
    agent.wait_for_spans(15, |_| true);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let spans = agent.spans();
    let to_b = spans_of(&spans, "client", &path_b);
    let at_b = spans_of(&spans, "server", &path_b);
    let to_c = spans_of(&spans, "client", &path_c);
    let at_c: Vec<&Value> = spans_of(&spans, "server", &path_c)
        .into_iter()
        .filter(|s| s.u64_of("local_port") == u64::from(c.port))
        .collect();
    assert_eq!(
        (to_b.len(), at_b.len(), to_c.len(), at_c.len()),
        (3, 3, 3, 3),
        "{spans:#?}"
    );
    // Each server span's parent is the client span on the mirrored connection.
    for server in at_b.iter().chain(&at_c) {
        let caller = spans
            .iter()
            .find(|s| {
                s.str_of("kind") == "client"
                    && s.u64_of("local_port") == server.u64_of("peer_port")
                    && s.u64_of("peer_port") == server.u64_of("local_port")
            })
            .unwrap_or_else(|| panic!("no caller for {server:#}"));
        assert_child_of(server, caller);
    }
    // Counted: six links, nothing left unlinked.
    let counter = |text: &str, line: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let scrape = wait_for(std::time::Duration::from_secs(5), || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        (counter(&text, "zerotrace_traces_linked_total ") == Some(6)).then_some(text)
    })
    .unwrap_or_else(|| panic!("zerotrace_traces_linked_total is not 6"));
    for reason in ["no_caller_matched", "ambiguous"] {
        let line = format!("zerotrace_traces_unlinked_total{{reason=\"{reason}\"}} ");
        assert_eq!(counter(&scrape, &line), Some(0), "{scrape}");
    }
    // curl is not instrumented: A's server spans stay roots.
    for root in spans_of(&spans, "server", &path_a) {
        assert_eq!(root.get("parent_span_id"), Some(&Value::Null), "{root:#}");
    }
}

#[test]
fn an_incoming_traceparent_keeps_winning_over_the_connection() {
    require_root();
    let (a, b) = (Server::python_app(), Server::python_app());
    let ports = format!("{},{}", a.port, b.port);
    let agent = Agent::start(&["--open-port", &ports], &[]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = curl(&[
        "-H",
        &format!("traceparent: {traceparent}"),
        &a.url("/hello"),
    ]);
    assert!(body.starts_with("hello"));
    agent.wait_for_spans(1, |s| s.str_of("kind") == "server");
    let spans = agent.spans();
    let server = one(&spans, "server", "/hello");
    assert_eq!(
        server.str_of("trace_id"),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        server.get("parent_span_id").and_then(Value::as_str),
        Some("00f067aa0ba902b7")
    );
    drop(b);
}

#[test]
fn a_forged_traceparent_is_ignored_and_counted() {
    require_root();
    let a = Server::python_app();
    let metrics_port = free_port();
    let agent = Agent::start(
        &["--open-port", &a.port.to_string()],
        &[("OTEL_EBPF_PROMETHEUS_PORT", &metrics_port.to_string())],
    );
    // Not hex, then an all-zero trace id: neither is a W3C context.
    for forged in [
        "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let body = curl(&["-H", &format!("traceparent: {forged}"), &a.url("/hello")]);
        assert!(body.starts_with("hello"));
    }
    agent.wait_for_spans(2, |s| s.str_of("kind") == "server");
    for span in agent.spans() {
        assert_eq!(span.get("parent_span_id"), Some(&Value::Null), "{span:#}");
        assert_ne!(span.str_of("trace_id"), "00000000000000000000000000000000");
    }
    let counted = wait_for(std::time::Duration::from_secs(5), || {
        let text = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
        text.lines()
            .any(|l| l == "zerotrace_traces_invalid_context_total 2")
            .then_some(())
    });
    assert!(counted.is_some(), "the two forged headers were not counted");
}

#[test]
fn linking_can_be_turned_off() {
    require_root();
    let (a, b) = (Server::python_app(), Server::python_app());
    let ports = format!("{},{}", a.port, b.port);
    let agent = Agent::start(
        &["--open-port", &ports],
        &[("OTEL_EBPF_BPF_DISABLE_BLACK_BOX_CP", "true")],
    );
    let path = format!("/call/{}/hello", b.port);
    curl(&[&a.url(&path)]);
    agent.wait_for_spans(3, |_| true);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let spans = agent.spans();
    let at_b = one(&spans, "server", "/hello");
    assert_eq!(at_b.get("parent_span_id"), Some(&Value::Null), "{at_b:#}");
}
