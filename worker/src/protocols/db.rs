//! What the database and cache decoders (PostgreSQL, MySQL, Redis, memcached)
//! have in common: the detection answer, the operation they emit, their loss
//! counters and a small bounded map for prepared statements.
//!
//! Each decoder has the same shape so the connection tracker can wire them
//! the same way: a side-effect-free `check(first_bytes, direction)` and a
//! per-connection state with `feed(direction, captured, gap, ts_ns, out)`.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::spans::DbExchange;
pub use crate::spans::DbSystem;

/// Whether a connection's first bytes belong to a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Yes,
    No,
    /// Too few bytes to tell; ask again with more.
    NeedMore,
}

/// One completed database or cache operation seen from the client: what
/// its span will say, and when it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOperation {
    /// The span's database part (named when handed out, [`Self::into_exchange`]).
    pub exchange: DbExchange,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Part of the exchange was lost to the capture; fields may be missing.
    pub partial: bool,
}

impl DbOperation {
    /// The span's database part, named once.
    pub fn into_exchange(self) -> DbExchange {
        self.exchange.named()
    }

    pub fn new(system: DbSystem, start_ns: u64) -> Self {
        Self {
            exchange: DbExchange {
                system,
                operation: String::new(),
                collection: None,
                namespace: None,
                query_text: None,
                status_code: None,
                error_type: None,
                error_message: None,
                rows: None,
                rows_returned: false,
                request_bytes: 0,
                response_bytes: 0,
                name: String::new(),
            },
            start_ns,
            end_ns: start_ns,
            partial: false,
        }
    }
}

/// What a decoder lost or refused, for the worker's loss counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbDecoderStats {
    /// Times a direction lost its framing and had to resync.
    pub resyncs: u64,
    /// Segments (or parts of them) skipped while out of sync.
    pub bytes_skipped: u64,
    /// Operations emitted with `partial` set.
    pub partial_operations: u64,
    /// Requests dropped because too many were outstanding.
    pub pending_dropped: u64,
    /// Prepared statements forgotten because the map was full.
    pub statements_evicted: u64,
    /// Replies that answered no known request.
    pub unmatched_replies: u64,
}

impl DbDecoderStats {
    /// Hands `op` out, counting it when part of it was lost.
    pub fn emit(&mut self, op: DbOperation, out: &mut Vec<DbOperation>) {
        if op.partial {
            self.partial_operations += 1;
        }
        out.push(op);
    }

    /// Queues a request for its reply, unless [`MAX_PENDING`] already wait
    /// (then it is dropped and counted).
    pub fn push_pending<T>(&mut self, queue: &mut VecDeque<T>, request: T) {
        if queue.len() >= MAX_PENDING {
            self.pending_dropped += 1;
        } else {
            queue.push_back(request);
        }
    }
}

/// Requests waiting, in order, for replies that come in the same order
/// (Redis, memcached): at most [`MAX_PENDING`]. A request past that is
/// dropped and counted, and so is every later one until the replies of
/// those dropped have passed: a client that keeps writing while it reads
/// (`redis-cli --pipe`) would otherwise have later requests paired with
/// the replies of dropped ones.
#[derive(Debug)]
pub struct PendingQueue<T> {
    queue: VecDeque<T>,
    /// Replies still to come for dropped requests, after those of the queue.
    dropped_unanswered: u64,
}

impl<T> Default for PendingQueue<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            dropped_unanswered: 0,
        }
    }
}

impl<T> PendingQueue<T> {
    /// Queues a request for its reply, or drops and counts it.
    pub fn push(&mut self, stats: &mut DbDecoderStats, request: T) {
        if self.dropped_unanswered > 0 || self.queue.len() >= MAX_PENDING {
            stats.pending_dropped += 1;
            self.dropped_unanswered += 1;
        } else {
            self.queue.push_back(request);
        }
    }

    /// The request a whole reply answers: the oldest waiting. `None` when
    /// the reply answers a dropped request (passed by), or none at all
    /// (counted in `stats.unmatched_replies` either way).
    pub fn answer(&mut self, stats: &mut DbDecoderStats) -> Option<T> {
        let request = self.queue.pop_front();
        if request.is_none() {
            stats.unmatched_replies += 1;
            self.dropped_unanswered = self.dropped_unanswered.saturating_sub(1);
        }
        request
    }

    /// Whether the replies being read answer dropped requests.
    pub fn answering_dropped(&self) -> bool {
        self.queue.is_empty() && self.dropped_unanswered > 0
    }

