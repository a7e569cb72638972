use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::spans::{GrpcCall, GrpcExchange, HttpExchange, Protocol, Span, SpanKind, SpanOrigin};

const MS: u64 = 1_000_000;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn http_span(kind: SpanKind, (local, peer): (&str, &str), status: u16, ms: u64) -> Span {
    Span::new(
        SpanOrigin {
            kind,
            pid: 1,
            process_name: "p".into(),
            local: addr(local),
            peer: addr(peer),
            tls: false,
        },
        (0, ms * MS),
        false,
        Protocol::Http(HttpExchange {
            method: "GET".into(),
            target: "/x".into(),
            status,
            protocol_version: "1.1",
            ..HttpExchange::default()
        }),
    )
}

const CLIENT_SIDE: (&str, &str) = ("127.0.0.1:41000", "127.0.0.1:8080");
const SERVER_SIDE: (&str, &str) = ("127.0.0.1:8080", "127.0.0.1:41000");

/// A client span of `a` and the server span of `b` it called (linked).
fn request(client_status: u16, server_status: u16) -> (Span, Span) {
    let client = http_span(SpanKind::Client, CLIENT_SIDE, client_status, 30);
    let mut server = http_span(SpanKind::Server, SERVER_SIDE, server_status, 20);
    server.ids.trace_id = client.ids.trace_id;
    server.ids.parent_span_id = Some(client.ids.span_id);
    (client, server)
}

fn node(name: &str) -> GraphNode {
    GraphNode::new(name, "")
}

fn graph(hold_ms: u64, max_held: usize) -> ServiceGraph {
    ServiceGraph::new(GraphSettings {
        hold: Duration::from_millis(hold_ms),
        max_held,
    })
}

fn edge(client: &str, server: &str, connection_type: ConnectionType) -> EdgeKey {
    EdgeKey {
        client: node(client),
        server: node(server),
        connection_type,
    }
}

#[test]
fn a_request_between_two_instrumented_services_counts_once_with_both_durations() {
    let mut graph = graph(2000, 100);
    let (client, server) = request(200, 200);
    let mut out = EdgeObservations::default();
    graph.observe(&client, &node("a"), 0, &mut out);
    assert!(out.is_empty(), "the client waits for its server span");
    graph.observe(&server, &node("b"), MS, &mut out);
    assert_eq!(
        out.to_vec(),
        vec![EdgeObservation {
            edge: edge("a", "b", ConnectionType::Direct),
            client_seconds: Some(0.03),
            server_seconds: Some(0.02),
            failed: false,
        }]
    );
    assert_eq!(graph.held_count(), 0);
    graph.expire(10_000 * MS, &mut out);
    assert_eq!(out.len(), 1, "nothing left to count alone");
    assert_eq!(graph.counters().paired, 1);
}

#[test]
fn the_server_side_exported_first_is_paired_when_its_client_comes() {
    let mut graph = graph(2000, 100);
    let (client, server) = request(200, 503);
    let mut out = EdgeObservations::default();
    graph.observe(&server, &node("b"), 0, &mut out);
    assert!(out.is_empty(), "a linked server span waits for its caller");
    graph.observe(&client, &node("a"), MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out.to_vec()[0].edge, edge("a", "b", ConnectionType::Direct));
    assert!(out.to_vec()[0].failed, "the server answered 503");
    assert!(out.to_vec()[0].client_seconds.is_some() && out.to_vec()[0].server_seconds.is_some());
}

#[test]
fn a_client_error_alone_fails_the_request() {
    let mut graph = graph(2000, 100);
    let (client, server) = request(404, 404);
    let mut out = EdgeObservations::default();
    graph.observe(&client, &node("a"), 0, &mut out);
    graph.observe(&server, &node("b"), 0, &mut out);
    assert!(
        out.to_vec()[0].failed,
        "404 is a client-side error (semconv), not a server one"
    );
}

#[test]
fn a_client_span_never_claimed_counts_as_a_call_to_its_peer_address_after_the_hold() {
    let mut graph = graph(2000, 100);
    let client = http_span(
        SpanKind::Client,
        ("10.0.0.1:41000", "10.0.0.2:5432"),
        200,
        5,
    );
    let mut out = EdgeObservations::default();
    graph.observe(&client, &node("a"), 0, &mut out);
    graph.expire(1999 * MS, &mut out);
    assert!(out.is_empty(), "still within the hold");
    graph.expire(2000 * MS, &mut out);
    assert_eq!(
        out.to_vec(),
        vec![EdgeObservation {
            edge: edge("a", "10.0.0.2:5432", ConnectionType::VirtualNode),
            client_seconds: Some(0.005),
            server_seconds: None,
            failed: false,
        }]
    );
    assert_eq!(graph.held_count(), 0);
}

