//! [`Http2Connection`]: both directions' framing over captured segments and
//! gaps, frame by frame.

use std::collections::{HashMap, VecDeque};

use zerotrace_shared::event::Direction;

use super::exchange::Http2Exchange;
use super::frames::*;
use super::grpc::ContentType;
use super::stream_state::{idx, other, Block, Stream};
use super::Http2Stats;
use super::{DEFAULT_TABLE_SIZE, PREFACE};
use crate::protocols::hpack::HpackDecoder;

/// Both directions of one HTTP/2 connection.
#[derive(Debug)]
pub struct Http2Connection {
    pub(super) dirs: [DirState; 2],
    pub(super) client: Option<Direction>,
    pub(super) streams: HashMap<u32, Stream>,
    pub(super) closed: VecDeque<u32>,
    pub(super) stats: Http2Stats,
}

#[derive(Debug)]
pub(super) struct DirState {
    pub(super) framing: Framing,
    pub(super) hpack: HpackDecoder,
    /// A header block waiting for CONTINUATION frames.
    pub(super) block: Option<Block>,
    /// The next frame header is the first of this direction.
    pub(super) first_frame: bool,
}

enum Step {
    Took(usize),
    /// The rest of the segment is not followed.
    DropRest,
}

impl Default for Http2Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl DirState {
    pub(super) fn new() -> Self {
        Self {
            framing: Framing::Start,
            hpack: HpackDecoder::new_desynced(DEFAULT_TABLE_SIZE),
            block: None,
            first_frame: false,
        }
    }
}
impl Http2Connection {
    pub fn new() -> Self {
        Self {
            dirs: [DirState::new(), DirState::new()],
            client: None,
            streams: HashMap::new(),
            closed: VecDeque::new(),
            stats: Http2Stats::default(),
        }
    }

    /// The direction carrying requests, once known.
    pub fn client_direction(&self) -> Option<Direction> {
        self.client
    }

    /// Whether header blocks sent in `direction` are decoded with a complete
    /// dynamic table.
    pub fn is_hpack_synced(&self, direction: Direction) -> bool {
        self.dir(direction).hpack.is_synced()
    }

    pub fn stats(&self) -> Http2Stats {
        self.stats
    }

    /// The counts since the last call (for a tracker that sums them over
    /// connections).
    pub fn take_stats(&mut self) -> Http2Stats {
        std::mem::take(&mut self.stats)
    }

    /// Streams currently tracked.
    /// When the oldest open stream began.
    pub fn oldest_open_stream_ns(&self) -> Option<u64> {
        self.streams.values().map(|s| s.ex.start_ts_ns).min()
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// h2c via `Upgrade` (RFC 7540 §3.2): the HTTP/1.1 request that asked
    /// for it becomes stream 1, already half-closed by the client, and is
    /// answered over HTTP/2. Call before feeding any HTTP/2 bytes; `request`
    /// carries what the HTTP/1 decoder knew (its `stream_id` is ignored).
    pub fn upgraded_request(&mut self, client: Direction, request: Http2Exchange) {
        self.client = Some(client);
        for dir in &mut self.dirs {
            if matches!(dir.framing, Framing::Start) {
                dir.hpack = HpackDecoder::new(DEFAULT_TABLE_SIZE);
            }
        }
        let mut ended = [false, false];
        if let Some(e) = ended.get_mut(idx(client)) {
            *e = true;
        }
        let stream = Stream {
            ex: Http2Exchange {
                stream_id: 1,
                ..request
            },
            ended,
            data: [0, 0],
            opener: client,
            client: Some(client),
            request_seen: true,
            headers_seen: true,
            response_content_type: ContentType::Unknown,
        };
        self.streams.insert(1, stream);
    }

    /// Feeds one segment of `direction` observed at `ts_ns`. Completed
    /// streams are pushed to `out`.
    pub fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        missing: u64,
        ts_ns: u64,
        out: &mut Vec<Http2Exchange>,
    ) {
        self.segment_start(direction, captured, out);
        let mut rest = captured;
        while !rest.is_empty() {
            match self.step(direction, rest, ts_ns, out) {
                Step::Took(n) => rest = rest.get(n..).unwrap_or_default(),
                Step::DropRest => break,
            }
        }
        if missing > 0 {
            self.on_gap(direction, missing, ts_ns, out);
        }
    }

