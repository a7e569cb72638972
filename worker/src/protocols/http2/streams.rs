//! Streams of an HTTP/2 connection: header blocks decoded and applied,
//! DATA counted, streams ended, reset, refused or evicted, then emitted.

use zerotrace_shared::event::Direction;

use super::connection::Http2Connection;
use super::exchange::Http2Exchange;
use super::frames::*;
use super::grpc::ContentType;
use super::stream_state::{idx, other, Block, Stream};
use super::{MAX_CLOSED, MAX_HEADER_BLOCK, MAX_STREAMS, MAX_VALUE};

impl Http2Connection {
    pub(super) fn on_data(
        &mut self,
        direction: Direction,
        p: &Payload,
        ts: u64,
        out: &mut Vec<Http2Exchange>,
    ) {
        let frame = p.frame;
        let padding = match (frame.flags & PADDED != 0, p.buf.first()) {
            (false, _) => 0,
            (true, Some(&pad)) => 1 + u64::from(pad),
            (true, None) => 1,
        };
        let body = u64::from(frame.length).saturating_sub(padding);
        let Some(stream) = self.stream(direction, frame.stream, ts, out) else {
            return;
        };
        let d = idx(direction);
        if let Some(n) = stream.data.get_mut(d) {
            *n = n.saturating_add(body);
        }
        stream.ex.end_ts_ns = ts;
        if frame.flags & END_STREAM != 0 {
            self.end_stream(direction, frame.stream, out);
        }
    }

    pub(super) fn on_headers(
        &mut self,
        direction: Direction,
        p: &Payload,
        ts: u64,
        out: &mut Vec<Http2Exchange>,
    ) {
        let frame = p.frame;
        let promise = frame.kind == PUSH_PROMISE;
        let whole = !p.gap && p.buf.len() == frame.length as usize;
        let (fragment, cut) = match block_fragment(&frame, &p.buf, whole) {
            Some(f) => (f.to_vec(), !whole),
            None => (Vec::new(), true),
        };
        if !promise {
            if let Some(stream) = self.stream(direction, frame.stream, ts, out) {
                stream.ex.end_ts_ns = ts;
                stream.headers_seen = true;
            }
        }
        let block = Block {
            stream: frame.stream,
            end_stream: !promise && frame.flags & END_STREAM != 0,
            promise,
            fragment,
            cut,
        };
        self.dir_mut(direction).block = Some(block);
        if frame.flags & END_HEADERS != 0 {
            self.end_block(direction, out);
        }
    }

    pub(super) fn on_continuation(
        &mut self,
        direction: Direction,
        p: &Payload,
        ts: u64,
        out: &mut Vec<Http2Exchange>,
    ) {
        let frame = p.frame;
        let dir = self.dir_mut(direction);
        let Some(block) = dir.block.as_mut().filter(|b| b.stream == frame.stream) else {
            // Its HEADERS was not seen: whatever it held is lost.
            self.drop_block(direction, out);
            return;
        };
        if !block.cut {
            // Only the block's contiguous start is kept.
            let room = MAX_HEADER_BLOCK.saturating_sub(block.fragment.len());
            let take = p.buf.len().min(room);
            block
                .fragment
                .extend_from_slice(p.buf.get(..take).unwrap_or_default());
            block.cut = p.gap || take < frame.length as usize;
        }
        if let Some(stream) = self.streams.get_mut(&frame.stream) {
            stream.ex.end_ts_ns = ts;
        }
        if frame.flags & END_HEADERS != 0 {
            self.end_block(direction, out);
        }
    }

