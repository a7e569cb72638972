//! The tracker end to end: detection, HTTP/1 pairing across capture cuts,
//! TLS records skipped, HTTP/2 by preface and by h2c Upgrade.

use super::*;
use crate::protocols::http2::{h2c, PREFACE};
use crate::protocols::registry::Protocol;
use crate::spans::HttpExchange;
use std::net::{IpAddr, Ipv4Addr};

fn http(span: &Span) -> &HttpExchange {
    span.http().unwrap_or_else(|| panic!("not HTTP: {span:?}"))
}

const TUPLE: ConnTuple = ConnTuple {
    local: IpAddr::V4(Ipv4Addr::LOCALHOST),
    local_port: 8443,
    peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
    peer_port: 40000,
};

fn feed(
    tracker: &mut ConnectionTracker,
    direction: Direction,
    payload: &[u8],
    tls: bool,
    ts_ns: u64,
) -> Vec<Span> {
    let mut spans = Vec::new();
    tracker.on_data(
        Segment {
            sock_id: 7,
            pid: 42,
            process_name: &"server".into(),
            role: ConnectionRole::Server,
            direction,
            tuple: Some(TUPLE),
            ts_ns,
            tid: 100,
            payload,
            total_bytes: payload.len() as u64,
            tls,
            tail: &[],
        },
        &mut spans,
    );
    spans
}

/// One segment of `bytes` as the kernel reports it: `cap` bytes
/// captured, the rest counted.
fn feed_capped(
    tracker: &mut ConnectionTracker,
    role: ConnectionRole,
    direction: Direction,
    bytes: &[u8],
    cap: usize,
    ts_ns: u64,
) -> Vec<Span> {
    let mut spans = Vec::new();
    tracker.on_data(
        Segment {
            sock_id: 7,
            pid: 42,
            process_name: &"p".into(),
            role,
            direction,
            tuple: Some(TUPLE),
            ts_ns,
            tid: 100,
            payload: &bytes[..bytes.len().min(cap)],
            total_bytes: bytes.len() as u64,
            tls: false,
            tail: &[],
        },
        &mut spans,
    );
    spans
}

fn request_with_cookie(path: &str, head_len: usize) -> Vec<u8> {
    let start = format!("GET {path} HTTP/1.1\r\nHost: h\r\nCookie: ");
    let cookie = "c".repeat(head_len - start.len() - 4);
    format!("{start}{cookie}\r\n\r\n").into_bytes()
}

#[test]
fn requests_with_heads_beyond_the_capture_pair_with_their_own_responses() {
    let mut tracker = ConnectionTracker::new();
    let mut spans = Vec::new();
    let exchanges = [("/a", 200, "ok"), ("/b", 404, "missing"), ("/c", 201, "")];
    for (i, (path, status, body)) in exchanges.iter().enumerate() {
        let ts = 10 * i as u64 + 1;
        let request = request_with_cookie(path, 2000);
        let (server, ingress) = (ConnectionRole::Server, Direction::Ingress);
        spans.extend(feed_capped(
            &mut tracker,
            server,
            ingress,
            &request,
            512,
            ts,
        ));
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let egress = Direction::Egress;
        spans.extend(feed_capped(
            &mut tracker,
            server,
            egress,
            response.as_bytes(),
            512,
            ts + 1,
        ));
        assert_eq!(
            spans.len(),
            i + 1,
            "one span per exchange, at once: {spans:?}"
        );
    }
    tracker.close(7, 100, &mut spans);
    let got: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                http(s).method.as_ref(),
                http(s).target.as_str(),
                http(s).status,
                http(s).response_body_bytes,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET", "/a", 200, 2),
            ("GET", "/b", 404, 7),
            ("GET", "/c", 201, 0)
        ]
    );
    assert!(spans.iter().all(|s| http(s).host.as_deref() == Some("h")));
    assert_eq!(
        (spans[1].start_monotonic_ns, spans[1].end_monotonic_ns),
        (11, 12)
    );
    let counters = tracker.counters();
    assert_eq!(
        (
            counters.unpaired_responses,
            counters.unanswered_requests,
            counters.garbage_segments
        ),
        (0, 0, 0)
    );
}

