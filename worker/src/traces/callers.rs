//! The processes seen making calls: only their server spans are remembered
//! for in-process nesting ([`super::nesting`]), since only a process that
//! makes calls can have a call to nest. A leaf server (a static file server,
//! a cache, a database) then pays nothing for the nesting it cannot use.
//!
//! A process is noted by its first call span, before any server span of the
//! same batch is remembered ([`super::TraceLinker::link_batch`]). A call
//! ends before the request that made it is answered, so that request's span
//! comes in the same batch or a later one, and is kept. Only a first call
//! that ends after its request was answered (a body read until the
//! connection closes, after the process answered) finds its request
//! forgotten, and goes out as a root. What the nesting learns of a process
//! (whether it serves many requests per thread, whether it hands requests
//! over between threads) it learns from its server spans since its first
//! call; it never knew more than the last few seconds' spans anyway.

use crate::hashing::FastMap;

/// Processes noted at most; past this the set starts over. A process is
/// noted again by its next call span; until then its requests are not kept,
/// and a call that ends after its request was answered is a root.
const MAX_CALLERS: usize = 16_384;

#[derive(Default)]
pub struct Callers {
    known: FastMap<u32, ()>,
    /// The last process noted: a process making many calls is looked up once.
    last: Option<u32>,
}

impl Callers {
    /// `pid` makes calls.
    pub fn note(&mut self, pid: u32) {
        if self.last == Some(pid) {
            return;
        }
        if self.known.len() >= MAX_CALLERS && !self.known.contains_key(&pid) {
            self.known.clear();
        }
        self.known.insert(pid, ());
        self.last = Some(pid);
    }

    /// Whether `pid` was noted making calls.
    pub fn contains(&self, pid: u32) -> bool {
        self.last == Some(pid) || self.known.contains_key(&pid)
    }

    /// `pid` exited: its number may be reused by a process that makes none.
    pub fn forget(&mut self, pid: u32) {
        self.known.remove(&pid);
        if self.last == Some(pid) {
            self.last = None;
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_process_is_known_until_it_exits() {
        let mut callers = Callers::default();
        assert!(!callers.contains(7));
        callers.note(7);
        callers.note(8);
        callers.note(8);
        assert!(callers.contains(7) && callers.contains(8));
        assert!(!callers.contains(9));
        callers.forget(8);
        assert!(
            !callers.contains(8),
            "the last noted process is forgotten too"
        );
        assert!(callers.contains(7));
        callers.forget(7);
        assert!(!callers.contains(7));
        assert_eq!(callers.len(), 0);
    }

    #[test]
    fn past_the_bound_the_set_starts_over_with_the_new_process() {
        let mut callers = Callers::default();
        for pid in 0..MAX_CALLERS as u32 {
            callers.note(pid);
        }
        assert_eq!(callers.len(), MAX_CALLERS);
        callers.note(MAX_CALLERS as u32);
        assert_eq!(callers.len(), 1);
        assert!(callers.contains(MAX_CALLERS as u32));
        assert!(!callers.contains(0));
    }
}
