//! What `zerotrace top` reads: the snapshot the live view streams, one JSON
//! object per line, and the refusal a client gets instead.

use serde::{Deserialize, Serialize};

use super::LIVE_PROTOCOL_VERSION;
use crate::spans::SpanKind;

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
        // Producers and consumers (whose polls are their own requests) ask like clients.
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
    /// Who calls whom: one row per service graph edge, busiest first.
    pub calls: Vec<LiveCall>,
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
            calls: Vec::new(),
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

/// One edge of the service graph: `client` called `server` (a service name,
/// or the address of a peer that is not instrumented).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveCall {
    pub client: String,
    pub server: String,
    /// The service graph's `connection_type`: empty when both sides are
    /// instrumented, `virtual_node` when one is an address, `database`...
    pub connection_type: String,
    pub requests_per_second: f64,
    /// Errors (on either side) / requests over the window, 0..=1.
    pub error_rate: f64,
    pub requests_total: u64,
    pub errors_total: u64,
}

/// What the server writes instead of snapshots to a client it refuses, then closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRefusal {
    pub refused: String,
}