#[test]
fn a_root_server_span_counts_at_once_as_a_call_from_its_peer_ip() {
    let mut graph = graph(2000, 100);
    let server = http_span(
        SpanKind::Server,
        ("[::ffff:127.0.0.1]:8080", "[::ffff:127.0.0.1]:51000"),
        500,
        7,
    );
    let mut out = EdgeObservations::default();
    graph.observe(&server, &node("b"), 0, &mut out);
    assert_eq!(
        out.to_vec(),
        vec![EdgeObservation {
            edge: edge("127.0.0.1", "b", ConnectionType::VirtualNode),
            client_seconds: None,
            server_seconds: Some(0.007),
            failed: true,
        }]
    );
}

#[test]
fn a_server_span_whose_parent_is_never_seen_counts_alone_after_the_hold() {
    // An incoming traceparent from an SDK-instrumented caller this agent does not see.
    let mut graph = graph(100, 100);
    let (_, server) = request(200, 200);
    let mut out = EdgeObservations::default();
    graph.observe(&server, &node("b"), 0, &mut out);
    assert!(out.is_empty());
    graph.expire(100 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out.to_vec()[0].edge,
        edge("127.0.0.1", "b", ConnectionType::VirtualNode)
    );
    assert_eq!(out.to_vec()[0].client_seconds, None);
}

#[test]
fn a_client_released_by_the_hold_no_longer_pairs() {
    let mut graph = graph(100, 100);
    let (client, server) = request(200, 200);
    let mut out = EdgeObservations::default();
    graph.observe(&client, &node("a"), 0, &mut out);
    graph.expire(100 * MS, &mut out);
    graph.observe(&server, &node("b"), 150 * MS, &mut out);
    graph.expire(250 * MS, &mut out);
    let edges: Vec<EdgeKey> = out.to_vec().iter().map(|o| o.edge.clone()).collect();
    assert_eq!(
        edges,
        vec![
            edge("a", "127.0.0.1:8080", ConnectionType::VirtualNode),
            edge("127.0.0.1", "b", ConnectionType::VirtualNode),
        ]
    );
    assert_eq!(graph.counters().paired, 0);
}

#[test]
fn a_full_queue_counts_its_oldest_alone_and_counts_the_eviction() {
    let mut graph = graph(2000, 2);
    let mut out = EdgeObservations::default();
    let clients: Vec<Span> = (0..3)
        .map(|_| http_span(SpanKind::Client, CLIENT_SIDE, 200, 1))
        .collect();
    for client in &clients {
        graph.observe(client, &node("a"), 0, &mut out);
    }
    assert_eq!(out.len(), 1, "the oldest went out when the third came");
    assert_eq!(
        out.to_vec()[0].edge.connection_type,
        ConnectionType::VirtualNode
    );
    assert_eq!(graph.counters().evicted, 1);
    assert_eq!(graph.held_count(), 2);
    // The two kept still pair.
    for client in &clients[1..] {
        let mut server = http_span(SpanKind::Server, SERVER_SIDE, 200, 1);
        server.ids.parent_span_id = Some(client.ids.span_id);
        graph.observe(&server, &node("b"), 0, &mut out);
    }
    assert_eq!(graph.counters().paired, 2);
    assert_eq!(graph.held_count(), 0);
}

#[test]
fn paired_entries_do_not_pile_up_in_the_due_queue() {
    let mut graph = graph(60_000, 4);
    let mut out = EdgeObservations::default();
    for _ in 0..1000 {
        let (client, server) = request(200, 200);
        graph.observe(&client, &node("a"), 0, &mut out);
        graph.observe(&server, &node("b"), 0, &mut out);
    }
    assert_eq!(out.len(), 1000);
    assert!(
        graph.clients.order.len() <= 8,
        "{}",
        graph.clients.order.len()
    );
}