    /// The block in progress cannot be decoded. Its END_STREAM flag (from
    /// the HEADERS frame header) still counts.
    pub(super) fn drop_block(&mut self, direction: Direction, out: &mut Vec<Http2Exchange>) {
        let dir = self.dir_mut(direction);
        let block = dir.block.take();
        dir.hpack.desync();
        self.stats.blocks_lost += 1;
        let Some(block) = block else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&block.stream) {
            stream.ex.partial = true;
        }
        if block.end_stream {
            self.end_stream(direction, block.stream, out);
        }
    }

    fn end_block(&mut self, direction: Direction, out: &mut Vec<Http2Exchange>) {
        let dir = self.dir_mut(direction);
        let Some(block) = dir.block.take() else {
            return;
        };
        self.finish_block(direction, block, out);
    }

    /// Decodes a header block (its captured start only, when cut) and
    /// applies it to its stream.
    pub(super) fn finish_block(
        &mut self,
        direction: Direction,
        block: Block,
        out: &mut Vec<Http2Exchange>,
    ) {
        let mut fields = Vec::new();
        let mut partial = block.cut;
        let dir = self.dir_mut(direction);
        let decoded = if block.cut {
            // Fields decoded whole before the cut are exact; the lost rest
            // may have changed the table, so the decoder desyncs.
            let decoded = dir.hpack.decode_prefix(&block.fragment, &mut fields);
            self.stats.headers_truncated += 1;
            Some(decoded)
        } else {
            match dir.hpack.decode(&block.fragment, &mut fields) {
                Ok(decoded) => Some(decoded),
                Err(_) => {
                    partial = true;
                    self.stats.blocks_lost += 1;
                    None
                }
            }
        };
        if let Some(decoded) = decoded {
            if decoded.unknown_fields > 0 {
                partial = true;
                self.stats.unknown_fields += decoded.unknown_fields as u64;
                self.stats.hpack_lost_blocks += 1;
            }
        }
        if block.promise {
            return;
        }
        let conn_client = self.client;
        let Some(stream) = self.streams.get_mut(&block.stream) else {
            return;
        };
        stream.ex.partial |= partial;
        let role = apply_fields(stream, direction, conn_client, &fields);
        if let (Some(client), None) = (role, conn_client) {
            self.client = Some(client);
        }
        if block.end_stream {
            self.end_stream(direction, block.stream, out);
        }
    }

    fn end_stream(&mut self, direction: Direction, id: u32, out: &mut Vec<Http2Exchange>) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if let Some(e) = stream.ended.get_mut(idx(direction)) {
            *e = true;
        }
        if stream.ended == [true, true] {
            if let Some(stream) = self.streams.remove(&id) {
                self.emit(stream, out);
            }
        }
    }

    pub(super) fn on_goaway(
        &mut self,
        direction: Direction,
        last: u32,
        ts: u64,
        out: &mut Vec<Http2Exchange>,
    ) {
        // Streams the receiver of the GOAWAY opened past `last` were not
        // processed. Servers open even ids, clients odd ones.
        let sender_is_client = self.client == Some(direction);
        let refused_parity = u32::from(sender_is_client);
        let mut ids: Vec<u32> = self
            .streams
            .keys()
            .copied()
            .filter(|&id| id > last && id % 2 != refused_parity)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(mut stream) = self.streams.remove(&id) {
                stream.ex.reset = true;
                stream.ex.reset_code = Some(REFUSED_STREAM_CODE);
                stream.ex.end_ts_ns = ts;
                self.emit(stream, out);
            }
        }
    }

    /// The stream `id`, created if new. `None` for stream 0 and for streams
    /// closed recently (late frames).
    pub(super) fn stream(
        &mut self,
        direction: Direction,
        id: u32,
        ts: u64,
        out: &mut Vec<Http2Exchange>,
    ) -> Option<&mut Stream> {
        if id == 0 || (!self.streams.contains_key(&id) && self.closed.contains(&id)) {
            return None;
        }
        if !self.streams.contains_key(&id) && self.streams.len() >= MAX_STREAMS {
            self.evict_oldest(out);
        }
        Some(self.streams.entry(id).or_insert_with(|| Stream {
            ex: Http2Exchange {
                stream_id: id,
                start_ts_ns: ts,
                end_ts_ns: ts,
                ..Http2Exchange::default()
            },
            ended: [false, false],
            data: [0, 0],
            opener: direction,
            client: None,
            request_seen: false,
            headers_seen: false,
            response_content_type: ContentType::Unknown,
        }))
    }

    fn evict_oldest(&mut self, out: &mut Vec<Http2Exchange>) {
        let oldest = self
            .streams
            .values()
            .min_by_key(|s| (s.ex.start_ts_ns, s.ex.stream_id))
            .map(|s| s.ex.stream_id);
        if let Some(mut stream) = oldest.and_then(|id| self.streams.remove(&id)) {
            self.stats.streams_evicted += 1;
            stream.ex.partial = true;
            self.emit(stream, out);
        }
    }

    pub(super) fn emit(&mut self, stream: Stream, out: &mut Vec<Http2Exchange>) {
        let Stream {
            mut ex,
            data,
            opener,
            client,
            request_seen,
            headers_seen,
            response_content_type,
            ..
        } = stream;
        // Who sent requests: this stream's pseudo-headers, else the
        // connection's, else whoever opened the stream.
        let client = client.or(self.client).unwrap_or(opener);
        let c = idx(client);
        ex.request_body_bytes = data.get(c).copied().unwrap_or(0);
        ex.response_body_bytes = data.get(1 - c).copied().unwrap_or(0);
        ex.content_type = ex.content_type.or(response_content_type);
        ex.partial |= !request_seen || (ex.status.is_none() && !ex.reset);
        if self.closed.len() >= MAX_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(ex.stream_id);
        if !headers_seen {
            // Nothing says what it was (joined mid-stream, or its header
            // blocks were in a gap that also took the frame boundaries).
            self.stats.streams_without_headers += 1;
            return;
        }
        if ex.method.is_none() || ex.path.is_none() {
            self.stats.streams_unnamed += 1;
        }
        out.push(ex);
    }
}
/// Applies a decoded header block to its stream; returns the client
/// direction when the block reveals it.
fn apply_fields(
    stream: &mut Stream,
    direction: Direction,
    conn_client: Option<Direction>,
    fields: &[(String, String)],
) -> Option<Direction> {
    let request = fields.iter().any(|(n, _)| n == ":method");
    let response = fields.iter().any(|(n, _)| n == ":status");
    let role = match (request, response) {
        (true, false) => Some(direction),
        (false, true) => Some(other(direction)),
        _ => None,
    };
    if stream.client.is_none() {
        stream.client = role;
    }
    let is_request = match stream.client.or(conn_client) {
        Some(client) => client == direction,
        None => request,
    };
    let ex = &mut stream.ex;
    for (name, value) in fields {
        let kept = || truncated(value);
        match name.as_str() {
            ":method" if is_request => {
                ex.method = Some(kept());
                stream.request_seen = true;
            }
            ":path" if is_request => ex.path = Some(kept()),
            ":authority" if is_request => ex.authority = Some(kept()),
            ":scheme" if is_request => ex.scheme = Some(kept()),
            "traceparent" if is_request => ex.traceparent = Some(kept()),
            "user-agent" if is_request => ex.user_agent = Some(kept()),
            "content-type" if is_request => ex.content_type = ContentType::of(value.as_bytes()),
            "grpc-timeout" if is_request => ex.grpc_timeout = Some(kept()),
            "content-type" => stream.response_content_type = ContentType::of(value.as_bytes()),
            ":status" if !is_request => {
                if let Ok(status) = value.parse::<u16>() {
                    let interim = (100..200).contains(&status);
                    if !interim || ex.status.is_none_or(|s| (100..200).contains(&s)) {
                        ex.status = Some(status);
                    }
                }
            }
            "grpc-status" if !is_request => ex.grpc_status = value.parse().ok(),
            "grpc-message" if !is_request => ex.grpc_message = Some(kept()),
            _ => {}
        }
    }
    role
}

fn truncated(value: &str) -> String {
    let mut end = value.len().min(MAX_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_owned()
}
