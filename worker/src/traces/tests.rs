use std::net::SocketAddr;
use std::time::Duration;

use super::{LinkSettings, TraceLinker};
use crate::spans::{ids, ExchangeThreads, HttpExchange, Protocol, Span, SpanKind, SpanOrigin};

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
            process_name: format!("p{pid}").into(),
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
    linker.release_due(21 * MS, |_| Vec::new(), &mut ready);
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
    linker.release_due(21 * MS, |_| Vec::new(), &mut ready);
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
    linker.release_due(519 * MS, |_| Vec::new(), &mut ready);
    assert!(ready.is_empty());
    linker.release_due(520 * MS, |_| Vec::new(), &mut ready);
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
    linker.release_due(35 * MS, |_| Vec::new(), &mut ready);
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
    linker.release_due(21 * MS, |_| Vec::new(), &mut ready);
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

// In-process nesting: a client call under the server span its process serves.

/// The connection a process of the chain calls its downstream on.
const DOWNSTREAM_CLIENT: (&str, &str) = ("127.0.0.1:42000", "127.0.0.1:9090");
const DOWNSTREAM_SERVER: (&str, &str) = ("127.0.0.1:9090", "127.0.0.1:42000");
/// A connection from a caller the agent does not see (curl).
const UNSEEN_CALLER: (&str, &str) = ("127.0.0.1:8080", "127.0.0.1:50000");

/// `span` with the threads that moved its request and its response.
fn on_threads(mut span: Span, request_first: u32, response_last: u32) -> Span {
    span.threads = ExchangeThreads {
        request_first,
        response_last,
    };
    span
}

fn server(pid: u32, conn: (&str, &str), window: (u64, u64), tids: (u32, u32)) -> Span {
    on_threads(
        span(SpanKind::Server, pid, conn, "/chain", window, None),
        tids.0,
        tids.1,
    )
}

fn call(pid: u32, conn: (&str, &str), window: (u64, u64), tid: u32) -> Span {
    on_threads(
        span(SpanKind::Client, pid, conn, "/b", window, None),
        tid,
        tid,
    )
}

fn find(ready: &[Span], span_id: [u8; 8]) -> &Span {
    ready
        .iter()
        .find(|s| s.ids.span_id == span_id)
        .unwrap_or_else(|| panic!("span not sent"))
}

/// Pushes `spans` at `now` (ms) and decides with `open` as every process's
/// oldest unanswered request. The processes of its calls are noted first,
/// as [`TraceLinker::link_batch`] notes them.
fn step(linker: &mut TraceLinker, spans: Vec<Span>, now: u64, open: Option<u64>) -> Vec<Span> {
    let mut ready = Vec::new();
    linker.note_callers(&spans);
    for s in spans {
        linker.push(s, now * MS, &mut ready);
    }
    // Read by an unknown thread: every call made after it waits.
    linker.release_due(
        now * MS,
        |_| open.map(|o| (o * MS, 0)).into_iter().collect(),
        &mut ready,
    );
    ready
}

#[test]
fn a_call_waits_for_the_request_it_was_made_for_and_becomes_its_child() {
    let mut linker = linker();
    let s = server(1, UNSEEN_CALLER, (0, 100), (10, 10));
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 10);
    // The call ends first; its process is still serving a request read at 0.
    assert!(step(&mut linker, vec![c.clone()], 51, Some(0)).is_empty());
    let ready = step(&mut linker, vec![s.clone()], 101, None);
    assert_eq!(ready.len(), 2);
    let nested = find(&ready, c.ids.span_id);
    assert_child(nested, &s);
    assert_eq!(linker.counters().nested_in_process, 1);
    assert_eq!(linker.held_count(), 0);
}

#[test]
fn two_requests_that_could_hold_the_call_on_its_thread_leave_it_a_root() {
    let mut linker = linker();
    // An event loop: both requests read and answered by thread 10.
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 10);
    let trace = c.ids.trace_id;
    assert!(step(&mut linker, vec![c.clone()], 51, Some(0)).is_empty());
    // The first request is answered, the second (read at 5) is still open.
    let first = server(1, UNSEEN_CALLER, (0, 60), (10, 10));
    assert_eq!(step(&mut linker, vec![first], 61, Some(5)).len(), 1);
    let second = server(1, ("127.0.0.1:8080", "127.0.0.1:50001"), (5, 70), (10, 10));
    let ready = step(&mut linker, vec![second], 71, None);
    let c = find(&ready, c.ids.span_id);
    assert_eq!((c.ids.trace_id, c.ids.parent_span_id), (trace, None));
    assert_eq!(linker.counters().ambiguous_parent, 1);
    assert_eq!(linker.counters().nested_in_process, 0);
}

