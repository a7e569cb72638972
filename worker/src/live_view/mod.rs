//! The live view behind `zerotrace top`: a small rolling RED aggregate
//! (requests, errors, latency) per service, span kind and route over the last
//! minute, and the read-only local socket that streams it.
//!
//! * [`LiveView::record_batch`] runs once per batch of spans on the pipeline
//!   thread: the batch's spans are grouped by row (`batch.rs`), each row is
//!   looked up once, then a few counter updates per span; no allocation for a
//!   known row. [`LiveView::record`] counts one span the same way.
//! * Per row it keeps 60 one-second slots of request and error counts, and
//!   for the last [`WINDOW_SECONDS`] seconds a sparse log-linear latency
//!   histogram per second (32 sub-buckets per power of two: a value is
//!   reported within ±1.6 %).
//! * Memory is bounded: at most [`MAX_ROWS`] rows (the least recently seen
//!   are evicted in batches), rows idle for [`IDLE_FORGET_SECONDS`] are
//!   forgotten, routes are cut at [`MAX_ROUTE_BYTES`], and histogram entries
//!   are capped at [`MAX_HISTOGRAM_ENTRIES`] in all (past it a value is counted
//!   in the nearest existing bucket of its second: counts stay exact, latency
//!   precision degrades).
//! * [`serve`] streams one JSON [`LiveSnapshot`] per line, every second, on a
//!   Unix stream socket of mode 0600, to root and to the worker's own uid only
//!   (checked with `SO_PEERCRED`). The server never parses anything a client
//!   sends: a client that writes is disconnected.
//! * [`LiveView::record_call`] counts the service graph's edges (who calls
//!   whom) for top's calls view (`calls.rs`).

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, send, sockopt, MsgFlags};

// Errors as the spans count them: their protocol's semantic conventions.
use crate::hashing::FastMap;
use crate::semconv::is_error;
use crate::service_graph::{EdgeKey, EdgeObservation, EdgeSample};
use crate::spans::Span;

mod batch;
mod calls;
mod server;
mod snapshot;

pub use calls::MAX_CALLS;
pub use server::serve;
pub use snapshot::{LiveCall, LiveKind, LiveRefusal, LiveRow, LiveSnapshot, LiveTotals};

/// The version of [`LiveSnapshot`]; a client refuses other versions.
pub const LIVE_PROTOCOL_VERSION: u32 = 1;
/// Seconds of per-second request history per row (the sparkline).
pub const HISTORY_SECONDS: usize = 60;
/// Seconds over which rates, error rates and percentiles are computed.
pub const WINDOW_SECONDS: u64 = 10;
/// Rows kept at most; past it the least recently seen are evicted.
pub const MAX_ROWS: usize = 2_000;
/// Rows evicted at once when [`MAX_ROWS`] is reached (amortizes the scan).
pub const EVICT_BATCH: usize = MAX_ROWS / 8;
/// A row without a request for this long is forgotten.
pub const IDLE_FORGET_SECONDS: u64 = 600;
/// Routes (or paths) longer than this are cut (at a character boundary).
pub const MAX_ROUTE_BYTES: usize = 256;
/// Service names longer than this are cut.
pub const MAX_SERVICE_BYTES: usize = 128;
/// Latency histogram entries (bucket, count) kept in all rows together.
pub const MAX_HISTOGRAM_ENTRIES: usize = 1 << 20;
/// Clients served at once.
pub const MAX_CLIENTS: usize = 8;
/// How often a client gets a snapshot.
pub const FRAME_INTERVAL: Duration = Duration::from_secs(1);
/// A client that does not read for this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Snapshots are computed at most this often, whatever the number of clients.
const SNAPSHOT_REUSE: Duration = Duration::from_millis(500);
/// Rows are checked for idleness this often (in seconds of the view's clock).
const SWEEP_EVERY_SECONDS: u64 = 10;

/// Sub-buckets per power of two in the latency histogram (2^5 = 32).
const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Durations are clamped to 2^40 ns (about 18 minutes).
const MAX_EXPONENT: u32 = 40;