#[test]
fn a_response_head_beyond_the_capture_keeps_its_body_size() {
    for role in [ConnectionRole::Server, ConnectionRole::Client] {
        let (requests, responses) = match role {
            ConnectionRole::Client => (Direction::Egress, Direction::Ingress),
            _ => (Direction::Ingress, Direction::Egress),
        };
        let mut tracker = ConnectionTracker::new();
        let mut spans = Vec::new();
        for (i, path) in ["/one", "/two"].iter().enumerate() {
            let ts = 10 * i as u64 + 1;
            let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
            spans.extend(feed_capped(
                &mut tracker,
                role,
                requests,
                request.as_bytes(),
                512,
                ts,
            ));
            // The head (900 bytes of Set-Cookie) in one write, the body in others.
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nSet-Cookie: {}\r\n\r\n",
                "s".repeat(900)
            );
            spans.extend(feed_capped(
                &mut tracker,
                role,
                responses,
                head.as_bytes(),
                512,
                ts + 1,
            ));
            for _ in 0..4 {
                let body = vec![b'x'; 25_000];
                spans.extend(feed_capped(
                    &mut tracker,
                    role,
                    responses,
                    &body,
                    512,
                    ts + 2,
                ));
            }
        }
        // The first ends when the second request comes, the second at the close.
        assert_eq!(spans.len(), 1, "{role:?}");
        tracker.close(7, 100, &mut spans);
        let got: Vec<_> = spans
            .iter()
            .map(|s| {
                (
                    http(s).target.as_str(),
                    http(s).status,
                    http(s).response_body_bytes,
                    s.partial,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("/one", 200, 100_000, false), ("/two", 200, 100_000, false)],
            "{role:?}"
        );
        assert_eq!(spans[0].end_monotonic_ns, 3);
        assert_eq!(tracker.counters().unpaired_responses, 0);
    }
}

#[test]
fn a_response_sent_before_the_request_body_was_read_pairs_with_it() {
    let mut tracker = ConnectionTracker::new();
    let (server, ingress, egress) = (
        ConnectionRole::Server,
        Direction::Ingress,
        Direction::Egress,
    );
    let head = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n0123456789";
    assert!(feed_capped(&mut tracker, server, ingress, head, 512, 1).is_empty());
    let early = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
    assert!(feed_capped(&mut tracker, server, egress, early, 512, 2).is_empty());
    let spans = feed_capped(&mut tracker, server, ingress, &[b'b'; 990], 512, 3);
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (
            http(&spans[0]).target.as_str(),
            http(&spans[0]).status,
            http(&spans[0]).request_body_bytes
        ),
        ("/upload", 413, 1000)
    );
    assert_eq!(
        (spans[0].start_monotonic_ns, spans[0].end_monotonic_ns),
        (1, 3)
    );
    let mut spans = Vec::new();
    tracker.close(7, 4, &mut spans);
    let counters = tracker.counters();
    assert_eq!(
        (counters.unpaired_responses, counters.unanswered_requests),
        (0, 0)
    );
}

#[test]
fn requests_never_answered_are_counted() {
    let mut tracker = ConnectionTracker::new();
    let request = request_with_cookie("/gone", 3000);
    let (server, ingress) = (ConnectionRole::Server, Direction::Ingress);
    assert!(feed_capped(&mut tracker, server, ingress, &request, 512, 1).is_empty());
    let mut spans = Vec::new();
    tracker.close(7, 2, &mut spans);
    assert!(spans.is_empty());
    assert_eq!(tracker.counters().unanswered_requests, 1);
    assert_eq!(tracker.counters().garbage_segments, 0);
}

/// A TLS 1.3 ClientHello's record header, then some of its body.
const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
const APPLICATION_DATA: &[u8] = b"\x17\x03\x03\x00\x45\x9a\x11\x02";