#[test]
fn a_thread_pool_call_is_matched_by_the_thread_that_answers() {
    let mut linker = linker();
    // Both requests read by poller thread 10, answered by handlers 20 and 21.
    let s20 = server(1, UNSEEN_CALLER, (0, 100), (10, 20));
    let s21 = server(1, ("127.0.0.1:8080", "127.0.0.1:50001"), (1, 100), (10, 21));
    let c20 = call(1, DOWNSTREAM_CLIENT, (10, 50), 20);
    let c21 = call(1, ("127.0.0.1:42001", "127.0.0.1:9090"), (11, 51), 21);
    let c10 = call(1, ("127.0.0.1:42002", "127.0.0.1:9090"), (12, 52), 10);
    let ready = step(
        &mut linker,
        vec![
            c20.clone(),
            c21.clone(),
            c10.clone(),
            s20.clone(),
            s21.clone(),
        ],
        101,
        None,
    );
    assert_eq!(ready.len(), 5);
    assert_child(find(&ready, c20.ids.span_id), &s20);
    assert_child(find(&ready, c21.ids.span_id), &s21);
    // The poller read both: a call on it could belong to either.
    assert_eq!(find(&ready, c10.ids.span_id).ids.parent_span_id, None);
    assert_eq!(linker.counters().ambiguous_parent, 1);
}

#[test]
fn a_call_on_another_thread_or_outside_every_request_is_a_root() {
    let mut linker = linker();
    let s = server(1, UNSEEN_CALLER, (0, 100), (10, 10));
    let other_thread = call(1, DOWNSTREAM_CLIENT, (10, 50), 11);
    let after = call(1, ("127.0.0.1:42001", "127.0.0.1:9090"), (110, 120), 10);
    let ready = step(&mut linker, vec![s, other_thread, after], 121, None);
    assert_eq!(ready.len(), 3);
    assert!(ready
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .all(|s| s.ids.parent_span_id.is_none()));
    assert_eq!(linker.counters().no_parent, 2);
}

#[test]
fn a_call_whose_process_never_answers_goes_out_as_it_is_after_the_wait() {
    let mut linker = linker();
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 10);
    assert!(step(&mut linker, vec![c.clone()], 51, Some(0)).is_empty());
    assert!(step(&mut linker, vec![], 550, Some(0)).is_empty());
    let ready = step(&mut linker, vec![], 551, Some(0));
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].ids, c.ids);
    assert_eq!(linker.counters().parent_still_open, 1);
}