/// The histogram bucket of a duration in nanoseconds.
fn bucket_of(ns: u64) -> u16 {
    if ns < SUB_BUCKETS {
        return ns as u16;
    }
    let exponent = (63 - ns.leading_zeros()).min(MAX_EXPONENT);
    let ns = ns.min((1u64 << (MAX_EXPONENT + 1)) - 1);
    let shift = exponent - SUB_BUCKET_BITS;
    let mantissa = (ns >> shift) & (SUB_BUCKETS - 1);
    ((u64::from(shift + 1) * SUB_BUCKETS) + mantissa) as u16
}

/// The value reported for a bucket: its midpoint, in nanoseconds.
fn bucket_value_ns(bucket: u16) -> f64 {
    let bucket = u64::from(bucket);
    if bucket < SUB_BUCKETS {
        return bucket as f64;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let mantissa = bucket % SUB_BUCKETS;
    let lower = (SUB_BUCKETS + mantissa) << shift;
    let width = 1u64 << shift;
    lower as f64 + (width as f64 - 1.0) / 2.0
}

fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Debug, Clone, Copy)]
struct CountSlot {
    /// The second (of the view's clock) this slot holds; `u64::MAX` when empty.
    second: u64,
    requests: u32,
    errors: u32,
}

const EMPTY_COUNTS: CountSlot = CountSlot {
    second: u64::MAX,
    requests: 0,
    errors: 0,
};

/// 60 one-second slots of request and error counts.
#[derive(Debug, Clone)]
struct CountRing([CountSlot; HISTORY_SECONDS]);

impl CountRing {
    fn new() -> Self {
        Self([EMPTY_COUNTS; HISTORY_SECONDS])
    }

    fn add(&mut self, second: u64, error: bool) {
        self.add_many(second, 1, u32::from(error));
    }

    /// `requests` in `second`, `errors` of them failed.
    fn add_many(&mut self, second: u64, requests: u32, errors: u32) {
        let slot = &mut self.0[(second % HISTORY_SECONDS as u64) as usize];
        if slot.second != second {
            if slot.second != u64::MAX && slot.second > second {
                return; // older than what the slot already holds
            }
            *slot = CountSlot {
                second,
                requests: 0,
                errors: 0,
            };
        }
        slot.requests = slot.requests.saturating_add(requests);
        slot.errors = slot.errors.saturating_add(errors);
    }

    fn get(&self, second: u64) -> (u32, u32) {
        let slot = &self.0[(second % HISTORY_SECONDS as u64) as usize];
        if slot.second == second {
            (slot.requests, slot.errors)
        } else {
            (0, 0)
        }
    }

    /// Oldest first, ending with `current`.
    fn history(&self, current: u64) -> Vec<u32> {
        (0..HISTORY_SECONDS as u64)
            .rev()
            .map(|back| match current.checked_sub(back) {
                Some(second) => self.get(second).0,
                None => 0,
            })
            .collect()
    }

    /// (requests, errors) over the window ending with `current`.
    fn window(&self, current: u64) -> (u64, u64) {
        (0..WINDOW_SECONDS)
            .filter_map(|back| current.checked_sub(back))
            .map(|second| self.get(second))
            .fold((0, 0), |(r, e), (dr, de)| {
                (r + u64::from(dr), e + u64::from(de))
            })
    }
}

/// Hashes a latency bucket by Fibonacci multiplication: distinct buckets
/// (fewer than 2^16) get distinct low bits, which pick the table slot, and
/// mixed high bits, which hashbrown keeps as tags. Buckets come from
/// durations, at most [`BUCKETS`] of them, so there is nothing to collide on.
#[derive(Debug, Clone, Copy, Default)]
struct BucketHash;

#[derive(Debug, Default)]
struct BucketHasher(u64);

impl std::hash::BuildHasher for BucketHash {
    type Hasher = BucketHasher;

    fn build_hasher(&self) -> BucketHasher {
        BucketHasher(0)
    }
}

impl std::hash::Hasher for BucketHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u16(&mut self, bucket: u16) {
        self.0 = u64::from(bucket);
    }

    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// One second's latencies: count per bucket. A hash table, not a sorted
/// vector: a second of a busy row holds a couple of hundred buckets, and the
/// binary search of every span was half of the live view's time.
#[derive(Debug, Clone)]
struct LatencySlot {
    second: u64,
    entries: hashbrown::HashMap<u16, u32, BucketHash>,
}