#[test]
fn tls_records_are_skipped_and_the_plaintext_makes_an_https_span() {
    let mut tracker = ConnectionTracker::new();
    assert!(feed(&mut tracker, Direction::Ingress, CLIENT_HELLO, false, 1).is_empty());
    assert!(feed(
        &mut tracker,
        Direction::Egress,
        b"\x16\x03\x03\x00\x7a\x02",
        false,
        2
    )
    .is_empty());
    assert!(feed(&mut tracker, Direction::Ingress, APPLICATION_DATA, false, 3).is_empty());
    let request = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(feed(&mut tracker, Direction::Ingress, request, true, 4).is_empty());
    // The socket bytes of the same exchange (records) change nothing.
    assert!(feed(&mut tracker, Direction::Ingress, APPLICATION_DATA, false, 4).is_empty());
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let spans = feed(&mut tracker, Direction::Egress, response, true, 5);
    assert!(feed(&mut tracker, Direction::Egress, APPLICATION_DATA, false, 6).is_empty());
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(
        (
            http(span).method.as_ref(),
            http(span).target.as_str(),
            http(span).status
        ),
        ("GET", "/secret", 200)
    );
    assert!(span.tls);
    assert_eq!(HttpExchange::scheme(span.tls), "https");
    assert_eq!(span.local.port(), 8443);
    assert!(tracker.counters().encrypted_segments >= 4);
    assert_eq!(tracker.counters().garbage_segments, 0);
}

#[test]
fn record_like_bytes_inside_a_plain_http_body_are_still_http() {
    let mut tracker = ConnectionTracker::new();
    let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n";
    assert!(feed(&mut tracker, Direction::Ingress, head, false, 1).is_empty());
    // The body happens to start like a TLS record: it is body, not TLS.
    assert!(feed(&mut tracker, Direction::Ingress, APPLICATION_DATA, false, 2).is_empty());
    let spans = feed(
        &mut tracker,
        Direction::Egress,
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        false,
        3,
    );
    assert_eq!(spans.len(), 1);
    assert_eq!(http(&spans[0]).status, 201);
    assert!(!spans[0].tls);
    assert_eq!(HttpExchange::scheme(spans[0].tls), "http");
    assert_eq!(tracker.counters().encrypted_segments, 0);
}

#[test]
fn http2_over_tls_plaintext_starts_with_the_preface() {
    let mut tracker = ConnectionTracker::new();
    assert!(feed(&mut tracker, Direction::Ingress, CLIENT_HELLO, false, 1).is_empty());
    assert!(feed(&mut tracker, Direction::Ingress, PREFACE, true, 2).is_empty());
    assert!(tracker
        .connections
        .get(&7)
        .is_some_and(|c| c.info.tls
            && c.state.as_ref().map(ProtocolState::protocol) == Some(Protocol::Http2)));
}

/// After a `101` to WebSocket (or a CONNECT's `200`), both directions carry
/// frames that are not HTTP/1: the exchange is one span and nothing after it
/// counts as garbage, even frames whose payload reads like a request.
#[test]
fn both_directions_of_an_upgraded_connection_are_left_alone() {
    for (request, response) in [
        (
            &b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
        ),
        (
            &b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"[..],
            &b"HTTP/1.1 200 Connection Established\r\n\r\n"[..],
        ),
    ] {
        let mut tracker = ConnectionTracker::new();
        let mut spans = feed(&mut tracker, Direction::Ingress, request, false, 1);
        spans.extend(feed(&mut tracker, Direction::Egress, response, false, 2));
        for ts in 3..23 {
            let frame: &[u8] = if ts % 2 == 0 {
                b"\x82\x1cGET / HTTP/1.1\r\nHost: y\r\n\r\n"
            } else {
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
            };
            spans.extend(feed(&mut tracker, Direction::Ingress, frame, false, ts));
            spans.extend(feed(&mut tracker, Direction::Egress, frame, false, ts));
        }
        tracker.close(7, 30, &mut spans);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let counters = tracker.counters();
        assert_eq!(counters.garbage_segments, 0);
        assert_eq!(counters.unanswered_requests, 0);
        assert_eq!(counters.unpaired_responses, 0);
    }
}