#[test]
fn an_incoming_traceparent_continues_through_two_hops() {
    let mut linker = linker();
    linker.note_client_connection(addr(DOWNSTREAM_CLIENT.0), addr(DOWNSTREAM_CLIENT.1));
    // curl → A (pid 1, with traceparent) → B (pid 2) → C (pid 3).
    let s_a = on_threads(
        span(
            SpanKind::Server,
            1,
            UNSEEN_CALLER,
            "/chain",
            (0, 100),
            Some(TRACEPARENT),
        ),
        10,
        10,
    );
    let c_a = call(1, CLIENT_SIDE, (10, 90), 10);
    let s_b = server(2, SERVER_SIDE, (11, 89), (20, 20));
    let s_b = Span {
        protocol: c_a.protocol.clone(),
        ..s_b
    };
    let c_b = on_threads(
        span(SpanKind::Client, 2, DOWNSTREAM_CLIENT, "/c", (20, 80), None),
        20,
        20,
    );
    let s_c = on_threads(
        span(SpanKind::Server, 3, DOWNSTREAM_SERVER, "/c", (21, 79), None),
        30,
        30,
    );
    // Innermost first, as they finish.
    let mut ready = step(&mut linker, vec![s_c.clone(), c_b.clone()], 81, Some(11));
    ready.extend(step(
        &mut linker,
        vec![s_b.clone(), c_a.clone()],
        91,
        Some(0),
    ));
    ready.extend(step(&mut linker, vec![s_a.clone()], 101, None));
    assert_eq!(ready.len(), 5);
    let trace = s_a.ids.trace_id;
    assert_eq!(ids::to_hex(&trace), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(ready.iter().all(|s| s.ids.trace_id == trace), "{ready:#?}");
    let got = |s: &Span| find(&ready, s.ids.span_id).ids.parent_span_id;
    assert_eq!(got(&s_a), s_a.ids.parent_span_id);
    assert_eq!(got(&c_a), Some(s_a.ids.span_id));
    assert_eq!(got(&s_b), Some(c_a.ids.span_id));
    assert_eq!(got(&c_b), Some(s_b.ids.span_id));
    assert_eq!(got(&s_c), Some(c_b.ids.span_id));
}

#[test]
fn a_chain_shares_one_trace_in_whichever_order_its_spans_arrive() {
    let s_a = server(1, UNSEEN_CALLER, (0, 100), (10, 10));
    let c_a = call(1, CLIENT_SIDE, (10, 90), 10);
    let s_b = Span {
        protocol: c_a.protocol.clone(),
        ..server(2, SERVER_SIDE, (11, 89), (20, 20))
    };
    let orders: [[&Span; 3]; 3] = [[&s_a, &c_a, &s_b], [&s_b, &c_a, &s_a], [&c_a, &s_b, &s_a]];
    for order in orders {
        let mut linker = linker();
        // A made calls before: a first call's span that comes after its
        // request's is a root (`callers.rs`).
        linker.callers.note(1);
        let mut ready = Vec::new();
        for (i, s) in order.into_iter().enumerate() {
            // The serving request of A stays open until A's span arrives.
            let a_done = order[..=i].iter().any(|x| x.ids.span_id == s_a.ids.span_id);
            ready.extend(step(
                &mut linker,
                vec![s.clone()],
                101 + i as u64,
                (!a_done).then_some(0),
            ));
        }
        assert_eq!(ready.len(), 3);
        assert!(ready.iter().all(|s| s.ids.trace_id == s_a.ids.trace_id));
        assert_eq!(
            find(&ready, c_a.ids.span_id).ids.parent_span_id,
            Some(s_a.ids.span_id)
        );
        assert_eq!(
            find(&ready, s_b.ids.span_id).ids.parent_span_id,
            Some(c_a.ids.span_id)
        );
    }
}

#[test]
fn a_flood_of_spans_that_never_find_a_caller_is_capped() {
    let mut linker = linker();
    let mut sent = 0;
    for i in 0..70_000u32 {
        let port = 1024 + (i % 60_000) as u16;
        let peer = format!("127.0.0.1:{port}");
        linker.note_client_connection(addr(&peer), addr("127.0.0.1:8080"));
        let s = span(
            SpanKind::Server,
            2,
            ("127.0.0.1:8080", &peer),
            "/b",
            (1, 2),
            None,
        );
        let mut ready = Vec::new();
        linker.push(s, 3 * MS, &mut ready);
        sent += ready.len();
    }
    assert!(linker.held_count() <= 65_536);
    assert_eq!(sent as u64, linker.counters().held_limit);
    assert!(linker.counters().held_limit >= 70_000 - 65_536);
    let mut ready = Vec::new();
    linker.release_due(10_000 * MS, |_| Vec::new(), &mut ready);
    assert_eq!(linker.held_count(), 0);
    // Past the sweep, only the bounded table of client connections is left.
    linker.release_due(20_000 * MS, |_| Vec::new(), &mut ready);
    assert!(linker.remembered_count() <= 65_536 + 65_536);
}

#[test]
fn a_process_seen_answering_two_requests_on_one_thread_nests_only_lone_calls() {
    let mut linker = linker();
    // Goroutine-like: the requests' threads mix, thread 2 answered both.
    let s1 = server(1, UNSEEN_CALLER, (0, 100), (1, 2));
    let s2 = server(1, ("127.0.0.1:8080", "127.0.0.1:50001"), (5, 120), (3, 2));
    // Thread 3 read the second request only, yet the call may be the first's.
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 3);
    let ready = step(&mut linker, vec![s1, s2, c.clone()], 121, None);
    assert_eq!(find(&ready, c.ids.span_id).ids.parent_span_id, None);
    assert_eq!(linker.counters().ambiguous_parent, 1);
    // Alone around its call, a request still gets it.
    let s3 = server(1, UNSEEN_CALLER, (200, 300), (4, 4));
    let lone = call(1, DOWNSTREAM_CLIENT, (210, 250), 4);
    let ready = step(&mut linker, vec![s3.clone(), lone.clone()], 301, None);
    assert_child(find(&ready, lone.ids.span_id), &s3);
}

#[test]
fn a_thread_per_request_call_does_not_wait_for_requests_other_threads_read() {
    let mut linker = linker();
    let s = server(1, UNSEEN_CALLER, (0, 100), (10, 10));
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 10);
    let mut ready = Vec::new();
    linker.callers.note(1);
    linker.push(s.clone(), 101 * MS, &mut ready);
    linker.push(c.clone(), 101 * MS, &mut ready);
    // Another request, read at 5 by thread 11, is still open.
    linker.release_due(101 * MS, |_| vec![(5 * MS, 11)], &mut ready);
    assert_child(find(&ready, c.ids.span_id), &s);

    // A process seen answering from another thread than the reader waits.
    let mut linker = self::linker();
    let pool = server(2, UNSEEN_CALLER, (0, 100), (20, 21));
    let c = call(2, DOWNSTREAM_CLIENT, (10, 50), 21);
    let mut ready = Vec::new();
    linker.callers.note(2);
    linker.push(pool.clone(), 101 * MS, &mut ready);
    linker.push(c.clone(), 101 * MS, &mut ready);
    linker.release_due(101 * MS, |_| vec![(5 * MS, 20)], &mut ready);
    assert!(
        ready.iter().all(|s| s.ids.span_id != c.ids.span_id),
        "it waits"
    );
    linker.release_due(102 * MS, |_| Vec::new(), &mut ready);
    assert_child(find(&ready, c.ids.span_id), &pool);
}