impl LatencySlot {
    fn new() -> Self {
        Self {
            second: u64::MAX,
            entries: hashbrown::HashMap::with_hasher(BucketHash),
        }
    }

    /// Adds `values` values of one bucket; returns the number of entries
    /// created (0 or 1).
    fn add(&mut self, bucket: u16, values: u32, may_grow: bool) -> usize {
        if let Some(count) = self.entries.get_mut(&bucket) {
            *count = count.saturating_add(values);
            return 0;
        }
        if may_grow || self.entries.is_empty() {
            self.entries.insert(bucket, values);
            return 1;
        }
        // Over budget: count it in the nearest bucket this second already
        // has (the upper one when two are as near).
        for distance in 1..=BUCKETS as u16 {
            let above = bucket.checked_add(distance);
            let below = bucket.checked_sub(distance);
            for nearest in [above, below].into_iter().flatten() {
                if let Some(count) = self.entries.get_mut(&nearest) {
                    *count = count.saturating_add(values);
                    return 0;
                }
            }
        }
        0
    }

    /// (bucket, count) in bucket order.
    #[cfg(test)]
    fn sorted(&self) -> Vec<(u16, u32)> {
        let mut entries: Vec<(u16, u32)> = self.entries.iter().map(|(b, c)| (*b, *c)).collect();
        entries.sort_unstable();
        entries
    }

    /// Empties the slot for `second`; returns the number of entries dropped.
    fn reset(&mut self, second: u64) -> usize {
        let dropped = self.entries.len();
        if self.entries.capacity() > 64 {
            self.entries = hashbrown::HashMap::with_hasher(BucketHash);
        } else {
            self.entries.clear();
        }
        self.second = second;
        dropped
    }
}

#[derive(Debug, Clone)]
struct Row {
    service: Box<str>,
    kind: LiveKind,
    route: Box<str>,
    counts: CountRing,
    latency: [LatencySlot; WINDOW_SECONDS as usize],
    requests_total: u64,
    errors_total: u64,
    /// The view's record counter when this row last got a span (LRU order).
    last_tick: u64,
    last_second: u64,
}

impl Row {
    fn new(service: &str, kind: LiveKind, route: &str) -> Self {
        Self {
            service: service.into(),
            kind,
            route: route.into(),
            counts: CountRing::new(),
            latency: std::array::from_fn(|_| LatencySlot::new()),
            requests_total: 0,
            errors_total: 0,
            last_tick: 0,
            last_second: 0,
        }
    }

    fn entries(&self) -> usize {
        self.latency.iter().map(|s| s.entries.len()).sum()
    }

    /// Adds one span; returns (entries created, entries dropped).
    fn add(&mut self, second: u64, error: bool, bucket: u16, may_grow: bool) -> (usize, usize) {
        self.add_counts(second, 1, u32::from(error));
        self.add_latency(second, bucket, 1, may_grow)
    }

    /// Counts `requests` spans in `second`, `errors` of them failed.
    fn add_counts(&mut self, second: u64, requests: u32, errors: u32) {
        self.counts.add_many(second, requests, errors);
        self.requests_total += u64::from(requests);
        self.errors_total += u64::from(errors);
        self.last_second = self.last_second.max(second);
    }

    /// Adds one span's latency; returns (entries created, entries dropped).
    fn add_latency(
        &mut self,
        second: u64,
        bucket: u16,
        count: u32,
        may_grow: bool,
    ) -> (usize, usize) {
        let slot = &mut self.latency[(second % WINDOW_SECONDS) as usize];
        let mut dropped = 0;
        if slot.second != second {
            if slot.second != u64::MAX && slot.second > second {
                return (0, 0);
            }
            dropped = slot.reset(second);
        }
        (slot.add(bucket, count, may_grow), dropped)
    }

    /// This row's latency entries of each second in the window ending with `current`.
    fn window_latencies(
        &self,
        current: u64,
    ) -> impl Iterator<Item = &hashbrown::HashMap<u16, u32, BucketHash>> {
        self.latency
            .iter()
            .filter(move |slot| slot.second <= current && current - slot.second < WINDOW_SECONDS)
            .map(|slot| &slot.entries)
    }
}

/// Buckets of the latency histogram (the largest index `bucket_of` returns, plus one).
const BUCKETS: usize = (MAX_EXPONENT - SUB_BUCKET_BITS + 2) as usize * SUB_BUCKETS as usize;

