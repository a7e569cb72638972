//! The HTTP/2 decoder driven through [`Http2Connection`]: h2c and gRPC
//! exchanges, CONTINUATION, resets, gaps in frames and header blocks, and
//! property tests.

use super::frames::*;
use super::grpc::ContentType;
use super::*;
use proptest::prelude::*;
use zerotrace_shared::event::Direction;

const C: Direction = Direction::Egress;
const S: Direction = Direction::Ingress;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or_else(|e| panic!("{e}"));
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Literal without indexing, name from the static table (index < 15 or
/// content-type).
fn lit(index: u8, value: &str) -> Vec<u8> {
    let mut out = if index < 15 {
        vec![index]
    } else {
        vec![0x0f, index - 15]
    };
    out.push(u8::try_from(value.len()).unwrap_or_else(|e| panic!("{e}")));
    out.extend_from_slice(value.as_bytes());
    out
}

/// Literal with a new name, without indexing (`indexing` adds it).
fn lit_name(name: &str, value: &str, indexing: bool) -> Vec<u8> {
    let mut out = vec![if indexing { 0x40 } else { 0x00 }];
    for s in [name, value] {
        out.push(u8::try_from(s.len()).unwrap_or_else(|e| panic!("{e}")));
        out.extend_from_slice(s.as_bytes());
    }
    out
}

const AUTHORITY: u8 = 1;
const PATH: u8 = 4;
const CONTENT_TYPE: u8 = 31;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn settings() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])
}

fn h2c_client() -> Vec<u8> {
    let block = [
        vec![0x83, 0x86],
        lit(PATH, "/echo"),
        lit(AUTHORITY, "localhost:8080"),
        lit(CONTENT_TYPE, "text/plain"),
        lit_name("traceparent", TRACEPARENT, false),
        lit_name("user-agent", "grpc-python/1.60.0", false),
    ]
    .concat();
    [
        PREFACE.to_vec(),
        settings(),
        frame(HEADERS, END_HEADERS, 1, &block),
        frame(DATA, END_STREAM, 1, b"hello"),
        frame(SETTINGS, ACK, 0, &[]),
    ]
    .concat()
}

fn h2c_server() -> Vec<u8> {
    [
        settings(),
        frame(SETTINGS, ACK, 0, &[]),
        frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
        frame(HEADERS, END_HEADERS, 1, &[0x88]),
        frame(DATA, 0, 1, b"world!"),
        frame(DATA, END_STREAM, 1, b""),
    ]
    .concat()
}

fn h2c_expected() -> Http2Exchange {
    Http2Exchange {
        stream_id: 1,
        method: Some("POST".into()),
        path: Some("/echo".into()),
        authority: Some("localhost:8080".into()),
        scheme: Some("http".into()),
        status: Some(200),
        content_type: ContentType::Other,
        traceparent: Some(TRACEPARENT.into()),
        user_agent: Some("grpc-python/1.60.0".into()),
        request_body_bytes: 5,
        response_body_bytes: 6,
        ..Http2Exchange::default()
    }
}

fn without_ts(mut ex: Http2Exchange) -> Http2Exchange {
    ex.start_ts_ns = 0;
    ex.end_ts_ns = 0;
    ex
}

/// Feeds segments with timestamps 1, 2, 3, ...
fn run(conn: &mut Http2Connection, segments: &[(Direction, &[u8], u64)]) -> Vec<Http2Exchange> {
    let mut out = Vec::new();
    for (ts, (dir, captured, missing)) in (1u64..).zip(segments) {
        conn.feed(*dir, captured, *missing, ts, &mut out);
    }
    out
}

fn parse(segments: &[(Direction, &[u8], u64)]) -> (Vec<Http2Exchange>, Http2Connection) {
    let mut conn = Http2Connection::new();
    let out = run(&mut conn, segments);
    (out, conn)
}

#[test]
fn h2c_exchange_split_anywhere() {
    let client = h2c_client();
    let server = h2c_server();
    for i in 0..=client.len() {
        let j = i % (server.len() + 1);
        let (c1, c2) = client.split_at(i);
        let (s1, s2) = server.split_at(j);
        let (out, conn) = parse(&[(C, c1, 0), (S, s1, 0), (C, c2, 0), (S, s2, 0)]);
        let out: Vec<_> = out.into_iter().map(without_ts).collect();
        assert_eq!(out, vec![h2c_expected()], "split at {i}/{j}");
        assert_eq!(conn.client_direction(), Some(C));
        assert!(conn.is_hpack_synced(C) && conn.is_hpack_synced(S));
        assert_eq!(conn.open_streams(), 0);
    }
}

