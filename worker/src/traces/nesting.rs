//! In-process nesting: which server span (or delivery) a client call was
//! made for.
//!
//! A client span of process P is the child of server span S of P when S's
//! interval contains the call's, S's request was read or its response
//! written by the thread that made the call, and S is the only such span.
//! The decision waits until every server request of P read before the call
//! is complete (event loops serve many requests on one thread: two of them
//! in flight around one call make it ambiguous, never a guess).
//!
//! A message a broker delivered to P (MQTT, AMQP, NATS) is processed from
//! its read to P's acknowledgement or reply, as a request is served from its
//! read to its answer: its `process` span holds the calls made meanwhile by
//! the thread that read or acknowledged it, by the same rules, and a call
//! waits for P's open deliveries as for its open requests. Deliveries tell
//! nothing of how P serves requests: two read at once and processed one
//! after the other on one thread (a prefetched batch) leave the calls they
//! both contain ambiguous, without marking P as multiplexing.
//!
//! Threads tell requests apart only where a thread serves one request at a
//! time. A process seen answering two overlapping requests on one thread
//! (an event loop, goroutines sharing threads) is marked as multiplexing:
//! from then on its calls are nested only when one request was open
//! around them. Go processes are known from the start (the Go TLS hooks'
//! answers tell them), and the kernel then names the goroutine in their
//! events instead of the thread ([`names_goroutine`]): a goroutine is what
//! stays with a request, so those are judged like threads, each process by
//! what it was seen doing. Their events from before (threads, which
//! goroutines move between) are judged as multiplexing. Database drivers
//! write and read on the caller's goroutine; Go's HTTP/1 client writes and
//! reads on its connection's own goroutines, which the kernel names after
//! the goroutine that made the call (the loader's hooks on `net/http`'s
//! client connection): both nest. A goroutine is known by the one that
//! answered a request ([`ParentRecord::held_by`]).

use std::collections::VecDeque;
use std::net::SocketAddr;

use zerotrace_shared::event::layout::TID_GOROUTINE;

use crate::hashing::FastMap;
use crate::spans::{ExchangeThreads, Protocol, Span};

/// Whether a span's thread is a Go program's goroutine (the kernel sets the
/// mark once the worker said the process runs Go).
pub fn names_goroutine(tid: u32) -> bool {
    tid as usize & TID_GOROUTINE != 0
}

/// Whether `server`'s connection carries one request after another (HTTP/1,
/// pipelined or not), rather than streams at once (HTTP/2, gRPC).
fn serves_one_at_a_time(server: &Span) -> bool {
    matches!(&server.protocol, Protocol::Http(http) if http.protocol_version != "2")
}

/// Said once per process (until it exits): from here on its calls nest
/// only under a lone open request, which is why many stay roots.
fn report_multiplexing(pid: u32, new: &ExchangeThreads, open: &ExchangeThreads) {
    let name = |tid: u32| {
        if names_goroutine(tid) {
            format!("goroutine {:#x}", tid & !(TID_GOROUTINE as u32))
        } else {
            format!("thread {tid}")
        }
    };
    tracing::info!(
        "pid {pid} answered two requests at once on one thread (read by {}, answered by {}, \
         while one read by {} and answered by {} was open): it multiplexes, and its client \
         calls nest only under a lone open request from now on",
        name(new.request_first),
        name(new.response_last),
        name(open.request_first),
        name(open.response_last),
    );
}

/// Server spans and deliveries kept per process for the calls still to be decided; past
/// this the oldest is forgotten and calls it could have contained are
/// called ambiguous rather than matched against what is left.
const SERVERS_PER_PROCESS: usize = 4_096;
/// Processes marked as serving many requests per thread, at most (a
/// larger set starts over: pids of gone processes are dropped on exit).
const MARKED_PROCESSES: usize = 16_384;
/// Latest server spans of a process compared with a new one for a thread
/// they share while overlapping (bounds the work per span).
const OVERLAP_CHECKS: usize = 64;

/// What a client call needs of a server span (or a delivery) to nest under it.
#[derive(Debug, Clone, Copy)]
pub struct ParentRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_sampled: Option<bool>,
    start_ns: u64,
    end_ns: u64,
    threads: ExchangeThreads,
    /// Its connection, where that serves one request after another
    /// (HTTP/1): another request of it is no other request served at once.
    one_at_a_time_on: Option<(SocketAddr, SocketAddr)>,
    /// A delivery's processing, not a request served: it says nothing of
    /// whether the process serves requests one per thread.
    delivery: bool,
    /// When the linker got it (the span was complete by then).
    pushed_at_ns: u64,
    forget_at_ns: u64,
}