#[test]
fn a_go_process_nests_only_lone_calls_before_any_overlap_is_seen() {
    // Two overlapping requests read and answered on threads 1 and 3, and a
    // call on thread 3 inside both: a thread-per-request server's call is
    // the second request's, but a goroutine of the first may have made it.
    let spans = |linker: &mut TraceLinker, at: u64| {
        let s1 = server(1, UNSEEN_CALLER, (at, at + 100), (1, 1));
        let s2 = server(
            1,
            ("127.0.0.1:8080", "127.0.0.1:50001"),
            (at + 5, at + 120),
            (3, 3),
        );
        let c = call(1, DOWNSTREAM_CLIENT, (at + 10, at + 50), 3);
        let ready = step(linker, vec![s1, s2.clone(), c.clone()], at + 121, None);
        (find(&ready, c.ids.span_id).clone(), s2)
    };
    let (threaded, s2) = spans(&mut linker(), 0);
    assert_child(&threaded, &s2);

    let mut go = linker();
    go.serves_many_per_thread(1);
    let (call, _) = spans(&mut go, 0);
    assert_eq!(call.ids.parent_span_id, None);
    assert_eq!(go.counters().ambiguous_parent, 1);
    // Alone around its call, a request of a Go process still gets it.
    let s3 = server(1, UNSEEN_CALLER, (200, 300), (4, 4));
    let lone = call_on(1, (210, 250), 4);
    let ready = step(&mut go, vec![s3.clone(), lone.clone()], 301, None);
    assert_child(find(&ready, lone.ids.span_id), &s3);
    // Its pid, once exited, may be another program's.
    go.process_exited(1);
    let (again, s2) = spans(&mut go, 1000);
    assert_child(&again, &s2);
}

#[test]
fn a_go_process_whose_spans_name_goroutines_nests_each_call_under_its_own_request() {
    use crate::traces::nesting::names_goroutine;
    // The kernel names a Go program's goroutines once the worker marked it:
    // the connections' goroutines (each reads, handles and answers its
    // requests) tell overlapping requests apart as threads do elsewhere.
    const G1: u32 = 0x8000_1234;
    const G2: u32 = 0x8000_5678;
    assert!(names_goroutine(G1) && names_goroutine(G2) && !names_goroutine(4_194_303));
    let mut go = linker();
    go.serves_many_per_thread(1);
    let s1 = server(1, UNSEEN_CALLER, (0, 100), (G1, G1));
    let s2 = server(1, ("127.0.0.1:8080", "127.0.0.1:50001"), (5, 120), (G2, G2));
    let c1 = call_on(1, (10, 40), G1);
    let c2 = call_on(1, (12, 50), G2);
    let ready = step(
        &mut go,
        vec![s1.clone(), s2.clone(), c1.clone(), c2.clone()],
        121,
        None,
    );
    assert_child(find(&ready, c1.ids.span_id), &s1);
    assert_child(find(&ready, c2.ids.span_id), &s2);
    assert_eq!(go.counters().ambiguous_parent, 0);
    // A call on a goroutine no open request was read or answered on (Go's
    // HTTP client writes from one of its own) has no parent: never a guess.
    let s3 = server(1, UNSEEN_CALLER, (200, 300), (G1, G1));
    let other = call_on(1, (210, 250), 0x8000_9abc);
    let ready = step(&mut go, vec![s3, other.clone()], 301, None);
    assert_eq!(find(&ready, other.ids.span_id).ids.parent_span_id, None);
    // Spans from before the mark took effect name threads, which goroutines
    // move between: those are still judged as multiplexing.
    let t1 = server(1, UNSEEN_CALLER, (400, 500), (7, 7));
    let t2 = server(1, ("127.0.0.1:8080", "127.0.0.1:50002"), (405, 520), (8, 8));
    let threaded = call_on(1, (410, 450), 8);
    let ready = step(&mut go, vec![t1, t2, threaded.clone()], 521, None);
    assert_eq!(find(&ready, threaded.ids.span_id).ids.parent_span_id, None);
    assert_eq!(go.counters().ambiguous_parent, 1);
}

#[test]
fn the_next_request_of_a_keep_alive_connection_read_before_the_answer_s_timestamp_is_no_multiplexing(
) {
    // Go's HTTP/1 server reads the first byte of a connection's next request
    // on a background goroutine while the handler runs. The client may have
    // the answer and send its next request before the answer's own send
    // event is stamped (the sender preempted inside the send): the next
    // request then seems to start before the last one ended, and both were
    // answered by the connection's goroutine. One connection's requests come
    // one after another, so that is no sign of two requests served at once.
    const CONN: u32 = 0x8000_0100;
    const BACKGROUND: u32 = 0x8000_0200;
    const OTHER_CONN: u32 = 0x8000_0300;
    let keep_alive = ("127.0.0.1:8080", "127.0.0.1:50001");
    let mut go = linker();
    go.serves_many_per_thread(1);
    let first = server(1, keep_alive, (0, 100), (CONN, CONN));
    let next = server(1, keep_alive, (99, 200), (BACKGROUND, CONN));
    let other = server(
        1,
        ("127.0.0.1:8080", "127.0.0.1:50002"),
        (150, 250),
        (OTHER_CONN, OTHER_CONN),
    );
    let mine = call_on(1, (160, 170), CONN);
    let ready = step(
        &mut go,
        vec![first, next.clone(), other.clone(), mine.clone()],
        251,
        None,
    );
    assert_child(find(&ready, mine.ids.span_id), &next);
    assert_eq!(go.counters().ambiguous_parent, 0);
}

