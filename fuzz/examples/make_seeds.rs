//! Writes the seed corpora of `http2_frames`, `hpack` and `grpc` into
//! fuzz/seeds/: valid conversations (h2c, gRPC unary and trailers-only,
//! CONTINUATION, padding, PUSH_PROMISE, RST_STREAM, GOAWAY, joins
//! mid-stream, capture gaps, sequential requests with heads larger than the
//! capture, a header block past the head capture), the RFC 7541 Appendix C
//! header blocks, and
//! gRPC conversation scripts, so fuzzing starts from deep states.
//!   cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds

use std::path::Path;

use zerotrace_fuzz::{
    data_frame, frame, grpc_message, h2_input, header_frames, settings, H2Segment, HpackEncoder,
    Indexing, ACK, CONTINUATION, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, PREFACE,
    PRIORITY_FLAG, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn encode(encoder: &mut HpackEncoder, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        encoder.field_by_choice(&mut block, name, value, 0);
    }
    block
}

fn seg(egress: bool, captured: &[u8]) -> H2Segment<'_> {
    H2Segment {
        egress,
        captured,
        missing: 0,
        same_ts: false,
    }
}

const C: bool = true;
const S: bool = false;

/// A client and server with their encoders, writing whole frames.
struct H2 {
    client: HpackEncoder,
    server: HpackEncoder,
}

impl H2 {
    fn new() -> Self {
        Self {
            client: HpackEncoder::new(4096),
            server: HpackEncoder::new(4096),
        }
    }

    fn request(&mut self, id: u32, method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut fields = vec![
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost:8080"),
        ];
        fields.extend_from_slice(extra);
        let block = encode(&mut self.client, &fields);
        header_frames(id, &block, method == "GET", &[], None)
    }

    fn response(&mut self, id: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = encode(&mut self.server, fields);
        header_frames(id, &block, end_stream, &[], None)
    }
}

fn client_preface() -> Vec<u8> {
    [PREFACE.to_vec(), settings(&[(3, 100), (4, 65_535)])].concat()
}

fn server_preface() -> Vec<u8> {
    [
        settings(&[(3, 250)]),
        frame(WINDOW_UPDATE, 0, 0, &[0, 0xe, 0, 1]),
    ]
    .concat()
}

