//! The live view's calls table: which service calls which (the service
//! graph's edges), with request and error rates over the window, for the
//! calls view of `zerotrace top`. Bounded like the rows: at most
//! [`MAX_CALLS`] edges (the least recently seen are dropped), idle ones forgotten.

use std::collections::HashMap;

use super::snapshot::LiveCall;
use super::{
    rate, ratio, truncated, CountRing, HISTORY_SECONDS, IDLE_FORGET_SECONDS, MAX_SERVICE_BYTES,
};
use crate::service_graph::EdgeObservation;

/// Edges kept at most.
pub const MAX_CALLS: usize = 500;

/// (client, server, connection_type)
type CallKey = (Box<str>, Box<str>, &'static str);

#[derive(Debug)]
struct CallRow {
    counts: CountRing,
    requests_total: u64,
    errors_total: u64,
    last_second: u64,
}

#[derive(Debug, Default)]
pub(super) struct Calls {
    rows: HashMap<CallKey, CallRow>,
}

impl Calls {
    pub(super) fn record(&mut self, edge: &EdgeObservation, second: u64) {
        let key: CallKey = (
            truncated(&edge.edge.client.name, MAX_SERVICE_BYTES).into(),
            truncated(&edge.edge.server.name, MAX_SERVICE_BYTES).into(),
            edge.edge.connection_type.as_str(),
        );
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_CALLS {
            self.forget(second);
        }
        let row = self.rows.entry(key).or_insert_with(|| CallRow {
            counts: CountRing::new(),
            requests_total: 0,
            errors_total: 0,
            last_second: second,
        });
        row.counts.add(second, edge.failed);
        row.requests_total += 1;
        row.errors_total += u64::from(edge.failed);
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
            .map(|((client, server, connection_type), row)| {
                let (requests, errors) = row.counts.window(current);
                LiveCall {
                    client: client.to_string(),
                    server: server.to_string(),
                    connection_type: (*connection_type).to_owned(),
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