/// The spans of an h2c upgrade of `request` (at ts 1) that the server
/// accepts (at ts 2): 101, then its SETTINGS and the response on stream 1,
/// HEADERS (:status 200, indexed 0x88) with END_STREAM|END_HEADERS.
fn upgraded_to_h2c(request: &[u8]) -> Vec<Span> {
    let mut tracker = ConnectionTracker::new();
    assert!(feed(&mut tracker, Direction::Ingress, request, false, 1).is_empty());
    let mut switch =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    switch.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    switch.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    feed(&mut tracker, Direction::Egress, &switch, false, 2)
}

#[test]
fn an_h2c_upgrade_makes_the_request_stream_one_of_an_http2_connection() {
    let spans = upgraded_to_h2c(b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(
        (
            http(span).method.as_ref(),
            http(span).target.as_str(),
            http(span).status
        ),
        ("GET", "/up", 200)
    );
    assert_eq!(http(span).protocol_version, "2");
    assert_eq!(http(span).host.as_deref(), Some("h"));
    assert_eq!(span.start_monotonic_ns, 1);
}

#[test]
fn an_h2c_upgrade_of_a_grpc_request_is_a_grpc_call() {
    let spans = upgraded_to_h2c(
        b"POST /pkg.Svc/Call HTTP/1.1\r\nHost: h\r\nContent-Type: application/grpc\r\n\
        Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\
        Content-Length: 0\r\n\r\n",
    );
    assert_eq!(spans.len(), 1, "{spans:?}");
    let crate::spans::Protocol::Grpc(grpc) = &spans[0].protocol else {
        panic!("not a gRPC call: {:?}", spans[0]);
    };
    assert_eq!(
        (grpc.call.service.as_str(), grpc.call.method.as_str()),
        ("pkg.Svc", "Call")
    );
}

#[test]
fn a_websocket_upgrade_stays_an_http1_exchange() {
    let mut tracker = ConnectionTracker::new();
    let request =
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(feed(&mut tracker, Direction::Ingress, request, false, 1).is_empty());
    let switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let spans = feed(&mut tracker, Direction::Egress, switch, false, 2);
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (http(&spans[0]).status, http(&spans[0]).protocol_version),
        (101, "1.1")
    );
    assert!(h2c::switch_offset(switch).is_none());
}

#[test]
fn tls_record_headers_are_recognised() {
    assert!(is_tls_record(CLIENT_HELLO));
    assert!(is_tls_record(APPLICATION_DATA));
    assert!(!is_tls_record(b"GET / HTTP/1.1\r\n"));
    assert!(!is_tls_record(b"\x16\x03\x01"));
    assert!(!is_tls_record(b"\x17\x03\x03\xff\xff"));
    assert!(!is_tls_record(PREFACE));
}

#[test]
fn a_preface_cut_between_writes_is_still_http2() {
    let mut tracker = ConnectionTracker::new();
    let (head, tail) = PREFACE.split_at(10);
    assert!(feed(&mut tracker, Direction::Ingress, head, false, 1).is_empty());
    assert!(tracker
        .connections
        .get(&7)
        .is_some_and(|c| c.state.is_none()));
    assert!(feed(&mut tracker, Direction::Ingress, tail, false, 2).is_empty());
    assert!(tracker.connections.get(&7).is_some_and(|c| c
        .state
        .as_ref()
        .map(ProtocolState::protocol)
        == Some(Protocol::Http2)));
    assert_eq!(tracker.counters().garbage_segments, 0);
}

#[test]
fn a_request_line_cut_between_writes_is_parsed_from_its_first_byte() {
    let mut tracker = ConnectionTracker::new();
    assert!(feed(&mut tracker, Direction::Ingress, b"GE", false, 1).is_empty());
    assert!(feed(
        &mut tracker,
        Direction::Ingress,
        b"T /split HTTP/1.1\r\n\r\n",
        false,
        2
    )
    .is_empty());
    let response = b"HTTP/1.1 204 No Content\r\n\r\n";
    let spans = feed(&mut tracker, Direction::Egress, response, false, 3);
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (
            http(&spans[0]).method.as_ref(),
            http(&spans[0]).target.as_str(),
            http(&spans[0]).status
        ),
        ("GET", "/split", 204)
    );
    assert_eq!(spans[0].start_monotonic_ns, 1);
}