fn http2_seeds() -> std::io::Result<()> {
    // h2c GET and POST on two streams, responses sharing the dynamic table.
    let mut h2 = H2::new();
    let client = [
        client_preface(),
        h2.request(1, "GET", "/", &[("user-agent", "curl/8.5.0")]),
        h2.request(3, "POST", "/echo", &[("content-type", "text/plain")]),
        data_frame(3, b"hello", true, None).0,
        frame(SETTINGS, ACK, 0, &[]),
    ]
    .concat();
    let server = [
        server_preface(),
        frame(SETTINGS, ACK, 0, &[]),
        h2.response(
            1,
            &[(":status", "200"), ("content-type", "text/html")],
            false,
        ),
        data_frame(1, b"<html></html>", true, None).0,
        h2.response(
            3,
            &[(":status", "200"), ("content-type", "text/html")],
            false,
        ),
        data_frame(3, b"hello", false, None).0,
        data_frame(3, b"", true, None).0,
    ]
    .concat();
    write(
        "http2_frames",
        "h2c_two_streams",
        &h2_input(0, &[seg(C, &client), seg(S, &server)]),
    )?;
    // The same, cut into small segments alternating directions.
    let mut segments = Vec::new();
    for i in 0..client.len().max(server.len()).div_ceil(17) {
        for (egress, bytes) in [(C, &client), (S, &server)] {
            if let Some(piece) = bytes.get(i * 17..).map(|b| b.get(..17).unwrap_or(b)) {
                if !piece.is_empty() {
                    segments.push(seg(egress, piece));
                }
            }
        }
    }
    write(
        "http2_frames",
        "h2c_small_segments",
        &h2_input(0, &segments),
    )?;

    // gRPC unary call, then a trailers-only error, as real frames.
    let mut h2 = H2::new();
    let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
    let client = [
        client_preface(),
        h2.request(1, "POST", "/helloworld.Greeter/SayHello", &grpc),
        data_frame(1, &grpc_message(false, b"\x0a\x05world"), true, None).0,
        h2.request(3, "POST", "/helloworld.Greeter/Missing", &grpc),
        data_frame(3, &grpc_message(false, b""), true, None).0,
    ]
    .concat();
    let server = [
        server_preface(),
        h2.response(
            1,
            &[(":status", "200"), ("content-type", "application/grpc")],
            false,
        ),
        data_frame(1, &grpc_message(false, b"\x0a\x0bHello world"), false, None).0,
        h2.response(1, &[("grpc-status", "0"), ("grpc-message", "")], true),
        h2.response(
            3,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "12"),
                ("grpc-message", "unknown method Missing"),
            ],
            true,
        ),
    ]
    .concat();
    write(
        "http2_frames",
        "grpc_unary_and_trailers_only",
        &h2_input(0, &[seg(C, &client), seg(S, &server)]),
    )?;
    // The gRPC conversation with the server's writes truncated by the capture.
    let cut = server.len() / 2;
    let truncated = H2Segment {
        egress: S,
        captured: server.get(..cut).unwrap_or_default(),
        missing: 16,
        same_ts: false,
    };
    let rest = server.get(cut + 16..).unwrap_or_default();
    write(
        "http2_frames",
        "grpc_with_gap",
        &h2_input(0, &[seg(C, &client), truncated, seg(S, rest)]),
    )?;

    // CONTINUATION, padding, priority, PUSH_PROMISE, RST_STREAM, GOAWAY.
    let mut h2 = H2::new();
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ] {
        h2.client
            .literal(&mut block, name, None, value, Indexing::Incremental);
    }
    let mut priority = vec![0x80, 0, 0, 0, 0x10];
    priority.extend_from_slice(&block[..10]);
    let client = [
        client_preface(),
        frame(HEADERS, PRIORITY_FLAG | END_STREAM, 5, &priority),
        frame(CONTINUATION, 0, 5, &block[10..30]),
        frame(CONTINUATION, END_HEADERS, 5, &block[30..]),
        h2.request(7, "GET", "/slow", &[]),
        frame(RST_STREAM, 0, 7, &8u32.to_be_bytes()),
        frame(PING, 0, 0, b"pingping"),
    ]
    .concat();
    let promised = h2.response(2, &[(":method", "GET"), (":path", "/style.css")], false);
    let mut promise = 2u32.to_be_bytes().to_vec();
    promise.extend_from_slice(promised.get(9..).unwrap_or_default());
    let server = [
        server_preface(),
        frame(PUSH_PROMISE, END_HEADERS, 5, &promise),
        header_frames(
            5,
            &encode(&mut h2.server, &[(":status", "200")]),
            false,
            &[2],
            Some(3),
        ),
        data_frame(5, b"body", true, Some(4)).0,
        h2.response(2, &[(":status", "200")], false),
        data_frame(2, b"css", true, None).0,
        frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]),
    ]
    .concat();
    write(
        "http2_frames",
        "continuation_push_reset",
        &h2_input(0, &[seg(C, &client), seg(S, &server)]),
    )?;

    // Joined mid-stream: no prefaces, a response referring to table entries
    // the capture never saw, then a new stream.
    let mut h2 = H2::new();
    h2.server.literal(
        &mut Vec::new(),
        "server",
        None,
        "envoy",
        Indexing::Incremental,
    );
    let client = h2.request(9, "GET", "/later", &[]);
    let server = [
        h2.response(9, &[(":status", "200"), ("server", "envoy")], false),
        data_frame(9, b"ok", true, None).0,
    ]
    .concat();
    write(
        "http2_frames",
        "joined_mid_stream",
        &h2_input(0, &[seg(C, &client), seg(S, &server)]),
    )?;

    // h2c upgrade: stream 1 already sent over HTTP/1.1, answered in HTTP/2.
    let mut h2 = H2::new();
    let server = [
        server_preface(),
        h2.response(1, &[(":status", "204")], true),
    ]
    .concat();
    let client = [client_preface(), frame(SETTINGS, ACK, 0, &[])].concat();
    write(
        "http2_frames",
        "h2c_upgrade",
        &h2_input(1, &[seg(S, &server), seg(C, &client)]),
    )?;
    Ok(())
}