/// Sums (bucket, count) entries into dense counts and reads percentiles from
/// them: linear in the entries and the range of buckets they span.
struct Merge {
    counts: Vec<u64>,
    low: usize,
    high: usize,
    total: u64,
}

impl Merge {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            low: BUCKETS,
            high: 0,
            total: 0,
        }
    }

    fn add(&mut self, entries: &hashbrown::HashMap<u16, u32, BucketHash>) {
        for (&bucket, &count) in entries {
            let bucket = usize::from(bucket).min(BUCKETS - 1);
            self.counts[bucket] += u64::from(count);
            self.low = self.low.min(bucket);
            self.high = self.high.max(bucket);
            self.total += u64::from(count);
        }
    }

    /// p50, p95 and p99 in milliseconds (None when empty); empties the merge.
    fn take(&mut self) -> [Option<f64>; 3] {
        let mut result = [None; 3];
        if self.total > 0 {
            let range = &mut self.counts[self.low..=self.high];
            for (out, q) in result.iter_mut().zip([0.50, 0.95, 0.99]) {
                let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
                let mut seen = 0u64;
                for (offset, count) in range.iter().enumerate() {
                    seen += count;
                    if seen >= rank {
                        *out = Some(bucket_value_ns((self.low + offset) as u16) / 1e6);
                        break;
                    }
                }
            }
            range.fill(0);
        }
        self.low = BUCKETS;
        self.high = 0;
        self.total = 0;
        result
    }
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64
    } else {
        0.0
    }
}

/// The rolling aggregate. Not thread-safe by itself: share it in a `Mutex`
/// (the pipeline records, the socket threads snapshot).
#[derive(Debug)]
pub struct LiveView {
    origin: Instant,
    rows: FastMap<Box<str>, Row>,
    /// Reused to build row keys without allocating.
    key: String,
    tick: u64,
    histogram_entries: usize,
    rows_evicted: u64,
    last_sweep: u64,
    server: CountRing,
    client: CountRing,
    totals: [(u64, u64); 2],
    /// Who calls whom (service graph edges).
    calls: calls::Calls,
    /// The rows of the batch [`Self::record_batch`] is counting.
    batch: batch::BatchGroups,
}

impl Default for LiveView {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveView {
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A view whose clock starts at `origin` (tests use a fixed origin).
    pub fn starting_at(origin: Instant) -> Self {
        Self {
            origin,
            rows: FastMap::default(),
            key: String::new(),
            tick: 0,
            histogram_entries: 0,
            rows_evicted: 0,
            last_sweep: 0,
            server: CountRing::new(),
            client: CountRing::new(),
            totals: [(0, 0); 2],
            calls: calls::Calls::default(),
            batch: batch::BatchGroups::default(),
        }
    }