#[test]
fn a_goroutine_s_address_used_again_by_a_new_goroutine_names_no_other_request_s_thread() {
    // Go reuses a finished goroutine's runtime.g for the next one started.
    // A background reader that read a request's first byte is done at once,
    // and its address may serve a new connection's goroutine while that
    // request is still open: the two requests overlap and share a name,
    // though no goroutine served both. Goroutines are told by who answers
    // (the connection's goroutine, alive from the first byte to the answer).
    const READER_THEN_NEW_CONN: u32 = 0x8000_0200;
    const CONN: u32 = 0x8000_0100;
    let mut go = linker();
    go.serves_many_per_thread(1);
    let stolen = server(
        1,
        ("127.0.0.1:8080", "127.0.0.1:50001"),
        (0, 100),
        (READER_THEN_NEW_CONN, CONN),
    );
    let new_conn = server(
        1,
        ("127.0.0.1:8080", "127.0.0.1:50002"),
        (10, 90),
        (READER_THEN_NEW_CONN, READER_THEN_NEW_CONN),
    );
    let its_call = call_on(1, (20, 30), READER_THEN_NEW_CONN);
    let ready = step(
        &mut go,
        vec![new_conn.clone(), stolen.clone(), its_call.clone()],
        101,
        None,
    );
    assert_child(find(&ready, its_call.ids.span_id), &new_conn);
    assert_eq!(go.counters().ambiguous_parent, 0);
    // Nor was the process judged as multiplexing: two requests open around
    // a call still tell it by its goroutine.
    let a = server(
        1,
        ("127.0.0.1:8080", "127.0.0.1:50001"),
        (200, 300),
        (CONN, CONN),
    );
    let b = server(
        1,
        ("127.0.0.1:8080", "127.0.0.1:50002"),
        (205, 310),
        (READER_THEN_NEW_CONN, READER_THEN_NEW_CONN),
    );
    let b_call = call_on(1, (210, 220), READER_THEN_NEW_CONN);
    let ready = step(&mut go, vec![a, b.clone(), b_call.clone()], 311, None);
    assert_child(find(&ready, b_call.ids.span_id), &b);
    assert_eq!(go.counters().ambiguous_parent, 0);
}

#[test]
fn a_go_call_waits_for_its_request_even_when_another_goroutine_read_its_first_byte() {
    // Go's HTTP/1 server may read a request's first byte on a background
    // goroutine: the request's reader is then not the goroutine that
    // handles it and calls. Until such a request was seen answered, the
    // process looked like one reading and answering each request on one
    // thread, and the call was decided at once, before its request was
    // answered: no parent (1 call in about 24,000 under busy loops).
    const CONN: u32 = 0x8000_0100;
    const BACKGROUND: u32 = 0x8000_0200;
    let keep_alive = ("127.0.0.1:8080", "127.0.0.1:50001");
    let mut go = linker();
    go.serves_many_per_thread(1);
    let earlier = server(1, keep_alive, (0, 10), (CONN, CONN));
    let earlier_call = call_on(1, (2, 5), CONN);
    let ready = step(
        &mut go,
        vec![earlier_call.clone(), earlier.clone()],
        11,
        None,
    );
    assert_child(find(&ready, earlier_call.ids.span_id), &earlier);
    let call = call_on(1, (30, 40), CONN);
    let mut ready = Vec::new();
    go.note_callers(std::slice::from_ref(&call));
    go.push(call.clone(), 41 * MS, &mut ready);
    go.release_due(41 * MS, |_| vec![(20 * MS, BACKGROUND)], &mut ready);
    assert!(
        ready.is_empty(),
        "the call waits for the request read at 20"
    );
    let request = server(1, keep_alive, (20, 50), (BACKGROUND, CONN));
    let ready = step(&mut go, vec![request.clone()], 51, None);
    assert_child(find(&ready, call.ids.span_id), &request);
    assert_eq!(go.counters().no_parent, 0);
}

fn call_on(pid: u32, window: (u64, u64), tid: u32) -> Span {
    call(pid, DOWNSTREAM_CLIENT, window, tid)
}

#[test]
fn a_server_span_passed_in_place_is_remembered_as_if_pushed() {
    let mut linker = linker();
    let s = server(1, UNSEEN_CALLER, (0, 100), (10, 10));
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 10);
    assert!(step(&mut linker, vec![c.clone()], 51, Some(0)).is_empty());
    // The server span goes on where it is: nothing to hold, nothing moved.
    assert!(linker.passes_at_once(&s));
    linker.pass(&s, 101 * MS);
    let mut ready = Vec::new();
    linker.release_due(101 * MS, |_| Vec::new(), &mut ready);
    assert_eq!(ready.len(), 1, "only the call was held");
    assert_child(find(&ready, c.ids.span_id), &s);
    assert_eq!(linker.counters().nested_in_process, 1);
    assert_eq!(linker.held_count(), 0);
}

