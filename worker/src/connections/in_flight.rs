//! Server requests read and not yet answered (and messages a broker
//! delivered, not yet acknowledged), per process: a client call a process
//! makes may belong to any of them, so trace linking waits until every one
//! that started before the call is complete.

use crate::hashing::FastMap;

/// Per process, the start of the oldest unanswered request of each server
/// connection that has one and the thread that read it, by socket id. Bounded by the tracked
/// connections. Asked only for processes whose calls wait for a decision,
/// so a process is followed only from the first time it is asked about
/// (the tracker then seeds it from its connections' state): a process that
/// makes no call (a static server) pays nothing per exchange, one that does
/// two map updates per exchange.
#[derive(Default)]
pub(super) struct InFlightRequests {
    by_pid: FastMap<u32, FastMap<u64, (u64, u32)>>,
}

impl InFlightRequests {
    /// Whether `pid`'s unanswered requests are followed.
    pub(super) fn tracks(&self, pid: u32) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// Follows `pid`'s unanswered requests from now on (none known yet).
    pub(super) fn track(&mut self, pid: u32) {
        self.by_pid.entry(pid).or_default();
    }

    /// The connection `sock_id` of `pid` now waits to answer a request read
    /// at `now` by thread `reader` (None: nothing), where it was `before`.
    pub(super) fn update(
        &mut self,
        pid: u32,
        sock_id: u64,
        before: Option<u64>,
        now: Option<u64>,
        reader: impl FnOnce(u64) -> u32,
    ) {
        if before == now {
            return;
        }
        match now {
            Some(start) => {
                // Only tracked processes' connections get here.
                if let Some(open) = self.by_pid.get_mut(&pid) {
                    open.insert(sock_id, (start, reader(start)));
                }
            }
            // A process's map stays while it lives: a new one (seeded from
            // the OS) per request would cost more than the request.
            None => {
                if let Some(open) = self.by_pid.get_mut(&pid) {
                    open.remove(&sock_id);
                }
            }
        }
    }

    /// The process exited (its connections are gone already).
    pub(super) fn forget_process(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    /// (start, reader thread) of each connection's oldest unanswered request of `pid`.
    pub(super) fn of(&self, pid: u32) -> Vec<(u64, u32)> {
        self.by_pid
            .get(&pid)
            .map(|open| open.values().copied().collect())
            .unwrap_or_default()
    }

    pub(super) fn len(&self) -> usize {
        self.by_pid.values().map(FastMap::len).sum()
    }
}
