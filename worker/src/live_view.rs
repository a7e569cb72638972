//! The live view behind `zerotrace top`: a small rolling RED aggregate
//! (requests, errors, latency) per service, span kind and route over the last
//! minute, and the read-only local socket that streams it.
//!
//! * [`LiveView::record`] runs once per span on the pipeline thread: a hash
//!   lookup and a few counter updates, no allocation for a known row.
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

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, send, sockopt, MsgFlags};
use serde::{Deserialize, Serialize};

// Errors as the spans count them: their protocol's semantic conventions.
use crate::semconv::is_error;
use crate::spans::{Span, SpanKind};

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

/// The span kind as it appears in snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveKind {
    Server,
    Client,
}

impl LiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveKind::Server => "server",
            LiveKind::Client => "client",
        }
    }
}

impl From<SpanKind> for LiveKind {
    fn from(kind: SpanKind) -> Self {
        // Producers ask like clients; consumers are handed work like servers.
        if kind.is_outgoing() {
            LiveKind::Client
        } else {
            LiveKind::Server
        }
    }
}

/// One line of the live stream: the whole picture at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveSnapshot {
    /// [`LIVE_PROTOCOL_VERSION`].
    pub version: u32,
    /// Seconds since the view started (the worker's start).
    pub uptime_seconds: f64,
    /// The span the rates were computed over (≤ [`WINDOW_SECONDS`], less just after start).
    pub window_seconds: f64,
    /// All server spans, and all client spans (evicted rows included).
    pub server: LiveTotals,
    pub client: LiveTotals,
    /// One row per (kind, service), all routes merged.
    pub services: Vec<LiveRow>,
    /// One row per (kind, service, route); the route is the path when no route is known.
    pub routes: Vec<LiveRow>,
    /// Rows held by the view (also those idle for more than a minute, which are not sent).
    pub rows_tracked: u64,
    /// Rows evicted because of [`MAX_ROWS`] since the start.
    pub rows_evicted: u64,
}

impl Default for LiveSnapshot {
    fn default() -> Self {
        Self {
            version: LIVE_PROTOCOL_VERSION,
            uptime_seconds: 0.0,
            window_seconds: 0.0,
            server: LiveTotals::default(),
            client: LiveTotals::default(),
            services: Vec::new(),
            routes: Vec::new(),
            rows_tracked: 0,
            rows_evicted: 0,
        }
    }
}

impl LiveSnapshot {
    pub fn totals(&self, kind: LiveKind) -> &LiveTotals {
        match kind {
            LiveKind::Server => &self.server,
            LiveKind::Client => &self.client,
        }
    }
}

/// Totals of one span kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveTotals {
    pub requests_per_second: f64,
    /// Errors / requests over the window, 0..=1.
    pub error_rate: f64,
    pub requests_total: u64,
    pub errors_total: u64,
    /// Requests per second over the last [`HISTORY_SECONDS`], oldest first,
    /// the last one being the current (partial) second.
    pub history: Vec<u32>,
}

/// One row: a route of a service (or a whole service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveRow {
    pub service: String,
    pub kind: LiveKind,
    /// The route, or the path when no route is known; empty for a service row.
    pub route: String,
    pub requests_per_second: f64,
    /// Errors / requests over the window, 0..=1.
    pub error_rate: f64,
    /// Latency percentiles over the window in milliseconds; None without requests.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Since the row appeared (a service row: the sum of its routes still held).
    pub requests_total: u64,
    pub errors_total: u64,
    /// Requests per second over the last [`HISTORY_SECONDS`], oldest first.
    pub history: Vec<u32>,
}

impl Default for LiveRow {
    fn default() -> Self {
        Self {
            service: String::new(),
            kind: LiveKind::Server,
            route: String::new(),
            requests_per_second: 0.0,
            error_rate: 0.0,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            requests_total: 0,
            errors_total: 0,
            history: Vec::new(),
        }
    }
}

/// What the server writes instead of snapshots to a client it refuses, then closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRefusal {
    pub refused: String,
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
        slot.requests = slot.requests.saturating_add(1);
        slot.errors = slot.errors.saturating_add(u32::from(error));
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

/// One second's latencies: (bucket, count) sorted by bucket.
#[derive(Debug, Clone)]
struct LatencySlot {
    second: u64,
    entries: Vec<(u16, u32)>,
}

