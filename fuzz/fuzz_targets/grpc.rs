//! gRPC over h2c, as the worker sees it. The worker has no gRPC framing
//! parser of its own: gRPC calls are HTTP/2 streams (content-type
//! application/grpc, length-prefixed messages in DATA, grpc-status in
//! trailers or in a trailers-only response), so this target drives
//! `Http2Connection` with conversations built from the input: concurrent
//! calls, messages split over DATA frames, header blocks over CONTINUATION,
//! padding, HPACK dynamic table use and size updates, RST_STREAM, and the
//! bytes of both directions fed in input-chosen pieces.
//!
//! Without capture gaps every call must come out exactly as sent (fields,
//! body byte counts, reset, partial). With gaps (leading byte, bit 1) only
//! the decoder's invariants are checked: resyncing on bytes that look like
//! a frame header can legitimately misread message payloads.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use zerotrace_fuzz::{
    data_frame, frame, grpc_message, header_frames, settings, HpackEncoder, Input, ACK, PING,
    PREFACE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};
use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::http2::grpc::ContentType;
use zerotrace_worker::protocols::http2::{Http2Connection, Http2Exchange};

const MAX_CALLS: usize = 64;
const MAX_OPEN: usize = 8;
const TABLE_SIZES: [u32; 4] = [4096, 0, 256, 65_536];
const STATUSES: [&str; 6] = ["0", "1", "5", "13", "14", "16"];

/// One side of the connection: its encoder and what it wrote but the
/// decoder has not been fed yet.
struct Side {
    direction: Direction,
    encoder: HpackEncoder,
    /// SETTINGS_HEADER_TABLE_SIZE the peer advertised.
    peer_table_size: u32,
    size_update: Option<usize>,
    pending: Vec<u8>,
}

#[derive(Default)]
struct Call {
    expected: Http2Exchange,
    request_ended: bool,
    response_headers: bool,
    response_ended: bool,
    reset: bool,
}

struct Conversation<'a> {
    input: Input<'a>,
    conn: Http2Connection,
    client: Side,
    server: Side,
    calls: BTreeMap<u32, Call>,
    next_id: u32,
    out: Vec<Http2Exchange>,
    ts: u64,
    gaps_allowed: bool,
    /// A gap was fed.
    lossy: bool,
}

