//! The HTTP/1 decoder driven through [`Http1Stream`]: examples, limits and
//! property tests (arbitrary bytes never panic, valid messages round-trip
//! whatever the cuts and gaps).

use super::stream::State;
use super::*;
use crate::protocols::http2::grpc::ContentType;
use crate::spans::HttpText;
use proptest::prelude::*;

type Segment<'a> = (&'a [u8], u64);

/// Feeds segments with timestamps 1, 2, 3, ... and returns what came out.
fn run(stream: &mut Http1Stream, segments: &[Segment]) -> Vec<HttpMessage> {
    let mut out = Vec::new();
    for (ts, (captured, missing)) in (1u64..).zip(segments) {
        stream.feed(captured, *missing, ts, &mut out);
    }
    out
}

fn parse(segments: &[Segment]) -> (Vec<HttpMessage>, Http1Stream) {
    let mut stream = Http1Stream::new();
    let out = run(&mut stream, segments);
    (out, stream)
}

fn request(method: &str, target: &str) -> MessageHead {
    MessageHead::Request {
        method: method.to_owned().into(),
        target: target.into(),
    }
}

fn response(status: u16) -> MessageHead {
    MessageHead::Response { status }
}

fn without_ts(mut msg: HttpMessage) -> HttpMessage {
    msg.first_ts_ns = 0;
    msg.last_ts_ns = 0;
    msg
}