#[test]
fn server_preface_followed_by_an_extension_frame() {
    // Found by the grpc fuzz target: SETTINGS then a frame of an unknown
    // type (ORIGIN here) in the server's first write lost its framing.
    let server = [
        settings(),
        frame(0x0c, 0, 0, b"\x00\x0bexample.com"),
        frame(HEADERS, END_HEADERS, 1, &[0x88]),
        frame(DATA, 0, 1, b"world!"),
        frame(DATA, END_STREAM, 1, b""),
    ]
    .concat();
    let client = h2c_client();
    for segments in [
        [(C, client.as_slice(), 0), (S, server.as_slice(), 0)],
        [(S, server.as_slice(), 0), (C, client.as_slice(), 0)],
    ] {
        let (out, conn) = parse(&segments);
        let out: Vec<_> = out.into_iter().map(without_ts).collect();
        assert_eq!(out, vec![h2c_expected()]);
        assert!(conn.is_hpack_synced(S));
        assert_eq!(conn.stats().framing_lost, 0);
    }
}

#[test]
fn timestamps_span_the_stream() {
    let client = h2c_client();
    let server = h2c_server();
    let (out, _) = parse(&[
        (C, &client, 0),
        (S, &server[..30], 0),
        (S, &server[30..], 0),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ts_ns, out[0].end_ts_ns), (1, 3));
}

#[test]
fn interleaved_streams_with_dynamic_table() {
    // Stream 1 inserts :authority into the table (index 62); 3 and 5 use it.
    let req1 = [vec![0x82, 0x86, 0x84], vec![0x41, 0x04], b"a.io".to_vec()].concat();
    let req3 = [vec![0x82, 0x86, 0xbe], lit(PATH, "/three")].concat();
    let req5 = [vec![0x83, 0x86, 0xbe], lit(PATH, "/five")].concat();
    let client = [
        PREFACE.to_vec(),
        settings(),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &req1),
        frame(HEADERS, END_HEADERS, 3, &req3),
        frame(HEADERS, END_HEADERS, 5, &req5),
        frame(DATA, 0, 5, b"12"),
        frame(DATA, END_STREAM, 5, b"345"),
        frame(DATA, END_STREAM, 3, b""),
    ]
    .concat();
    // Responses out of order; 404 inserted into the server table.
    let server = [
        settings(),
        frame(HEADERS, END_HEADERS, 5, &[0x8d]),
        frame(HEADERS, END_HEADERS, 3, &[0x48, 0x03, b'2', b'0', b'1']),
        frame(DATA, 0, 3, b"abc"),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xbe]),
        frame(DATA, END_STREAM, 5, b"x"),
        frame(DATA, END_STREAM, 3, b"d"),
    ]
    .concat();
    let (out, _) = parse(&[(C, &client, 0), (S, &server, 0)]);
    let got: Vec<_> = out
        .iter()
        .map(|e| {
            (
                e.stream_id,
                e.method.as_deref(),
                e.path.as_deref(),
                e.authority.as_deref(),
                e.status,
                e.request_body_bytes,
                e.response_body_bytes,
                e.partial,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("GET"),
                Some("/"),
                Some("a.io"),
                Some(201),
                0,
                0,
                false
            ),
            (
                5,
                Some("POST"),
                Some("/five"),
                Some("a.io"),
                Some(404),
                5,
                1,
                false
            ),
            (
                3,
                Some("GET"),
                Some("/three"),
                Some("a.io"),
                Some(201),
                0,
                4,
                false
            ),
        ]
    );
}