fn other(direction: Direction) -> Direction {
    match direction {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

impl Conversation<'_> {
    fn side(&mut self, client: bool) -> &mut Side {
        if client {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// Encodes `fields` for `client`'s side, with a size update first if
    /// one is due.
    fn block(&mut self, client: bool, fields: &[(&str, String)]) -> Vec<u8> {
        let choices: Vec<u8> = fields.iter().map(|_| self.input.byte()).collect();
        let side = self.side(client);
        let mut block = Vec::new();
        if let Some(size) = side.size_update.take() {
            side.encoder.size_update(&mut block, size);
        }
        for ((name, value), choice) in fields.iter().zip(choices) {
            side.encoder
                .field_by_choice(&mut block, name, value, choice);
        }
        block
    }

    /// Cuts (for CONTINUATION) and padding of a header block, from input.
    fn header_frames(&mut self, id: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
        let how = self.input.byte();
        let cuts: Vec<usize> = (0..how & 3)
            .map(|_| usize::from(self.input.byte()) % block.len().max(1))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let pad = (how & 4 != 0).then(|| self.input.byte() & 0x1f);
        header_frames(id, block, end_stream, &cuts, pad)
    }

    /// A call picked by the input among those the filter accepts.
    fn pick(&mut self, filter: impl Fn(&Call) -> bool) -> Option<u32> {
        let ids: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.reset && filter(c))
            .map(|(&id, _)| id)
            .collect();
        let i = usize::from(self.input.byte()) % ids.len().max(1);
        ids.get(i).copied()
    }

    fn open_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| !c.reset && !(c.request_ended && c.response_ended))
            .count()
    }

    fn new_call(&mut self) {
        if self.calls.len() >= MAX_CALLS || self.open_calls() >= MAX_OPEN {
            return;
        }
        let id = self.next_id;
        self.next_id += 2;
        let name: String = self
            .input
            .bytes()
            .iter()
            .map(|&b| char::from(b'a' + b % 26))
            .collect();
        let how = self.input.byte();
        let path = format!("/helloworld.Greeter/{name}");
        let authority = if how & 1 != 0 {
            "localhost:50051"
        } else {
            "greeter.internal"
        };
        let content_type = if how & 2 != 0 {
            "application/grpc"
        } else {
            "application/grpc+proto"
        };
        let traceparent = format!(
            "00-{:032x}-{:016x}-01",
            u128::from(id) + 1,
            u64::from(how) + 1
        );
        let mut fields = vec![
            (":method", "POST".to_owned()),
            (":scheme", "http".to_owned()),
            (":path", path.clone()),
            (":authority", authority.to_owned()),
            ("content-type", content_type.to_owned()),
            ("te", "trailers".to_owned()),
        ];
        if how & 4 != 0 {
            fields.push(("grpc-timeout", "100m".to_owned()));
        }
        if how & 8 != 0 {
            fields.push(("traceparent", traceparent.clone()));
        }
        if how & 16 != 0 {
            fields.push(("user-agent", "grpc-go/1.66.0".to_owned()));
        }
        // A call without request messages ends in its HEADERS.
        let end_stream = how & 0x60 == 0x60;
        let block = self.block(true, &fields);
        let bytes = self.header_frames(id, &block, end_stream);
        self.client.pending.extend(bytes);
        self.calls.insert(
            id,
            Call {
                expected: Http2Exchange {
                    stream_id: id,
                    method: Some("POST".into()),
                    path: Some(path),
                    authority: Some(authority.into()),
                    scheme: Some("http".into()),
                    content_type: ContentType::of(content_type.as_bytes()),
                    traceparent: (how & 8 != 0).then_some(traceparent),
                    ..Http2Exchange::default()
                },
                request_ended: end_stream,
                ..Call::default()
            },
        );
    }

    /// Messages of one side over one or more DATA frames.
    fn messages(&mut self, client: bool, id: u32, end_stream: bool) {
        let how = self.input.byte();
        let mut body = Vec::new();
        for _ in 0..=how & 1 {
            let message = self.input.bytes();
            body.extend(grpc_message(how & 2 != 0, message));
        }
        if how & 4 != 0 {
            body.clear();
        }
        let pieces = usize::from(how >> 3 & 3) + 1;
        let step = body.len().div_ceil(pieces).max(1);
        let chunks: Vec<&[u8]> = if body.is_empty() {
            vec![&[]]
        } else {
            body.chunks(step).collect()
        };
        let last = chunks.len() - 1;
        let mut bytes = Vec::new();
        let mut counted = 0;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let pad = (how & 0x20 != 0).then(|| self.input.byte() & 0x0f);
            let (f, n) = data_frame(id, chunk, end_stream && i == last, pad);
            bytes.extend(f);
            counted += n;
        }
        self.side(client).pending.extend(bytes);
        if let Some(call) = self.calls.get_mut(&id) {
            let ex = &mut call.expected;
            if client {
                ex.request_body_bytes += counted;
                call.request_ended |= end_stream;
            } else {
                ex.response_body_bytes += counted;
                call.response_ended |= end_stream;
            }
        }
    }

    fn response_headers(&mut self, id: u32) {
        let fields = [
            (":status", "200".to_owned()),
            ("content-type", "application/grpc".to_owned()),
            ("grpc-encoding", "identity".to_owned()),
        ];
        let block = self.block(false, &fields);
        let bytes = self.header_frames(id, &block, false);
        self.server.pending.extend(bytes);
        if let Some(call) = self.calls.get_mut(&id) {
            call.response_headers = true;
            call.expected.status = Some(200);
        }
    }

    /// Trailers, or a trailers-only response when no headers were sent.
    fn trailers(&mut self, id: u32) {
        let Some(headers_sent) = self.calls.get(&id).map(|c| c.response_headers) else {
            return;
        };
        let how = self.input.byte();
        let status = STATUSES.get(usize::from(how % 6)).copied().unwrap_or("0");
        let mut fields = Vec::new();
        if !headers_sent {
            fields.push((":status", "200".to_owned()));
            fields.push(("content-type", "application/grpc".to_owned()));
        }
        fields.push(("grpc-status", status.to_owned()));
        let message = (how & 8 != 0).then(|| {
            let text: String = self
                .input
                .bytes()
                .iter()
                .map(|&b| char::from(b' ' + b % 95))
                .collect();
            text
        });
        if let Some(message) = &message {
            fields.push(("grpc-message", message.clone()));
        }
        let block = self.block(false, &fields);
        let bytes = self.header_frames(id, &block, true);
        self.server.pending.extend(bytes);
        if let Some(call) = self.calls.get_mut(&id) {
            call.response_ended = true;
            call.expected.status = Some(200);
            call.expected.grpc_status = status.parse().ok();
            call.expected.grpc_message = message;
        }
    }

    /// Everything written so far reaches the decoder, then a RST_STREAM.
    fn reset(&mut self, id: u32, by_client: bool) {
        self.flush_all();
        let rst = frame(RST_STREAM, 0, id, &8u32.to_be_bytes());
        self.side(by_client).pending.extend(rst);
        self.flush(by_client, &[]);
        if let Some(call) = self.calls.get_mut(&id) {
            call.reset = true;
            call.expected.reset = true;
        }
    }

    fn feed(&mut self, direction: Direction, captured: &[u8], missing: u64) {
        self.ts += 1;
        self.conn
            .feed(direction, captured, missing, self.ts, &mut self.out);
    }

    /// Feeds what `client`'s side wrote, cut into pieces of the given sizes
    /// (then the rest in one piece).
    fn flush(&mut self, client: bool, sizes: &[u8]) {
        let side = self.side(client);
        let pending = std::mem::take(&mut side.pending);
        let direction = side.direction;
        let mut rest = pending.as_slice();
        for &size in sizes {
            let (piece, tail) = rest.split_at(usize::from(size).min(rest.len()));
            if !piece.is_empty() {
                self.feed(direction, piece, 0);
            }
            rest = tail;
        }
        if !rest.is_empty() {
            self.feed(direction, rest, 0);
        }
    }

    fn flush_all(&mut self) {
        self.flush(true, &[]);
        self.flush(false, &[]);
    }

    /// Feeds the first bytes of what `client`'s side wrote, then declares
    /// the next ones uncaptured (a truncated or lost write).
    fn gap(&mut self, client: bool) {
        let keep = self.input.byte();
        let lose = u16::from_be_bytes([self.input.byte(), self.input.byte()]);
        let side = self.side(client);
        let direction = side.direction;
        let pending = std::mem::take(&mut side.pending);
        let keep = usize::from(keep).min(pending.len());
        let lose = usize::from(lose).min(pending.len() - keep).max(1);
        let captured = pending.get(..keep).unwrap_or_default().to_vec();
        let after = pending.get(keep + lose..).unwrap_or_default().to_vec();
        self.side(client).pending = after;
        self.lossy = true;
        self.feed(direction, &captured, lose as u64);
    }

    fn step(&mut self) {
        let op = self.input.byte();
        match op & 15 {
            0 | 1 => self.new_call(),
            2 | 3 => {
                if let Some(id) = self.pick(|c| !c.request_ended) {
                    let end = op & 0x10 != 0;
                    self.messages(true, id, end);
                }
            }
            4 => {
                if let Some(id) = self.pick(|c| !c.response_headers && !c.response_ended) {
                    self.response_headers(id);
                }
            }
            5 => {
                if let Some(id) = self.pick(|c| c.response_headers && !c.response_ended) {
                    self.messages(false, id, false);
                }
            }
            6 => {
                if let Some(id) = self.pick(|c| !c.response_ended) {
                    self.trailers(id);
                }
            }
            7 => {
                if let Some(id) = self.pick(|c| !(c.request_ended && c.response_ended)) {
                    self.reset(id, op & 0x10 != 0);
                }
            }
            8 | 9 => {
                let sizes: Vec<u8> = (0..op >> 5).map(|_| self.input.byte()).collect();
                self.flush(op & 0x10 != 0, &sizes);
            }
            10 if self.gaps_allowed => self.gap(op & 0x10 != 0),
            11 => {
                let client = op & 0x10 != 0;
                let noise = match op >> 5 {
                    0 => frame(PING, 0, 0, &[0; 8]),
                    1 => frame(PING, ACK, 0, &[1; 8]),
                    2 => frame(WINDOW_UPDATE, 0, 0, &65_535u32.to_be_bytes()),
                    3 => frame(SETTINGS, ACK, 0, &[]),
                    4 => frame(0xfa, 0x3, 0, b"extension"),
                    _ => frame(
                        WINDOW_UPDATE,
                        0,
                        self.next_id.saturating_sub(2).max(1),
                        &1u32.to_be_bytes(),
                    ),
                };
                self.side(client).pending.extend(noise);
            }
            12 => {
                let client = op & 0x10 != 0;
                let side = self.side(client);
                let limit = side.peer_table_size as usize;
                side.size_update = Some(usize::from(op >> 5) * limit / 7);
            }
            _ => self.flush_all(),
        }
    }
}

