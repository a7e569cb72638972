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
//! then it goes out as it is, never lost.
//!
//! In a process ([`nesting`]): a client call becomes the child of the one
//! server span (or delivery being processed) of its process that was open
//! around it on its thread. Calls are held until every request (and
//! delivery) their process read before them is answered (so all candidates
//! are known), decided in [`TraceLinker::release_due`].
//!
//! A span waiting for its own parent is its trace's root; the spans of that
//! trace are held with it, and when it finds its parent the whole trace
//! moves into the parent's ([`trace_moves`] remembers old ids for spans kept
//! under them), so a chain comes out as one trace whatever the arrival order.

mod callers;
mod client_connections;
mod matching;
mod nesting;
mod requests_by_reply;
mod trace_moves;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

pub use crate::config::LinkSettings;
use crate::hashing::FastMap;
use crate::spans::{Span, SpanKind};

use callers::Callers;
pub use client_connections::ClientConnections;
use matching::{overlap_ns, same_request};
use nesting::{ParentDecision, RecentParents};
use requests_by_reply::{answers, RequestsByReply};
use trace_moves::TraceMoves;

/// What linking did, for the self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Server spans made the child of another process's client span.
    pub linked_across_processes: u64,
    /// Client spans made the child of the server span their process was
    /// serving (or of the delivery it was processing).
    pub nested_in_process: u64,
    /// Server spans held for an instrumented caller that never matched: sent as roots.
    pub unlinked_after_wait: u64,
    /// Server spans with two equally good callers: sent as roots, never guessed.
    pub ambiguous: u64,
    /// Client spans of a serving process that two server spans could hold
    /// (an event loop with two requests in flight): sent as roots.
    pub ambiguous_parent: u64,
    /// Client spans of a serving process that no server span held on the
    /// calling thread (made outside a request, or by another thread): roots.
    pub no_parent: u64,
    /// Client spans whose wait ended with an older server request of their
    /// process still unanswered: sent as roots.
    pub parent_still_open: u64,
    /// Spans sent before their link was known because the cap on held spans was reached.
    pub held_limit: u64,
}

/// A connection as its server side sees it: (local, peer).
type ConnectionKey = (SocketAddr, SocketAddr);

/// Client spans kept after they were sent, for server spans processed later.
const RECENT_CLIENTS_PER_CONNECTION: usize = 64;
/// Forgotten callers are swept out this often (100 ms).
const SWEEP_EVERY_NS: u64 = 100_000_000;
/// Spans held at most; past this the oldest goes out as it is.
const MAX_HELD: usize = 65_536;

/// Why a span is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A server span waits for its caller's client span (another process).
    Caller,
    /// A client span waits for the server requests its process was serving.
    Parent,
    /// Its own link is known; its trace's root is still waiting (a root
    /// that finds its parent moves the whole trace).
    Root,
}

struct Held {
    span: Span,
    waiting: Waiting,
}

/// A client span already sent (or held): what a server span needs to join it.
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
    /// When each span waiting for a caller or a parent gives up, in order.
    deadlines: VecDeque<(u64, u64)>,
    /// Held spans by trace id.
    held_by_trace: FastMap<[u8; 16], Vec<u64>>,
    /// Traces whose root still waits, with how many of their spans do
    /// (one, the root, unless a cap forced one out).
    open_roots: FastMap<[u8; 16], u32>,
    /// Client spans waiting for their process's server requests.
    deciding: Vec<u64>,
    /// When forgotten callers are next swept out of `recent_clients`.
    next_sweep_ns: u64,
    /// Held server spans waiting for a caller, by their connection.
    waiting: FastMap<ConnectionKey, Vec<u64>>,
    /// Client spans by the connection as its server side sees it.
    recent_clients: FastMap<ConnectionKey, VecDeque<RecentClient>>,
    /// Server spans and deliveries, for the client calls made while
    /// serving or processing them.
    recent_parents: RecentParents,
    /// Processes seen making calls: the only ones whose server spans are
    /// remembered in `recent_parents`.
    callers: Callers,
    /// Messaging requests by what their answer is keyed by, for the
    /// deliveries that answer them in another process.
    requests: RequestsByReply,
    /// Traces merged into others, for spans remembered under an old id.
    moves: TraceMoves,
    /// The latest time pushed or released at.
    now_ns: u64,
    counters: LinkCounters,
}