#[test]
fn bytes_no_protocol_claims_are_counted_and_a_later_start_line_is_parsed() {
    let mut tracker = ConnectionTracker::new();
    // Joined mid-stream: a body's tail first, then the next exchange.
    assert!(feed(
        &mut tracker,
        Direction::Ingress,
        b"\x00\xffbody tail",
        false,
        1
    )
    .is_empty());
    assert!(feed(
        &mut tracker,
        Direction::Ingress,
        b"GET /next HTTP/1.1\r\n\r\n",
        false,
        2
    )
    .is_empty());
    let spans = feed(
        &mut tracker,
        Direction::Egress,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        false,
        3,
    );
    assert_eq!(spans.len(), 1);
    assert_eq!(tracker.counters().garbage_segments, 1);
}

/// A client's first bytes and the server's answer, HTTP/1 or HTTP/2 (prior
/// knowledge: preface, SETTINGS, a GET on stream 1; then SETTINGS and
/// `:status 200` from the server).
fn exchange(http2: bool) -> (Vec<u8>, Vec<u8>) {
    if !http2 {
        return (
            b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        );
    }
    let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let mut request = PREFACE.to_vec();
    request.extend_from_slice(&settings);
    // HEADERS, END_STREAM|END_HEADERS: :method GET, :path /, :scheme http.
    request.extend_from_slice(&[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x84, 0x86]);
    let mut response = settings.to_vec();
    response.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    (request, response)
}

/// Spans of `request` written in the pieces cut at `cuts`, then `response`.
fn spans_of_pieces(request: &[u8], cuts: &[usize], response: &[u8]) -> (Vec<Span>, u64) {
    let mut tracker = ConnectionTracker::new();
    let mut spans = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([request.len()].iter()) {
        let cut = cut.clamp(from, request.len());
        spans.extend(feed(
            &mut tracker,
            Direction::Ingress,
            &request[from..cut],
            false,
            1,
        ));
        from = cut;
    }
    spans.extend(feed(&mut tracker, Direction::Egress, response, false, 2));
    tracker.close(7, 3, &mut spans);
    // Ids are random per span: compare what the capture decided.
    for span in &mut spans {
        span.ids = Default::default();
    }
    (spans, tracker.counters().garbage_segments)
}

proptest::proptest! {
    #[test]
    fn first_bytes_cut_anywhere_make_the_same_spans(
        http2 in proptest::bool::ANY,
        mut cuts in proptest::collection::vec(0usize..64, 0..3),
    ) {
        let (request, response) = exchange(http2);
        cuts.sort_unstable();
        let whole = spans_of_pieces(&request, &[], &response);
        proptest::prop_assert_eq!(whole.0.len(), 1);
        proptest::prop_assert_eq!(whole.1, 0);
        proptest::prop_assert_eq!(spans_of_pieces(&request, &cuts, &response), whole);
    }
}

/// One segment of socket 7 (a server's) by thread `tid`.
fn feed_on_thread(
    tracker: &mut ConnectionTracker,
    direction: Direction,
    payload: &[u8],
    tid: u32,
    ts_ns: u64,
) -> Vec<Span> {
    let server = (7, ConnectionRole::Server);
    feed_socket(tracker, server, direction, payload, tid, ts_ns)
}

/// One segment of pid 42's socket `sock_id` in `role`, by thread `tid`:
/// the spans it completed.
fn feed_socket(
    tracker: &mut ConnectionTracker,
    (sock_id, role): (u64, ConnectionRole),
    direction: Direction,
    payload: &[u8],
    tid: u32,
    ts_ns: u64,
) -> Vec<Span> {
    let mut spans = Vec::new();
    tracker.on_data(
        Segment {
            sock_id,
            pid: 42,
            process_name: &"p42".into(),
            role,
            direction,
            tuple: Some(TUPLE),
            ts_ns,
            tid,
            payload,
            total_bytes: payload.len() as u64,
            tls: false,
            tail: &[],
        },
        &mut spans,
    );
    spans
}