#[test]
fn continuation_padding_and_priority() {
    let block = [
        vec![0x82, 0x87],
        lit(PATH, "/cont"),
        lit(AUTHORITY, "x.org"),
    ]
    .concat();
    let (first, second) = block.split_at(3);
    // HEADERS with PADDED (3 bytes) and PRIORITY.
    let mut payload = vec![3, 0x80, 0, 0, 0, 15];
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0, 0, 0]);
    let client = [
        PREFACE.to_vec(),
        frame(HEADERS, PADDED | PRIORITY_FLAG | END_STREAM, 1, &payload),
        frame(CONTINUATION, 0, 1, &second[..2]),
        frame(CONTINUATION, END_HEADERS, 1, &second[2..]),
    ]
    .concat();
    let mut data = vec![4];
    data.extend_from_slice(b"body");
    data.extend_from_slice(&[0; 4]);
    let server = [
        frame(HEADERS, END_HEADERS, 1, &[0x88]),
        frame(DATA, PADDED | END_STREAM, 1, &data),
    ]
    .concat();
    let (out, _) = parse(&[(C, &client, 0), (S, &server, 0)]);
    let out: Vec<_> = out.into_iter().map(without_ts).collect();
    let expected = Http2Exchange {
        stream_id: 1,
        method: Some("GET".into()),
        path: Some("/cont".into()),
        authority: Some("x.org".into()),
        scheme: Some("https".into()),
        status: Some(200),
        response_body_bytes: 4,
        ..Http2Exchange::default()
    };
    assert_eq!(out, vec![expected]);
}

#[test]
fn interrupted_continuation_drops_the_block() {
    let block = [vec![0x82, 0x87], lit(PATH, "/cont")].concat();
    let client = [
        PREFACE.to_vec(),
        frame(HEADERS, END_STREAM, 1, &block[..2]),
        // Not the expected CONTINUATION: the block is lost.
        frame(PING, 0, 0, &[0; 8]),
        frame(CONTINUATION, END_HEADERS, 1, &block[2..]),
    ]
    .concat();
    let server = frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]);
    let (out, conn) = parse(&[(C, &client, 0), (S, &server, 0)]);
    assert!(!conn.is_hpack_synced(C));
    assert_eq!(conn.stats().blocks_lost, 2);
    // The request's fields are lost, its END_STREAM flag is not.
    assert_eq!(out.len(), 1);
    assert!(out[0].partial);
    assert_eq!(out[0].method, None);
    assert_eq!(out[0].status, Some(200));
    assert_eq!(conn.open_streams(), 0);
}

#[test]
fn rst_stream_ends_the_exchange() {
    let req = [vec![0x82, 0x86], lit(PATH, "/slow")].concat();
    let client = [
        PREFACE.to_vec(),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &req),
        frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
    ]
    .concat();
    let (out, conn) = parse(&[(C, &client, 0)]);
    assert_eq!(out.len(), 1);
    assert!(out[0].reset);
    assert_eq!(out[0].reset_code, Some(8), "CANCEL");
    assert!(out[0].reset_by_client);
    assert_eq!(out[0].path.as_deref(), Some("/slow"));
    assert_eq!(out[0].status, None);
    assert!(!out[0].partial);
    // Late frames for the closed stream do not reopen it.
    let mut conn = conn;
    let late = frame(DATA, END_STREAM, 1, b"late");
    let out = run(&mut conn, &[(S, &late, 0)]);
    assert!(out.is_empty());
    assert_eq!(conn.open_streams(), 0);
}

fn grpc_request(stream: u32, method: &str) -> Vec<u8> {
    let block = [
        vec![0x83, 0x86],
        lit(PATH, method),
        lit(AUTHORITY, "localhost:50051"),
        lit(CONTENT_TYPE, "application/grpc"),
        lit_name("te", "trailers", false),
    ]
    .concat();
    [
        frame(HEADERS, END_HEADERS, stream, &block),
        frame(
            DATA,
            END_STREAM,
            stream,
            &[0, 0, 0, 0, 7, 10, 5, b'w', b'o', b'r', b'l', b'd'],
        ),
    ]
    .concat()
}