    fn second_of(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Rows currently held.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Latency histogram entries currently held (for the memory bound).
    pub fn histogram_entries(&self) -> usize {
        self.histogram_entries
    }

    /// Counts one span, in the row of its operation (for HTTP the matched
    /// route when known, else the path).
    pub fn record(&mut self, span: &Span, service: &str, now: Instant) {
        let second = self.second_of(now);
        let error = is_error(span);
        let kind = LiveKind::from(span.kind);
        let bucket = bucket_of(span.duration_ns());
        self.tick += 1;
        let (ring, totals) = match kind {
            LiveKind::Server => (&mut self.server, &mut self.totals[0]),
            LiveKind::Client => (&mut self.client, &mut self.totals[1]),
        };
        ring.add(second, error);
        totals.0 += 1;
        totals.1 += u64::from(error);

        if second >= self.last_sweep + SWEEP_EVERY_SECONDS {
            self.forget_idle(second);
        }

        let service = truncated(service, MAX_SERVICE_BYTES);
        let route = truncated(span.operation(), MAX_ROUTE_BYTES);
        let mut key = std::mem::take(&mut self.key);
        batch::write_key(&mut key, kind, service, route);
        let may_grow = self.histogram_entries < MAX_HISTOGRAM_ENTRIES;
        let tick = self.tick;
        let row = self.row_mut(&key, kind, service, route);
        row.last_tick = tick;
        let (created, dropped) = row.add(second, error, bucket, may_grow);
        self.histogram_entries = self.histogram_entries + created - dropped;
        self.key = key;
    }

    /// The row of `key` (kind letter, service, NUL, route), created if new,
    /// in one lookup; when the view is full, the least recent rows make room
    /// for a new one first.
    fn row_mut(&mut self, key: &str, kind: LiveKind, service: &str, route: &str) -> &mut Row {
        if self.rows.len() >= MAX_ROWS && !self.rows.contains_key(key) {
            self.evict_least_recent();
        }
        let (_, row) = self
            .rows
            .raw_entry_mut()
            .from_key(key)
            .or_insert_with(|| (key.into(), Row::new(service, kind, route)));
        row
    }

    /// Counts the spans of one batch, each with its service, all seen at
    /// `now`: as [`Self::record`] one by one, but each row is looked up once
    /// for all of its spans in the batch.
    pub fn record_batch<'s>(
        &mut self,
        spans: impl IntoIterator<Item = (&'s Span, &'s str)>,
        now: Instant,
    ) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        // (requests, errors) of server spans, then of client spans.
        let mut kinds = [(0u32, 0u32); 2];
        for (span, service) in spans {
            let kind = LiveKind::from(span.kind);
            let service = truncated(service, MAX_SERVICE_BYTES);
            let route = truncated(span.operation(), MAX_ROUTE_BYTES);
            let Some(group) = batch.group_of(kind, service, route) else {
                // More rows in this batch than are grouped: one by one.
                self.record(span, service, now);
                continue;
            };
            let error = is_error(span);
            group.requests += 1;
            group.errors += u32::from(error);
            group.buckets.push(bucket_of(span.duration_ns()));
            let of_kind = &mut kinds[usize::from(kind == LiveKind::Client)];
            of_kind.0 += 1;
            of_kind.1 += u32::from(error);
        }
        let second = self.second_of(now);
        let [server_totals, client_totals] = &mut self.totals;
        for (ring, totals, (requests, errors)) in [
            (&mut self.server, server_totals, kinds[0]),
            (&mut self.client, client_totals, kinds[1]),
        ] {
            if requests > 0 {
                ring.add_many(second, requests, errors);
                totals.0 += u64::from(requests);
                totals.1 += u64::from(errors);
            }
        }
        if batch.groups().is_empty() {
            self.batch = batch;
            return;
        }
        if second >= self.last_sweep + SWEEP_EVERY_SECONDS {
            self.forget_idle(second);
        }
        batch.tally();
        for group in batch.groups() {
            let (kind, service, route) = group.parts();
            self.tick += 1;
            let tick = self.tick;
            let mut entries = self.histogram_entries;
            let row = self.row_mut(&group.key, kind, service, route);
            row.last_tick = tick;
            row.add_counts(second, group.requests, group.errors);
            for &(bucket, count) in &group.tallied {
                let may_grow = entries < MAX_HISTOGRAM_ENTRIES;
                let (created, dropped) = row.add_latency(second, bucket, count, may_grow);
                entries = entries + created - dropped;
            }
            self.histogram_entries = entries;
        }
        self.batch = batch;
    }

    /// Counts one request between two services (a service graph edge).
    pub fn record_call(&mut self, edge: &EdgeObservation, now: Instant) {
        self.record_calls(&edge.edge, &[edge.sample()], now);
    }

    /// Counts requests on one edge, together.
    pub fn record_calls(&mut self, edge: &EdgeKey, samples: &[EdgeSample], now: Instant) {
        let second = self.second_of(now);
        let requests = u32::try_from(samples.len()).unwrap_or(u32::MAX);
        let errors = samples.iter().filter(|s| s.failed).count();
        let errors = u32::try_from(errors).unwrap_or(u32::MAX);
        self.calls.record(edge, requests, errors, second);
    }

    /// Drops the [`EVICT_BATCH`] least recently seen rows.
    fn evict_least_recent(&mut self) {
        let mut ticks: Vec<u64> = self.rows.values().map(|r| r.last_tick).collect();
        if ticks.is_empty() {
            return;
        }
        let nth = EVICT_BATCH.min(ticks.len()) - 1;
        let (_, threshold, _) = ticks.select_nth_unstable(nth);
        let threshold = *threshold;
        let before = self.rows.len();
        let entries = &mut self.histogram_entries;
        self.rows.retain(|_, row| {
            let keep = row.last_tick > threshold;
            if !keep {
                *entries -= row.entries();
            }
            keep
        });
        self.rows_evicted += (before - self.rows.len()) as u64;
    }