#[test]
fn only_server_spans_no_caller_here_can_claim_pass_at_once() {
    let linker = linker();
    // Its connection was made by an instrumented client: it may get a caller.
    let linked = span(SpanKind::Server, 2, SERVER_SIDE, "/b", (11, 19), None);
    assert!(!linker.passes_at_once(&linked));
    // Unless it carries its caller's context already.
    let traced = span(
        SpanKind::Server,
        2,
        SERVER_SIDE,
        "/b",
        (11, 19),
        Some(TRACEPARENT),
    );
    assert!(traced.ids.parent_span_id.is_some());
    assert!(linker.passes_at_once(&traced));
    // No instrumented process connected from its peer: nothing to wait for.
    assert!(linker.passes_at_once(&server(1, UNSEEN_CALLER, (0, 100), (10, 10))));
    // Client spans may nest under a request of their process: never at once.
    assert!(!linker.passes_at_once(&call(1, DOWNSTREAM_CLIENT, (10, 50), 10)));
    let off = TraceLinker::new(LinkSettings {
        enabled: false,
        wait: Duration::from_millis(500),
    });
    assert!(off.passes_at_once(&linked));
    assert!(off.passes_at_once(&call(1, DOWNSTREAM_CLIENT, (10, 50), 10)));
}

#[test]
fn a_batch_links_as_its_spans_pushed_one_by_one() {
    let passing = || {
        vec![
            server(1, UNSEEN_CALLER, (0, 10), (10, 10)),
            server(1, ("127.0.0.1:8080", "127.0.0.1:50001"), (5, 12), (11, 11)),
        ]
    };
    // Every span passes: the batch goes on in order, nothing held.
    let mut first = linker();
    let mut batch = passing();
    let ids: Vec<[u8; 8]> = batch.iter().map(|s| s.ids.span_id).collect();
    let mut ready = Vec::new();
    first.link_batch(&mut batch, &mut ready, 20 * MS, |_| Vec::new());
    assert!(batch.is_empty());
    assert_eq!(ready.iter().map(|s| s.ids.span_id).collect::<Vec<_>>(), ids);
    // A call among them: all go through push, as pushing each would.
    let mut mixed = passing();
    mixed.push(call(1, DOWNSTREAM_CLIENT, (6, 8), 10));
    let mut one_by_one = linker();
    let expected = step(&mut one_by_one, mixed.clone(), 20, None);
    let mut batched = linker();
    let mut ready = Vec::new();
    batched.link_batch(&mut mixed, &mut ready, 20 * MS, |_| Vec::new());
    assert!(mixed.is_empty());
    assert_eq!(ready.len(), expected.len());
    assert_eq!(batched.held_count(), one_by_one.held_count());
    assert_eq!(batched.counters(), one_by_one.counters());
}

#[test]
fn only_the_server_spans_of_a_process_that_makes_calls_are_remembered() {
    let mut linker = linker();
    let before = linker.remembered_count();
    let link = |linker: &mut TraceLinker, mut batch: Vec<Span>, now: u64| {
        let mut ready = Vec::new();
        linker.link_batch(&mut batch, &mut ready, now * MS, |_| Vec::new());
        ready
    };
    // A leaf server: its spans go on, and nothing of them is kept.
    let leaf = server(5, UNSEEN_CALLER, (0, 100), (10, 10));
    assert_eq!(link(&mut linker, vec![leaf], 101).len(), 1);
    assert_eq!(linker.remembered_count(), before);
    // Its first call ends after its request was answered, a batch later:
    // that request was not kept, and the call is a root.
    let answered = server(5, UNSEEN_CALLER, (200, 300), (10, 10));
    let late = call(5, DOWNSTREAM_CLIENT, (210, 310), 10);
    link(&mut linker, vec![answered], 301);
    let ready = link(&mut linker, vec![late.clone()], 311);
    assert_eq!(find(&ready, late.ids.span_id).ids.parent_span_id, None);
    // From then on its requests are kept: a call answered in the same
    // batch as its request, even after it, nests.
    let s = server(5, UNSEEN_CALLER, (400, 500), (10, 10));
    let c = call(5, DOWNSTREAM_CLIENT, (410, 450), 10);
    let ready = link(&mut linker, vec![s.clone(), c.clone()], 501);
    assert_child(find(&ready, c.ids.span_id), &s);
    assert!(linker.remembered_count() > before);
    // The first call of a process, in the batch of its request: it nests.
    let s = server(6, UNSEEN_CALLER, (600, 700), (20, 20));
    let c = call(6, DOWNSTREAM_CLIENT, (610, 650), 20);
    let ready = link(&mut linker, vec![s.clone(), c.clone()], 701);
    assert_child(find(&ready, c.ids.span_id), &s);
    // A process that exited is forgotten: its pid may be a leaf's next.
    linker.process_exited(5);
    let after_exit = linker.remembered_count();
    let reused = server(5, UNSEEN_CALLER, (800, 900), (10, 10));
    link(&mut linker, vec![reused], 901);
    assert_eq!(linker.remembered_count(), after_exit);
}