#[test]
fn grpc_unary_and_trailers_only() {
    let client = [
        PREFACE.to_vec(),
        settings(),
        grpc_request(1, "/helloworld.Greeter/SayHello"),
        grpc_request(3, "/helloworld.Greeter/Missing"),
    ]
    .concat();
    let response_headers = [vec![0x88], lit(CONTENT_TYPE, "application/grpc")].concat();
    let trailers = lit_name("grpc-status", "0", false);
    let trailers_only = [
        vec![0x88],
        lit(CONTENT_TYPE, "application/grpc"),
        lit_name("grpc-status", "5", false),
        lit_name("grpc-message", "not found", false),
    ]
    .concat();
    let server = [
        settings(),
        frame(HEADERS, END_HEADERS, 1, &response_headers),
        frame(DATA, 0, 1, &[0, 0, 0, 0, 3, 10, 1, b'x']),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers),
        frame(HEADERS, END_HEADERS | END_STREAM, 3, &trailers_only),
    ]
    .concat();
    let (out, _) = parse(&[(C, &client, 0), (S, &server, 0)]);
    let out: Vec<_> = out.into_iter().map(without_ts).collect();
    let unary = Http2Exchange {
        stream_id: 1,
        method: Some("POST".into()),
        path: Some("/helloworld.Greeter/SayHello".into()),
        authority: Some("localhost:50051".into()),
        scheme: Some("http".into()),
        status: Some(200),
        grpc_status: Some(0),
        content_type: ContentType::Grpc,
        request_body_bytes: 12,
        response_body_bytes: 8,
        ..Http2Exchange::default()
    };
    let not_found = Http2Exchange {
        stream_id: 3,
        path: Some("/helloworld.Greeter/Missing".into()),
        grpc_status: Some(5),
        grpc_message: Some("not found".into()),
        response_body_bytes: 0,
        ..unary.clone()
    };
    assert_eq!(out, vec![unary, not_found]);
}

#[test]
fn gap_inside_data_is_skipped() {
    let client = h2c_client();
    let big = vec![b'z'; 3000];
    let server = [
        settings(),
        frame(HEADERS, END_HEADERS, 1, &[0x88]),
        frame(DATA, END_STREAM, 1, &big),
    ]
    .concat();
    // Only 512 bytes of the last write captured.
    let cut = server.len() - 3000 + 512 - 9;
    let missing = (server.len() - cut) as u64;
    let (out, conn) = parse(&[(C, &client, 0), (S, &server[..cut], missing)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].response_body_bytes, 3000);
    assert!(!out[0].partial);
    assert!(conn.is_hpack_synced(S));
}

#[test]
fn gap_inside_headers_block_keeps_the_fields_before_it_and_desyncs() {
    // Stream 1's headers insert an authority; the block is cut inside it.
    let req1 = [vec![0x82, 0x86, 0x84], vec![0x41, 0x04], b"a.io".to_vec()].concat();
    let frame1 = frame(HEADERS, END_HEADERS | END_STREAM, 1, &req1);
    // Stream 3 references index 62: unknown after the loss.
    let req3 = [vec![0x82, 0x86, 0xbe], lit(PATH, "/three")].concat();
    let frame3 = frame(HEADERS, END_HEADERS | END_STREAM, 3, &req3);
    let pre = PREFACE.to_vec();
    let cut = frame1.len() - 3;
    let server = [
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]),
        frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x88]),
    ]
    .concat();
    let (out, conn) = parse(&[
        (C, &pre, 0),
        (C, &frame1[..cut], 3),
        (C, &frame3, 0),
        (S, &server, 0),
    ]);
    assert!(!conn.is_hpack_synced(C));
    assert!(conn.is_hpack_synced(S));
    assert_eq!(out.len(), 2);
    let one = &out[0];
    // The fields before the cut are decoded; the cut one is not.
    assert_eq!(
        (
            one.stream_id,
            one.method.as_deref(),
            one.path.as_deref(),
            one.authority.as_deref(),
            one.partial
        ),
        (1, Some("GET"), Some("/"), None, true)
    );
    assert_eq!(one.status, Some(200));
    assert_eq!(conn.stats().headers_truncated, 1);
    assert_eq!(conn.stats().hpack_lost_blocks, 1);
    let three = &out[1];
    assert_eq!(three.stream_id, 3);
    assert_eq!(three.method.as_deref(), Some("GET"));
    assert_eq!(three.path.as_deref(), Some("/three"));
    // Index 62 is not "a.io" any more as far as we know: left out.
    assert_eq!(three.authority, None);
    assert!(three.partial);
    assert_eq!(conn.stats().unknown_fields, 1);
}

/// A request head as curl writes it: the pseudo-headers first (`:path`
/// a literal, `:authority` indexed), then `authorization: <value>`.
fn curl_request(stream: u32, path: &str, authorization: usize, first: bool) -> Vec<u8> {
    let authority = if first {
        [vec![0x41, 14], b"127.0.0.1:8080".to_vec()].concat()
    } else {
        // The authority inserted by the first request: dynamic index 62.
        vec![0xbe]
    };
    let token = "t".repeat(authorization);
    let mut value = vec![0x0f, 23 - 15];
    value.extend(hpack_len(token.len()));
    value.extend_from_slice(token.as_bytes());
    let block = [vec![0x82], lit(PATH, path), vec![0x86], authority, value].concat();
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &block)
}