#[test]
fn release_all_counts_every_held_span_alone() {
    let mut graph = graph(2000, 100);
    let (client, _) = request(200, 200);
    let (_, server) = request(200, 200);
    let mut out = EdgeObservations::default();
    graph.observe(&client, &node("a"), 0, &mut out);
    graph.observe(&server, &node("b"), 0, &mut out);
    graph.release_all(&mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(graph.held_count(), 0);
}

#[test]
fn grpc_failures_follow_the_rpc_conventions() {
    let mut graph = graph(2000, 100);
    let grpc = |status| {
        Protocol::Grpc(GrpcExchange {
            call: GrpcCall {
                service: "shop.Catalog".into(),
                method: "Get".into(),
                status_code: Some(status),
                message: None,
            },
            http: HttpExchange {
                method: "POST".into(),
                target: "/shop.Catalog/Get".into(),
                status: 200,
                protocol_version: "2",
                ..HttpExchange::default()
            },
        })
    };
    let mut out = EdgeObservations::default();
    for status in [0, 5, 13] {
        let mut server = http_span(SpanKind::Server, SERVER_SIDE, 200, 1);
        server.protocol = grpc(status);
        graph.observe(&server, &node("b"), 0, &mut out);
    }
    let failed: Vec<bool> = out.to_vec().iter().map(|o| o.failed).collect();
    // Server side: NOT_FOUND (5) is the caller's problem, INTERNAL (13) the server's.
    assert_eq!(failed, vec![false, false, true]);
}

#[test]
fn a_service_calling_itself_is_a_self_reference() {
    assert!(edge("a", "a", ConnectionType::Direct).is_self_reference());
    assert!(!edge("a", "b", ConnectionType::Direct).is_self_reference());
    let other_namespace = EdgeKey {
        client: GraphNode::new("a", "x"),
        server: GraphNode::new("a", "y"),
        connection_type: ConnectionType::Direct,
    };
    assert!(!other_namespace.is_self_reference());
}

#[test]
fn the_hold_outlasts_the_linkers_wait() {
    assert_eq!(
        GraphSettings::after_link_wait(Duration::from_millis(500)).hold,
        Duration::from_secs(2)
    );
    assert_eq!(
        GraphSettings::after_link_wait(Duration::from_secs(10)).hold,
        Duration::from_millis(11_500)
    );
}

#[test]
fn consecutive_requests_on_one_edge_share_a_run_and_keep_their_order() {
    let mut graph = graph(2000, 16);
    let mut out = EdgeObservations::default();
    let b = node("b");
    // Three root server spans of b from one caller, then one from another, then the first again.
    for (peer, status) in [
        ("10.0.0.1:5000", 200),
        ("10.0.0.1:5001", 500),
        ("10.0.0.1:5002", 200),
        ("10.0.0.2:5000", 200),
        ("10.0.0.1:5003", 503),
    ] {
        let server = http_span(SpanKind::Server, ("127.0.0.1:8080", peer), status, 20);
        graph.observe(&server, &b, 0, &mut out);
    }
    // A node of the same names from another batch (another Arc) extends the run too.
    let again = http_span(
        SpanKind::Server,
        ("127.0.0.1:8080", "10.0.0.1:5004"),
        200,
        20,
    );
    graph.observe(&again, &node("b"), 0, &mut out);

    let runs: Vec<(EdgeKey, Vec<bool>)> = out
        .runs()
        .map(|(edge, samples)| (edge.clone(), samples.iter().map(|s| s.failed).collect()))
        .collect();
    let from = |ip| edge(ip, "b", ConnectionType::VirtualNode);
    assert_eq!(
        runs,
        vec![
            (from("10.0.0.1"), vec![false, true, false]),
            (from("10.0.0.2"), vec![false]),
            (from("10.0.0.1"), vec![true, false]),
        ]
    );
    assert_eq!(out.len(), 6);
    let flat: Vec<(EdgeKey, bool)> = out
        .to_vec()
        .into_iter()
        .map(|o| (o.edge, o.failed))
        .collect();
    assert_eq!(
        flat,
        vec![
            (from("10.0.0.1"), false),
            (from("10.0.0.1"), true),
            (from("10.0.0.1"), false),
            (from("10.0.0.2"), false),
            (from("10.0.0.1"), true),
            (from("10.0.0.1"), false),
        ]
    );
    out.clear();
    assert!(out.is_empty() && out.runs().next().is_none());
}

#[test]
fn nodes_are_equal_by_content_wherever_their_names_are() {
    let node = GraphNode::new("checkout", "shop");
    assert_eq!(node, node.clone());
    // Built apart: the same texts at other addresses.
    assert_eq!(node, GraphNode::new("checkout", "shop"));
    assert_ne!(node, GraphNode::new("checkout", ""));
    assert_ne!(node, GraphNode::new("payments", "shop"));
    // Equal nodes hash alike, as map keys must.
    let state = std::hash::RandomState::new();
    assert_eq!(
        state.hash_one(&node),
        state.hash_one(GraphNode::new("checkout", "shop"))
    );
}

#[test]
fn callers_alternating_between_addresses_are_each_named_by_their_own() {
    let mut nodes = AddressNodes::default();
    let a = addr("10.0.0.1:40000");
    let b = addr("10.0.0.2:40000");
    for _ in 0..3 {
        assert_eq!(&*nodes.caller(a).name, "10.0.0.1");
        assert_eq!(&*nodes.caller(a).name, "10.0.0.1");
        assert_eq!(&*nodes.caller(b).name, "10.0.0.2");
    }
    // Another port of a known caller is the same node.
    assert_eq!(&*nodes.caller(addr("10.0.0.2:41000")).name, "10.0.0.2");
    // Past the cap the map starts over; the names stay right.
    for i in 0..MAX_ADDRESS_NODES as u32 + 2 {
        let ip = std::net::Ipv4Addr::from(0x0a01_0000 + i);
        let peer = SocketAddr::new(ip.into(), 50000);
        assert_eq!(&*nodes.caller(peer).name, ip.to_string());
    }
    assert!(nodes.callers.len() <= MAX_ADDRESS_NODES);
    assert_eq!(&*nodes.caller(a).name, "10.0.0.1");
}