/// A messaging span of `pid` on its connection to the broker at
/// 127.0.0.1:5672 (from local port `port`), open over `window`.
fn messaging(
    operation: crate::spans::MessagingOperation,
    pid: u32,
    port: u16,
    window: (u64, u64),
    reply_key: Option<u64>,
) -> Span {
    use crate::spans::{MessagingExchange, MessagingSystem};
    let exchange = MessagingExchange {
        reply_key,
        ..MessagingExchange::new(MessagingSystem::Nats, operation)
    };
    Span::new(
        SpanOrigin {
            kind: operation.span_kind(),
            pid,
            process_name: format!("p{pid}").into(),
            local: addr(&format!("127.0.0.1:{port}")),
            peer: addr("127.0.0.1:5672"),
            tls: false,
        },
        (window.0 * MS, window.1 * MS),
        false,
        Protocol::Messaging(exchange),
    )
}

/// A message the broker delivered to `pid`, read at `window.0` by
/// `tids.0` and acknowledged at `window.1` by `tids.1`.
fn delivery(pid: u32, window: (u64, u64), tids: (u32, u32)) -> Span {
    let process = crate::spans::MessagingOperation::Process;
    on_threads(messaging(process, pid, 43000, window, None), tids.0, tids.1)
}

#[test]
fn a_call_made_while_a_delivery_is_processed_waits_for_it_and_becomes_its_child() {
    let mut linker = linker();
    let d = delivery(1, (0, 100), (10, 10));
    let c = call(1, DOWNSTREAM_CLIENT, (10, 50), 10);
    // The call ends first; the delivery read at 0 is not yet acknowledged.
    assert!(step(&mut linker, vec![c.clone()], 51, Some(0)).is_empty());
    let ready = step(&mut linker, vec![d.clone()], 101, None);
    assert_eq!(ready.len(), 2);
    assert_child(find(&ready, c.ids.span_id), &d);
    // The delivery contains itself, and is not its own parent.
    assert_eq!(find(&ready, d.ids.span_id).ids.parent_span_id, None);
    assert_eq!(linker.counters().nested_in_process, 1);
    assert_eq!(linker.held_count(), 0);
}

#[test]
fn a_call_on_another_thread_than_the_delivery_s_is_not_its_child() {
    let mut linker = linker();
    let d = delivery(1, (0, 100), (10, 11));
    let elsewhere = call(1, DOWNSTREAM_CLIENT, (10, 50), 12);
    let acker = call(1, ("127.0.0.1:42001", "127.0.0.1:9090"), (20, 60), 11);
    let ready = step(
        &mut linker,
        vec![d.clone(), elsewhere.clone(), acker.clone()],
        101,
        None,
    );
    assert_eq!(find(&ready, elsewhere.ids.span_id).ids.parent_span_id, None);
    // Read by 10 and acknowledged by 11 (a worker thread): 11's call is its.
    assert_child(find(&ready, acker.ids.span_id), &d);
}

#[test]
fn deliveries_read_at_once_leave_calls_both_contain_roots_and_mark_nothing() {
    let mut linker = linker();
    // A prefetched batch: both read at 0 by thread 10, processed one after
    // the other.
    let d1 = delivery(1, (0, 50), (10, 10));
    let d2 = delivery(1, (0, 100), (10, 10));
    let in_first = call(1, DOWNSTREAM_CLIENT, (10, 40), 10);
    let in_second = call(1, ("127.0.0.1:42001", "127.0.0.1:9090"), (60, 90), 10);
    let ready = step(
        &mut linker,
        vec![in_first.clone(), d1.clone(), in_second.clone(), d2.clone()],
        101,
        None,
    );
    // Read together: neither is the other's parent, though d2 contains d1.
    assert_eq!(find(&ready, d1.ids.span_id).ids.parent_span_id, None);
    assert_eq!(find(&ready, d2.ids.span_id).ids.parent_span_id, None);
    // The first call lies in both: it could be either's.
    assert_eq!(find(&ready, in_first.ids.span_id).ids.parent_span_id, None);
    assert_eq!(linker.counters().ambiguous_parent, 1);
    assert_child(find(&ready, in_second.ids.span_id), &d2);
    // Threads still tell the process's requests apart: two requests open
    // at once on threads 20 and 21, and a call of 20's.
    let s20 = server(1, UNSEEN_CALLER, (200, 300), (20, 20));
    let s21 = server(
        1,
        ("127.0.0.1:8080", "127.0.0.1:50001"),
        (205, 305),
        (21, 21),
    );
    let c = call(1, DOWNSTREAM_CLIENT, (210, 250), 20);
    let ready = step(&mut linker, vec![s20.clone(), s21, c.clone()], 306, None);
    assert_child(find(&ready, c.ids.span_id), &s20);
}