impl TraceLinker {
    pub fn new(settings: LinkSettings) -> Self {
        Self {
            settings,
            clients: ClientConnections::default(),
            held: BTreeMap::new(),
            next_seq: 0,
            deadlines: VecDeque::new(),
            held_by_trace: FastMap::default(),
            open_roots: FastMap::default(),
            deciding: Vec::new(),
            next_sweep_ns: 0,
            waiting: FastMap::default(),
            recent_clients: FastMap::default(),
            recent_parents: RecentParents::default(),
            callers: Callers::default(),
            requests: RequestsByReply::default(),
            moves: TraceMoves::default(),
            now_ns: 0,
            counters: LinkCounters::default(),
        }
    }

    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Everything the linker remembers (held spans, kept callers and
    /// servers, moved traces): what its memory grows with.
    pub fn remembered_count(&self) -> usize {
        self.held.len()
            + self
                .recent_clients
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
            + self.recent_parents.len()
            + self.callers.len()
            + self.requests.len()
            + self.moves.len()
            + self.clients.len()
    }

    /// An instrumented process connected from `local` to `peer`.
    pub fn note_client_connection(&mut self, local: SocketAddr, peer: SocketAddr) {
        if self.settings.enabled {
            self.clients.insert(local, peer);
        }
    }

    /// An instrumented process wrote a messaging request keyed `key` (a
    /// NATS request's reply subject, an AMQP RPC request's correlation id,
    /// an MQTT 5 request's response topic and correlation data): a delivery
    /// naming it waits for that request's span, to be its child.
    pub fn note_awaited_reply(&mut self, key: u64, now_ns: u64) {
        if self.settings.enabled {
            let forget_at_ns = self.remember_until(now_ns);
            self.requests.await_reply(key, forget_at_ns);
        }
    }

    /// `pid` serves many requests per thread (a Go program): threads do not
    /// tell its requests apart, so its calls nest only under a lone request.
    pub fn serves_many_per_thread(&mut self, pid: u32) {
        self.recent_parents.mark_many_per_thread(pid);
    }

    /// `pid` exited (its number may be reused by another program).
    pub fn process_exited(&mut self, pid: u32) {
        self.recent_parents.forget_process(pid);
        self.callers.forget(pid);
    }

    /// A finished span: it goes to `ready` now, or is held for its parent
    /// (decided at the next [`Self::release_due`]).
    pub fn push(&mut self, span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        if !self.settings.enabled {
            ready.push(span);
            return;
        }
        self.now_ns = self.now_ns.max(now_ns);
        if is_call(span.kind) {
            self.push_client(span, now_ns, ready)
        } else {
            self.push_server(span, now_ns, ready)
        }
    }

    /// Whether [`Self::push`] would send `span` out at once, as it is, and
    /// hold nothing: linking is off, or it is a server span that carries
    /// its caller's context or whose caller cannot be on this host (no
    /// instrumented process connected from its peer address). Asking
    /// changes nothing.
    fn passes_at_once(&self, span: &Span) -> bool {
        !self.settings.enabled
            || (span.kind == SpanKind::Server
                && (span.ids.parent_span_id.is_some()
                    || !self.clients.contains(span.peer, span.local)))
    }

    /// What [`Self::push`] does with a span that [`Self::passes_at_once`],
    /// but the span stays where it is: the caller sends it on (a batch of
    /// such spans is not moved, at ~400 bytes a span).
    fn pass(&mut self, span: &Span, now_ns: u64) {
        if !self.settings.enabled {
            return;
        }
        self.now_ns = self.now_ns.max(now_ns);
        if span.kind == SpanKind::Server {
            self.remember_parent(span, now_ns);
        }
    }

    /// Links one batch of finished spans: afterwards `ready` (empty before)
    /// holds, in order, the batch's spans that go on and then what
    /// [`Self::release_due`] lets out, and `batch` is empty. When every span
    /// [`Self::passes_at_once`], the batch is handed over as it is (its spans
    /// are not moved, at ~400 bytes each); otherwise each goes through
    /// [`Self::push`], so the linker sees the same calls either way.
    pub fn link_batch(
        &mut self,
        batch: &mut Vec<Span>,
        ready: &mut Vec<Span>,
        now_ns: u64,
        unanswered: impl FnMut(u32) -> Vec<(u64, u32)>,
    ) {
        if batch.iter().all(|span| self.passes_at_once(span)) {
            for span in batch.iter() {
                self.pass(span, now_ns);
            }
            self.release_due(now_ns, unanswered, batch);
            // `ready` is empty: the two buffers trade places, no span moves.
            std::mem::swap(batch, ready);
            return;
        }
        self.note_callers(batch);
        for span in batch.drain(..) {
            self.push(span, now_ns, ready);
        }
        self.release_due(now_ns, unanswered, ready);
    }

    /// Notes the processes of the calls among `spans`, before any of their
    /// server spans is remembered: a request that made a call may be
    /// answered earlier in the same batch, and its span is kept only for a
    /// process known to make calls. Notes the reply subjects of the
    /// messaging requests among them too: their deliveries, earlier in the
    /// batch, wait for them.
    fn note_callers(&mut self, spans: &[Span]) {
        for span in spans.iter().filter(|span| is_call(span.kind)) {
            self.callers.note(span.pid);
            if span.kind == SpanKind::Producer {
                if let Some(key) = span.reply_key() {
                    let forget_at_ns = self.remember_until(self.now_ns);
                    self.requests.await_reply(key, forget_at_ns);
                }
            }
        }
    }

    /// A server span or a delivery, for the client spans its process makes
    /// while it is open: kept only for a process seen making calls.
    fn remember_parent(&mut self, span: &Span, now_ns: u64) {
        if !self.callers.contains(span.pid) {
            return;
        }
        let forget_at_ns = self.remember_until(now_ns);
        self.recent_parents.insert(span, now_ns, forget_at_ns);
    }

    /// Decides the client spans whose process has answered every request
    /// read before their call that could hold it (`unanswered` gives, per
    /// pid, each unanswered request's start and reading thread, 0 when
    /// unknown), and sends the spans whose wait is over.
    pub fn release_due(
        &mut self,
        now_ns: u64,
        mut unanswered: impl FnMut(u32) -> Vec<(u64, u32)>,
        ready: &mut Vec<Span>,
    ) {
        self.now_ns = self.now_ns.max(now_ns);
        let deciding = std::mem::take(&mut self.deciding);
        // Asked once per process and call of this function.
        let mut open_by_pid: HashMap<u32, Vec<(u64, u32)>> = HashMap::new();
        for seq in deciding {
            let decision = match self.held.get(&seq) {
                Some(held) if held.waiting == Waiting::Parent => {
                    let pid = held.span.pid;
                    let open = open_by_pid.entry(pid).or_insert_with(|| unanswered(pid));
                    self.recent_parents.decide(&held.span, open)
                }
                _ => continue,
            };
            self.apply_parent_decision(seq, decision, ready);
        }
        while let Some(&(at, seq)) = self.deadlines.front() {
            if at > now_ns {
                break;
            }
            self.deadlines.pop_front();
            let Some(held) = self.held.get(&seq) else {
                continue;
            };
            match held.waiting {
                Waiting::Caller => self.counters.unlinked_after_wait += 1,
                Waiting::Parent => self.counters.parent_still_open += 1,
                Waiting::Root => continue,
            }
            self.decide_root(seq, None, ready);
        }
        // A sweep walks every kept caller: not on every flush.
        if now_ns >= self.next_sweep_ns {
            self.next_sweep_ns = now_ns.saturating_add(SWEEP_EVERY_NS);
            self.recent_clients.retain(|_, clients| {
                clients.retain(|c| c.forget_at_ns > now_ns);
                !clients.is_empty()
            });
            self.recent_parents.sweep(now_ns);
            self.requests.sweep(now_ns);
            self.moves.sweep(now_ns);
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
        self.open_roots.clear();
        self.requests.clear_waiting();
        self.deciding.clear();
        self.deadlines.clear();
        self.waiting.clear();
    }

    fn wait_ns(&self) -> u64 {
        u64::try_from(self.settings.wait.as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long what a later span may need is remembered: a decision waits
    /// at most one wait after the span it needs arrived; twice, for the
    /// flushes in between.
    fn remember_until(&self, now_ns: u64) -> u64 {
        now_ns.saturating_add(self.wait_ns().saturating_mul(2))
    }

    fn push_client(&mut self, span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        self.callers.note(span.pid);
        // A delivery may be a call's parent too (a call made while the
        // message was processed), whatever its own parent turns out to be.
        if span.is_delivery() {
            self.remember_parent(&span, now_ns);
            if let Some(span) = self.push_answering_delivery(span, now_ns, ready) {
                self.push_call(span, now_ns, ready);
            }
            return;
        }
        let request = (span.kind == SpanKind::Producer)
            .then(|| span.reply_key())
            .flatten()
            .map(|key| {
                (
                    key,
                    span.ids,
                    span.start_monotonic_ns,
                    span.end_monotonic_ns,
                )
            });
        self.push_call(span, now_ns, ready);
        if let Some((key, ids, start_ns, end_ns)) = request {
            self.link_answering_deliveries(key, ids, (start_ns, end_ns), now_ns, ready);
        }
    }

    /// A delivery that answers a request an instrumented process wrote on
    /// this host (its reply subject's key): linked to that request's span,
    /// or held for it. Any other is handed back, to be nested as a call.
    fn push_answering_delivery(
        &mut self,
        span: Span,
        now_ns: u64,
        ready: &mut Vec<Span>,
    ) -> Option<Span> {
        // A delivery that carried its requester's context keeps it.
        let key = span
            .reply_key()
            .filter(|_| span.ids.parent_span_id.is_none());
        let Some(key) = key else {
            return Some(span);
        };
        if let Some(request) = self.requests.request_of(&span, key) {
            self.counters.linked_across_processes += 1;
            let seq = self.hold(span, Waiting::Caller, now_ns, ready);
            self.decide_root(seq, Some(request), ready);
            return None;
        }
        if !self.requests.is_awaited(key) {
            return Some(span);
        }
        let seq = self.hold(span, Waiting::Caller, now_ns, ready);
        if !self.requests.wait(key, seq) {
            self.decide_root(seq, None, ready);
        }
        None
    }

    /// The request keyed `key` (ids `caller`, open over `window`) came:
    /// the deliveries held for it that it was open around become its children.
    fn link_answering_deliveries(
        &mut self,
        key: u64,
        caller: crate::spans::SpanIds,
        window: (u64, u64),
        now_ns: u64,
        ready: &mut Vec<Span>,
    ) {
        // For deliveries still to come (their events may come later).
        let forget_at_ns = self.remember_until(now_ns);
        self.requests
            .note_request(key, caller, window, forget_at_ns);
        for seq in self.requests.take_waiting(key) {
            let Some(held) = self.held.get(&seq) else {
                continue;
            };
            if !answers(window, &held.span) {
                // Another request's, of the same reply subject.
                self.requests.wait(key, seq);
                continue;
            }
            self.counters.linked_across_processes += 1;
            self.decide_root(seq, Some(caller), ready);
        }
    }

    /// A call: held until its process's requests say which one it was
    /// made for (unless it carries its own context), and kept for the
    /// server spans on this host that answer it.
    fn push_call(&mut self, span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        // A request that carried a traceparent was made by an instrumented
        // SDK: its ids are the SDK's, never rewritten.
        let carries_context = span.ids.parent_sampled.is_some();
        let may_nest = !carries_context;
        // Only a server on this host can be this span's child.
        let peer_local = peer_may_be_local(&span);
        let caller = span.ids;
        // The server side sees this connection as (peer, local).
        let key = (span.peer, span.local);
        if peer_local {
            let forget_at_ns = self.remember_until(now_ns);
            let recent = self.recent_clients.entry(key).or_default();
            if recent.len() == RECENT_CLIENTS_PER_CONNECTION {
                recent.pop_front();
            }
            recent.push_back(RecentClient {
                span: span.clone(),
                forget_at_ns,
            });
        }
        if may_nest {
            let seq = self.hold(span, Waiting::Parent, now_ns, ready);
            self.deciding.push(seq);
        } else {
            ready.push(span);
        }
        if !peer_local {
            return;
        }
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
                    if best.ids.span_id == caller.span_id {
                        children.push(*seq);
                    }
                }
            }
        }
        for seq in children {
            self.counters.linked_across_processes += 1;
            self.decide_root(seq, Some(caller), ready);
        }
    }

    fn push_server(&mut self, span: Span, now_ns: u64, ready: &mut Vec<Span>) {
        self.remember_parent(&span, now_ns);
        let key = (span.local, span.peer);
        if self.passes_at_once(&span) {
            ready.push(span);
            return;
        }
        // The caller's span may already be here (events of the two processes
        // arrive in either order).
        if let Some(recent) = self.recent_clients.get(&key) {
            match best_client(&span, recent.iter().map(|c| &c.span)) {
                Some(Ok(client)) => {
                    let caller = client.ids;
                    self.counters.linked_across_processes += 1;
                    let seq = self.hold(span, Waiting::Caller, now_ns, ready);
                    self.decide_root(seq, Some(caller), ready);
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
        let seq = self.hold(span, Waiting::Caller, now_ns, ready);
        self.waiting.entry(key).or_default().push(seq);
    }

    /// Holds `span`; a span waiting for its own link opens its trace.
    fn hold(&mut self, span: Span, waiting: Waiting, now_ns: u64, ready: &mut Vec<Span>) -> u64 {
        if self.held.len() >= MAX_HELD {
            self.release_oldest(ready);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let trace = span.ids.trace_id;
        if waiting != Waiting::Root {
            *self.open_roots.entry(trace).or_default() += 1;
            self.deadlines
                .push_back((now_ns.saturating_add(self.wait_ns()), seq));
        }
        self.held_by_trace.entry(trace).or_default().push(seq);
        self.held.insert(seq, Held { span, waiting });
        seq
    }

    /// The cap is reached: the oldest held span goes out as it is.
    fn release_oldest(&mut self, ready: &mut Vec<Span>) {
        let Some((&seq, held)) = self.held.iter().next() else {
            return;
        };
        self.counters.held_limit += 1;
        if held.waiting == Waiting::Root {
            if let Some(held) = self.take_held(seq) {
                ready.push(held.span);
            }
        } else {
            self.decide_root(seq, None, ready);
        }
    }

    fn apply_parent_decision(&mut self, seq: u64, decision: ParentDecision, ready: &mut Vec<Span>) {
        let pid = self.held.get(&seq).map(|h| h.span.pid);
        match decision {
            ParentDecision::Wait => self.deciding.push(seq),
            ParentDecision::Parent(server) => {
                self.counters.nested_in_process += 1;
                let parent = crate::spans::SpanIds {
                    trace_id: server.trace_id,
                    span_id: server.span_id,
                    parent_span_id: None,
                    parent_sampled: server.parent_sampled,
                    service_sampled: None,
                };
                self.decide_root(seq, Some(parent), ready);
            }
            ParentDecision::NoParent => {
                if pid.is_some_and(|pid| self.recent_parents.serves(pid)) {
                    self.counters.no_parent += 1;
                }
                self.decide_root(seq, None, ready);
            }
            ParentDecision::Ambiguous => {
                self.counters.ambiguous_parent += 1;
                self.decide_root(seq, None, ready);
            }
        }
    }

    /// The held root `seq` knows its parent (`Some`: that span's ids; its
    /// trace moves into the parent's) or that it has none. Its trace's
    /// spans go out once no root of theirs waits.
    fn decide_root(
        &mut self,
        seq: u64,
        parent: Option<crate::spans::SpanIds>,
        ready: &mut Vec<Span>,
    ) {
        let Some(held) = self.held.get_mut(&seq) else {
            return;
        };
        if held.waiting == Waiting::Root {
            return;
        }
        let old_trace = held.span.ids.trace_id;
        let was_waiting = held.waiting;
        held.waiting = Waiting::Root;
        if let Some(count) = self.open_roots.get_mut(&old_trace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.open_roots.remove(&old_trace);
            }
        }
        if was_waiting == Waiting::Caller {
            if let Some(reply) = held.span.reply_key().filter(|_| held.span.is_delivery()) {
                self.requests.stop_waiting(reply, seq);
            }
            let key = (held.span.local, held.span.peer);
            if let Some(list) = self.waiting.get_mut(&key) {
                list.retain(|s| *s != seq);
                if list.is_empty() {
                    self.waiting.remove(&key);
                }
            }
        }
        let trace = match parent {
            Some(parent) => {
                let new_trace = self.moves.resolve(parent.trace_id);
                if let Some(held) = self.held.get_mut(&seq) {
                    held.span.ids.parent_span_id = Some(parent.span_id);
                    held.span.ids.parent_sampled = parent.parent_sampled;
                }
                self.move_trace(old_trace, new_trace);
                new_trace
            }
            None => old_trace,
        };
        self.settle(trace, ready);
    }

    /// Every held span of `old` joins `new`.
    fn move_trace(&mut self, old: [u8; 16], new: [u8; 16]) {
        if old == new {
            return;
        }
        let until = self.remember_until(self.now_ns);
        self.moves.insert(old, new, until);
        if let Some(open) = self.open_roots.remove(&old) {
            *self.open_roots.entry(new).or_default() += open;
        }
        let Some(seqs) = self.held_by_trace.remove(&old) else {
            return;
        };
        for seq in &seqs {
            if let Some(held) = self.held.get_mut(seq) {
                held.span.ids.trace_id = new;
            }
        }
        self.held_by_trace.entry(new).or_default().extend(seqs);
    }

    /// Sends `trace`'s held spans if no root of it waits any more.
    fn settle(&mut self, trace: [u8; 16], ready: &mut Vec<Span>) {
        if self.open_roots.contains_key(&trace) {
            return;
        }
        let Some(seqs) = self.held_by_trace.remove(&trace) else {
            return;
        };
        for seq in seqs {
            if let Some(held) = self.held.remove(&seq) {
                ready.push(held.span);
            }
        }
    }

    /// Takes one held span out (the cap, or the agent stopping).
    fn take_held(&mut self, seq: u64) -> Option<Held> {
        let held = self.held.remove(&seq)?;
        let trace = held.span.ids.trace_id;
        if let Some(list) = self.held_by_trace.get_mut(&trace) {
            list.retain(|s| *s != seq);
            if list.is_empty() {
                self.held_by_trace.remove(&trace);
            }
        }
        Some(held)
    }
}

/// Whether a span of this kind is a call its process makes: a consumer's
/// poll is one, like a client's request.
fn is_call(kind: SpanKind) -> bool {
    match kind {
        SpanKind::Client | SpanKind::Producer | SpanKind::Consumer => true,
        SpanKind::Server => false,
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