/// A request whose HEADERS frame is exactly `frame_len` bytes, padded with
/// an `authorization` value (never indexed, as clients send tokens).
fn request_of_size(h2: &mut H2, id: u32, path: &str, frame_len: usize) -> Vec<u8> {
    for token in 0..frame_len {
        let mut encoder = h2.client.clone();
        let mut block = encode(
            &mut encoder,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "localhost:8080"),
            ],
        );
        let value = format!("Bearer {}", "t".repeat(token));
        encoder.literal(&mut block, "authorization", Some(23), &value, Indexing::Never);
        let frames = header_frames(id, &block, true, &[], None);
        if frames.len() >= frame_len {
            h2.client = encoder;
            return frames;
        }
    }
    Vec::new()
}

/// Sequential requests on one connection with heads larger than the
/// capture, and a header block past the head capture.
fn large_head_seeds() -> std::io::Result<()> {
    // Three requests one after another, each HEADERS 1,512 bytes of which
    // 512 are captured (the gap, 1,000 bytes, ends at the frame's end); the
    // later ones refer to the table entries the cut blocks inserted.
    let mut h2 = H2::new();
    let preface = client_preface();
    let server_start = server_preface();
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for (i, path) in ["/a", "/b", "/a"].iter().enumerate() {
        let id = 1 + 2 * i as u32;
        requests.push(request_of_size(&mut h2, id, path, 1512));
        let status = if *path == "/b" { "404" } else { "200" };
        responses.push(
            [
                h2.response(id, &[(":status", status), ("server", "nginx")], false),
                data_frame(id, b"alpha\n", true, None).0,
            ]
            .concat(),
        );
    }
    let mut segments = vec![seg(C, &preface), seg(S, &server_start)];
    for (request, response) in requests.iter().zip(&responses) {
        segments.push(H2Segment {
            egress: C,
            captured: request.get(..512).unwrap_or_default(),
            missing: 1000,
            same_ts: false,
        });
        segments.push(seg(S, response));
    }
    write(
        "http2_frames",
        "h2c_sequential_heads_past_capture",
        &h2_input(0, &segments),
    )?;
    // The same requests captured whole, one after another.
    let mut segments = vec![seg(C, &preface), seg(S, &server_start)];
    for (request, response) in requests.iter().zip(&responses) {
        segments.push(seg(C, request));
        segments.push(seg(S, response));
    }
    write(
        "http2_frames",
        "h2c_sequential_large_heads",
        &h2_input(0, &segments),
    )?;

    // A 20 KB head: HEADERS of 16 KiB and a CONTINUATION in one write, of
    // which the head capture holds the first 16 KiB; then the same path
    // again (a reference into the lost table state).
    let mut h2 = H2::new();
    let mut block = encode(
        &mut h2.client,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/big"),
            (":authority", "localhost:8080"),
        ],
    );
    let token = format!("Bearer {}", "j".repeat(20 * 1024));
    h2.client
        .literal(&mut block, "authorization", Some(23), &token, Indexing::Never);
    let big = header_frames(1, &block, true, &[16_384], None);
    let again = h2.request(3, "GET", "/big", &[]);
    let answer = |h2: &mut H2, id: u32| {
        [
            h2.response(id, &[(":status", "200")], false),
            data_frame(id, b"ok", true, None).0,
        ]
        .concat()
    };
    let (first, second) = (answer(&mut h2, 1), answer(&mut h2, 3));
    write(
        "http2_frames",
        "h2c_head_past_head_capture",
        &h2_input(
            0,
            &[
                seg(C, &preface),
                seg(S, &server_start),
                H2Segment {
                    egress: C,
                    captured: big.get(..16_384).unwrap_or_default(),
                    missing: 70_000,
                    same_ts: false,
                },
                seg(S, &first),
                seg(C, &again),
                seg(S, &second),
            ],
        ),
    )
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// `hpack` hostile-mode input: decode each block in turn.
fn hostile(setup: u8, ops: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0, setup];
    for (op, bytes) in ops {
        out.push(*op);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn hpack_seeds() -> std::io::Result<()> {
    // RFC 7541 C.3 / C.4 (requests, table 4096) and C.5 / C.6 (responses,
    // table 256), synced decoders.
    let sets = [
        (
            "rfc_c3_requests",
            4u8,
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
        ),
        (
            "rfc_c4_requests_huffman",
            4,
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ),
        (
            "rfc_c5_responses",
            3,
            [
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
                "4803 3330 37c1 c0bf",
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
            ],
        ),
        (
            "rfc_c6_responses_huffman",
            3,
            [
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                "4883 640e ffc1 c0bf",
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ],
        ),
    ];
    for (name, size, blocks) in &sets {
        let ops: Vec<(u8, Vec<u8>)> = blocks.iter().map(|b| (0, hex(b))).collect();
        write("hpack", name, &hostile(8 | size, &ops))?;
    }
    // Desynced decoder: a lost block, then references old and new entries;
    // a SETTINGS raise; size updates at the block start.
    write(
        "hpack",
        "desync_and_size_updates",
        &hostile(
            8 | 4,
            &[
                (0, hex("4001 6101 62 be")),
                (2, Vec::new()),
                (0, hex("8286 84be 4001 6301 64 be bf")),
                (3, 65_536u32.to_be_bytes().to_vec()),
                (0, hex("20 3fe1 1f 82 4001 6501 66")),
                (0, hex("3fe1 ff3f 7f00 0178 be")),
            ],
        ),
    )?;
    // Round-trip mode: static and dynamic indexes, literals of each kind,
    // Huffman values, size updates, several blocks.
    let mut script = vec![1u8];
    script.extend_from_slice(&[0, 1, 0, 5, 0, 3]); // :method GET, :path /, :scheme http
    script.extend_from_slice(&[2, 0, 3, b'k', b'e', b'y', 5, b'v', b'a', b'l', b'u', b'e']);
    script.extend_from_slice(&[0x82 | 0x08, 1]); // Huffman "no-cache", name :authority
    script.extend_from_slice(&[3, 1 | (15 << 2), 3, b'g', b'z', b'p']); // without indexing
    script.extend_from_slice(&[4, 0, 6, b's', b'e', b'c', b'r', b'e', b't', 2, b'p', b'w']);
    script.push(6); // end of block
    script.extend_from_slice(&[
        5, 0x00, 0x40, 1, 0, 1, 1, 7, 3, b'a', b'b', b'c', 3, b'd', b'e', b'f',
    ]);
    script.push(6);
    script.extend_from_slice(&[0x85 | (4 << 3), 2, 0, 1, 0]); // size update 4096, dynamic refs
    write("hpack", "round_trip", &script)?;
    Ok(())
}

/// Builds `grpc` target scripts op by op (see fuzz_targets/grpc.rs).
#[derive(Default)]
struct Script(Vec<u8>);

impl Script {
    /// A new call; `how` picks authority, content type, optional fields
    /// (bit 2 grpc-timeout, bit 3 traceparent, bit 4 user-agent).
    fn call(&mut self, name: &[u8], how: u8, choice: u8, frames: &[u8]) -> &mut Self {
        self.0.push(0);
        self.0.push(name.len() as u8);
        self.0.extend_from_slice(name);
        self.0.push(how);
        let fields =
            6 + usize::from(how & 4 != 0) + usize::from(how & 8 != 0) + usize::from(how & 16 != 0);
        self.0.extend(std::iter::repeat_n(choice, fields));
        self.0.extend_from_slice(frames);
        self
    }

    /// Messages: `op` 2 (client, 0x12 = and end) or 5 (server).
    fn messages(&mut self, op: u8, pick: u8, how: u8, messages: &[&[u8]]) -> &mut Self {
        self.0.extend_from_slice(&[op, pick, how]);
        for m in messages {
            self.0.push(m.len() as u8);
            self.0.extend_from_slice(m);
        }
        self
    }

    fn response_headers(&mut self, pick: u8, choice: u8, frames: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&[4, pick, choice, choice, choice]);
        self.0.extend_from_slice(frames);
        self
    }

    fn trailers(
        &mut self,
        pick: u8,
        status: u8,
        message: Option<&[u8]>,
        fields: usize,
    ) -> &mut Self {
        let how = status | if message.is_some() { 8 } else { 0 };
        self.0.extend_from_slice(&[6, pick, how]);
        if let Some(m) = message {
            self.0.push(m.len() as u8);
            self.0.extend_from_slice(m);
        }
        self.0.extend(std::iter::repeat_n(0, fields));
        self.0.push(0);
        self
    }

    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

fn grpc_seeds() -> std::io::Result<()> {
    // Unary OK: request, response headers, message, trailers, flush.
    let mut s = Script::default();
    s.0.push(0x00);
    s.call(b"SayHello", 0x0b, 0, &[0])
        .messages(0x12, 0, 0, &[b"\x0a\x05world"])
        .response_headers(0, 0, &[0])
        .messages(5, 0, 0, &[b"\x0a\x0bHello world"])
        .trailers(0, 0, None, 1)
        .op(&[15]);
    write("grpc", "unary_ok", &s.0)?;
    // Trailers-only NOT_FOUND with a message; header blocks over
    // CONTINUATION with padding; flushed in small pieces.
    let mut s = Script::default();
    s.0.push(0x01);
    s.call(b"Missing", 0x1f, 0x0c, &[0x06, 3, 9, 5])
        .messages(0x12, 0, 0x21, &[b"abc", b"defgh"])
        .op(&[3])
        .trailers(0, 2, Some(b"method not found"), 4)
        .op(&[0x78, 5, 9, 1, 0x68, 7, 7, 7])
        .op(&[15]);
    write("grpc", "trailers_only_continuation", &s.0)?;
    // Two concurrent server-streaming calls sharing the dynamic table, a
    // client cancel (RST_STREAM), noise frames and size updates; tables
    // advertised 256 / 65536.
    let mut s = Script::default();
    s.0.push(0x80 | (2 << 2) | (3 << 4));
    s.call(b"ListFeatures", 0x09, 0, &[0])
        .call(b"ListFeatures", 0x09, 0, &[1, 2])
        .op(&[0x7c, 0xac])
        .messages(0x12, 0, 0x18, &[b"\x08\x01\x10\x02"])
        .messages(0x12, 0, 0x00, &[b"\x08\x03"])
        .response_headers(0, 0, &[0])
        .response_headers(1, 4, &[0])
        .messages(5, 0, 0x01, &[b"feature-1", b"feature-2"])
        .messages(5, 1, 0x02, &[b"compressed"])
        .op(&[0x0b, 0x3b, 0x9b])
        .op(&[0x97, 1])
        .trailers(0, 0, None, 1)
        .op(&[0x58, 3, 40, 0x48, 20, 7]);
    write("grpc", "streaming_cancel_tables", &s.0)?;
    // Capture gaps allowed: a request truncated mid-frame, then more calls.
    let mut s = Script::default();
    s.0.push(0x02);
    s.call(b"Upload", 0x0b, 0, &[0])
        .messages(2, 0, 0x19, &[&[7u8; 100], &[8u8; 60]])
        .op(&[0x1a, 30, 0, 40])
        .messages(0x12, 0, 0, &[b"tail"])
        .response_headers(0, 0, &[0])
        .trailers(0, 1, Some(b"cancelled"), 2)
        .call(b"Again", 0x0b, 0, &[0])
        .op(&[15]);
    write("grpc", "gaps", &s.0)?;
    Ok(())
}

fn main() -> std::io::Result<()> {
    http2_seeds()?;
    large_head_seeds()?;
    hpack_seeds()?;
    grpc_seeds()
}
