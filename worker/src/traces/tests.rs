use std::net::SocketAddr;
use std::time::Duration;

use super::{LinkSettings, TraceLinker};
use crate::spans::{HttpExchange, Protocol, Span, SpanKind, SpanOrigin};

const MS: u64 = 1_000_000;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A span of process `pid` on the connection (local, peer), open from
/// `start` to `end` (ms).
fn span(
    kind: SpanKind,
    pid: u32,
    (local, peer): (&str, &str),
    target: &str,
    (start, end): (u64, u64),
    traceparent: Option<&str>,
) -> Span {
    Span::new(
        SpanOrigin {
            kind,
            pid,
            process_name: format!("p{pid}"),
            local: addr(local),
            peer: addr(peer),
            tls: false,
        },
        (start * MS, end * MS),
        false,
        Protocol::Http(HttpExchange {
            method: "GET".into(),
            target: target.into(),
            status: 200,
            protocol_version: "1.1",
            traceparent: traceparent.map(str::to_owned),
            ..HttpExchange::default()
        }),
    )
}

const CLIENT_SIDE: (&str, &str) = ("127.0.0.1:41000", "127.0.0.1:8080");
const SERVER_SIDE: (&str, &str) = ("127.0.0.1:8080", "127.0.0.1:41000");

fn linker() -> TraceLinker {
    let mut linker = TraceLinker::new(LinkSettings {
        enabled: true,
        wait: Duration::from_millis(500),
    });
    linker.note_client_connection(addr(CLIENT_SIDE.0), addr(CLIENT_SIDE.1));
    linker
}

fn assert_child(server: &Span, client: &Span) {
    assert_eq!(server.ids.trace_id, client.ids.trace_id);
    assert_eq!(server.ids.parent_span_id, Some(client.ids.span_id));
}

#[test]
fn a_server_span_finished_first_waits_for_its_caller_and_becomes_its_child() {
    let mut linker = linker();
    let mut ready = Vec::new();
    let server = span(SpanKind::Server, 2, SERVER_SIDE, "/b", (11, 19), None);
    linker.push(server, 20 * MS, &mut ready);
    assert!(ready.is_empty(), "held for its caller");
    let client = span(SpanKind::Client, 1, CLIENT_SIDE, "/b", (10, 20), None);
    linker.push(client.clone(), 21 * MS, &mut ready);
    assert_eq!(ready.len(), 2);
    let server = ready.iter().find(|s| s.kind == SpanKind::Server);
    assert_child(server.unwrap_or_else(|| panic!("no server span")), &client);
    assert_eq!(linker.counters().linked_across_processes, 1);
    assert_eq!(linker.held_count(), 0);
}

#[test]
fn a_caller_seen_first_is_found_when_the_server_span_comes() {
    let mut linker = linker();
    let mut ready = Vec::new();
    let client = span(SpanKind::Client, 1, CLIENT_SIDE, "/b", (10, 20), None);
    linker.push(client.clone(), 21 * MS, &mut ready);
    // Stamped a little before the client's: the two sides' events race.
    let server = span(SpanKind::Server, 2, SERVER_SIDE, "/b", (9, 19), None);
    linker.push(server, 22 * MS, &mut ready);
    assert_eq!(ready.len(), 2);
    assert_child(&ready[1], &client);
}

#[test]
fn a_server_span_without_an_instrumented_caller_goes_out_at_once() {
    let mut linker = linker();
    let mut ready = Vec::new();
    let server = span(
        SpanKind::Server,
        2,
        ("127.0.0.1:8080", "127.0.0.1:50000"),
        "/b",
        (11, 19),
        None,
    );
    let trace = server.ids.trace_id;
    linker.push(server, 20 * MS, &mut ready);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].ids.trace_id, trace);
    assert_eq!(ready[0].ids.parent_span_id, None);
}

#[test]
fn an_incoming_traceparent_keeps_winning() {
    let mut linker = linker();
    let mut ready = Vec::new();
    let server = span(
        SpanKind::Server,
        2,
        SERVER_SIDE,
        "/b",
        (11, 19),
        Some(TRACEPARENT),
    );
    let ids = server.ids;
    linker.push(server, 20 * MS, &mut ready);
    linker.push(
        span(SpanKind::Client, 1, CLIENT_SIDE, "/b", (10, 20), None),
        21 * MS,
        &mut ready,
    );
    let server = ready.iter().find(|s| s.kind == SpanKind::Server);
    assert_eq!(server.map(|s| s.ids), Some(ids));
}