#[test]
fn a_delivery_read_while_serving_a_request_on_its_thread_is_the_request_s_and_its_calls_ambiguous()
{
    let mut linker = linker();
    // An RPC over a queue: the handler on thread 10 waits for the reply's
    // delivery, and calls something before acknowledging it.
    let s = server(1, UNSEEN_CALLER, (0, 100), (10, 10));
    let d = delivery(1, (20, 80), (10, 10));
    let c = call(1, DOWNSTREAM_CLIENT, (30, 50), 10);
    let ready = step(
        &mut linker,
        vec![c.clone(), d.clone(), s.clone()],
        101,
        None,
    );
    assert_child(find(&ready, d.ids.span_id), &s);
    // Two open around it on its thread: not a guess.
    assert_eq!(find(&ready, c.ids.span_id).ids.parent_span_id, None);
}

/// The key of the reply subject in the tests below.
const INBOX: u64 = 0x1b0c;

/// A request of pid 1 asking its reply on [`INBOX`], open over `window`.
fn request(window: (u64, u64)) -> Span {
    let publish = crate::spans::MessagingOperation::Publish;
    on_threads(messaging(publish, 1, 44000, window, Some(INBOX)), 5, 5)
}

/// Pid 2's delivery of a message to be answered on [`INBOX`], processed by thread 20.
fn answering(window: (u64, u64)) -> Span {
    let process = crate::spans::MessagingOperation::Process;
    on_threads(messaging(process, 2, 45000, window, Some(INBOX)), 20, 20)
}

#[test]
fn a_responder_s_delivery_waits_for_the_request_it_answers_and_becomes_its_child() {
    let mut linker = linker();
    // Pid 1 wrote the request (the tracker handed its key over).
    linker.note_awaited_reply(INBOX, MS);
    let d = answering((10, 90));
    let c = call(2, DOWNSTREAM_CLIENT, (20, 50), 20);
    assert!(step(&mut linker, vec![c.clone()], 51, Some(10)).is_empty());
    // Answered: held for the request's span, with the call under it.
    assert!(step(&mut linker, vec![d.clone()], 91, None).is_empty());
    let r = request((0, 100));
    let ready = step(&mut linker, vec![r.clone()], 101, None);
    assert_eq!(ready.len(), 3);
    let d_out = find(&ready, d.ids.span_id);
    assert_child(d_out, &r);
    let c_out = find(&ready, c.ids.span_id);
    assert_eq!(c_out.ids.trace_id, r.ids.trace_id);
    assert_eq!(c_out.ids.parent_span_id, Some(d.ids.span_id));
    assert_eq!(linker.counters().linked_across_processes, 1);
    assert_eq!(linker.held_count(), 0);
}

#[test]
fn a_request_seen_before_its_delivery_or_in_its_batch_is_found() {
    // The request's span first (its events came first).
    let mut linker = linker();
    let r = request((0, 100));
    step(&mut linker, vec![r.clone()], 101, None);
    let d = answering((10, 90));
    let ready = step(&mut linker, vec![d.clone()], 102, None);
    assert_child(find(&ready, d.ids.span_id), &r);
    // Both in one batch, the delivery first: the batch's requests are noted first.
    let mut linker = self::linker();
    let (r, d) = (request((0, 100)), answering((10, 90)));
    let ready = step(&mut linker, vec![d.clone(), r.clone()], 101, None);
    assert_child(find(&ready, d.ids.span_id), &r);
    assert_eq!(linker.counters().linked_across_processes, 1);
}

#[test]
fn a_delivery_whose_request_no_instrumented_process_wrote_goes_on_at_once() {
    let mut linker = linker();
    let d = answering((10, 90));
    let trace = d.ids.trace_id;
    let ready = step(&mut linker, vec![d.clone()], 91, None);
    let d = find(&ready, d.ids.span_id);
    assert_eq!((d.ids.trace_id, d.ids.parent_span_id), (trace, None));
    assert_eq!(linker.counters().unlinked_after_wait, 0);
}

#[test]
fn a_reply_subject_used_again_names_the_request_open_around_the_delivery() {
    let mut linker = linker();
    let first = request((0, 100));
    step(&mut linker, vec![first.clone()], 101, None);
    // The same inbox, a later request: its delivery is not the first's.
    linker.note_awaited_reply(INBOX, 200 * MS);
    let d = answering((210, 290));
    assert!(step(&mut linker, vec![d.clone()], 291, None).is_empty());
    let second = request((200, 300));
    let ready = step(&mut linker, vec![second.clone()], 301, None);
    assert_child(find(&ready, d.ids.span_id), &second);
}

#[test]
fn a_delivery_held_for_a_request_that_never_comes_goes_out_after_the_wait() {
    let mut linker = linker();
    linker.note_awaited_reply(INBOX, MS);
    let d = answering((10, 90));
    let trace = d.ids.trace_id;
    assert!(step(&mut linker, vec![d.clone()], 91, None).is_empty());
    let ready = step(&mut linker, Vec::new(), 600, None);
    let d = find(&ready, d.ids.span_id);
    assert_eq!((d.ids.trace_id, d.ids.parent_span_id), (trace, None));
    assert_eq!(linker.counters().unlinked_after_wait, 1);
    assert_eq!(linker.held_count(), 0);
}