    fn forget_idle(&mut self, second: u64) {
        self.last_sweep = second;
        let entries = &mut self.histogram_entries;
        self.rows.retain(|_, row| {
            let keep = row.last_second + IDLE_FORGET_SECONDS > second;
            if !keep {
                *entries -= row.entries();
            }
            keep
        });
    }

    /// The picture at `now`: rows with a request in the last minute.
    pub fn snapshot(&self, now: Instant) -> LiveSnapshot {
        let age = now.saturating_duration_since(self.origin).as_secs_f64();
        let current = self.second_of(now);
        let window = ((WINDOW_SECONDS - 1) as f64 + age.fract()).min(age);

        let totals = |ring: &CountRing, (requests_total, errors_total): (u64, u64)| {
            let (requests, errors) = ring.window(current);
            LiveTotals {
                requests_per_second: rate(requests, window),
                error_rate: ratio(errors, requests),
                requests_total,
                errors_total,
                history: ring.history(current),
            }
        };

        let mut active: Vec<&Row> = self
            .rows
            .values()
            .filter(|row| row.last_second + HISTORY_SECONDS as u64 > current)
            .collect();
        active.sort_unstable_by(|a, b| {
            (a.kind, &a.service, &a.route).cmp(&(b.kind, &b.service, &b.route))
        });

        let mut routes = Vec::with_capacity(active.len());
        let mut services: Vec<LiveRow> = Vec::new();
        let mut latencies = Merge::new();
        let mut service_latencies = Merge::new();
        let mut service_window = (0u64, 0u64);
        for (i, row) in active.iter().enumerate() {
            let (requests, errors) = row.counts.window(current);
            for entries in row.window_latencies(current) {
                latencies.add(entries);
                service_latencies.add(entries);
            }
            let [p50_ms, p95_ms, p99_ms] = latencies.take();
            let history = row.counts.history(current);
            routes.push(LiveRow {
                service: row.service.to_string(),
                kind: row.kind,
                route: row.route.to_string(),
                requests_per_second: rate(requests, window),
                error_rate: ratio(errors, requests),
                p50_ms,
                p95_ms,
                p99_ms,
                requests_total: row.requests_total,
                errors_total: row.errors_total,
                history: history.clone(),
            });

            // Service rows: all routes of one (kind, service) merged.
            match services.last_mut() {
                Some(service) if service.kind == row.kind && *service.service == *row.service => {
                    service.requests_total += row.requests_total;
                    service.errors_total += row.errors_total;
                    for (sum, n) in service.history.iter_mut().zip(&history) {
                        *sum = sum.saturating_add(*n);
                    }
                }
                _ => services.push(LiveRow {
                    service: row.service.to_string(),
                    kind: row.kind,
                    route: String::new(),
                    requests_total: row.requests_total,
                    errors_total: row.errors_total,
                    history,
                    ..LiveRow::default()
                }),
            }
            service_window.0 += requests;
            service_window.1 += errors;
            let last_of_service = active
                .get(i + 1)
                .is_none_or(|next| next.kind != row.kind || next.service != row.service);
            if last_of_service {
                if let Some(service) = services.last_mut() {
                    let [p50_ms, p95_ms, p99_ms] = service_latencies.take();
                    service.requests_per_second = rate(service_window.0, window);
                    service.error_rate = ratio(service_window.1, service_window.0);
                    service.p50_ms = p50_ms;
                    service.p95_ms = p95_ms;
                    service.p99_ms = p99_ms;
                }
                service_window = (0, 0);
            }
        }

        LiveSnapshot {
            version: LIVE_PROTOCOL_VERSION,
            uptime_seconds: age,
            window_seconds: window,
            server: totals(&self.server, self.totals[0]),
            client: totals(&self.client, self.totals[1]),
            services,
            routes,
            rows_tracked: self.rows.len() as u64,
            rows_evicted: self.rows_evicted,
            calls: self.calls.snapshot(current, window),
        }
    }
}

#[cfg(test)]
mod tests;