impl LatencySlot {
    /// Adds one value; returns the number of entries created (0 or 1).
    fn add(&mut self, bucket: u16, may_grow: bool) -> usize {
        match self.entries.binary_search_by_key(&bucket, |e| e.0) {
            Ok(i) => {
                self.entries[i].1 = self.entries[i].1.saturating_add(1);
                0
            }
            Err(i) if may_grow || self.entries.is_empty() => {
                self.entries.insert(i, (bucket, 1));
                1
            }
            Err(i) => {
                // Over budget: count it in the nearest bucket this second already has.
                let below_is_nearer = i == self.entries.len()
                    || (i > 0 && bucket - self.entries[i - 1].0 < self.entries[i].0 - bucket);
                let nearest = if below_is_nearer { i - 1 } else { i };
                self.entries[nearest].1 = self.entries[nearest].1.saturating_add(1);
                0
            }
        }
    }

    /// Empties the slot for `second`; returns the number of entries dropped.
    fn reset(&mut self, second: u64) -> usize {
        let dropped = self.entries.len();
        if self.entries.capacity() > 64 {
            self.entries = Vec::new();
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
            latency: std::array::from_fn(|_| LatencySlot {
                second: u64::MAX,
                entries: Vec::new(),
            }),
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
        self.counts.add(second, error);
        self.requests_total += 1;
        self.errors_total += u64::from(error);
        self.last_second = self.last_second.max(second);
        let slot = &mut self.latency[(second % WINDOW_SECONDS) as usize];
        let mut dropped = 0;
        if slot.second != second {
            if slot.second != u64::MAX && slot.second > second {
                return (0, 0);
            }
            dropped = slot.reset(second);
        }
        (slot.add(bucket, may_grow), dropped)
    }

    /// This row's latency entries of each second in the window ending with `current`.
    fn window_latencies(&self, current: u64) -> impl Iterator<Item = &[(u16, u32)]> {
        self.latency
            .iter()
            .filter(move |slot| slot.second <= current && current - slot.second < WINDOW_SECONDS)
            .map(|slot| slot.entries.as_slice())
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

    fn add(&mut self, entries: &[(u16, u32)]) {
        for &(bucket, count) in entries {
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
    rows: HashMap<Box<str>, Row>,
    /// Reused to build row keys without allocating.
    key: String,
    tick: u64,
    histogram_entries: usize,
    rows_evicted: u64,
    last_sweep: u64,
    server: CountRing,
    client: CountRing,
    totals: [(u64, u64); 2],
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
            rows: HashMap::new(),
            key: String::new(),
            tick: 0,
            histogram_entries: 0,
            rows_evicted: 0,
            last_sweep: 0,
            server: CountRing::new(),
            client: CountRing::new(),
            totals: [(0, 0); 2],
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
        self.key.clear();
        self.key.push(match kind {
            LiveKind::Server => 'S',
            LiveKind::Client => 'C',
        });
        self.key.push_str(service);
        self.key.push('\0');
        self.key.push_str(route);

        let may_grow = self.histogram_entries < MAX_HISTOGRAM_ENTRIES;
        if !self.rows.contains_key(self.key.as_str()) {
            if self.rows.len() >= MAX_ROWS {
                self.evict_least_recent();
            }
            self.rows
                .insert(self.key.as_str().into(), Row::new(service, kind, route));
        }
        if let Some(row) = self.rows.get_mut(self.key.as_str()) {
            row.last_tick = self.tick;
            let (created, dropped) = row.add(second, error, bucket, may_grow);
            self.histogram_entries = self.histogram_entries + created - dropped;
        }
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
        }
    }
}

fn log(message: &str) {
    tracing::warn!("{message}");
}

/// Which peers may read the live view.
#[derive(Debug, Clone, Copy)]
struct PeerPolicy {
    /// The worker's own (effective) uid.
    own_uid: u32,
    /// Root may read it too (always, except in tests of the refusal).
    allow_root: bool,
}

impl PeerPolicy {
    fn allows(self, uid: u32) -> bool {
        (self.allow_root && uid == 0) || uid == self.own_uid
    }
}

struct Shared {
    view: Arc<Mutex<LiveView>>,
    policy: PeerPolicy,
    /// The last snapshot as a JSON line, shared by every client.
    cache: Mutex<Option<(Instant, Arc<[u8]>)>>,
    clients: AtomicUsize,
    refusals: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The current snapshot line, computed at most every [`SNAPSHOT_REUSE`].
    fn frame(&self) -> Result<Arc<[u8]>, String> {
        let mut cache = lock(&self.cache);
        if let Some((at, line)) = cache.as_ref() {
            if at.elapsed() < SNAPSHOT_REUSE {
                return Ok(Arc::clone(line));
            }
        }
        let now = Instant::now();
        let snapshot = lock(&self.view).snapshot(now);
        let mut line =
            serde_json::to_vec(&snapshot).map_err(|e| format!("encoding a live snapshot: {e}"))?;
        line.push(b'\n');
        let line: Arc<[u8]> = line.into();
        *cache = Some((now, Arc::clone(&line)));
        Ok(line)
    }
}

/// Writes all of `bytes` (MSG_NOSIGNAL: a closed peer is an error, not a signal).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
    Ok(())
}

fn refuse(stream: &UnixStream, reason: &str) {
    let refusal = LiveRefusal {
        refused: reason.to_owned(),
    };
    if let Ok(mut line) = serde_json::to_vec(&refusal) {
        line.push(b'\n');
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = send_all(stream, &line);
    }
}

/// Serves one allowed client until it goes away.
fn stream_to(stream: UnixStream, shared: &Shared) {
    if let Err(e) = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)) {
        log(&format!("live view: setting a client's write timeout: {e}"));
        return;
    }
    let mut scratch = [0u8; 64];
    loop {
        let frame = match shared.frame() {
            Ok(frame) => frame,
            Err(e) => {
                log(&format!("live view: {e}"));
                return;
            }
        };
        if send_all(&stream, &frame).is_err() {
            return; // gone, or not reading
        }
        // Wait for the next frame, noticing a close meanwhile.
        let next = Instant::now() + FRAME_INTERVAL;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            if stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match (&stream).read(&mut scratch) {
                Ok(_) => return, // closed (0), or a client that talks: the channel is read-only
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Decrements the client count when a client thread ends.
struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept(stream: UnixStream, shared: &Arc<Shared>) {
    let credentials = match getsockopt(&stream, sockopt::PeerCredentials) {
        Ok(credentials) => credentials,
        Err(e) => {
            log(&format!("live view: reading a client's credentials: {e}"));
            return;
        }
    };
    let uid = credentials.uid();
    if !shared.policy.allows(uid) {
        let n = shared.refusals.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_multiple_of(1000) {
            log(&format!(
                "live view: refused a client with uid {uid} (pid {}): only root and uid {} may read it ({n} refused so far)",
                credentials.pid(),
                shared.policy.own_uid
            ));
        }
        refuse(
            &stream,
            &format!(
                "uid {uid} may not read this live view (only root and uid {})",
                shared.policy.own_uid
            ),
        );
        return;
    }
    if shared.clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
        shared.clients.fetch_sub(1, Ordering::Relaxed);
        refuse(
            &stream,
            &format!("too many live view clients (at most {MAX_CLIENTS})"),
        );
        return;
    }
    let slot = ClientSlot(Arc::clone(shared));
    let spawned = std::thread::Builder::new()
        .name("live-client".into())
        .spawn(move || {
            let slot = slot;
            stream_to(stream, &slot.0);
        });
    if let Err(e) = spawned {
        // The closure (and its slot) was dropped: the count is already given back.
        log(&format!("live view: starting a client thread: {e}"));
    }
}

/// Binds at a temporary name, restricts it to 0600, then renames it into
/// place, so the socket is never reachable with wider permissions. A stale
/// socket is replaced; a live one (another agent serving it) or a path that
/// is not a socket is left alone and reported.
fn bind(path: &Path) -> Result<UnixListener, String> {
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "live view socket {shown}: directory {} does not exist",
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "live view socket {shown} is already served by another process (another agent?); not taking it over"
                ));
            }
        }
        Ok(_) => {
            return Err(format!(
                "live view socket {shown}: the path exists and is not a socket; not replacing it"
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("live view socket {shown}: {e}")),
    }
    let temporary: PathBuf = dir.join(format!(".live-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)
        .map_err(|e| format!("binding {}: {e}", temporary.display()))?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod 0600 {}: {e}", temporary.display()))
        .and_then(|()| {
            std::fs::rename(&temporary, path)
                .map_err(|e| format!("moving the live view socket to {shown}: {e}"))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(listener)
}

/// Serves the live view on a Unix stream socket at `socket_path` (its
/// directory must exist) from a background thread; returns once listening.
/// Only root and this process's uid may connect; each gets one JSON
/// [`LiveSnapshot`] per line every second.
pub fn serve(socket_path: &Path, view: Arc<Mutex<LiveView>>) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    serve_with(
        socket_path,
        view,
        PeerPolicy {
            own_uid,
            allow_root: true,
        },
    )
}

fn serve_with(
    socket_path: &Path,
    view: Arc<Mutex<LiveView>>,
    policy: PeerPolicy,
) -> Result<(), String> {
    let listener = bind(socket_path)?;
    let shared = Arc::new(Shared {
        view,
        policy,
        cache: Mutex::new(None),
        clients: AtomicUsize::new(0),
        refusals: AtomicU64::new(0),
    });
    std::thread::Builder::new()
        .name("live-view".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => accept(stream, &shared),
                    Err(e) => {
                        log(&format!("live view: accept: {e}"));
                        // e.g. out of descriptors: do not spin
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|e| format!("starting the live view thread: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{HttpExchange, Protocol, SpanOrigin};
    use std::io::{BufRead, BufReader, Write as _};
    use std::net::SocketAddr;

    fn span_origin(kind: SpanKind) -> SpanOrigin {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
        SpanOrigin {
            kind,
            pid: 42,
            process_name: "app".into(),
            local: addr,
            peer: addr,
            tls: false,
        }
    }

    fn exchange(target: &str, status: u16) -> HttpExchange {
        HttpExchange {
            method: "GET".into(),
            target: target.into(),
            status,
            protocol_version: "1.1",
            ..HttpExchange::default()
        }
    }

    fn span(kind: SpanKind, target: &str, status: u16, duration_ns: u64) -> Span {
        Span::new(
            span_origin(kind),
            (1_000, 1_000 + duration_ns),
            false,
            Protocol::Http(exchange(target, status)),
        )
    }

    /// The span with its matched route.
    fn routed(mut span: Span, route: &str) -> Span {
        if let Some(http) = span.http_mut() {
            http.route = Some(route.to_owned());
        }
        span
    }

    fn at(origin: Instant, seconds: f64) -> Instant {
        origin + Duration::from_secs_f64(seconds)
    }

    fn route<'a>(snapshot: &'a LiveSnapshot, kind: LiveKind, name: &str) -> &'a LiveRow {
        snapshot
            .routes
            .iter()
            .find(|r| r.kind == kind && r.route == name)
            .unwrap_or_else(|| panic!("no {kind:?} row {name}: {snapshot:#?}"))
    }

    fn close(actual: Option<f64>, expected: f64, tolerance: f64) -> bool {
        actual.is_some_and(|a| (a - expected).abs() <= expected * tolerance)
    }

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for ns in (0..200_000u64).chain((1..2_000).map(|i| i * 1_000_003)) {
            let bucket = bucket_of(ns);
            assert!(bucket >= last, "bucket({ns}) = {bucket} < {last}");
            last = bucket;
            let value = bucket_value_ns(bucket);
            let error = (value - ns as f64).abs() / (ns as f64).max(1.0);
            assert!(error <= 0.0160, "{ns} ns -> {value} ({error})");
        }
        // Huge values are clamped, not wrapped.
        assert_eq!(usize::from(bucket_of(u64::MAX)), BUCKETS - 1);
        assert!(bucket_of(u64::MAX) >= bucket_of(1 << 40));
        assert_eq!(bucket_of(u64::MAX), bucket_of(1 << 45));
    }

    #[test]
    fn rates_error_rates_and_totals_over_the_window() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        // 100 seconds of 20 requests/s on /a (one in four fails), 5/s on /b.
        for second in 0..100 {
            for i in 0..20 {
                let status = if i % 4 == 0 { 503 } else { 200 };
                let now = at(origin, second as f64 + i as f64 / 20.0);
                view.record(
                    &span(SpanKind::Server, "/a?x=1", status, 1_000_000),
                    "svc",
                    now,
                );
            }
            for i in 0..5 {
                let now = at(origin, second as f64 + i as f64 / 5.0);
                view.record(&span(SpanKind::Server, "/b", 404, 1_000_000), "svc", now);
            }
        }
        let snapshot = view.snapshot(at(origin, 100.0));
        assert_eq!(snapshot.version, LIVE_PROTOCOL_VERSION);
        let a = route(&snapshot, LiveKind::Server, "/a");
        assert!((a.requests_per_second - 20.0).abs() < 0.5, "{a:?}");
        assert!((a.error_rate - 0.25).abs() < 0.01, "{a:?}");
        assert_eq!(a.requests_total, 2_000);
        assert_eq!(a.errors_total, 500);
        assert_eq!(a.history.len(), HISTORY_SECONDS);
        assert_eq!(a.history[..59], [20; 59]);
        let b = route(&snapshot, LiveKind::Server, "/b");
        assert!((b.requests_per_second - 5.0).abs() < 0.2, "{b:?}");
        assert_eq!(b.error_rate, 0.0, "404 is not a server error");
        assert!((snapshot.server.requests_per_second - 25.0).abs() < 0.6);
        assert_eq!(snapshot.server.requests_total, 2_500);
        assert_eq!(snapshot.server.errors_total, 500);
        assert_eq!(snapshot.client.requests_total, 0);
        assert_eq!(snapshot.services.len(), 1);
        let service = &snapshot.services[0];
        assert_eq!(
            (service.service.as_str(), service.route.as_str()),
            ("svc", "")
        );
        assert!((service.requests_per_second - 25.0).abs() < 0.6);
        assert!((service.error_rate - 0.2).abs() < 0.01);
        assert_eq!(service.requests_total, 2_500);
        assert_eq!(service.history[..59], [25; 59]);
        assert!(close(service.p50_ms, 1.0, 0.02), "{service:?}");
        assert!(close(service.p99_ms, 1.0, 0.02), "{service:?}");
    }

    #[test]
    fn client_errors_include_4xx_and_kinds_are_separate() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        let now = at(origin, 30.5);
        view.record(
            &routed(span(SpanKind::Client, "/x", 404, 1_000), "/x"),
            "svc",
            now,
        );
        view.record(
            &routed(span(SpanKind::Client, "/x", 200, 1_000), "/x"),
            "svc",
            now,
        );
        view.record(
            &routed(span(SpanKind::Server, "/x", 404, 1_000), "/x"),
            "svc",
            now,
        );
        let snapshot = view.snapshot(now);
        assert_eq!(route(&snapshot, LiveKind::Client, "/x").error_rate, 0.5);
        assert_eq!(route(&snapshot, LiveKind::Server, "/x").error_rate, 0.0);
        assert_eq!(snapshot.services.len(), 2);
    }

    #[test]
    fn grpc_calls_count_errors_by_the_rpc_rules() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        let now = at(origin, 30.5);
        let call = |kind, code| {
            let call = crate::spans::GrpcCall {
                service: "shop.Catalog".into(),
                method: "Get".into(),
                status_code: Some(code),
                message: None,
            };
            let http = exchange("/shop.Catalog/Get", 200);
            Span::new(
                span_origin(kind),
                (1_000, 2_000),
                false,
                Protocol::Grpc(crate::spans::GrpcExchange { call, http }),
            )
        };
        for kind in [SpanKind::Server, SpanKind::Client] {
            // NOT_FOUND: the caller's error only; UNAVAILABLE: both sides'.
            view.record(&call(kind, 5), "svc", now);
            view.record(&call(kind, 14), "svc", now);
        }
        let snapshot = view.snapshot(now);
        let path = "/shop.Catalog/Get";
        assert_eq!(route(&snapshot, LiveKind::Server, path).error_rate, 0.5);
        assert_eq!(route(&snapshot, LiveKind::Client, path).error_rate, 1.0);
    }

    #[test]
    fn a_known_route_groups_paths() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        let now = at(origin, 1.0);
        for id in 0..50 {
            let path = format!("/users/{id}");
            view.record(
                &routed(span(SpanKind::Server, &path, 200, 1_000), "/users/:id"),
                "svc",
                now,
            );
        }
        let snapshot = view.snapshot(now);
        assert_eq!(snapshot.routes.len(), 1);
        assert_eq!(
            route(&snapshot, LiveKind::Server, "/users/:id").requests_total,
            50
        );
    }

    #[test]
    fn percentiles_are_within_two_percent() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        // 1..=1000 ms, uniformly, spread over the last 5 seconds.
        for i in 1..=1000u64 {
            let now = at(origin, 55.0 + (i % 5) as f64);
            view.record(
                &span(SpanKind::Server, "/slow", 200, i * 1_000_000),
                "svc",
                now,
            );
        }
        let row = route(&view.snapshot(at(origin, 59.9)), LiveKind::Server, "/slow").clone();
        assert!(close(row.p50_ms, 500.0, 0.02), "{row:?}");
        assert!(close(row.p95_ms, 950.0, 0.02), "{row:?}");
        assert!(close(row.p99_ms, 990.0, 0.02), "{row:?}");

        // Sub-millisecond latencies keep their precision too.
        let mut view = LiveView::starting_at(origin);
        for i in 1..=200u64 {
            view.record(
                &span(SpanKind::Server, "/fast", 200, 100_000 + i * 1_000),
                "svc",
                at(origin, 3.0),
            );
        }
        let row = route(&view.snapshot(at(origin, 3.5)), LiveKind::Server, "/fast").clone();
        assert!(close(row.p50_ms, 0.200, 0.02), "{row:?}");
        assert!(close(row.p99_ms, 0.298, 0.02), "{row:?}");
    }

    #[test]
    fn old_seconds_leave_the_window_and_the_history() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        for _ in 0..100 {
            view.record(
                &span(SpanKind::Server, "/a", 500, 5_000_000),
                "svc",
                at(origin, 10.2),
            );
        }
        let row = route(&view.snapshot(at(origin, 15.5)), LiveKind::Server, "/a").clone();
        assert!(
            (row.requests_per_second - 100.0 / 9.5).abs() < 0.01,
            "{row:?}"
        );
        assert_eq!(row.error_rate, 1.0);
        assert!(close(row.p50_ms, 5.0, 0.02));
        assert_eq!(row.history[HISTORY_SECONDS - 6], 100);

        // 30 s later: out of the 10 s window, still in the minute's history.
        let row = route(&view.snapshot(at(origin, 40.5)), LiveKind::Server, "/a").clone();
        assert_eq!(row.requests_per_second, 0.0);
        assert_eq!(row.error_rate, 0.0);
        assert_eq!(row.p99_ms, None);
        assert_eq!(row.history.iter().sum::<u32>(), 100);
        assert_eq!(row.requests_total, 100);

        // Past a minute the row is no longer sent; past ten it is forgotten.
        assert!(view.snapshot(at(origin, 75.0)).routes.is_empty());
        assert_eq!(view.rows(), 1);
        view.record(
            &span(SpanKind::Server, "/b", 200, 1),
            "svc",
            at(origin, 700.0),
        );
        assert_eq!(view.rows(), 1);
        let snapshot = view.snapshot(at(origin, 700.0));
        assert_eq!(snapshot.routes.len(), 1);
        assert_eq!(snapshot.server.requests_total, 101);
    }

    #[test]
    fn the_first_seconds_are_not_diluted() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        for i in 0..30 {
            view.record(
                &span(SpanKind::Server, "/a", 200, 1),
                "svc",
                at(origin, i as f64 / 20.0),
            );
        }
        let snapshot = view.snapshot(at(origin, 1.5));
        assert!((snapshot.window_seconds - 1.5).abs() < 1e-9);
        assert!((route(&snapshot, LiveKind::Server, "/a").requests_per_second - 20.0).abs() < 1e-6);
    }

    #[test]
    fn rows_are_bounded_and_the_least_recent_evicted() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        let now = at(origin, 5.0);
        view.record(&span(SpanKind::Server, "/keep", 200, 1_000), "svc", now);
        for i in 0..(MAX_ROWS * 3) {
            view.record(
                &span(
                    SpanKind::Server,
                    &format!("/scan/{i}"),
                    404,
                    1_000 + i as u64,
                ),
                "svc",
                now,
            );
            if i % 100 == 0 {
                view.record(&span(SpanKind::Server, "/keep", 200, 1_000), "svc", now);
            }
            assert!(view.rows() <= MAX_ROWS);
        }
        let snapshot = view.snapshot(now);
        assert!(
            snapshot.rows_evicted >= (MAX_ROWS * 2) as u64,
            "{}",
            snapshot.rows_evicted
        );
        assert_eq!(
            route(&snapshot, LiveKind::Server, "/keep").requests_total,
            1 + (MAX_ROWS * 3 / 100) as u64
        );
        assert!(snapshot
            .routes
            .iter()
            .any(|r| r.route == format!("/scan/{}", MAX_ROWS * 3 - 1)));
        assert_eq!(
            snapshot.server.requests_total,
            1 + (MAX_ROWS * 3 + MAX_ROWS * 3 / 100) as u64
        );
        // The entry count matches what the rows hold.
        let held: usize = view.rows.values().map(Row::entries).sum();
        assert_eq!(held, view.histogram_entries());
    }

    #[test]
    fn long_routes_and_services_are_cut() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        let long = format!("/{}", "é".repeat(1_000));
        view.record(
            &span(SpanKind::Server, &long, 200, 1),
            &"s".repeat(1_000),
            origin,
        );
        let snapshot = view.snapshot(origin);
        assert!(snapshot.routes[0].route.len() <= MAX_ROUTE_BYTES);
        assert!(snapshot.routes[0].service.len() <= MAX_SERVICE_BYTES);
    }

    #[test]
    fn histogram_memory_is_capped_and_counts_stay_exact() {
        let mut slot = LatencySlot {
            second: 0,
            entries: Vec::new(),
        };
        assert_eq!(
            slot.add(100, false),
            1,
            "an empty second always gets one entry"
        );
        assert_eq!(slot.add(300, false), 0);
        assert_eq!(slot.add(50, false), 0);
        assert_eq!(slot.entries, vec![(100, 3)]);
        assert_eq!(slot.add(300, true), 1);
        assert_eq!(slot.add(290, false), 0);
        assert_eq!(slot.add(120, false), 0);
        assert_eq!(slot.entries, vec![(100, 4), (300, 2)]);
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        view.record(
            &span(SpanKind::Server, "/a", 200, 1_000_000),
            "svc",
            at(origin, 2.0),
        );
        let snapshot = view.snapshot(at(origin, 2.5));
        let text = serde_json::to_string(&snapshot).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("\"kind\":\"server\""), "{text}");
        let back: LiveSnapshot = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, snapshot);
        // Fields added later are optional for older readers, and the other way round.
        let minimal: LiveSnapshot = serde_json::from_str(
            r#"{"version":1,"routes":[{"service":"s","route":"/","extra":1}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(minimal.routes[0].service, "s");
    }

    /// Recording and snapshot costs (run with --ignored --release to measure).
    #[test]
    #[ignore]
    fn record_cost() {
        let origin = Instant::now();
        let mut view = LiveView::starting_at(origin);
        let spans: Vec<Span> = (0..64)
            .map(|i| {
                span(
                    SpanKind::Server,
                    &format!("/route/{i}"),
                    200,
                    100_000 + i * 7_919,
                )
            })
            .collect();
        let n = 2_000_000u64;
        let started = Instant::now();
        for i in 0..n {
            let now = origin + Duration::from_micros(i);
            view.record(&spans[(i % 64) as usize], "python3", now);
        }
        let per = started.elapsed().as_nanos() as f64 / n as f64;
        eprintln!("record, 64 routes: {per:.0} ns per span");

        // Every span a new path: rows are created and evicted all the time.
        let unique: Vec<Span> = (0..200_000u64)
            .map(|i| span(SpanKind::Server, &format!("/scan/{i}"), 404, 100_000 + i))
            .collect();
        let started = Instant::now();
        for (i, span) in unique.iter().enumerate() {
            view.record(span, "python3", origin + Duration::from_micros(i as u64));
        }
        let per = started.elapsed().as_nanos() as f64 / unique.len() as f64;
        eprintln!("record, a new path every span: {per:.0} ns per span");

        // A full view: MAX_ROWS rows, each with 10 s of varied latencies.
        let mut view = LiveView::starting_at(origin);
        let rows: Vec<Span> = (0..MAX_ROWS as u64)
            .map(|i| span(SpanKind::Server, &format!("/r/{i}"), 200, 1))
            .collect();
        for second in 0..10u64 {
            for (i, row) in rows.iter().enumerate() {
                for k in 0..20u64 {
                    let mut span = row.clone();
                    span.end_monotonic_ns =
                        span.start_monotonic_ns + 50_000 * (1 + (i as u64 + k * 37) % 400);
                    view.record(&span, "python3", origin + Duration::from_secs(second));
                }
            }
        }
        let started = Instant::now();
        let snapshot = view.snapshot(origin + Duration::from_millis(9_900));
        let took = started.elapsed();
        let bytes = serde_json::to_vec(&snapshot).map(|v| v.len()).unwrap_or(0);
        eprintln!(
            "snapshot of {} rows, {} histogram entries: {took:?}, {bytes} bytes of JSON",
            snapshot.routes.len(),
            view.histogram_entries()
        );
    }

    fn socket_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("zerotrace-live-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn shared_view() -> Arc<Mutex<LiveView>> {
        let mut view = LiveView::new();
        let now = Instant::now();
        view.record(
            &span(SpanKind::Server, "/hello", 200, 450_000),
            "python3",
            now,
        );
        view.record(
            &span(SpanKind::Server, "/status/500", 500, 450_000),
            "python3",
            now,
        );
        Arc::new(Mutex::new(view))
    }

    fn read_line(stream: &UnixStream) -> String {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        line
    }

    #[test]
    fn serves_snapshots_to_the_same_uid_with_mode_0600() {
        let dir = socket_dir("ok");
        let path = dir.join("live.sock");
        serve(&path, shared_view()).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let stream = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
        let first: LiveSnapshot =
            serde_json::from_str(&read_line(&stream)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.version, LIVE_PROTOCOL_VERSION);
        assert_eq!(
            route(&first, LiveKind::Server, "/status/500").error_rate,
            1.0
        );
        // The next one comes about a second later.
        let started = Instant::now();
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let second: LiveSnapshot =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(second.uptime_seconds > first.uptime_seconds);
        assert!(started.elapsed() > Duration::from_millis(500));
        drop(reader);
        drop(stream);

        // A stale socket (nobody listening) is replaced; a live one is not taken over.
        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap_or_else(|e| panic!("{e}")));
        serve(&stale, shared_view()).unwrap_or_else(|e| panic!("{e}"));
        let err = serve(&stale, shared_view()).err().unwrap_or_default();
        assert!(err.contains("already served"), "{err}");
        // A path that is not a socket is never replaced.
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap_or_else(|e| panic!("{e}"));
        assert!(serve(&file, shared_view()).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), "x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_a_uid_the_policy_does_not_allow() {
        let dir = socket_dir("refused");
        let path = dir.join("live.sock");
        // SAFETY: geteuid has no preconditions.
        let own = unsafe { libc::geteuid() };
        let policy = PeerPolicy {
            own_uid: own.wrapping_add(1),
            allow_root: false,
        };
        serve_with(&path, shared_view(), policy).unwrap_or_else(|e| panic!("{e}"));
        let stream = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
        let line = read_line(&stream);
        let refusal: LiveRefusal =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(refusal.refused.contains(&format!("uid {own}")), "{line}");
        // Then the server closes.
        assert_eq!(read_line(&stream), "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn policy_allows_root_and_the_own_uid_only() {
        let policy = PeerPolicy {
            own_uid: 65534,
            allow_root: true,
        };
        assert!(policy.allows(0));
        assert!(policy.allows(65534));
        assert!(!policy.allows(1000));
        assert!(!policy.allows(65533));
    }

    #[test]
    fn a_client_that_writes_is_dropped_and_clients_are_capped() {
        let dir = socket_dir("cap");
        let path = dir.join("live.sock");
        serve(&path, shared_view()).unwrap_or_else(|e| panic!("{e}"));
        let talker = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_line(&talker).starts_with('{'));
        let _ = (&talker).write_all(b"GET / HTTP/1.0\r\n\r\n");
        // The server hangs up instead of sending the next snapshot.
        let mut reader = BufReader::new(&talker);
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
        assert_eq!(rest, "");

        // The talker's slot is released when its serving thread ends, which
        // may be a moment after the hang-up: retry until all slots are free.
        let clients = wait_until(|| {
            let clients: Vec<UnixStream> = (0..MAX_CLIENTS)
                .map(|_| UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            let served = clients
                .iter()
                .all(|client| read_line(client).contains("\"version\""));
            if served {
                Some(clients)
            } else {
                drop(clients);
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
        .unwrap_or_else(|| panic!("never got {MAX_CLIENTS} clients served"));
        let extra = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_line(&extra).contains("too many"));
        drop(clients);
        // Slots are given back when clients leave.
        let again = wait_until(|| {
            let client = UnixStream::connect(&path).ok()?;
            read_line(&client).contains("\"version\"").then_some(())
        });
        assert!(again.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(value) = check() {
                return Some(value);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}