/// An HPACK string length prefix (7-bit prefix, no Huffman).
fn hpack_len(len: usize) -> Vec<u8> {
    if len < 127 {
        return vec![u8::try_from(len).unwrap_or(0)];
    }
    let mut out = vec![0x7f];
    let mut rest = len - 127;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap_or(0) | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap_or(0));
    out
}

/// Splits `bytes` as a 512-byte capture does: (captured, missing).
fn captured(bytes: &[u8], limit: usize) -> (&[u8], u64) {
    let n = bytes.len().min(limit);
    (&bytes[..n], (bytes.len() - n) as u64)
}

#[test]
fn sequential_requests_with_heads_larger_than_the_capture_each_become_a_stream() {
    // Three requests one after another on one connection, each head
    // 1.5 KB (a big authorization): only 512 bytes of each are captured.
    let pre = [PREFACE.to_vec(), settings()].concat();
    let reqs = [
        curl_request(1, "/a", 1500, true),
        curl_request(3, "/b", 1500, false),
        curl_request(5, "/c", 1500, false),
    ];
    let responses = [
        [settings(), frame(HEADERS, END_HEADERS, 1, &[0x88])].concat(),
        frame(HEADERS, END_HEADERS, 3, &[0x8d]),
        frame(HEADERS, END_HEADERS, 5, &[0x88]),
    ];
    let mut conn = Http2Connection::new();
    let mut out = Vec::new();
    conn.feed(C, &pre, 0, 1, &mut out);
    for (i, (req, resp)) in reqs.iter().zip(&responses).enumerate() {
        let ts = 10 * (i as u64 + 1);
        let (head, missing) = captured(req, 512);
        conn.feed(C, head, missing, ts, &mut out);
        conn.feed(S, resp, 0, ts + 1, &mut out);
        conn.feed(
            S,
            &frame(DATA, END_STREAM, 1 + 2 * i as u32, b"ok"),
            0,
            ts + 2,
            &mut out,
        );
    }
    let got: Vec<_> = out
        .iter()
        .map(|e| {
            (
                e.stream_id,
                e.method.as_deref(),
                e.path.as_deref(),
                e.authority.as_deref(),
                e.status,
                e.response_body_bytes,
                e.partial,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("GET"),
                Some("/a"),
                Some("127.0.0.1:8080"),
                Some(200),
                2,
                true
            ),
            // The authority is a reference into the table the cut
            // blocks may have changed: left out, never guessed.
            (3, Some("GET"), Some("/b"), None, Some(404), 2, true),
            (5, Some("GET"), Some("/c"), None, Some(200), 2, true),
        ]
    );
    let stats = conn.stats();
    assert_eq!(stats.headers_truncated, 3);
    assert_eq!(stats.hpack_lost_blocks, 2);
    assert_eq!(stats.framing_lost, 0);
    assert!(conn.is_hpack_synced(S));
}

#[test]
fn a_request_whose_fields_are_all_unknown_is_still_a_stream() {
    // Stream 1 inserts its path (literal with indexing); its block is cut
    // after the path. Stream 3 refers to the path by index only.
    let token = "t".repeat(600);
    let mut first = vec![0x82, 0x86, 0x44, 2, b'/', b'a', 0x0f, 23 - 15];
    first.extend(hpack_len(token.len()));
    first.extend_from_slice(token.as_bytes());
    let req1 = frame(HEADERS, END_HEADERS | END_STREAM, 1, &first);
    let req3 = frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82, 0x86, 0xbe]);
    let (head, missing) = captured(&req1, 512);
    let (out, conn) = parse(&[
        (C, PREFACE, 0),
        (C, head, missing),
        (S, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]), 0),
        (C, &req3, 0),
        (S, &frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x88]), 0),
    ]);
    let got: Vec<_> = out
        .iter()
        .map(|e| {
            (
                e.stream_id,
                e.method.as_deref(),
                e.path.as_deref(),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some("GET"), Some("/a"), Some(200)),
            (3, Some("GET"), None, Some(200))
        ]
    );
    assert_eq!(conn.stats().streams_unnamed, 1);
    assert_eq!(conn.stats().unknown_fields, 1);
}