    /// Takes the oldest request out without a reply (the connection ended,
    /// or the replies' framing was lost).
    pub fn pop_front(&mut self) -> Option<T> {
        self.queue.pop_front()
    }

    /// Forgets the dropped requests' replies: after a loss of framing,
    /// pairing starts again with what is written next.
    pub fn forget_dropped(&mut self) {
        self.dropped_unanswered = 0;
    }

    pub fn front(&self) -> Option<&T> {
        self.queue.front()
    }

    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.queue.front_mut()
    }

    pub fn back_mut(&mut self) -> Option<&mut T> {
        self.queue.back_mut()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.queue.iter_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Longest text kept for a query, an error message or a key.
pub const MAX_TEXT: usize = 2048;
/// Requests waiting for their reply, per connection; more are dropped and counted.
pub const MAX_PENDING: usize = 4096;

/// Text of `bytes` (lossy UTF-8), cut to at most `max` bytes on a char boundary.
pub fn bounded_text(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A map that keeps at most `capacity` entries, forgetting the least recently
/// used one when full (prepared statements: names or ids → SQL text).
#[derive(Debug)]
pub struct BoundedLru<K, V> {
    entries: HashMap<K, (V, u64)>,
    capacity: usize,
    clock: u64,
    evicted: u64,
}

impl<K: Eq + Hash + Clone, V> BoundedLru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
            evicted: 0,
        }
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.clock += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            // O(capacity) scan; capacity is small and inserts are rare next to lookups.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.entries.insert(key, (value, self.clock));
    }

    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(value, used)| {
            *used = clock;
            &*value
        })
    }

    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries forgotten because the map was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_forgets_the_least_recently_used() {
        let mut map = BoundedLru::new(2);
        map.insert("a", 1);
        map.insert("b", 2);
        assert_eq!(map.get(&"a"), Some(&1));
        map.insert("c", 3);
        assert_eq!(map.get(&"b"), None);
        assert_eq!(map.get(&"a"), Some(&1));
        assert_eq!(map.get(&"c"), Some(&3));
        assert_eq!(map.evicted(), 1);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn bounded_text_cuts_on_a_char_boundary() {
        assert_eq!(bounded_text("héllo".as_bytes(), 2), "h");
        assert_eq!(bounded_text(b"hello", 3), "hel");
    }
}

/// What every database decoder's per-connection state does: segments in
/// (egress: what the client wrote), finished operations out.
pub trait DbConnection {
    fn feed(
        &mut self,
        direction: zerotrace_shared::event::Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    );
    /// [`Self::feed`] for a segment whose last bytes, `tail`, the kernel
    /// copied apart; they are among the `missing` ones. Decoders that
    /// cannot use them take them as missing.
    fn feed_with_tail(
        &mut self,
        direction: zerotrace_shared::event::Direction,
        captured: &[u8],
        missing: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        let _ = tail;
        self.feed(direction, captured, missing, ts_ns, out);
    }
    /// The connection closed: what still waits ends partial.
    fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>);
}

/// Recorded exchanges (see `worker/testdata/README.md`): one connection per
/// `= conn` line, then `> hex` for bytes the client wrote, `< hex` for bytes it read.
#[cfg(test)]
pub(crate) mod fixture {
    use zerotrace_shared::event::Direction;

    pub type Chunk = (Direction, Vec<u8>);

    pub fn connections(text: &str) -> Vec<Vec<Chunk>> {
        let mut connections: Vec<Vec<Chunk>> = Vec::new();
        for line in text.lines() {
            let (mark, hex) = line.split_once(' ').unwrap_or((line, ""));
            let direction = match mark {
                "=" => {
                    connections.push(Vec::new());
                    continue;
                }
                ">" => Direction::Egress,
                "<" => Direction::Ingress,
                _ => continue,
            };
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            if let Some(connection) = connections.last_mut() {
                connection.push((direction, bytes));
            }
        }
        connections
    }

    /// How a test cuts the recorded chunks into segments.
    #[derive(Debug, Clone, Copy)]
    pub enum Cut {
        /// Each chunk is one segment.
        Whole,
        /// Each chunk in segments of this many bytes.
        Pieces(usize),
        /// Each chunk captured up to this many bytes, the rest a gap.
        Capture(usize),
    }