fn direction_of(egress: bool) -> Direction {
    if egress {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let client_direction = direction_of(options & 1 != 0);
    let client_table = TABLE_SIZES
        .get(usize::from(options >> 2 & 3))
        .copied()
        .unwrap_or(4096);
    let server_table = TABLE_SIZES
        .get(usize::from(options >> 4 & 3))
        .copied()
        .unwrap_or(4096);
    let side = |direction, peer_table_size| Side {
        direction,
        encoder: HpackEncoder::new(4096),
        peer_table_size,
        size_update: None,
        pending: Vec::new(),
    };
    let mut conv = Conversation {
        input: Input(rest),
        conn: Http2Connection::new(),
        client: side(client_direction, server_table),
        server: side(other(client_direction), client_table),
        calls: BTreeMap::new(),
        next_id: 1,
        out: Vec::new(),
        ts: 0,
        gaps_allowed: options & 2 != 0,
        lossy: false,
    };
    // Prefaces: the client's magic and SETTINGS, the server's SETTINGS.
    conv.client.pending.extend_from_slice(PREFACE);
    conv.client
        .pending
        .extend(settings(&[(1, client_table), (3, 100)]));
    conv.server
        .pending
        .extend(settings(&[(1, server_table), (4, 1 << 20)]));
    while !conv.input.is_empty() {
        conv.step();
    }
    if options & 0x80 != 0 {
        conv.flush(false, &[]);
    }
    conv.flush_all();
    conv.ts += 1;
    let end = conv.ts;
    conv.conn.finish(end, &mut conv.out);
    assert_eq!(conv.conn.open_streams(), 0);

    let mut seen = BTreeMap::new();
    for ex in &conv.out {
        assert!(
            ex.start_ts_ns <= ex.end_ts_ns && ex.end_ts_ns <= end,
            "{ex:?}"
        );
        if conv.lossy {
            continue;
        }
        assert!(
            seen.insert(ex.stream_id, ex).is_none(),
            "stream {} emitted twice",
            ex.stream_id
        );
    }
    if conv.lossy {
        return;
    }
    assert_eq!(conv.conn.client_direction(), Some(client_direction));
    assert!(conv.conn.is_hpack_synced(Direction::Ingress));
    assert!(conv.conn.is_hpack_synced(Direction::Egress));
    assert_eq!(seen.len(), conv.calls.len(), "{:?}", conv.out);
    for (id, call) in &conv.calls {
        let Some(&got) = seen.get(id) else {
            panic!("call {id} not emitted");
        };
        let complete = call.reset || (call.request_ended && call.response_ended);
        let want = &call.expected;
        // Every field this conversation determines; the rest (timestamps,
        // fields added later) as reported.
        let expected = Http2Exchange {
            stream_id: *id,
            method: want.method.clone(),
            path: want.path.clone(),
            authority: want.authority.clone(),
            scheme: want.scheme.clone(),
            status: want.status,
            grpc_status: want.grpc_status,
            grpc_message: want.grpc_message.clone(),
            content_type: want.content_type,
            traceparent: want.traceparent.clone(),
            request_body_bytes: want.request_body_bytes,
            response_body_bytes: want.response_body_bytes,
            reset: want.reset,
            partial: !complete,
            ..got.clone()
        };
        assert_eq!(got, &expected);
    }
});
