//! Trace linking: spans of one request on one host become one trace.
//!
//! Across processes (OBI's "black-box context propagation"): both ends of a
//! loopback or same-host connection are visible, so a server span whose
//! connection mirrors an instrumented client's connection (the client's
//! local address is the server's peer and the reverse) becomes that client
//! span's child, and takes its trace id — without changing a byte of traffic.
//! A request that carried a `traceparent` keeps it: the incoming context wins.
//!
//! The server side usually finishes first (it answers before the client has
//! read the answer), so a server span that may have an instrumented caller
//! is held until that caller's span arrives or [`LinkSettings::wait`] passes;
//! then it goes out as it is, never lost. Spans held because they are in a
//! trace whose root may still move are rewritten with it.

mod client_connections;
mod matching;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

pub use crate::config::LinkSettings;
use crate::spans::{Span, SpanKind};

pub use client_connections::ClientConnections;
use matching::{overlap_ns, same_request};

/// What linking did, for the self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Server spans made the child of another process's client span.
    pub linked_across_processes: u64,
    /// Server spans held for an instrumented caller that never matched: sent as roots.
    pub unlinked_after_wait: u64,
    /// Server spans with two equally good callers: sent as roots, never guessed.
    pub ambiguous: u64,
}

/// A connection as its server side sees it: (local, peer).
type ConnectionKey = (SocketAddr, SocketAddr);

/// Client spans kept after they were sent, for server spans processed later.
const RECENT_CLIENTS_PER_CONNECTION: usize = 64;
/// Forgotten callers are swept out this often (100 ms).
const SWEEP_EVERY_NS: u64 = 100_000_000;
/// Spans held at most; past this the oldest goes out as it is.
const MAX_HELD: usize = 65_536;

struct Held {
    span: Span,
    release_at_ns: u64,
}

/// A client span already sent: what a late server span needs to join it.
#[derive(Clone)]
struct RecentClient {
    span: Span,
    forget_at_ns: u64,
}

pub struct TraceLinker {
    settings: LinkSettings,
    clients: ClientConnections,
    /// Held spans by arrival order.
    held: BTreeMap<u64, Held>,
    next_seq: u64,
    /// When forgotten callers are next swept out of `recent_clients`.
    next_sweep_ns: u64,
    /// Held server spans waiting for a caller, by their connection.
    waiting: HashMap<ConnectionKey, Vec<u64>>,
    /// Client spans by the connection as its server side sees it.
    recent_clients: HashMap<ConnectionKey, VecDeque<RecentClient>>,
    counters: LinkCounters,
}

impl TraceLinker {
    pub fn new(settings: LinkSettings) -> Self {
        Self {
            settings,
            clients: ClientConnections::default(),
            held: BTreeMap::new(),
            next_seq: 0,
            next_sweep_ns: 0,
            waiting: HashMap::new(),
            recent_clients: HashMap::new(),
            counters: LinkCounters::default(),
        }
    }

    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// An instrumented process connected from `local` to `peer`.
    pub fn note_client_connection(&mut self, local: SocketAddr, peer: SocketAddr) {
        if self.settings.enabled {
            self.clients.insert(local, peer);
        }
    }

    /// A finished span: it goes to `ready` now, or is held for its parent.
    pub fn push(&mut self, span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        if !self.settings.enabled {
            ready.push(span);
            return;
        }
        match span.kind {
            SpanKind::Client | SpanKind::Producer => self.push_client(span, now_ns, ready),
            SpanKind::Server | SpanKind::Consumer => self.push_server(span, now_ns, ready),
        }
    }