#[test]
fn a_held_span_goes_out_unlinked_when_the_wait_is_over() {
    let mut linker = linker();
    let mut ready = Vec::new();
    linker.push(
        span(SpanKind::Server, 2, SERVER_SIDE, "/b", (11, 19), None),
        20 * MS,
        &mut ready,
    );
    linker.release_due(519 * MS, |_| None, &mut ready);
    assert!(ready.is_empty());
    linker.release_due(520 * MS, |_| None, &mut ready);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].ids.parent_span_id, None);
    assert_eq!(linker.counters().unlinked_after_wait, 1);
}

#[test]
fn keep_alive_exchanges_on_one_connection_each_find_their_own_caller() {
    let mut linker = linker();
    let mut ready = Vec::new();
    for (start, end) in [(11, 13), (21, 23), (31, 33)] {
        linker.push(
            span(SpanKind::Server, 2, SERVER_SIDE, "/b", (start, end), None),
            end * MS,
            &mut ready,
        );
    }
    let clients: Vec<Span> = [(10, 14), (20, 24), (30, 34)]
        .into_iter()
        .map(|w| span(SpanKind::Client, 1, CLIENT_SIDE, "/b", w, None))
        .collect();
    for client in &clients {
        linker.push(client.clone(), 35 * MS, &mut ready);
    }
    let servers: Vec<&Span> = ready
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .collect();
    assert_eq!(servers.len(), 3);
    for server in servers {
        let client = clients
            .iter()
            .find(|c| {
                c.start_monotonic_ns < server.start_monotonic_ns
                    && server.end_monotonic_ns < c.end_monotonic_ns
            })
            .unwrap_or_else(|| panic!("no enclosing client"));
        assert_child(server, client);
    }
}

#[test]
fn a_different_request_on_the_same_connection_is_not_a_caller() {
    let mut linker = linker();
    let mut ready = Vec::new();
    linker.push(
        span(SpanKind::Server, 2, SERVER_SIDE, "/b", (11, 19), None),
        20 * MS,
        &mut ready,
    );
    linker.push(
        span(SpanKind::Client, 1, CLIENT_SIDE, "/other", (10, 20), None),
        21 * MS,
        &mut ready,
    );
    assert_eq!(ready.len(), 1, "only the client goes out");
    assert_eq!(linker.held_count(), 1);
}

#[test]
fn spans_held_in_the_servers_old_trace_move_with_it() {
    let mut linker = linker();
    let mut ready = Vec::new();
    let server = span(SpanKind::Server, 2, SERVER_SIDE, "/b", (11, 19), None);
    // Another held span of the server's trace (as its in-process child would be).
    let mut sibling = span(SpanKind::Server, 3, SERVER_SIDE, "/c", (12, 13), None);
    sibling.ids.trace_id = server.ids.trace_id;
    linker.push(sibling, 14 * MS, &mut ready);
    linker.push(server, 20 * MS, &mut ready);
    let client = span(SpanKind::Client, 1, CLIENT_SIDE, "/b", (10, 20), None);
    linker.push(client.clone(), 21 * MS, &mut ready);
    linker.release_all(&mut ready);
    assert_eq!(ready.len(), 3);
    assert!(ready.iter().all(|s| s.ids.trace_id == client.ids.trace_id));
}

#[test]
fn disabled_linking_passes_every_span_through() {
    let mut linker = TraceLinker::new(LinkSettings {
        enabled: false,
        wait: Duration::from_millis(500),
    });
    linker.note_client_connection(addr(CLIENT_SIDE.0), addr(CLIENT_SIDE.1));
    let mut ready = Vec::new();
    let server = span(SpanKind::Server, 2, SERVER_SIDE, "/b", (11, 19), None);
    let ids = server.ids;
    linker.push(server, 20 * MS, &mut ready);
    linker.push(
        span(SpanKind::Client, 1, CLIENT_SIDE, "/b", (10, 20), None),
        21 * MS,
        &mut ready,
    );
    assert_eq!(ready.len(), 2);
    assert_eq!(ready[0].ids, ids);
}