impl ParentRecord {
    /// A delivery holds what began after its read only: deliveries read
    /// together (a prefetched batch, processed one after the other and
    /// acknowledged in order, so each later one contains the earlier ones)
    /// are siblings, never one another's parent, and a delivery is never
    /// its own.
    fn contains(&self, call: &Span) -> bool {
        let began_within = if self.delivery {
            self.start_ns < call.start_monotonic_ns
        } else {
            self.start_ns <= call.start_monotonic_ns
        };
        began_within && call.end_monotonic_ns <= self.end_ns
    }

    /// Both were open at once and one thread answered both, or answered
    /// one while it read the other: it served two requests at a time. (A
    /// poller thread that only reads for handler threads that answer, as
    /// grpcio's, does not count: the handlers still tell requests apart.)
    /// Requests of one HTTP/1 connection come one after another, even where
    /// the next seems to begin before the last ended (Go reads its first
    /// byte on a background goroutine, possibly before the answer's send is
    /// stamped): those never count.
    fn shares_a_thread_with(&self, other: &ParentRecord) -> bool {
        if self.one_at_a_time_on.is_some() && self.one_at_a_time_on == other.one_at_a_time_on {
            return false;
        }
        let overlap = self.start_ns <= other.end_ns && other.start_ns <= self.end_ns;
        let writer = self.threads.response_last;
        if names_goroutine(writer) && names_goroutine(other.threads.response_last) {
            return overlap && writer == other.threads.response_last;
        }
        overlap
            && (other.threads.includes(writer)
                || (writer != 0 && other.threads.response_last == self.threads.request_first))
    }

    /// Whether `tid` read or answered this request. A goroutine is told by
    /// the one that answered alone: Go starts a goroutine to read a
    /// connection's next first byte while a handler runs, and once done its
    /// address is soon another goroutine's (a new connection's), while the
    /// request it read for is still open. The answering goroutine lives
    /// from before the request's first byte to its answer.
    fn held_by(&self, tid: u32) -> bool {
        if names_goroutine(self.threads.response_last) {
            return tid == self.threads.response_last;
        }
        self.threads.includes(tid)
    }
}

#[derive(Default)]
struct ProcessServers {
    recent: VecDeque<ParentRecord>,
    /// Latest end of a span forgotten to the cap: calls ending before it
    /// may have been its children.
    forgotten_end_ns: u64,
    /// One thread was seen serving two requests at once: threads do not
    /// tell this process's requests apart.
    multiplexes: bool,
    /// A request was seen answered by another thread than the one that
    /// read it (a thread pool): an open request may yet be answered by any.
    hands_over: bool,
    /// A Go program's span named a thread, and that was said.
    said_thread_named: bool,
}

/// Where a client call belongs.
#[derive(Debug)]
pub enum ParentDecision {
    /// A server request of the process read before the call is still open.
    Wait,
    Parent(ParentRecord),
    /// No server span of the process holds the call on its thread (made
    /// outside any request, or by a thread the capture cannot tie to one).
    NoParent,
    /// Two server spans could hold it (an event loop, a forgotten span).
    Ambiguous,
}

/// Recent server spans and deliveries, by process.
#[derive(Default)]
pub struct RecentParents {
    by_pid: FastMap<u32, ProcessServers>,
    /// Processes known to serve many requests per thread before any
    /// overlap was seen (Go), where their spans name threads.
    many_per_thread: FastMap<u32, ()>,
}

impl RecentParents {
    /// Remembers `server`, pushed at `now_ns`, until `forget_at_ns`.
    pub fn insert(&mut self, server: &Span, now_ns: u64, forget_at_ns: u64) {
        // A Go program's span that names threads: judged by the mark alone,
        // what it shows of threads does not hold for its goroutines.
        let marked = !names_goroutine(server.threads.response_last)
            && self.many_per_thread.contains_key(&server.pid);
        let process = self.by_pid.entry(server.pid).or_default();
        if marked && !process.said_thread_named {
            process.said_thread_named = true;
            tracing::info!(
                "pid {} runs Go, and a request of it named thread {}, not its goroutine (served \
                 before its Go mark took effect, or the kernel did not read the mark): such \
                 requests are judged as multiplexing",
                server.pid,
                server.threads.response_last
            );
        }
        if process.recent.len() == SERVERS_PER_PROCESS {
            if let Some(oldest) = process.recent.pop_front() {
                process.forgotten_end_ns = process.forgotten_end_ns.max(oldest.end_ns);
            }
        }
        let record = ParentRecord {
            trace_id: server.ids.trace_id,
            span_id: server.ids.span_id,
            parent_sampled: server.ids.parent_sampled,
            start_ns: server.start_monotonic_ns,
            end_ns: server.end_monotonic_ns,
            threads: server.threads,
            one_at_a_time_on: serves_one_at_a_time(server).then_some((server.local, server.peer)),
            delivery: server.is_delivery(),
            pushed_at_ns: now_ns,
            forget_at_ns,
        };
        let threads = record.threads;
        if !marked
            && threads.request_first != 0
            && threads.response_last != 0
            && threads.request_first != threads.response_last
        {
            process.hands_over = true;
        }
        if !marked && !process.multiplexes && !record.delivery && record.threads.response_last != 0
        {
            // Newest first, as far as spans that ended after it began (spans
            // are pushed about in the order they end: a server answering one
            // request at a time, as nginx's event loop does with quick
            // answers, costs one comparison per span, not OVERLAP_CHECKS).
            let shared = process
                .recent
                .iter()
                .rev()
                .take(OVERLAP_CHECKS)
                .take_while(|other| {
                    other.pushed_at_ns >= record.start_ns && other.end_ns >= record.start_ns
                })
                .find(|other| !other.delivery && record.shares_a_thread_with(other));
            if let Some(other) = shared {
                process.multiplexes = true;
                report_multiplexing(server.pid, &record.threads, &other.threads);
            }
        }
        process.recent.push_back(record);
    }