#[test]
fn a_span_names_the_thread_that_read_its_request_and_the_one_that_answered() {
    let mut tracker = ConnectionTracker::new();
    let ingress = Direction::Ingress;
    let egress = Direction::Egress;
    for (i, (reader, writer)) in [(10, 20), (10, 21)].into_iter().enumerate() {
        let t = (i as u64 + 1) * 100;
        assert!(
            feed_on_thread(&mut tracker, ingress, b"GET /a HTTP/1.1\r\n", reader, t).is_empty()
        );
        feed_on_thread(&mut tracker, ingress, b"Host: h\r\n\r\n", reader + 1, t + 1);
        assert_eq!(tracker.oldest_unanswered_request_ns(42), Some(t));
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        feed_on_thread(&mut tracker, egress, response, writer + 5, t + 2);
        let spans = feed_on_thread(&mut tracker, egress, b"ok", writer, t + 3);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].threads,
            crate::spans::ExchangeThreads {
                request_first: reader,
                response_last: writer,
            }
        );
        assert_eq!(tracker.oldest_unanswered_request_ns(42), None);
    }
}

#[test]
fn a_flood_of_requests_never_answered_is_bounded_by_the_connection_cap() {
    let mut tracker = ConnectionTracker::new();
    let mut spans = Vec::new();
    // A process whose calls wait for decisions: its requests are followed.
    assert!(tracker.unanswered_requests(42).is_empty());
    for sock in 0..(MAX_CONNECTIONS as u64 + 1_000) {
        on_sock(
            &mut tracker,
            sock,
            Direction::Ingress,
            b"GET / HTTP/1.1\r\n",
            sock + 1,
        );
    }
    assert_eq!(tracker.connection_count(), MAX_CONNECTIONS);
    assert_eq!(tracker.unanswered_connection_count(), MAX_CONNECTIONS);
    // The oldest were evicted: the oldest unanswered request is a newer one.
    assert_eq!(tracker.oldest_unanswered_request_ns(42), Some(1_001));
    tracker.forget_process(42, 1 << 40, &mut spans);
    assert_eq!(tracker.unanswered_connection_count(), 0);
    assert_eq!(tracker.oldest_unanswered_request_ns(42), None);
}

/// `payload` on connection `sock` of pid 42 (a server), in `direction` at `ts`, by thread 7.
fn on_sock(
    tracker: &mut ConnectionTracker,
    sock: u64,
    direction: Direction,
    payload: &[u8],
    ts: u64,
) {
    tracker.on_data(
        Segment {
            sock_id: sock,
            pid: 42,
            process_name: &"server".into(),
            role: ConnectionRole::Server,
            direction,
            tuple: Some(TUPLE),
            ts_ns: ts,
            tid: 7,
            payload,
            total_bytes: payload.len() as u64,
            tls: false,
            tail: &[],
        },
        &mut Vec::new(),
    );
}

/// A request on connection `sock` of pid 42, read at `ts`, not answered.
fn open_request(tracker: &mut ConnectionTracker, sock: u64, ts: u64) {
    on_sock(
        tracker,
        sock,
        Direction::Ingress,
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ts,
    );
}

#[test]
fn a_process_is_followed_from_the_first_question_with_the_requests_it_holds_then() {
    let mut tracker = ConnectionTracker::new();
    // Not asked about yet: nothing is kept per exchange.
    open_request(&mut tracker, 1, 100);
    open_request(&mut tracker, 2, 200);
    assert_eq!(tracker.unanswered_connection_count(), 0);
    // Asked (a call of it waits for a decision): what its connections hold now, and the reader.
    let mut open = tracker.unanswered_requests(42);
    open.sort_unstable();
    assert_eq!(open, vec![(100, 7), (200, 7)]);
    // From then on, as requests come and go.
    open_request(&mut tracker, 3, 300);
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    on_sock(&mut tracker, 1, Direction::Egress, response, 400);
    let mut open = tracker.unanswered_requests(42);
    open.sort_unstable();
    assert_eq!(open, vec![(200, 7), (300, 7)]);
    assert_eq!(tracker.oldest_unanswered_request_ns(42), Some(200));
    assert_eq!(tracker.unanswered_connection_count(), 2);
}

