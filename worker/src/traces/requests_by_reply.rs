//! Messaging requests by what their answer is keyed by — the reply subject
//! of a NATS request, the correlation id of an AMQP RPC request: a
//! responder's delivery that names the key of a request an instrumented
//! process on this host wrote is that request's child, as a server span is
//! its caller's; the broker in between changes nothing of either. Kept as
//! keys ([`crate::spans::messaging::reply_key`]).
//!
//! A NATS requester's span ends when it reads the reply, after the
//! responder wrote it (the delivery's end), so the delivery usually comes
//! first and waits for it (an AMQP publish ends when written, and usually
//! comes first); it waits only when an instrumented process wrote a request
//! with its key (the tracker hands those over at every flush), so a
//! responder whose requesters are elsewhere is never held.

use crate::hashing::FastMap;
use crate::spans::{MessagingSystem, Protocol, Span, SpanIds};

/// Keys, requests and waiting keys kept at most, each; past this no more
/// are taken until the sweep (their deliveries go out unlinked).
const MAX_KEYS: usize = 65_536;

/// A request's span, once the linker got it.
#[derive(Debug, Clone, Copy)]
struct Request {
    ids: SpanIds,
    start_ns: u64,
    end_ns: u64,
    forget_at_ns: u64,
}

#[derive(Default)]
pub struct RequestsByReply {
    /// Keys of requests written on this host, with when they are forgotten.
    awaited: FastMap<u64, u64>,
    /// Requests' spans, by key: the latest of each key.
    recent: FastMap<u64, Request>,
    /// Held deliveries waiting for their request's span, by key.
    waiting: FastMap<u64, Vec<u64>>,
}

impl RequestsByReply {
    /// A request with this key was written on this host: its delivery, if
    /// instrumented too, waits for its span.
    pub fn await_reply(&mut self, key: u64, forget_at_ns: u64) {
        if self.awaited.len() < MAX_KEYS || self.awaited.contains_key(&key) {
            self.awaited.insert(key, forget_at_ns);
        }
    }

    pub fn is_awaited(&self, key: u64) -> bool {
        self.awaited.contains_key(&key)
    }

    /// The span of a request keyed `key` (its `ids`, open over `window`),
    /// for deliveries that come after it.
    pub fn note_request(&mut self, key: u64, ids: SpanIds, window: (u64, u64), forget_at_ns: u64) {
        if self.recent.len() >= MAX_KEYS && !self.recent.contains_key(&key) {
            return;
        }
        let request = Request {
            ids,
            start_ns: window.0,
            end_ns: window.1,
            forget_at_ns,
        };
        self.recent.insert(key, request);
    }

    /// The ids of the request `delivery` (keyed `key`) answers, if its span
    /// came already: the latest request of that key, open around the
    /// delivery (a reply subject used again by a later request is not it).
    pub fn request_of(&self, delivery: &Span, key: u64) -> Option<SpanIds> {
        self.recent
            .get(&key)
            .filter(|r| answers((r.start_ns, r.end_ns), delivery))
            .map(|r| r.ids)
    }

    /// The held delivery `seq` waits for the request keyed `key`.
    pub fn wait(&mut self, key: u64, seq: u64) -> bool {
        if self.waiting.len() >= MAX_KEYS && !self.waiting.contains_key(&key) {
            return false;
        }
        self.waiting.entry(key).or_default().push(seq);
        true
    }

    /// The held deliveries waiting for a request keyed `key`.
    pub fn take_waiting(&mut self, key: u64) -> Vec<u64> {
        self.waiting.remove(&key).unwrap_or_default()
    }

    /// `seq` waits no more (linked, or its wait is over).
    pub fn stop_waiting(&mut self, key: u64, seq: u64) {
        if let Some(seqs) = self.waiting.get_mut(&key) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.waiting.remove(&key);
            }
        }
    }

    /// Every held delivery went out (the agent stops).
    pub fn clear_waiting(&mut self) {
        self.waiting.clear();
    }

    /// Forgets keys and requests no delivery can still need.
    pub fn sweep(&mut self, now_ns: u64) {
        self.awaited
            .retain(|_, forget_at_ns| *forget_at_ns > now_ns);
        self.recent.retain(|_, r| r.forget_at_ns > now_ns);
    }

    pub fn len(&self) -> usize {
        self.awaited.len() + self.recent.len() + self.waiting.values().map(Vec::len).sum::<usize>()
    }
}

/// Whether a request open over `(start, end)` can be the one `delivery`
/// answers: the delivery was read after the request was written (the
/// broker sits in between). A NATS request's span lasts until its reply is
/// read, so it was also answered before; an AMQP publish ends when written
/// (or confirmed), its reply coming as a delivery of its own.
pub fn answers((start_ns, end_ns): (u64, u64), delivery: &Span) -> bool {
    let read_after = start_ns <= delivery.start_monotonic_ns;
    match &delivery.protocol {
        Protocol::Messaging(m) if m.system == MessagingSystem::Nats => {
            read_after && delivery.end_monotonic_ns <= end_ns
        }
        _ => read_after,
    }
}