    /// The parent of `call`, given the server requests (and deliveries) its
    /// process has read and not yet answered (or acknowledged): (start,
    /// reading thread, 0 if unknown).
    pub fn decide(&self, call: &Span, unanswered: &[(u64, u32)]) -> ParentDecision {
        let tid = call.threads.request_first;
        let process = self.by_pid.get(&call.pid);
        // A Go program's threads, before the kernel named its goroutines.
        let marked = !names_goroutine(tid) && self.many_per_thread.contains_key(&call.pid);
        let multiplexes = marked || process.is_some_and(|p| p.multiplexes);
        // Where each request so far was answered by the thread that read it,
        // one thread at a time, an open request read by another thread
        // cannot be the call's (a thread-per-request server under load).
        // Not for goroutines: Go may read a request's first byte on a
        // background goroutine, and a goroutine is known by the one that
        // answers ([`ParentRecord::held_by`]).
        let one_thread_per_request =
            !multiplexes && !names_goroutine(tid) && process.is_some_and(|p| !p.hands_over);
        let could_hold = |&&(start, reader): &&(u64, u32)| {
            start <= call.start_monotonic_ns
                && !(one_thread_per_request && reader != 0 && reader != tid)
        };
        if unanswered.iter().any(|open| could_hold(&open)) {
            return ParentDecision::Wait;
        }
        let Some(process) = process else {
            return ParentDecision::NoParent;
        };
        let mut found = None;
        let mut open_around = 0;
        // Newest first: a span pushed before the call ended ended before it
        // too, and cannot contain it; nor can any older one.
        let could_contain = process
            .recent
            .iter()
            .rev()
            .take_while(|s| s.pushed_at_ns >= call.end_monotonic_ns);
        // A delivery is remembered before its own parent is decided; it does
        // not contain itself (it holds only what began after its read).
        for server in could_contain.filter(|s| s.contains(call)) {
            open_around += 1;
            if server.held_by(tid) {
                if found.is_some() {
                    return ParentDecision::Ambiguous;
                }
                found = Some(*server);
            }
        }
        if call.end_monotonic_ns <= process.forgotten_end_ns {
            return ParentDecision::Ambiguous;
        }
        // Where threads do not tell requests apart, only a lone request does.
        if found.is_some() && open_around > 1 && multiplexes {
            return ParentDecision::Ambiguous;
        }
        found.map_or(ParentDecision::NoParent, ParentDecision::Parent)
    }

    /// `pid` serves many requests per thread whatever was seen of it (a Go
    /// program): its calls that name a thread, not a goroutine, are nested
    /// only under a lone open request.
    pub fn mark_many_per_thread(&mut self, pid: u32) {
        if self.many_per_thread.len() >= MARKED_PROCESSES {
            self.many_per_thread.clear();
        }
        self.many_per_thread.insert(pid, ());
    }

    /// `pid` exited: a new program may reuse its number, and is judged
    /// afresh (its own overlaps mark it again).
    pub fn forget_process(&mut self, pid: u32) {
        self.many_per_thread.remove(&pid);
        if let Some(process) = self.by_pid.get_mut(&pid) {
            process.multiplexes = false;
            process.hands_over = false;
            process.said_thread_named = false;
        }
    }

    /// Whether `pid` served anything lately (its calls without a parent are counted).
    pub fn serves(&self, pid: u32) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// Forgets what no call can still need.
    pub fn sweep(&mut self, now_ns: u64) {
        self.by_pid.retain(|_, process| {
            while process
                .recent
                .front()
                .is_some_and(|s| s.forget_at_ns <= now_ns)
            {
                process.recent.pop_front();
            }
            !process.recent.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.by_pid.values().map(|p| p.recent.len()).sum()
    }
}