fn msg(head: MessageHead, body_size: u64) -> HttpMessage {
    HttpMessage {
        head,
        version_minor: 1,
        host: None,
        traceparent: None,
        user_agent: None,
        content_type: ContentType::Unknown,
        chunked: false,
        body_size,
        first_ts_ns: 0,
        last_ts_ns: 0,
        truncated: false,
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn simple_get_and_200_with_content_length() {
    let req = format!(
        "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\
            traceparent: {TRACEPARENT}\r\n\r\n"
    );
    let (out, _) = parse(&[(req.as_bytes(), 0)]);
    let mut want = msg(request("GET", "/index.html?q=1"), 0);
    want.host = Some("example.com".into());
    want.traceparent = Some(TRACEPARENT.into());
    want.first_ts_ns = 1;
    want.last_ts_ns = 1;
    assert_eq!(out, vec![want]);

    let mut stream = Http1Stream::new();
    stream.expect_response_to("GET");
    let resp: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";
    let out = run(&mut stream, &[(resp, 0)]);
    // A response's Content-Type is not kept (nothing reads it).
    let mut want = msg(response(200), 5);
    want.first_ts_ns = 1;
    want.last_ts_ns = 1;
    assert_eq!(out, vec![want]);
    assert_eq!(stream.garbage_segments(), 0);
}

#[test]
fn keep_alive_three_exchanges() {
    let mut requests = Http1Stream::new();
    let mut responses = Http1Stream::new();
    let mut reqs = Vec::new();
    let mut resps = Vec::new();
    for (i, path) in ["/a", "/b", "/c"].iter().enumerate() {
        let ts = 10 * (i as u64 + 1);
        let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        requests.feed(req.as_bytes(), 0, ts, &mut reqs);
        responses.expect_response_to("GET");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        );
        responses.feed(&resp.as_bytes()[..20], 0, ts + 1, &mut resps);
        responses.feed(&resp.as_bytes()[20..], 0, ts + 2, &mut resps);
    }
    let targets: Vec<_> = reqs.iter().map(|m| m.head.clone()).collect();
    assert_eq!(
        targets,
        vec![
            request("GET", "/a"),
            request("GET", "/b"),
            request("GET", "/c")
        ]
    );
    assert_eq!(resps.len(), 3);
    for (i, resp) in resps.iter().enumerate() {
        let ts = 10 * (i as u64 + 1);
        assert_eq!((resp.head.clone(), resp.body_size), (response(200), 2));
        assert_eq!((resp.first_ts_ns, resp.last_ts_ns), (ts + 1, ts + 2));
    }
}

#[test]
fn pipelining_two_requests_in_one_segment() {
    let bytes: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.0\r\n\r\n";
    let (out, _) = parse(&[(bytes, 0)]);
    let mut second = msg(request("GET", "/b"), 0);
    second.version_minor = 0;
    let out: Vec<_> = out.into_iter().map(without_ts).collect();
    assert_eq!(out, vec![msg(request("POST", "/a"), 3), second]);
}

const POST: &[u8] = b"POST /upload?id=7 HTTP/1.1\r\nHost: api.local\r\n\
        Content-Type: application/json\r\n\
        traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
        Content-Length: 11\r\n\r\n{\"a\":12345}";

fn expected_post() -> HttpMessage {
    let mut want = msg(request("POST", "/upload?id=7"), 11);
    want.host = Some("api.local".into());
    want.content_type = ContentType::Other;
    want.traceparent = Some(TRACEPARENT.into());
    want
}

#[test]
fn every_split_point_yields_the_same_message() {
    let stream_bytes = [POST, b"GET / HTTP/1.1\r\n\r\n"].concat();
    let want = vec![expected_post(), msg(request("GET", "/"), 0)];

    let bytewise: Vec<Segment> = stream_bytes.chunks(1).map(|c| (c, 0)).collect();
    let (out, _) = parse(&bytewise);
    assert_eq!(
        out.iter().cloned().map(without_ts).collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        (out[0].first_ts_ns, out[0].last_ts_ns),
        (1, POST.len() as u64)
    );

    for cut in 0..=stream_bytes.len() {
        let (a, b) = stream_bytes.split_at(cut);
        let (out, stream) = parse(&[(a, 0), (b, 0)]);
        assert_eq!(
            out.into_iter().map(without_ts).collect::<Vec<_>>(),
            want,
            "cut at {cut}"
        );
        assert_eq!(stream.garbage_segments(), 0);
    }
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
        5;name=\"v\"\r\nhello\r\nA ; x\r\n0123456789\r\n\
        0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";

#[test]
fn chunked_with_extensions_and_trailers_split_arbitrarily() {
    let mut want = msg(response(200), 15);
    want.chunked = true;
    let bytewise: Vec<Segment> = CHUNKED.chunks(1).map(|c| (c, 0)).collect();
    let (out, _) = parse(&bytewise);
    assert_eq!(
        out.into_iter().map(without_ts).collect::<Vec<_>>(),
        vec![want.clone()]
    );
    for cut in 0..=CHUNKED.len() {
        for cut2 in cut..=CHUNKED.len() {
            let segs = [
                (&CHUNKED[..cut], 0),
                (&CHUNKED[cut..cut2], 0),
                (&CHUNKED[cut2..], 0),
            ];
            let (out, _) = parse(&segs);
            assert_eq!(
                out.into_iter().map(without_ts).collect::<Vec<_>>(),
                vec![want.clone()]
            );
        }
    }
}

#[test]
fn content_length_body_with_gap() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5010\r\n\r\n0123456789";
    let next: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
    let mut stream = Http1Stream::new();
    stream.expect_response_to("GET");
    stream.expect_response_to("GET");
    let out = run(&mut stream, &[(head, 5000), (next, 0)]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
        (5010, false, 1)
    );
    assert_eq!(out[1].head, response(204));
}

#[test]
fn head_cut_by_gap_is_read_on_past_the_gap() {
    let cut: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nCookie: abc";
    let tail: &[u8] = b"more-cookie\r\n\r\n";
    let next: &[u8] = b"GET /b HTTP/1.1\r\n\r\n";
    let (out, stream) = parse(&[(cut, 3000), (tail, 0), (next, 0)]);
    // The head's end was seen after the gap: every byte is accounted for.
    let mut whole = msg(request("GET", "/a"), 0);
    whole.host = Some("x".into());
    whole.first_ts_ns = 1;
    whole.last_ts_ns = 2;
    let mut fresh = msg(request("GET", "/b"), 0);
    fresh.first_ts_ns = 3;
    fresh.last_ts_ns = 3;
    assert_eq!(out, vec![whole, fresh]);
    assert_eq!(stream.garbage_segments(), 0);
}

/// A head of `len` bytes with a big cookie between `before` and `after`
/// header lines, then `body`.
fn big_head(start: &str, before: &str, len: usize, after: &str, body: &[u8]) -> Vec<u8> {
    let fixed = start.len() + before.len() + after.len() + "Cookie: \r\n\r\n".len();
    let cookie = "c".repeat(len.saturating_sub(fixed));
    [
        format!("{start}{before}Cookie: {cookie}\r\n{after}\r\n").as_bytes(),
        body,
    ]
    .concat()
}

/// Feeds `bytes` as segments of these lengths, each captured up to `cap`.
fn feed_capped(
    stream: &mut Http1Stream,
    bytes: &[u8],
    lengths: &[usize],
    cap: usize,
    ts: u64,
    out: &mut Vec<HttpMessage>,
) {
    let mut rest = bytes;
    for &len in lengths {
        let (segment, tail) = rest.split_at(len.min(rest.len()));
        let captured = &segment[..segment.len().min(cap)];
        stream.feed(captured, (segment.len() - captured.len()) as u64, ts, out);
        rest = tail;
    }
    assert!(rest.is_empty());
}

#[test]
fn request_head_beyond_the_capture_ends_when_the_response_comes() {
    // 2 KB of head in one read, 512 bytes captured: the end is never seen.
    let req = big_head(
        "GET /big HTTP/1.1\r\n",
        "Host: h\r\n",
        2000,
        &format!("traceparent: {TRACEPARENT}\r\n"),
        b"",
    );
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    feed_capped(&mut stream, &req, &[req.len()], 512, 1, &mut out);
    assert!(out.is_empty());
    // An interim response does not end it; a final one does.
    stream.peer_spoke(b"HTTP/1.1 100 Continue\r\n\r\n", &mut out);
    assert!(out.is_empty());
    stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!(m.head, request("GET", "/big"));
    assert_eq!(
        (m.host.as_deref(), m.traceparent.as_deref()),
        (Some("h"), None)
    );
    // Nothing told where the head ended: the body size is not known.
    assert_eq!((m.body_size, m.truncated), (0, true));
    assert_eq!(stream.garbage_segments(), 0);

    // The same head read in 1 KB pieces, each captured up to 512 bytes:
    // the end and the traceparent are in the last piece's capture.
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    feed_capped(&mut stream, &req, &[1024, 600, 376], 512, 1, &mut out);
    stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!(m.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!((m.body_size, m.truncated), (0, false));
}

#[test]
fn post_with_a_cut_head_counts_its_body_by_segment_lengths() {
    // Content-Length before the cookie: read before the cut.
    let body = vec![b'b'; 1000];
    let req = big_head(
        "POST /up HTTP/1.1\r\n",
        "Content-Length: 1000\r\n",
        1500,
        "",
        &body,
    );
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    feed_capped(&mut stream, &req, &[req.len()], 512, 1, &mut out);
    stream.peer_spoke(b"HTTP/1.1 201 Created\r\n", &mut out);
    assert_eq!(
        (out[0].head.clone(), out[0].body_size, out[0].truncated),
        (request("POST", "/up"), 1000, false)
    );

    // Content-Length after the cookie, in the gap; the head's end in a
    // later capture: the body is what follows it up to the response.
    let req = big_head(
        "POST /up HTTP/1.1\r\n",
        "",
        1500,
        "Content-Length: 1000\r\n",
        &body,
    );
    for lengths in [
        vec![1024, 1476],
        vec![1024, 476, 1000],
        vec![700, 700, 1100],
    ] {
        let mut stream = Http1Stream::new();
        let mut out = Vec::new();
        feed_capped(&mut stream, &req, &lengths, 512, 1, &mut out);
        stream.peer_spoke(b"HTTP/1.1 201 Created\r\n", &mut out);
        stream.finish(9, &mut out);
        assert_eq!(out.len(), 1, "{lengths:?}");
        assert_eq!(
            (out[0].body_size, out[0].truncated),
            (1000, false),
            "{lengths:?}"
        );
    }
}

#[test]
fn response_head_beyond_the_capture_keeps_its_body_size() {
    let body = vec![b'x'; 300_000];
    // Python writes the head, then the body: each captured up to 512 bytes.
    for (before, after) in [
        ("Content-Length: 300000\r\n", "Set-Cookie: a=b\r\n"),
        ("", "Content-Length: 300000\r\n"),
    ] {
        let head = big_head("HTTP/1.1 200 OK\r\n", before, 1400, after, b"");
        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        stream.expect_response_to("GET");
        let mut out = Vec::new();
        feed_capped(&mut stream, &head, &[head.len()], 512, 1, &mut out);
        feed_capped(&mut stream, &body, &[65536; 5], 512, 2, &mut out);
        assert!(out.is_empty());
        // The next request ends it.
        stream.peer_spoke(b"GET /next HTTP/1.1\r\n", &mut out);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!((m.head.clone(), m.last_ts_ns), (response(200), 2));
        if before.is_empty() {
            // Neither the framing nor the head's end was seen.
            assert_eq!((m.body_size, m.truncated), (0, true));
        } else {
            assert_eq!((m.body_size, m.truncated), (300_000, false));
        }
        // The next response is framed as usual.
        feed_capped(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &[100],
            512,
            3,
            &mut out,
        );
        assert_eq!((out.len(), out[1].body_size), (2, 2));
    }
    // A cut head of a 204 or of a HEAD answer has no body at all.
    let head = big_head("HTTP/1.1 204 No Content\r\n", "", 1400, "", b"");
    let mut stream = Http1Stream::new();
    stream.expect_response_to("GET");
    let mut out = Vec::new();
    feed_capped(&mut stream, &head, &[head.len()], 512, 1, &mut out);
    stream.finish(2, &mut out);
    assert_eq!((out[0].body_size, out[0].truncated), (0, false));
}

#[test]
fn a_cut_head_whose_end_may_be_at_the_gap_is_not_guessed() {
    // After the gap the capture starts with CRLF: the blank line, or the
    // end of a field line? Not knowable, so the end counts as not seen.
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    stream.feed(b"GET /x HTTP/1.1\r\nCookie: aaaa", 500, 1, &mut out);
    stream.feed(b"\r\nbody-or-header\r\n\r\n", 0, 2, &mut out);
    stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
    assert_eq!((out[0].body_size, out[0].truncated), (0, true));
    // Lines that are not header fields end the search too.
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    stream.feed(b"POST /x HTTP/1.1\r\nCookie: aaaa", 500, 1, &mut out);
    stream.feed(b"aa\r\n{\"json\": 1}\r\n\r\n", 0, 2, &mut out);
    stream.finish(3, &mut out);
    assert_eq!((out[0].body_size, out[0].truncated), (0, true));
}

#[test]
fn a_chunked_body_after_a_cut_head_is_followed() {
    let req = big_head(
        "POST /c HTTP/1.1\r\n",
        "",
        1200,
        "Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    feed_capped(&mut stream, &req, &[1000, 1000], 512, 1, &mut out);
    assert_eq!(out.len(), 1, "complete without waiting for the response");
    assert_eq!(
        (out[0].body_size, out[0].chunked, out[0].truncated),
        (5, true, false)
    );
}

#[test]
fn long_target_cut_by_capture_is_kept_truncated() {
    let line = format!("GET /{} HTTP/1.1\r\n", "x".repeat(3000));
    let (out, _) = parse(&[
        (&line.as_bytes()[..512], 2600),
        (b"GET /next HTTP/1.1\r\n\r\n", 0),
    ]);
    assert_eq!(out.len(), 2);
    let MessageHead::Request { method, target } = &out[0].head else {
        panic!("not a request")
    };
    assert_eq!(
        (method.as_ref(), target.len(), out[0].truncated),
        ("GET", 508, true)
    );
    assert_eq!(out[1].head, request("GET", "/next"));
}

#[test]
fn chunked_gap_in_chunk_data_of_known_size() {
    // 0x1000 bytes of data: 500 captured, the rest and its CRLF in the gap.
    let first = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n".as_slice(),
        &[b'z'; 500],
    ]
    .concat();
    let (out, _) = parse(&[
        (&first, 4096 - 500 + 2),
        (b"3\r\nabc\r\n", 0),
        (b"0\r\n\r\n", 0),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
        (4099, false, 3)
    );

    // A gap reaching past the CRLF hides the next size line: framing is
    // lost, and the bytes past the CRLF (8 hidden, 5 seen) count as body.
    let mut stream = Http1Stream::new();
    let mut out = run(&mut stream, &[(&first, 4096 - 500 + 10), (b"0\r\n\r\n", 0)]);
    assert!(out.is_empty());
    stream.finish(9, &mut out);
    assert_eq!(
        (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
        (4096 + 8 + 5, true, 2)
    );
}

#[test]
fn a_last_chunk_hidden_by_a_gap_is_known_by_its_length() {
    // 1 KB of chunk data, 500 captured; the gap hides the rest, its CRLF
    // and `0` CRLF CRLF (7 bytes): the body ends there when the other
    // direction speaks next.
    let first = [
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n".as_slice(),
        &[b'z'; 500],
    ]
    .concat();
    // Not the last chunk: what the gap hid past the data's CRLF counts as body.
    for (hidden, size, truncated) in [(7, 1024, false), (9, 1031, true), (3, 1025, true)] {
        let mut stream = Http1Stream::new();
        let mut out = run(&mut stream, &[(&first, 1024 - 500 + hidden)]);
        assert!(out.is_empty());
        stream.peer_spoke(b"HTTP/1.1 200 OK\r\n", &mut out);
        assert_eq!(
            (out[0].body_size, out[0].truncated),
            (size, truncated),
            "{hidden}"
        );
    }
    // Bytes after the hidden tail mean it was not the end: they and the
    // hidden ones count.
    let mut stream = Http1Stream::new();
    let mut out = run(&mut stream, &[(&first, 1024 - 500 + 7), (b"more", 0)]);
    stream.finish(3, &mut out);
    assert_eq!((out[0].body_size, out[0].truncated), (1024 + 5 + 4, true));
    // A gap from the start of a size line counts the same way.
    let mut stream = Http1Stream::new();
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
    stream.expect_response_to("GET");
    let mut out = run(&mut stream, &[(head, 5)]);
    stream.finish(2, &mut out);
    assert_eq!((out[0].body_size, out[0].truncated), (3, false));
}

#[test]
fn head_response_with_content_length_has_no_body() {
    let mut stream = Http1Stream::new();
    stream.expect_response_to("HEAD");
    stream.expect_response_to("GET");
    let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let out = run(&mut stream, &[(bytes, 0)]);
    let sizes: Vec<_> = out.iter().map(|m| (m.body_size, m.truncated)).collect();
    assert_eq!(sizes, vec![(0, false), (2, false)]);
}

#[test]
fn no_body_for_204_and_304() {
    let bytes: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
    let (out, _) = parse(&[(bytes, 0)]);
    let got: Vec<_> = out.into_iter().map(|m| (m.head, m.body_size)).collect();
    assert_eq!(
        got,
        vec![(response(204), 0), (response(304), 0), (response(200), 1)]
    );
}

#[test]
fn continue_then_ok_keeps_the_expectation() {
    let mut stream = Http1Stream::new();
    stream.expect_response_to("HEAD");
    let bytes: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
    let out = run(&mut stream, &[(bytes, 0)]);
    let got: Vec<_> = out.into_iter().map(|m| (m.head, m.body_size)).collect();
    assert_eq!(got, vec![(response(100), 0), (response(200), 0)]);
}

#[test]
fn switching_protocols_upgrades_the_stream() {
    let bytes: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let (mut out, mut stream) = parse(&[(bytes, 0)]);
    stream.feed(b"HTTP/1.1 200 OK\r\n\r\n", 0, 5, &mut out);
    stream.finish(6, &mut out);
    assert_eq!(
        out.into_iter().map(|m| m.head).collect::<Vec<_>>(),
        vec![response(101)]
    );
    assert!(stream.is_upgraded());
    assert_eq!(stream.garbage_segments(), 0);
}

#[test]
fn successful_connect_upgrades_the_stream() {
    let mut stream = Http1Stream::new();
    stream.expect_response_to("CONNECT");
    let out = run(
        &mut stream,
        &[(
            b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01",
            0,
        )],
    );
    assert_eq!(out.len(), 1);
    assert!(stream.is_upgraded());
}

#[test]
fn http10_read_until_close_completed_by_finish() {
    let mut stream = Http1Stream::new();
    stream.expect_response_to("GET");
    let mut out = run(
        &mut stream,
        &[
            (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc", 0),
            (b"defg", 100),
        ],
    );
    assert!(out.is_empty());
    stream.finish(50, &mut out);
    let mut want = msg(response(200), 107);
    want.version_minor = 0;
    want.first_ts_ns = 1;
    want.last_ts_ns = 2;
    assert_eq!(out, vec![want]);
}

#[test]
fn garbage_segments_are_counted_then_valid_message_parses() {
    let segments: [Segment; 5] = [
        (b"\x16\x03\x01\x02\x00random tls", 0),
        (b"", 100),
        (b"get / HTTP/1.1\r\n\r\n", 4000),
        (b"\r\n", 0),
        (b"DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0),
    ];
    let (out, stream) = parse(&segments);
    assert_eq!(stream.garbage_segments(), 3);
    assert_eq!(
        out.into_iter().map(without_ts).collect::<Vec<_>>(),
        vec![msg(request("DELETE", "/x"), 0)]
    );
}

#[test]
fn partial_start_line_that_turns_invalid_is_dropped() {
    let segments: [Segment; 3] = [
        (b"GET /a", 0),
        (b"\x01\x02", 0),
        (b"PUT /b HTTP/1.1\r\n\r\n", 0),
    ];
    let (out, stream) = parse(&segments);
    assert_eq!(stream.garbage_segments(), 2);
    assert_eq!(
        out.into_iter().map(|m| m.head).collect::<Vec<_>>(),
        vec![request("PUT", "/b")]
    );
    let (out, stream) = parse(&[(b"HTTP/1.1 2", 0), (b"HTTP/1.1 200 OK\r\n\r\n", 0)]);
    assert_eq!((stream.garbage_segments(), out.len()), (1, 0));
}

#[test]
fn start_line_limits() {
    let long_method = b"ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n";
    let (out, stream) = parse(&[(long_method, 0)]);
    assert_eq!((out.len(), stream.garbage_segments()), (0, 1));
    let target = format!("/{}", "t".repeat(5000));
    let line = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", "h".repeat(700));
    let (out, _) = parse(&[(line.as_bytes(), 0)]);
    assert_eq!(out[0].head, request("GET", &target[..MAX_TARGET]));
    assert_eq!(out[0].host.as_deref().map(str::len), Some(MAX_VALUE));
}

#[test]
fn header_values_are_truncated_on_char_boundaries() {
    let value = format!("{}é\u{ff}", "a".repeat(MAX_VALUE - 1));
    let line = format!("GET / HTTP/1.1\r\nTRACEparent: {value}\r\n\r\n");
    let (out, _) = parse(&[(line.as_bytes(), 0)]);
    assert_eq!(
        out[0].traceparent.as_deref(),
        Some("a".repeat(MAX_VALUE - 1).as_str())
    );
    let raw: &[u8] = b"GET / HTTP/1.1\r\nHost: a\xffb\r\n\r\n";
    let (out, _) = parse(&[(raw, 0)]);
    assert_eq!(out[0].host.as_deref(), Some("a\u{fffd}b"));
}

/// The Host each of `hosts` gives when it is the only request of a stream.
fn hosts_alone(hosts: &[Option<Vec<u8>>]) -> Vec<Option<HttpText>> {
    hosts
        .iter()
        .map(|host| {
            let (out, _) = parse(&[(&request_with_host(host.as_deref()), 0)]);
            out[0].host.clone()
        })
        .collect()
}

fn request_with_host(host: Option<&[u8]>) -> Vec<u8> {
    let mut head = b"GET /x HTTP/1.1\r\nAccept: */*\r\n".to_vec();
    if let Some(host) = host {
        head.extend_from_slice(b"Host: ");
        head.extend_from_slice(host);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The Hosts of `hosts` sent one after another on one stream, each request
/// in a segment of its own, as a keep-alive connection carries them.
fn hosts_in_a_row(hosts: &[Option<Vec<u8>>]) -> Vec<Option<HttpText>> {
    let requests: Vec<Vec<u8>> = hosts
        .iter()
        .map(|host| request_with_host(host.as_deref()))
        .collect();
    let segments: Vec<Segment> = requests.iter().map(|r| (r.as_slice(), 0)).collect();
    let (out, _) = parse(&segments);
    out.into_iter().map(|m| m.host).collect()
}

#[test]
fn a_connection_s_repeated_host_is_the_text_a_first_one_would_give() {
    let replacement = "\u{fffd}".as_bytes();
    let hosts: Vec<Option<Vec<u8>>> = [
        Some(&b"api.local:8080"[..]),
        Some(b"api.local:8080"),
        // No Host: the last one must not stand in for it.
        None,
        Some(b"api.local:8080"),
        Some(b"other.local"),
        // Invalid UTF-8, then the bytes its replacement text is made of.
        Some(b"a\xffb"),
        Some(&[b"a", replacement, b"b"].concat()),
        Some(b"a\xffb"),
        // Longer than the 24 bytes held inline.
        Some(b"a-long-host-name.example.internal:8443"),
        Some(b"a-long-host-name.example.internal:8443"),
        Some(b"api.local:8080"),
        // As long as the last one, one byte apart.
        Some(b"api.local:8081"),
    ]
    .into_iter()
    .map(|h| h.map(<[u8]>::to_vec))
    .collect();
    let got = hosts_in_a_row(&hosts);
    assert_eq!(got, hosts_alone(&hosts));
    assert_eq!(got[1].as_deref(), Some("api.local:8080"));
    assert_eq!(got[2], None);
    assert_eq!(got[7].as_deref(), Some("a\u{fffd}b"));
}

/// A request with `user_agent` (as written, any case of the name) or none.
fn request_with_user_agent(user_agent: Option<&[u8]>) -> Vec<u8> {
    let mut head = b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade-Insecure-Requests: 1\r\n".to_vec();
    if let Some(user_agent) = user_agent {
        head.extend_from_slice(b"uSER-aGENT:  ");
        head.extend_from_slice(user_agent);
        head.extend_from_slice(b" \r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[test]
fn a_request_s_user_agent_is_kept_and_shared_with_the_next_that_repeats_it() {
    let firefox = &b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"[..];
    let agents: [Option<&[u8]>; 6] = [
        Some(firefox),
        Some(firefox),
        // None: the last one must not stand in for it.
        None,
        Some(b"curl/8.4.0"),
        // Invalid UTF-8, then the text its replacement is.
        Some(b"a\xffb"),
        Some("a\u{fffd}b".as_bytes()),
    ];
    let requests: Vec<Vec<u8>> = agents.iter().map(|a| request_with_user_agent(*a)).collect();
    let segments: Vec<Segment> = requests.iter().map(|r| (r.as_slice(), 0)).collect();
    let (out, _) = parse(&segments);
    let alone: Vec<Option<std::sync::Arc<String>>> = requests
        .iter()
        .map(|r| parse(&[(r.as_slice(), 0)]).0.remove(0).user_agent)
        .collect();
    let in_a_row: Vec<Option<std::sync::Arc<String>>> =
        out.iter().map(|m| m.user_agent.clone()).collect();
    assert_eq!(in_a_row, alone);
    let text = |i: usize| in_a_row[i].as_deref().map(String::as_str);
    assert_eq!(
        text(0),
        Some(std::str::from_utf8(firefox).unwrap_or_default())
    );
    assert_eq!(text(2), None);
    assert_eq!(text(4), Some("a\u{fffd}b"));
    // The repeated one is the first's text, not a copy of it.
    let (first, second) = (in_a_row[0].as_ref(), in_a_row[1].as_ref());
    assert!(first
        .zip(second)
        .is_some_and(|(a, b)| std::sync::Arc::ptr_eq(a, b)));
    // A response's User-Agent (none is sent, but a field is a field) is not read.
    let response = b"HTTP/1.1 200 OK\r\nUser-Agent: server\r\nContent-Length: 0\r\n\r\n";
    let (out, _) = parse(&[(&response[..], 0)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].user_agent, None);
}

proptest! {
    /// Whatever Hosts a connection's requests carry, in whatever order, each
    /// request's is the one it would have alone.
    #[test]
    fn hosts_in_a_row_are_the_hosts_alone(
        hosts in proptest::collection::vec(
            proptest::option::of(prop_oneof![
                Just(b"h".to_vec()),
                Just(b"h\xff".to_vec()),
                Just("h\u{fffd}".as_bytes().to_vec()),
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(0xc3_u8), Just(0xa9_u8)], 0..30),
            ]),
            1..12,
        )
    ) {
        prop_assert_eq!(hosts_in_a_row(&hosts), hosts_alone(&hosts));
    }
}

#[test]
fn a_request_content_type_is_judged_grpc_or_not_and_the_first_one_counts() {
    for (fields, want) in [
        ("", ContentType::Unknown),
        (
            "Content-Type: application/grpc+proto\r\n",
            ContentType::Grpc,
        ),
        ("content-type:application/grpc\r\n", ContentType::Grpc),
        ("Content-Type: application/grpc-web\r\n", ContentType::Other),
        (
            "Content-Type: text/plain\r\nContent-Type: application/grpc\r\n",
            ContentType::Other,
        ),
        (
            "Content-Type: application/grpc\r\nContent-Type: text/plain\r\n",
            ContentType::Grpc,
        ),
    ] {
        let head = format!("POST /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let (out, _) = parse(&[(head.as_bytes(), 0)]);
        assert_eq!(out[0].content_type, want, "{fields:?}");
    }
    // A response's is not read: nothing asks for it.
    let (out, _) = parse(&[(
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nContent-Length: 0\r\n\r\n"[..],
        0,
    )]);
    assert_eq!(out[0].content_type, ContentType::Unknown);
}

#[test]
fn field_names_match_whole_and_in_any_case_only_before_their_colon() {
    let head = "POST /x HTTP/1.1\r\nHostname: wrong\r\nX-Host: wrong\r\n\
                Host : wrong\r\nhOsT:right\r\nTRACEPARENT:  00-ab-cd-01 \r\n\
                Content-Typed: wrong\r\nCONTENT-type: text/plain\r\n\
                Content-Length5: 9\r\ncontent-length:3\r\nCookie: host: wrong\r\n\r\nabc";
    let (out, stream) = parse(&[(head.as_bytes(), 0), (b"GET /y HTTP/1.1\r\n\r\n", 0)]);
    assert_eq!(stream.garbage_segments(), 0);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].host.as_deref(), Some("right"));
    assert_eq!(out[0].traceparent.as_deref(), Some("00-ab-cd-01"));
    assert_eq!(out[0].content_type, ContentType::Other);
    assert_eq!((out[0].body_size, out[0].truncated), (3, false));
    assert_eq!(out[1].head, request("GET", "/y"));
}

#[test]
fn huge_header_over_cap_is_truncated_and_bounded() {
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    stream.feed(b"GET /big HTTP/1.1\r\nHost: h\r\nX-Fill: ", 0, 1, &mut out);
    let filler = [b'f'; 512];
    for ts in 2..200 {
        stream.feed(&filler, 0, ts, &mut out);
        if let State::Head(head) = &stream.state {
            assert!(head.bytes.capacity() <= 2 * MAX_HEAD);
        }
    }
    stream.feed(b"\r\n\r\n", 0, 200, &mut out);
    stream.feed(b"GET /small HTTP/1.1\r\n\r\n", 0, 201, &mut out);
    assert_eq!(out.len(), 2);
    // The head's end was found past the cap: the sizes are still known.
    assert_eq!(
        (out[0].head.clone(), out[0].truncated),
        (request("GET", "/big"), false)
    );
    assert_eq!(out[0].host.as_deref(), Some("h"));
    assert_eq!((out[0].first_ts_ns, out[0].last_ts_ns), (1, 200));
    assert_eq!(out[1].head, request("GET", "/small"));
}

#[test]
fn invalid_content_length_loses_framing() {
    for value in ["abc", "-1", "+5", "18446744073709551616", "5, 6", ""] {
        let bytes = format!("POST /x HTTP/1.1\r\nContent-Length: {value}\r\n\r\nbody");
        let (out, _) = parse(&[(bytes.as_bytes(), 0), (b"GET /y HTTP/1.1\r\n\r\n", 0)]);
        let got: Vec<_> = out.into_iter().map(|m| (m.head, m.truncated)).collect();
        assert_eq!(
            got,
            vec![(request("POST", "/x"), true), (request("GET", "/y"), false)],
            "{value:?}"
        );
    }
    let dup: &[u8] = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd";
    let (out, _) = parse(&[(dup, 0)]);
    assert!(out.is_empty());
    let same: &[u8] = b"POST /x HTTP/1.1\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc";
    let (out, _) = parse(&[(same, 0)]);
    assert_eq!((out[0].body_size, out[0].truncated), (3, false));
}

#[test]
fn bytes_after_a_framing_loss_count_as_the_body_wherever_it_happens() {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n";
    // Lost on the captured bytes' last byte: the gap after it counts.
    let at_end = format!("{head}q");
    // Lost inside them: the rest of them and the gap count.
    let inside = format!("{head}qrst");
    for (bytes, size) in [(at_end, 4 + 100), (inside, 4 + 3 + 100)] {
        let mut stream = Http1Stream::new();
        let mut out = run(&mut stream, &[(bytes.as_bytes(), 100), (b"later", 20)]);
        stream.finish(9, &mut out);
        assert_eq!(
            (out[0].body_size, out[0].truncated),
            (size + 5 + 20, true),
            "{bytes}"
        );
    }
}

/// Node.js writes a burst of chunks with one writev: the copy holds the head
/// and the first chunk's start, a size line falls in the bytes not copied.
/// The response is complete at the segment whose last bytes are the last
/// chunk, not when the other side next speaks.
#[test]
fn a_lost_chunked_message_ends_at_a_segment_ending_with_the_last_chunk() {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfa0\r\n";
    let first = [head.as_bytes(), &[b'x'; 400]].concat();
    let end = b"xxxxxxxx\r\n4\r\nend\n\r\n0\r\n\r\n";
    for (with_tail, bytes) in [(true, 20_000u64), (false, 30)] {
        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        let mut out = Vec::new();
        // 3,600 bytes of the first chunk's data, then size lines: lost.
        stream.feed(&first, 20_000, 1, &mut out);
        assert!(out.is_empty());
        if with_tail {
            // A long segment: 512 bytes copied, its end copied apart.
            stream.feed_with_tail(&[b'x'; 512], bytes, end, 2, &mut out);
        } else {
            // A short one, copied whole.
            stream.feed_with_tail(end, 0, &[], 2, &mut out);
        }
        assert_eq!(out.len(), 1, "{with_tail}");
        // The first chunk's 4,000 bytes of data, its CRLF (known framing,
        // not counted), then every byte after: the rest of the first gap
        // and the second segment.
        let sent = if with_tail {
            512 + bytes
        } else {
            end.len() as u64
        };
        assert_eq!(
            (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
            (4_000 + (20_000 - 3_600 - 2) + sent, true, 2)
        );
    }
    // A segment ending otherwise leaves it waiting.
    let mut stream = Http1Stream::new();
    stream.expect_response_to("GET");
    let mut out = Vec::new();
    stream.feed(&first, 20_000, 1, &mut out);
    stream.feed_with_tail(&[b'x'; 512], 20_000, &[b'x'; 128], 2, &mut out);
    assert!(out.is_empty());
}

#[test]
fn chunk_size_overflow_loses_framing() {
    let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\nabcd\r\n10000000000000000\r\n";
    let mut stream = Http1Stream::new();
    let mut out = run(&mut stream, &[(bytes, 0), (b"more", 0)]);
    assert!(out.is_empty());
    stream.finish(9, &mut out);
    // The size line's bytes after the digit refused ("\r\n") and the next
    // segment's are the lost body's.
    assert_eq!(
        (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
        (4 + 2 + 4, true, 2)
    );
    let max: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
    let (out, _) = parse(&[(max, u64::MAX)]);
    assert!(out.is_empty());
}

#[test]
fn finish_emits_truncated_in_progress_message() {
    let mut stream = Http1Stream::new();
    let mut out = run(
        &mut stream,
        &[(b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 0)],
    );
    stream.finish(7, &mut out);
    assert_eq!(
        (out[0].body_size, out[0].truncated, out[0].last_ts_ns),
        (3, true, 1)
    );
    let mut out = run(&mut stream, &[(b"GET / HTTP/1.1\r\nHost: a\r\n", 0)]);
    stream.finish(8, &mut out);
    assert_eq!(
        (out[0].host.as_deref(), out[0].truncated),
        (Some("a"), true)
    );
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let (out, _) = parse(&[(b"GET /lf HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\n\n", 0)]);
    let got: Vec<_> = out.into_iter().map(|m| (m.head, m.host)).collect();
    assert_eq!(
        got,
        vec![
            (request("GET", "/lf"), Some("a".into())),
            (request("GET", "/b"), None)
        ]
    );
}

// ---- property tests ----

/// Byte soup biased toward HTTP syntax so that deep states get exercised.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static [u8]> = vec![
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 101 x\r\n",
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
        b"Host: \xff\xfe\r\n",
        b"HEAD ",
        b"HTTP/1.",
        b";ext=1",
        b"\x00\x7f\x80",
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        proptest::sample::select(words).prop_map(<[u8]>::to_vec),
    ]
}

fn segment() -> impl Strategy<Value = (Vec<u8>, u64, Option<&'static str>)> {
    (
        proptest::collection::vec(fragment(), 0..8).prop_map(|f| f.concat()),
        prop_oneof![4 => Just(0u64), 2 => 0..5000u64, 1 => Just(u64::MAX)],
        proptest::option::of(proptest::sample::select(vec!["GET", "HEAD", "CONNECT"])),
    )
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(segments in proptest::collection::vec(segment(), 0..24)) {
        survive(&segments)?;
    }
}

fn survive(segments: &[(Vec<u8>, u64, Option<&'static str>)]) -> Result<(), TestCaseError> {
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    for (ts, (captured, missing, expect)) in (1u64..).zip(segments) {
        if let Some(method) = expect {
            stream.expect_response_to(method);
        }
        stream.feed(captured, *missing, ts, &mut out);
        if let State::Head(head) = &stream.state {
            prop_assert!(head.bytes.len() <= MAX_HEAD);
        }
    }
    stream.finish(u64::MAX, &mut out);
    for m in &out {
        prop_assert!(m.first_ts_ns <= m.last_ts_ns);
        if let MessageHead::Request { method, target } = &m.head {
            prop_assert!(method.len() <= MAX_METHOD && target.len() <= MAX_TARGET);
        }
    }
    Ok(())
}

/// A message whose head is big (a cookie of up to 3 KB), cut into
/// segments captured up to a small limit, ended by the other direction
/// speaking: it comes out once, with its start line, and its body size
/// is right or the message is marked truncated.
#[derive(Debug, Clone)]
struct BigHead {
    response: bool,
    cookie: usize,
    cookie_at: usize,
    length_line: bool,
    traceparent_at: usize,
    body: Vec<u8>,
    cuts: Vec<proptest::sample::Index>,
    cap: usize,
}

fn big_head_case() -> impl Strategy<Value = BigHead> {
    let word = prop_oneof![
        "[a-z0-9{}\",.]{1,12}".prop_map(String::into_bytes),
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
    ];
    (
        any::<bool>(),
        0usize..3000,
        0usize..4,
        any::<bool>(),
        0usize..5,
        proptest::collection::vec(word, 0..200),
        proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        16usize..600,
    )
        .prop_map(
            |(response, cookie, cookie_at, length_line, traceparent_at, words, cuts, cap)| {
                // A body never holds a blank line (see read_cut_head).
                let mut body: Vec<u8> = Vec::new();
                for w in words {
                    if !(w == b"\r\n" && body.ends_with(b"\r\n")) {
                        body.extend_from_slice(&w);
                    }
                }
                if body.ends_with(b"\r\n") {
                    body.push(b'.');
                }
                BigHead {
                    response,
                    cookie,
                    cookie_at,
                    length_line: length_line || response,
                    traceparent_at,
                    body,
                    cuts,
                    cap,
                }
            },
        )
}

proptest! {
    #[test]
    fn big_heads_cut_by_the_capture_are_exact_or_truncated(case in big_head_case()) {
        big_head_property(&case)?;
    }
}

fn big_head_property(case: &BigHead) -> Result<(), TestCaseError> {
    let mut fields = vec![
        "Host: example.test".to_string(),
        "User-Agent: proptest".to_string(),
        "Accept: */*".to_string(),
    ];
    fields.insert(
        case.cookie_at.min(fields.len()),
        format!("Cookie: {}", "k".repeat(case.cookie)),
    );
    let body = if case.length_line {
        case.body.clone()
    } else {
        Vec::new()
    };
    if case.length_line {
        fields.insert(1, format!("Content-Length: {}", body.len()));
    }
    fields.insert(
        case.traceparent_at.min(fields.len()),
        format!("traceparent: {TRACEPARENT}"),
    );
    let start = if case.response {
        "HTTP/1.1 200 OK"
    } else {
        "POST /p HTTP/1.1"
    };
    let mut bytes = format!("{start}\r\n{}\r\n\r\n", fields.join("\r\n")).into_bytes();
    bytes.extend_from_slice(&body);
    let mut bounds: Vec<usize> = case.cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    bounds.extend([0, bytes.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut stream = Http1Stream::new();
    if case.response {
        stream.expect_response_to("GET");
    }
    let mut out = Vec::new();
    for (ts, pair) in (1u64..).zip(bounds.windows(2)) {
        let segment = &bytes[pair[0]..pair[1]];
        let captured = &segment[..segment.len().min(case.cap)];
        stream.feed(
            captured,
            (segment.len() - captured.len()) as u64,
            ts,
            &mut out,
        );
    }
    let peer: &[u8] = if case.response {
        b"GET / HTTP/1.1\r\n"
    } else {
        b"HTTP/1.1 200 OK\r\n"
    };
    stream.peer_spoke(peer, &mut out);
    stream.finish(u64::MAX, &mut out);
    prop_assert_eq!(out.len(), 1, "{:?}", out);
    let m = &out[0];
    let head = if case.response {
        response(200)
    } else {
        request("POST", "/p")
    };
    prop_assert_eq!(&m.head, &head);
    if !m.truncated {
        prop_assert_eq!(m.body_size, body.len() as u64);
    }
    if let Some(traceparent) = &m.traceparent {
        prop_assert_eq!(&**traceparent, TRACEPARENT);
    }
    if bounds.len() == 2 && bytes.len() <= case.cap {
        prop_assert!(!m.truncated && m.traceparent.is_some());
    }
    prop_assert_eq!(stream.garbage_segments(), 0);
    Ok(())
}

/// One generated message: its wire bytes, which of them a gap may cover,
/// what the parser should report (timestamps zero), and its request method.
#[derive(Debug, Clone)]
struct Wire {
    bytes: Vec<u8>,
    gap_ok: Vec<bool>,
    want: HttpMessage,
    answers: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct BodySpec {
    data: Vec<u8>,
    /// 0: no framing header, 1: Content-Length, 2: chunked.
    framing: u8,
    chunk_sizes: Vec<usize>,
    ext: bool,
    trailer: bool,
}

fn body_spec() -> impl Strategy<Value = BodySpec> {
    (
        proptest::collection::vec(any::<u8>(), 0..200),
        0u8..3,
        proptest::collection::vec(1usize..80, 0..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(data, framing, chunk_sizes, ext, trailer)| BodySpec {
            data,
            framing,
            chunk_sizes,
            ext,
            trailer,
        })
}

impl Wire {
    fn push(&mut self, bytes: &[u8], gap_ok: bool) {
        self.bytes.extend_from_slice(bytes);
        self.gap_ok.extend(std::iter::repeat_n(gap_ok, bytes.len()));
    }

    /// Appends framing headers, the blank line and the body.
    fn finish_with_body(&mut self, body: &BodySpec, lower: bool, send_body: bool) {
        let name = |n: &str| {
            if lower {
                n.to_ascii_lowercase()
            } else {
                n.to_string()
            }
        };
        match body.framing {
            1 => self.push(
                format!("{}: {}\r\n", name("Content-Length"), body.data.len()).as_bytes(),
                false,
            ),
            2 => self.push(
                format!("{}: chunked\r\n", name("Transfer-Encoding")).as_bytes(),
                false,
            ),
            _ => {}
        }
        self.push(b"\r\n", false);
        self.want.chunked = body.framing == 2;
        if !send_body {
            return;
        }
        self.want.body_size = body.data.len() as u64;
        if body.framing != 2 {
            self.push(&body.data, true);
            return;
        }
        let mut data = body.data.as_slice();
        let mut sizes = body.chunk_sizes.iter().cycle();
        while !data.is_empty() {
            let size = sizes.next().copied().unwrap_or(data.len()).min(data.len());
            let (chunk, rest) = data.split_at(size);
            let ext = if body.ext { ";k=\"v\"" } else { "" };
            let line = if lower {
                format!("{size:x}{ext}\r\n")
            } else {
                format!("{size:X}{ext}\r\n")
            };
            self.push(line.as_bytes(), false);
            self.push(chunk, true);
            self.push(b"\r\n", true);
            data = rest;
        }
        self.push(b"0\r\n", false);
        if body.trailer {
            self.push(b"X-Checksum: 42\r\n", false);
        }
        self.push(b"\r\n", false);
    }
}

fn head_line(wire: &mut Wire, host: &Option<String>, traceparent: bool, lower: bool) {
    if let Some(host) = host {
        wire.push(
            format!("{}: {host}\r\n", if lower { "host" } else { "Host" }).as_bytes(),
            false,
        );
        wire.want.host = Some(host.as_str().into());
    }
    if traceparent {
        wire.push(format!("traceparent: {TRACEPARENT}\r\n").as_bytes(), false);
        wire.want.traceparent = Some(TRACEPARENT.into());
    }
}

fn wire_request() -> impl Strategy<Value = Wire> {
    let methods = vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    (
        proptest::sample::select(methods),
        "/[a-zA-Z0-9._~/?=&%-]{0,30}",
        proptest::option::of("[a-z]{1,10}\\.example(:[0-9]{2,5})?"),
        any::<bool>(),
        0u8..2,
        body_spec(),
        any::<bool>(),
    )
        .prop_map(
            |(method, target, host, traceparent, minor, mut body, lower)| {
                if body.framing == 0 {
                    body.data.clear();
                }
                let mut wire = Wire {
                    bytes: Vec::new(),
                    gap_ok: Vec::new(),
                    want: msg(request(method, &target), 0),
                    answers: None,
                };
                wire.want.version_minor = minor;
                wire.push(
                    format!("{method} {target} HTTP/1.{minor}\r\n").as_bytes(),
                    false,
                );
                head_line(&mut wire, &host, traceparent, lower);
                wire.finish_with_body(&body, lower, true);
                wire
            },
        )
}

fn wire_response() -> impl Strategy<Value = Wire> {
    (
        proptest::sample::select(vec![200u16, 201, 204, 304, 404, 500]),
        proptest::sample::select(vec!["GET", "HEAD", "POST"]),
        any::<bool>(),
        proptest::option::of("[a-z]{1,8}/[a-z]{1,8}"),
        body_spec(),
        any::<bool>(),
    )
        .prop_map(
            |(status, answers, interim, content_type, mut body, lower)| {
                let bodiless_status = status == 204 || status == 304;
                // Close-delimited bodies only end a stream (see `wire_stream`); a HEAD
                // answer may announce a length but not chunking; 204/304 announce nothing.
                body.framing = match body.framing {
                    _ if bodiless_status => 0,
                    framing if answers == "HEAD" => framing.min(1),
                    0 => 1,
                    framing => framing,
                };
                let no_body = answers == "HEAD" || bodiless_status;
                let mut wire = Wire {
                    bytes: Vec::new(),
                    gap_ok: Vec::new(),
                    want: msg(response(status), 0),
                    answers: Some(answers),
                };
                if interim {
                    wire.push(b"HTTP/1.1 100 Continue\r\n\r\n", false);
                }
                wire.push(
                    format!("HTTP/1.1 {status} Whatever It Says\r\n").as_bytes(),
                    false,
                );
                if let Some(ct) = &content_type {
                    wire.push(format!("Content-Type: {ct}\r\n").as_bytes(), false);
                }
                wire.finish_with_body(&body, lower, !no_body);
                wire
            },
        )
}

/// A whole stream: messages, optionally ending with a close-delimited response.
fn wire_stream() -> impl Strategy<Value = (Vec<Wire>, Option<Vec<u8>>)> {
    prop_oneof![
        proptest::collection::vec(wire_request(), 1..6).prop_map(|w| (w, None)),
        (
            proptest::collection::vec(wire_response(), 1..6),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100))
        ),
    ]
}

/// Cut points plus, per segment, how much of its eligible tail becomes a gap.
fn cuts() -> impl Strategy<Value = Vec<(proptest::sample::Index, u8)>> {
    proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..30)
}

proptest! {
    #[test]
    fn valid_messages_round_trip((wires, close_body) in wire_stream(), cuts in cuts()) {
        round_trip(wires, close_body, &cuts)?;
    }
}

fn round_trip(
    mut wires: Vec<Wire>,
    close_body: Option<Vec<u8>>,
    cuts: &[(proptest::sample::Index, u8)],
) -> Result<(), TestCaseError> {
    if let Some(data) = close_body {
        let mut wire = Wire {
            bytes: Vec::new(),
            gap_ok: Vec::new(),
            want: msg(response(200), data.len() as u64),
            answers: Some("GET"),
        };
        wire.want.version_minor = 0;
        wire.push(b"HTTP/1.0 200 OK\r\n\r\n", false);
        wire.push(&data, true);
        wires.push(wire);
    }
    let bytes: Vec<u8> = wires.iter().flat_map(|w| w.bytes.clone()).collect();
    let gap_ok: Vec<bool> = wires.iter().flat_map(|w| w.gap_ok.clone()).collect();

    // Segment i covers [bounds[i], bounds[i+1]); its tail may be turned into a gap.
    let mut bounds: Vec<usize> = cuts.iter().map(|(i, _)| i.index(bytes.len() + 1)).collect();
    bounds.extend([0, bytes.len()]);
    bounds.sort_unstable();
    let mut stream = Http1Stream::new();
    for method in wires.iter().filter_map(|w| w.answers) {
        stream.expect_response_to(method);
    }
    let mut out = Vec::new();
    let mut seg_of_byte = vec![0u64; bytes.len()];
    let fracs = cuts.iter().map(|(_, frac)| *frac).chain([0]);
    for (seg, (pair, frac)) in bounds.windows(2).zip(fracs).enumerate() {
        let (start, end) = (pair[0], pair[1]);
        let ts = seg as u64 + 1;
        seg_of_byte[start..end].iter_mut().for_each(|s| *s = ts);
        let eligible = gap_ok[start..end]
            .iter()
            .rev()
            .take_while(|&&ok| ok)
            .count();
        let gap = if frac < 128 {
            0
        } else {
            eligible * usize::from(frac - 128) / 127
        };
        stream.feed(&bytes[start..end - gap], gap as u64, ts, &mut out);
    }
    stream.finish(u64::MAX, &mut out);

    let mut offset = 0;
    let mut want = Vec::new();
    for wire in &wires {
        // An interim 100 precedes the final response inside the same wire.
        let interim_len = if wire.bytes.starts_with(b"HTTP/1.1 100") {
            25
        } else {
            0
        };
        if interim_len > 0 {
            let mut m = msg(response(100), 0);
            m.first_ts_ns = seg_of_byte[offset];
            m.last_ts_ns = seg_of_byte[offset + interim_len - 1];
            want.push(m);
        }
        let mut m = wire.want.clone();
        m.first_ts_ns = seg_of_byte[offset + interim_len];
        m.last_ts_ns = seg_of_byte[offset + wire.bytes.len() - 1];
        want.push(m);
        offset += wire.bytes.len();
    }
    prop_assert_eq!(out, want);
    prop_assert_eq!(stream.garbage_segments(), 0);
    Ok(())
}

/// Feeds one segment as the kernel sends it: whole when it is at most
/// [`TAIL_LEN`] longer than the copy (512 bytes, `ZT_PAYLOAD_MAX`), else
/// its first 512 bytes and, apart, its last [`TAIL_LEN`].
fn feed_as_the_kernel_copies(
    stream: &mut Http1Stream,
    segment: &[u8],
    ts: u64,
    out: &mut Vec<HttpMessage>,
) {
    use zerotrace_shared::event::layout::TAIL_LEN;
    const COPY: usize = 512;
    if segment.len() <= COPY + TAIL_LEN {
        stream.feed_with_tail(segment, 0, &[], ts, out);
        return;
    }
    let missing = (segment.len() - COPY) as u64;
    let tail = &segment[segment.len() - TAIL_LEN..];
    stream.feed_with_tail(&segment[..COPY], missing, tail, ts, out);
}

/// A chunked response written as a server streams it: its head (alone, or
/// with the first write, as Node.js sends it), then each write's chunks in
/// one segment, the last chunk with the last write or alone.
fn streamed_response(
    writes: &[Vec<usize>],
    head_with_first: bool,
    last_alone: bool,
) -> Vec<Vec<u8>> {
    let mut segments = vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()];
    for (i, chunks) in writes.iter().enumerate() {
        let mut write = Vec::new();
        for &size in chunks {
            write.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            write.resize(write.len() + size, b'x');
            write.extend_from_slice(b"\r\n");
        }
        if i == 0 && head_with_first {
            segments[0].extend_from_slice(&write);
        } else {
            segments.push(write);
        }
    }
    if last_alone {
        segments.push(b"0\r\n\r\n".to_vec());
    } else if let Some(last) = segments.last_mut() {
        last.extend_from_slice(b"0\r\n\r\n");
    }
    segments
}

proptest! {
    /// Whatever the writes, a streamed chunked response is complete at its
    /// last segment (its connection may then idle), and its size is the
    /// data's unless marked partial; a response whose writes each hold one
    /// chunk is never partial: every size line is in a write's first bytes,
    /// and what follows the chunk's data is in its end.
    #[test]
    fn a_streamed_chunked_response_ends_at_its_last_segment(
        writes in proptest::collection::vec(proptest::collection::vec(1usize..3000, 1..4), 1..6),
        head_with_first in any::<bool>(),
        last_alone in any::<bool>(),
    ) {
        let segments = streamed_response(&writes, head_with_first, last_alone);
        let mut stream = Http1Stream::new();
        stream.expect_response_to("GET");
        let mut out = Vec::new();
        for (ts, segment) in (1u64..).zip(&segments) {
            feed_as_the_kernel_copies(&mut stream, segment, ts, &mut out);
        }
        prop_assert_eq!(out.len(), 1);
        let data: usize = writes.iter().flatten().sum();
        let wire: usize = segments.iter().map(Vec::len).sum();
        let message = &out[0];
        prop_assert_eq!(message.last_ts_ns, segments.len() as u64);
        if writes.iter().all(|chunks| chunks.len() == 1) {
            prop_assert!(!message.truncated);
        }
        if message.truncated {
            prop_assert!((data as u64..wire as u64).contains(&message.body_size));
        } else {
            prop_assert_eq!(message.body_size, data as u64);
        }
    }
}

/// A client pipelines a request after a POST whose body the copy cuts: the
/// bytes not copied end inside the body, so the segment's end, copied apart,
/// is read on as the body's end and the next request's head.
#[test]
fn a_request_in_the_end_of_a_segment_after_a_counted_body_is_read() {
    let post = b"POST /upload HTTP/1.1\r\nContent-Length: 2000\r\n\r\n";
    let get = b"GET /next HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    let segment = [&post[..], &[b'x'; 2000], &get[..]].concat();
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    feed_as_the_kernel_copies(&mut stream, &segment, 1, &mut out);
    let out: Vec<_> = out.into_iter().map(without_ts).collect();
    let mut next = msg(request("GET", "/next"), 0);
    next.host = Some(HttpText::from("shop.example"));
    assert_eq!(out, [msg(request("POST", "/upload"), 2000), next]);
}

#[test]
fn zz_sizes() {
    eprintln!(
        "HttpMessage {} HttpExchange {} Span {}",
        std::mem::size_of::<HttpMessage>(),
        std::mem::size_of::<crate::spans::HttpExchange>(),
        std::mem::size_of::<crate::spans::Span>()
    );
}