#[test]
fn a_block_cut_before_its_continuation_is_decoded_as_far_as_captured() {
    // HEADERS without END_HEADERS, then a CONTINUATION: one write of
    // which the capture ends inside the HEADERS payload, so the gap
    // takes the CONTINUATION's frame header too.
    let token = "t".repeat(700);
    let mut fields = vec![0x83, 0x86];
    fields.extend(lit(PATH, "/upload"));
    fields.extend_from_slice(&[0x0f, 23 - 15]);
    fields.extend(hpack_len(token.len()));
    fields.extend_from_slice(token.as_bytes());
    let write = [
        frame(HEADERS, 0, 1, &fields),
        frame(
            CONTINUATION,
            END_HEADERS,
            1,
            &lit_name("x-tail", "1", false),
        ),
        frame(DATA, END_STREAM, 1, b"body"),
    ]
    .concat();
    let (head, missing) = captured(&write, 512);
    let (out, mut conn) = parse(&[
        (C, PREFACE, 0),
        (C, head, missing),
        (S, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]), 0),
    ]);
    assert!(out.is_empty(), "the request's end was not seen: {out:?}");
    let mut rest = Vec::new();
    conn.finish(50, &mut rest);
    assert_eq!(rest.len(), 1);
    let ex = &rest[0];
    assert_eq!(
        (
            ex.method.as_deref(),
            ex.path.as_deref(),
            ex.status,
            ex.partial
        ),
        (Some("POST"), Some("/upload"), Some(200), true)
    );
    assert_eq!(conn.stats().headers_truncated, 1);
    assert_eq!(conn.stats().framing_lost, 1);
}

#[test]
fn streams_seen_only_as_data_are_counted_not_emitted() {
    // Joined mid-stream: stream 7's headers went by before the capture.
    let (out, mut conn) = parse(&[
        (C, &frame(DATA, END_STREAM, 7, b"late body"), 0),
        (S, &frame(DATA, END_STREAM, 7, b"late answer"), 0),
    ]);
    conn.finish(9, &mut Vec::new());
    assert!(out.is_empty());
    assert_eq!(conn.stats().streams_without_headers, 1);
}

#[test]
fn gap_over_frame_header_loses_framing_until_a_boundary() {
    let req = |s: u32| frame(HEADERS, END_HEADERS | END_STREAM, s, &[0x82, 0x86, 0x84]);
    let pre = PREFACE.to_vec();
    let r1 = req(1);
    let r5 = req(5);
    let resp = |s: u32| frame(HEADERS, END_HEADERS | END_STREAM, s, &[0x88]);
    let (s1, s3, s5) = (resp(1), resp(3), resp(5));
    let (out, conn) = parse(&[
        (C, &pre, 0),
        (C, &r1, 0),
        // Stream 3's request is entirely in a gap, and the next segment
        // starts mid-frame: ignored until a frame boundary.
        (C, &[], 12),
        (C, &[0x86, 0x84, 0x00], 0),
        (C, &r5, 0),
        (S, &s1, 0),
        (S, &s3, 0),
        (S, &s5, 0),
    ]);
    assert_eq!(conn.stats().framing_lost, 1);
    let got: Vec<_> = out
        .iter()
        .map(|e| (e.stream_id, e.method.as_deref(), e.status, e.partial))
        .collect();
    // Stream 1's request had ended before the loss; stream 5 came after
    // the resync: both fully seen.
    assert_eq!(
        got,
        vec![
            (1, Some("GET"), Some(200), false),
            (5, Some("GET"), Some(200), false)
        ]
    );
    let mut conn = conn;
    let mut rest = Vec::new();
    conn.finish(100, &mut rest);
    let got: Vec<_> = rest
        .iter()
        .map(|e| (e.stream_id, e.method.as_deref(), e.status, e.partial))
        .collect();
    // Stream 3's request was in the gap: only the response is known.
    assert_eq!(got, vec![(3, None, Some(200), true)]);
}

#[test]
fn gap_past_a_data_frame_loses_framing() {
    let client = h2c_client();
    let server = [
        settings(),
        frame(HEADERS, END_HEADERS, 1, &[0x88]),
        frame(DATA, 0, 1, &[b'z'; 100]),
        frame(DATA, END_STREAM, 1, b"end"),
    ]
    .concat();
    // The capture stops 10 bytes into the first DATA payload and the gap
    // swallows the next frame header too.
    let cut = server.len() - 12 - 100 + 10;
    let missing = (server.len() - cut) as u64;
    let (out, mut conn) = parse(&[(C, &client, 0), (S, &server[..cut], missing)]);
    assert!(out.is_empty());
    assert_eq!(conn.stats().framing_lost, 1);
    assert!(!conn.is_hpack_synced(S));
    let mut out = Vec::new();
    conn.finish(10, &mut out);
    assert_eq!(out.len(), 1);
    let ex = &out[0];
    assert_eq!((ex.method.as_deref(), ex.status), (Some("POST"), Some(200)));
    assert_eq!(ex.response_body_bytes, 100);
    assert!(ex.partial);
    assert_eq!(ex.end_ts_ns, 10);
}

