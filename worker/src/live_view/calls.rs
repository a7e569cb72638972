//! The live view's calls table: which service calls which (the service
//! graph's edges), with request and error rates over the window, for the
//! calls view of `zerotrace top`. Bounded like the rows: at most
//! [`MAX_CALLS`] edges (the least recently seen are dropped), idle ones forgotten.

use super::snapshot::LiveCall;
use super::{
    rate, ratio, truncated, CountRing, HISTORY_SECONDS, IDLE_FORGET_SECONDS, MAX_SERVICE_BYTES,
};
use crate::hashing::FastMap;
use crate::service_graph::EdgeKey;

/// Edges kept at most.
pub const MAX_CALLS: usize = 500;

#[derive(Debug)]
struct CallRow {
    client: Box<str>,
    server: Box<str>,
    connection_type: &'static str,
    counts: CountRing,
    requests_total: u64,
    errors_total: u64,
    last_second: u64,
}

#[derive(Debug, Default)]
pub(super) struct Calls {
    /// By "client NUL server NUL connection_type".
    rows: FastMap<Box<str>, CallRow>,
    /// Reused to build row keys: an edge already seen allocates nothing.
    key: String,
}

impl Calls {
    /// `requests` on one edge in `second`, `errors` of them failed.
    pub(super) fn record(&mut self, edge: &EdgeKey, requests: u32, errors: u32, second: u64) {
        let client = truncated(&edge.client.name, MAX_SERVICE_BYTES);
        let server = truncated(&edge.server.name, MAX_SERVICE_BYTES);
        let connection_type = edge.connection_type.as_str();
        self.key.clear();
        for part in [client, "\0", server, "\0", connection_type] {
            self.key.push_str(part);
        }
        if !self.rows.contains_key(self.key.as_str()) {
            if self.rows.len() >= MAX_CALLS {
                self.forget(second);
            }
            self.rows.insert(
                self.key.as_str().into(),
                CallRow {
                    client: client.into(),
                    server: server.into(),
                    connection_type,
                    counts: CountRing::new(),
                    requests_total: 0,
                    errors_total: 0,
                    last_second: second,
                },
            );
        }
        let Some(row) = self.rows.get_mut(self.key.as_str()) else {
            return;
        };
        row.counts.add_many(second, requests, errors);
        row.requests_total += u64::from(requests);
        row.errors_total += u64::from(errors);
        row.last_second = row.last_second.max(second);
    }

    /// Idle edges go; if the table is still full, the least recently seen one.
    fn forget(&mut self, second: u64) {
        self.rows
            .retain(|_, row| row.last_second + IDLE_FORGET_SECONDS > second);
        if self.rows.len() >= MAX_CALLS {
            let oldest = self
                .rows
                .iter()
                .min_by_key(|(_, row)| row.last_second)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                self.rows.remove(&key);
            }
        }
    }

    /// Edges with a request in the last minute, busiest first.
    pub(super) fn snapshot(&self, current: u64, window: f64) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .rows
            .iter()
            .filter(|(_, row)| row.last_second + HISTORY_SECONDS as u64 > current)
            .map(|(_, row)| {
                let (requests, errors) = row.counts.window(current);
                LiveCall {
                    client: row.client.to_string(),
                    server: row.server.to_string(),
                    connection_type: row.connection_type.to_owned(),
                    requests_per_second: rate(requests, window),
                    error_rate: ratio(errors, requests),
                    requests_total: row.requests_total,
                    errors_total: row.errors_total,
                }
            })
            .collect();
        calls.sort_by(|a, b| {
            b.requests_per_second
                .total_cmp(&a.requests_per_second)
                .then_with(|| (&a.client, &a.server).cmp(&(&b.client, &b.server)))
        });
        calls
    }
}