/// An HTTP/2 server writes its SETTINGS before it reads the client's preface
/// (grpcio, Go, Node.js): that first write is held until the preface says
/// HTTP/2, then read as the server's first frames, not counted as garbage.
#[test]
fn a_server_s_settings_before_the_preface_are_http2_not_garbage() {
    let mut tracker = ConnectionTracker::new();
    // SETTINGS with two settings, then a WINDOW_UPDATE on stream 0.
    let server_first: &[u8] = b"\x00\x00\x0c\x04\x00\x00\x00\x00\x00\
        \x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00\
        \x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x0f\x00\x01";
    let mut spans = feed(&mut tracker, Direction::Egress, server_first, false, 1);
    // The preface, empty SETTINGS, then GET / on stream 1 (:authority h).
    let mut client = PREFACE.to_vec();
    client.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    client.extend_from_slice(b"\x00\x00\x06\x01\x05\x00\x00\x00\x01\x82\x86\x84\x41\x01h");
    spans.extend(feed(&mut tracker, Direction::Ingress, &client, false, 2));
    // SETTINGS ACK, then :status 200 ending the stream.
    let answer: &[u8] = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00\
        \x00\x00\x01\x01\x05\x00\x00\x00\x01\x88";
    spans.extend(feed(&mut tracker, Direction::Egress, answer, false, 3));
    tracker.close(7, 4, &mut spans);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(tracker.counters().garbage_segments, 0);
    // Bytes that only look like it, never followed by a preface, still count.
    let mut other = ConnectionTracker::new();
    let mut none = feed(&mut other, Direction::Egress, server_first, false, 1);
    other.close(7, 2, &mut none);
    assert!(none.is_empty());
    assert_eq!(other.counters().garbage_segments, 1);
}

/// `payload` on a NATS subscriber's connection (sock 9 of pid 42), in
/// `direction` at `ts`, by thread `tid`: the spans it completed.
fn on_subscriber(
    tracker: &mut ConnectionTracker,
    direction: Direction,
    payload: &[u8],
    ts: u64,
    tid: u32,
) -> Vec<Span> {
    feed_socket(
        tracker,
        (9, ConnectionRole::Client),
        direction,
        payload,
        tid,
        ts,
    )
}

#[test]
fn a_client_s_delivery_not_yet_acknowledged_is_followed_like_a_request_and_stamped_by_its_read() {
    let mut tracker = ConnectionTracker::new();
    let greeting = b"INFO {\"server_id\":\"x\"}\r\n";
    on_subscriber(&mut tracker, Direction::Ingress, greeting, 100, 7);
    let subscribe = b"CONNECT {}\r\nSUB jobs 1\r\n";
    on_subscriber(&mut tracker, Direction::Egress, subscribe, 200, 7);
    // Read by thread 7, answered by thread 8 (a worker).
    let message = b"MSG jobs 1 _INBOX.r 5\r\nhello\r\n";
    let delivered = on_subscriber(&mut tracker, Direction::Ingress, message, 500, 7);
    assert!(
        delivered.is_empty(),
        "processed until answered: {delivered:?}"
    );
    assert_eq!(tracker.unanswered_requests(42), vec![(500, 7)]);
    // Followed from then on: the answer ends it.
    let answer = b"PUB _INBOX.r 2\r\nok\r\n";
    let processed = on_subscriber(&mut tracker, Direction::Egress, answer, 900, 8);
    assert_eq!(processed.len(), 1, "{processed:?}");
    assert!(processed[0].is_delivery());
    let threads = processed[0].threads;
    assert_eq!((threads.request_first, threads.response_last), (7, 8));
    assert!(tracker.unanswered_requests(42).is_empty());
}