#[test]
fn server_preface_first_is_synced() {
    let client = h2c_client();
    let server = h2c_server();
    let (out, conn) = parse(&[(S, &server[..5], 0), (S, &server[5..], 0), (C, &client, 0)]);
    assert!(conn.is_hpack_synced(S) && conn.is_hpack_synced(C));
    let out: Vec<_> = out.into_iter().map(without_ts).collect();
    assert_eq!(out, vec![h2c_expected()]);
}

#[test]
fn h2c_upgrade_answers_stream_one() {
    let mut conn = Http2Connection::new();
    let request = Http2Exchange {
        method: Some("GET".into()),
        path: Some("/up".into()),
        start_ts_ns: 1,
        ..Http2Exchange::default()
    };
    conn.upgraded_request(C, request);
    let client = [PREFACE.to_vec(), settings()].concat();
    let server = [
        settings(),
        frame(HEADERS, END_HEADERS, 1, &[0x88]),
        frame(DATA, END_STREAM, 1, b"hi"),
    ]
    .concat();
    let out = run(&mut conn, &[(S, &server, 0), (C, &client, 0)]);
    assert_eq!(out.len(), 1);
    let ex = &out[0];
    assert_eq!(ex.stream_id, 1);
    assert_eq!(
        (ex.method.as_deref(), ex.path.as_deref()),
        (Some("GET"), Some("/up"))
    );
    assert_eq!(
        (ex.status, ex.response_body_bytes, ex.partial),
        (Some(200), 2, false)
    );
    assert!(conn.is_hpack_synced(S));
}

#[test]
fn joined_mid_stream() {
    // No preface; first segments start at frame boundaries.
    let req = [vec![0x82, 0x87, 0xbf], lit(PATH, "/mid")].concat();
    let client = frame(HEADERS, END_HEADERS | END_STREAM, 7, &req);
    let server = [
        frame(HEADERS, END_HEADERS, 7, &[0x88]),
        frame(DATA, END_STREAM, 7, b"ok"),
    ]
    .concat();
    let (out, conn) = parse(&[(C, &client, 0), (S, &server, 0)]);
    assert!(!conn.is_hpack_synced(C));
    assert_eq!(conn.client_direction(), Some(C));
    assert_eq!(out.len(), 1);
    let ex = &out[0];
    assert_eq!(ex.method.as_deref(), Some("GET"));
    assert_eq!(ex.path.as_deref(), Some("/mid"));
    assert_eq!(ex.scheme.as_deref(), Some("https"));
    assert_eq!(ex.authority, None);
    assert_eq!(ex.status, Some(200));
    assert_eq!(ex.response_body_bytes, 2);
    assert!(ex.partial);
}

#[test]
fn joined_mid_frame_waits_for_a_boundary() {
    let client = frame(HEADERS, END_HEADERS | END_STREAM, 9, &[0x82, 0x86, 0x84]);
    let server = frame(HEADERS, END_HEADERS | END_STREAM, 9, &[0x88]);
    let (out, conn) = parse(&[
        (C, b"tail of some frame", 0),
        (C, &client, 0),
        (S, &server, 0),
    ]);
    assert_eq!(conn.stats().framing_lost, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method.as_deref(), Some("GET"));
    assert_eq!(out[0].status, Some(200));
}

#[test]
fn goaway_refuses_streams_past_last_id() {
    let req = |s: u32| frame(HEADERS, END_HEADERS | END_STREAM, s, &[0x82, 0x86, 0x84]);
    let client = [PREFACE.to_vec(), req(1), req(3), req(5)].concat();
    let server = [
        frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]),
    ]
    .concat();
    let (out, _) = parse(&[(C, &client, 0), (S, &server, 0)]);
    let got: Vec<_> = out
        .iter()
        .map(|e| (e.stream_id, e.reset, e.status))
        .collect();
    assert_eq!(
        got,
        vec![(3, true, None), (5, true, None), (1, false, Some(200))]
    );
}