    /// Sends the spans whose wait is over.
    pub fn release_due(&mut self, now_ns: u64, ready: &mut Vec<Span>) {
        let due: Vec<u64> = self
            .held
            .iter()
            .take_while(|(_, h)| h.release_at_ns <= now_ns)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            if let Some(held) = self.take_held(seq) {
                if held.span.kind == SpanKind::Server {
                    self.counters.unlinked_after_wait += 1;
                }
                ready.push(held.span);
            }
        }
        // A sweep walks every kept caller: not on every flush.
        if now_ns >= self.next_sweep_ns {
            self.next_sweep_ns = now_ns.saturating_add(SWEEP_EVERY_NS);
            self.recent_clients.retain(|_, clients| {
                clients.retain(|c| c.forget_at_ns > now_ns);
                !clients.is_empty()
            });
        }
    }

    /// Everything held goes out (the agent stops).
    pub fn release_all(&mut self, ready: &mut Vec<Span>) {
        let all: Vec<u64> = self.held.keys().copied().collect();
        for seq in all {
            if let Some(held) = self.take_held(seq) {
                ready.push(held.span);
            }
        }
    }

    fn wait_ns(&self) -> u64 {
        u64::try_from(self.settings.wait.as_nanos()).unwrap_or(u64::MAX)
    }

    fn push_client(&mut self, span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        // Only a server on this host can be this span's child.
        if !peer_may_be_local(&span) {
            ready.push(span);
            return;
        }
        // The server side sees this connection as (peer, local).
        let key = (span.peer, span.local);
        let forget_at_ns = now_ns.saturating_add(self.wait_ns());
        let recent = self.recent_clients.entry(key).or_default();
        if recent.len() == RECENT_CLIENTS_PER_CONNECTION {
            recent.pop_front();
        }
        recent.push_back(RecentClient {
            span: span.clone(),
            forget_at_ns,
        });
        // Held servers of this connection whose best caller is this span.
        let mut children = Vec::new();
        if let (Some(waiting), Some(recent)) =
            (self.waiting.get(&key), self.recent_clients.get(&key))
        {
            for seq in waiting {
                let Some(held) = self.held.get(seq) else {
                    continue;
                };
                if let Some(Ok(best)) = best_client(&held.span, recent.iter().map(|c| &c.span)) {
                    if best.ids.span_id == span.ids.span_id {
                        children.push(*seq);
                    }
                }
            }
        }
        for seq in children {
            if let Some(held) = self.take_held(seq) {
                let mut server = held.span;
                self.adopt(&mut server, &span);
                ready.push(server);
            }
        }
        ready.push(span);
    }

    fn push_server(&mut self, mut span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        let carries_context = span.ids.parent_span_id.is_some();
        let key = (span.local, span.peer);
        if carries_context || !self.clients.contains(span.peer, span.local) {
            ready.push(span);
            return;
        }
        // The caller's span may already be here (events of the two processes
        // arrive in either order).
        if let Some(recent) = self.recent_clients.get(&key) {
            match best_client(&span, recent.iter().map(|c| &c.span)) {
                Some(Ok(client)) => {
                    let client = client.clone();
                    self.adopt(&mut span, &client);
                    ready.push(span);
                    return;
                }
                Some(Err(Ambiguous)) => {
                    self.counters.ambiguous += 1;
                    ready.push(span);
                    return;
                }
                None => {}
            }
        }
        if self.held.len() >= MAX_HELD {
            if let Some(oldest) = self.held.keys().next().copied() {
                if let Some(held) = self.take_held(oldest) {
                    ready.push(held.span);
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.entry(key).or_default().push(seq);
        self.held.insert(
            seq,
            Held {
                span,
                release_at_ns: now_ns.saturating_add(self.wait_ns()),
            },
        );
    }

    /// `server` becomes `client`'s child; spans held in the server's old
    /// trace move to the client's trace with it.
    fn adopt(&mut self, server: &mut Span, client: &Span) {
        let old_trace = server.ids.trace_id;
        server.ids.trace_id = client.ids.trace_id;
        server.ids.parent_span_id = Some(client.ids.span_id);
        server.ids.parent_sampled = client.ids.parent_sampled;
        for held in self.held.values_mut() {
            if held.span.ids.trace_id == old_trace {
                held.span.ids.trace_id = client.ids.trace_id;
            }
        }
        self.counters.linked_across_processes += 1;
    }

    fn take_held(&mut self, seq: u64) -> Option<Held> {
        let held = self.held.remove(&seq)?;
        let key = (held.span.local, held.span.peer);
        if let Some(list) = self.waiting.get_mut(&key) {
            list.retain(|s| *s != seq);
            if list.is_empty() {
                self.waiting.remove(&key);
            }
        }
        Some(held)
    }
}

/// Whether the other end of a client span's connection may be on this host:
/// loopback, or the same address as its own end.
fn peer_may_be_local(span: &Span) -> bool {
    span.peer.ip().is_loopback() || span.peer.ip() == span.local.ip()
}

/// Two callers fit a server span equally well: it stays a root.
#[derive(Debug)]
struct Ambiguous;

/// The client span of the same request: same method and target, and the
/// longest time overlap (the client's exchange encloses the server's, up to
/// the order in which the two sides' events were stamped).
fn best_client<'a>(
    server: &Span,
    clients: impl IntoIterator<Item = &'a Span>,
) -> Option<Result<&'a Span, Ambiguous>> {
    let mut best: Option<(&Span, u64)> = None;
    let mut tie = false;
    for client in clients {
        if !same_request(server, client) {
            continue;
        }
        let overlap = overlap_ns(server, client);
        if overlap == 0 {
            continue;
        }
        match best {
            Some((_, b)) if overlap < b => {}
            Some((_, b)) if overlap == b => tie = true,
            _ => {
                best = Some((client, overlap));
                tie = false;
            }
        }
    }
    best.map(|(client, _)| if tie { Err(Ambiguous) } else { Ok(client) })
}

#[cfg(test)]
mod tests;