    /// The operations `connection` makes of one recorded connection, closed at ts 1,000,000.
    pub fn decode_chunks<C: super::DbConnection>(
        chunks: &[Chunk],
        cut: Cut,
        mut connection: C,
    ) -> Vec<super::DbOperation> {
        let mut out = Vec::new();
        replay(chunks, cut, |direction, captured, gap, ts| {
            connection.feed(direction, captured, gap, ts, &mut out)
        });
        connection.finish(1_000_000, &mut out);
        out
    }

    /// The operations of every connection of a recording, each on a fresh state.
    pub fn decode<C: super::DbConnection>(
        fixture: &str,
        cut: Cut,
        new: impl Fn() -> C,
    ) -> Vec<super::DbOperation> {
        connections(fixture)
            .iter()
            .flat_map(|chunks| decode_chunks(chunks, cut, new()))
            .collect()
    }

    /// The recording's turns: consecutive chunks of one direction joined
    /// (what one side sent before the other spoke).
    pub fn turns(chunks: &[Chunk]) -> Vec<Chunk> {
        let mut turns: Vec<Chunk> = Vec::new();
        for (direction, bytes) in chunks {
            match turns.last_mut() {
                Some((last, joined)) if last == direction => joined.extend_from_slice(bytes),
                _ => turns.push((*direction, bytes.clone())),
            }
        }
        turns
    }

    /// `turn` as the kernel reports it when it is written or read `first`
    /// bytes first and then `size` bytes at a time: `capture` bytes of each
    /// segment, the rest a gap. A turn that fits the capture is one segment
    /// (a short reply is read at once).
    pub fn captured_pieces(
        turn: &[u8],
        first: usize,
        size: usize,
        capture: usize,
    ) -> Vec<(Vec<u8>, u64)> {
        if turn.len() <= capture {
            return vec![(turn.to_vec(), 0)];
        }
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut take = first.max(1);
        while at < turn.len() {
            let end = (at + take).min(turn.len());
            let kept = (end - at).min(capture);
            pieces.push((turn[at..at + kept].to_vec(), (end - at - kept) as u64));
            at = end;
            take = size.max(1);
        }
        pieces
    }

    /// The operations of a recording's `turns` when each is written or read
    /// in the pieces [`captured_pieces`] makes of it (`first`, then `size`
    /// bytes, 512 captured of each); turn `i` is at ts `(i+1)*1000`.
    pub fn decode_turns<C: super::DbConnection>(
        turns: &[Chunk],
        first: usize,
        size: usize,
        mut connection: C,
    ) -> Vec<super::DbOperation> {
        let mut out = Vec::new();
        for (i, (direction, bytes)) in turns.iter().enumerate() {
            let ts = (i as u64 + 1) * 1000;
            for (captured, gap) in captured_pieces(bytes, first, size, 512) {
                connection.feed(*direction, &captured, gap, ts, &mut out);
            }
        }
        connection.finish(1_000_000, &mut out);
        out
    }

    /// Every operation of `got` counts the bytes its counterpart in `whole`
    /// (the same recording decoded whole) counts, both ways.
    pub fn assert_same_sizes(got: &[super::DbOperation], whole: &[super::DbOperation], case: &str) {
        for (op, whole) in got.iter().zip(whole) {
            assert_eq!(
                op.exchange.request_bytes, whole.exchange.request_bytes,
                "{case}"
            );
            assert_eq!(
                op.exchange.response_bytes, whole.exchange.response_bytes,
                "{case}"
            );
        }
    }

    /// A decoder test's lines (fields joined by ` | `) without their
    /// `start-end` timestamps field: turns join a recording's chunks, so
    /// their timestamps differ from the chunks', and nothing else should.
    pub fn untimed(lines: Vec<String>) -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                let fields: Vec<&str> = line.split(" | ").filter(|f| !f.contains("000-")).collect();
                fields.join(" | ")
            })
            .collect()
    }

    /// Feeds `chunks` to `feed(direction, captured, gap, ts)`; chunk `i` is at ts `(i+1)*1000`.
    pub fn replay(chunks: &[Chunk], cut: Cut, mut feed: impl FnMut(Direction, &[u8], u64, u64)) {
        for (i, (direction, bytes)) in chunks.iter().enumerate() {
            let ts = (i as u64 + 1) * 1000;
            match cut {
                Cut::Whole => feed(*direction, bytes, 0, ts),
                Cut::Pieces(n) => bytes
                    .chunks(n.max(1))
                    .for_each(|piece| feed(*direction, piece, 0, ts)),
                Cut::Capture(n) => {
                    let kept = n.min(bytes.len());
                    feed(*direction, &bytes[..kept], (bytes.len() - kept) as u64, ts);
                }
            }
        }
    }
}