#[test]
fn settings_header_table_size_raises_peer_limit() {
    let client = [
        PREFACE.to_vec(),
        frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]),
    ]
    .concat();
    let (_, conn) = parse(&[(C, &client, 0)]);
    assert_eq!(conn.dir(S).hpack.max_table_size(), 8192);
    assert_eq!(conn.dir(C).hpack.max_table_size(), 4096);
}

#[test]
fn streams_are_bounded() {
    let mut segments = vec![PREFACE.to_vec()];
    for i in 0..(MAX_STREAMS as u32 + 10) {
        segments.push(frame(HEADERS, END_HEADERS, 2 * i + 1, &[0x82, 0x86, 0x84]));
    }
    let segments: Vec<_> = segments.iter().map(|s| (C, s.as_slice(), 0)).collect();
    let (out, conn) = parse(&segments);
    assert_eq!(conn.open_streams(), MAX_STREAMS);
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|e| e.partial));
    assert_eq!(conn.stats().streams_evicted, 10);
}

#[test]
fn oversized_header_block_is_decoded_up_to_the_limit() {
    let mut block = vec![0x82, 0x86, 0x84];
    while block.len() <= MAX_HEADER_BLOCK {
        block.extend_from_slice(&[0x0f, 0x10, 0x7f, 0x81, 0x1f]);
        block.extend_from_slice(&[b'v'; 4096]);
    }
    let client = [
        PREFACE.to_vec(),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &block),
    ]
    .concat();
    let server = frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]);
    let (out, conn) = parse(&[(C, &client, 0), (S, &server, 0)]);
    assert_eq!(out.len(), 1);
    assert!(out[0].partial);
    assert_eq!(
        (out[0].method.as_deref(), out[0].path.as_deref()),
        (Some("GET"), Some("/"))
    );
    assert_eq!(out[0].status, Some(200));
    assert!(!conn.is_hpack_synced(C));
    assert_eq!(conn.stats().headers_truncated, 1);
}

fn chop(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| bytes.get(w[0]..w[1]).unwrap_or_default().to_vec())
        .collect()
}

fn segment() -> impl Strategy<Value = (bool, Vec<u8>, u64)> {
    let words: Vec<Vec<u8>> = vec![
        PREFACE.to_vec(),
        settings(),
        frame(HEADERS, END_HEADERS, 1, &[0x82, 0x86, 0x84, 0xbe]),
        frame(HEADERS, END_STREAM, 3, &[0x40, 0x01]),
        frame(CONTINUATION, END_HEADERS, 3, &[0x61, 0x01, 0x62]),
        frame(DATA, END_STREAM | PADDED, 1, &[200, 1, 2]),
        frame(RST_STREAM, 0, 3, &[0, 0, 0, 1]),
        frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]),
    ];
    (
        any::<bool>(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::sample::select(words),
        ],
        prop_oneof![4 => Just(0u64), 2 => 0..100u64, 1 => Just(u64::MAX)],
    )
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(segments in proptest::collection::vec(segment(), 0..32)) {
        let mut conn = Http2Connection::new();
        let mut out = Vec::new();
        for (ts, (client, captured, missing)) in (1u64..).zip(&segments) {
            let dir = if *client { C } else { S };
            conn.feed(dir, captured, *missing, ts, &mut out);
            prop_assert!(conn.open_streams() <= MAX_STREAMS);
        }
        conn.finish(u64::MAX, &mut out);
        prop_assert_eq!(conn.open_streams(), 0);
    }

    #[test]
    fn any_segmentation_gives_the_same_exchange(
        client_cuts in proptest::collection::vec(any::<usize>(), 0..12),
        server_cuts in proptest::collection::vec(any::<usize>(), 0..12),
        server_first in any::<bool>(),
    ) {
        let client = chop(&h2c_client(), &client_cuts);
        let server = chop(&h2c_server(), &server_cuts);
        let mut segments: Vec<(Direction, &[u8], u64)> = Vec::new();
        let c = client.iter().map(|s| (C, s.as_slice(), 0));
        let s = server.iter().map(|s| (S, s.as_slice(), 0));
        if server_first {
            segments.extend(s.chain(c));
        } else {
            segments.extend(c.chain(s));
        }
        let (out, _) = parse(&segments);
        let out: Vec<_> = out.into_iter().map(without_ts).collect();
        prop_assert_eq!(out, vec![h2c_expected()]);
    }
}