    /// Connection closed: every open stream is emitted as partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<Http2Exchange>) {
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(mut stream) = self.streams.remove(&id) {
                stream.ex.partial = true;
                stream.ex.end_ts_ns = stream.ex.end_ts_ns.max(ts_ns);
                self.emit(stream, out);
            }
        }
    }

    pub(super) fn dir(&self, direction: Direction) -> &DirState {
        let [a, b] = &self.dirs;
        match direction {
            Direction::Ingress => a,
            Direction::Egress => b,
        }
    }

    pub(super) fn dir_mut(&mut self, direction: Direction) -> &mut DirState {
        let [a, b] = &mut self.dirs;
        match direction {
            Direction::Ingress => a,
            Direction::Egress => b,
        }
    }

    /// Decides how a direction starts, and resyncs a lost one on a segment
    /// that starts at a plausible frame boundary.
    fn segment_start(
        &mut self,
        direction: Direction,
        captured: &[u8],
        out: &mut Vec<Http2Exchange>,
    ) {
        let dir = self.dir_mut(direction);
        match dir.framing {
            Framing::Start => {
                let n = captured.len().min(PREFACE.len());
                if n > 0 && captured.get(..n) == PREFACE.get(..n) {
                    dir.framing = Framing::Preface(0);
                } else if (captured.len() < 9 && !captured.is_empty())
                    || resync_point(captured)
                    || server_preface(captured)
                {
                    // Too short to judge, a plausible frame or the server
                    // preface: follow frames and let the first header decide
                    // whether this is the server preface.
                    dir.first_frame = true;
                    dir.framing = header_state();
                } else if !captured.is_empty() {
                    self.lose_framing(direction, out);
                }
            }
            Framing::Lost if resync_point(captured) => dir.framing = header_state(),
            _ => {}
        }
    }

    /// The first frame header of a direction that did not start with the
    /// client preface: a SETTINGS frame there is the server preface, so the
    /// connection was seen from its start.
    fn first_frame(&mut self, direction: Direction, frame: &FrameHeader) {
        let dir = self.dir_mut(direction);
        if std::mem::take(&mut dir.first_frame)
            && frame.kind == SETTINGS
            && frame.flags & ACK == 0
            && dir.block.is_none()
        {
            dir.hpack = HpackDecoder::new(DEFAULT_TABLE_SIZE);
        }
    }

    fn step(
        &mut self,
        direction: Direction,
        rest: &[u8],
        ts: u64,
        out: &mut Vec<Http2Exchange>,
    ) -> Step {
        let dir = self.dir_mut(direction);
        match &mut dir.framing {
            Framing::Start | Framing::Lost => Step::DropRest,
            Framing::Preface(matched) => {
                let want = PREFACE.get(*matched..).unwrap_or_default();
                let n = want.len().min(rest.len());
                if rest.get(..n) != want.get(..n) {
                    self.lose_framing(direction, out);
                    return Step::DropRest;
                }
                *matched += n;
                if *matched == PREFACE.len() {
                    dir.framing = header_state();
                    dir.hpack = HpackDecoder::new(DEFAULT_TABLE_SIZE);
                    self.client = Some(direction);
                    // Seen from the connection start: so is the other side.
                    let peer = self.dir_mut(other(direction));
                    if matches!(peer.framing, Framing::Start) {
                        peer.hpack = HpackDecoder::new(DEFAULT_TABLE_SIZE);
                    }
                }
                Step::Took(n)
            }
            Framing::Header { buf, len } => {
                let n = (9 - *len).min(rest.len());
                for (slot, &b) in buf.iter_mut().skip(*len).zip(rest) {
                    *slot = b;
                }
                *len += n;
                if *len < 9 {
                    return Step::Took(n);
                }
                let frame = parse_header(buf);
                if !plausible(&frame) {
                    self.lose_framing(direction, out);
                    return Step::DropRest;
                }
                self.first_frame(direction, &frame);
                self.dir_mut(direction).framing = Framing::Payload(Payload {
                    frame,
                    left: frame.length,
                    buf: Vec::new(),
                    keep: keep_len(&frame),
                    gap: false,
                });
                if frame.length == 0 {
                    self.end_frame(direction, ts, out);
                }
                Step::Took(n)
            }
            Framing::Payload(p) => {
                let n = rest.len().min(p.left as usize);
                let room = p.keep.saturating_sub(p.buf.len()).min(n);
                p.buf
                    .extend_from_slice(rest.get(..room).unwrap_or_default());
                p.left -= n as u32;
                if p.left == 0 {
                    self.end_frame(direction, ts, out);
                }
                Step::Took(n)
            }
        }
    }

    fn on_gap(&mut self, direction: Direction, gap: u64, ts: u64, out: &mut Vec<Http2Exchange>) {
        let dir = self.dir_mut(direction);
        match &mut dir.framing {
            Framing::Payload(p) if gap <= u64::from(p.left) => {
                // What is kept of the payload stays its contiguous start.
                p.gap = true;
                p.keep = p.buf.len();
                p.left -= gap as u32;
                if p.left == 0 {
                    self.end_frame(direction, ts, out);
                }
            }
            Framing::Payload(p) => {
                // The frame ends inside the gap, and the next header with it.
                p.gap = true;
                p.keep = p.buf.len();
                p.left = 0;
                self.end_frame(direction, ts, out);
                self.lose_framing(direction, out);
            }
            Framing::Lost => {}
            _ => self.lose_framing(direction, out),
        }
    }

    /// Frame boundaries are gone in `direction`. A header block waiting for
    /// its CONTINUATION frames is decoded as far as it was captured.
    fn lose_framing(&mut self, direction: Direction, out: &mut Vec<Http2Exchange>) {
        self.stats.framing_lost += 1;
        let dir = self.dir_mut(direction);
        dir.framing = Framing::Lost;
        if let Some(mut block) = dir.block.take() {
            block.cut = true;
            self.finish_block(direction, block, out);
        }
        self.dir_mut(direction).hpack.desync();
        // Frames of any stream still open in this direction may have gone
        // by unseen.
        let d = idx(direction);
        for stream in self.streams.values_mut() {
            if !stream.ended.get(d).copied().unwrap_or(true) {
                stream.ex.partial = true;
            }
        }
    }

    fn end_frame(&mut self, direction: Direction, ts: u64, out: &mut Vec<Http2Exchange>) {
        let dir = self.dir_mut(direction);
        let Framing::Payload(p) = std::mem::replace(&mut dir.framing, header_state()) else {
            return;
        };
        self.stats.frames += 1;
        let frame = p.frame;
        if self.dir(direction).block.is_some() && frame.kind != CONTINUATION {
            // A header block must be continued right away (RFC 9113 §6.10).
            self.drop_block(direction, out);
        }
        match frame.kind {
            DATA => self.on_data(direction, &p, ts, out),
            HEADERS | PUSH_PROMISE => self.on_headers(direction, &p, ts, out),
            CONTINUATION => self.on_continuation(direction, &p, ts, out),
            RST_STREAM => {
                if let Some(mut stream) = self.streams.remove(&frame.stream) {
                    stream.ex.reset = true;
                    stream.ex.reset_code = match p.buf.get(..4) {
                        Some(&[a, b, c, d]) if !p.gap => Some(u32::from_be_bytes([a, b, c, d])),
                        _ => None,
                    };
                    stream.ex.reset_by_client = stream.client.or(self.client) == Some(direction);
                    stream.ex.end_ts_ns = ts;
                    self.emit(stream, out);
                }
            }
            SETTINGS if frame.flags & ACK == 0 && !p.gap => {
                for setting in p.buf.chunks_exact(6) {
                    if let [0, 1, a, b, c, d] = *setting {
                        let size = u32::from_be_bytes([a, b, c, d]) as usize;
                        // Limits what the peer's encoder may use.
                        self.dir_mut(other(direction)).hpack.allow_table_size(size);
                    }
                }
            }
            GOAWAY => {
                if let Some(&[a, b, c, d]) =
                    p.buf.get(..4).and_then(|s| <&[u8; 4]>::try_from(s).ok())
                {
                    let last = u32::from_be_bytes([a, b, c, d]) & 0x7fff_ffff;
                    self.on_goaway(direction, last, ts, out);
                }
            }
            _ => {}
        }
    }
}
