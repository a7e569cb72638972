//! Server requests read and not yet answered, per process: a client call a
//! process makes may belong to any of them, so trace linking waits until
//! every one that started before the call is complete.

use std::collections::BTreeSet;

use crate::hashing::FastMap;

/// Per process, (start of the oldest unanswered request, socket id) of each
/// server connection that has one. Bounded by the tracked connections.
#[derive(Default)]
pub(super) struct InFlightRequests {
    by_pid: FastMap<u32, BTreeSet<(u64, u64)>>,
}

impl InFlightRequests {
    /// The connection `sock_id` of `pid` now waits to answer a request read
    /// at `now` (None: nothing), where it was `before`.
    pub(super) fn update(&mut self, pid: u32, sock_id: u64, before: Option<u64>, now: Option<u64>) {
        if before == now {
            return;
        }
        if let Some(start) = before {
            if let Some(set) = self.by_pid.get_mut(&pid) {
                set.remove(&(start, sock_id));
                if set.is_empty() {
                    self.by_pid.remove(&pid);
                }
            }
        }
        if let Some(start) = now {
            self.by_pid.entry(pid).or_default().insert((start, sock_id));
        }
    }

    /// When `pid`'s oldest unanswered server request was read.
    pub(super) fn oldest(&self, pid: u32) -> Option<u64> {
        self.by_pid
            .get(&pid)
            .and_then(|set| set.first())
            .map(|(start, _)| *start)
    }

    pub(super) fn len(&self) -> usize {
        self.by_pid.values().map(BTreeSet::len).sum()
    }
}
