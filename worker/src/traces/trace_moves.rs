//! Traces merged into others: a root that found its parent takes the
//! parent's trace id, and spans remembered under the old id (callers and
//! server spans kept for later matches) are read through this map.

use std::collections::{HashMap, VecDeque};

/// Moves remembered at most; the oldest is forgotten first.
const MAX_MOVES: usize = 65_536;
/// Chains followed at most (A's trace into B's into C's…).
const MAX_HOPS: usize = 16;

#[derive(Default)]
pub struct TraceMoves {
    moved_to: HashMap<[u8; 16], [u8; 16]>,
    /// (forget at, old trace id), oldest first.
    order: VecDeque<(u64, [u8; 16])>,
}

impl TraceMoves {
    pub fn insert(&mut self, old: [u8; 16], new: [u8; 16], forget_at_ns: u64) {
        if old == new {
            return;
        }
        if self.order.len() == MAX_MOVES {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.moved_to.remove(&oldest);
            }
        }
        self.moved_to.insert(old, new);
        self.order.push_back((forget_at_ns, old));
    }

    /// Where `trace` is now.
    pub fn resolve(&self, mut trace: [u8; 16]) -> [u8; 16] {
        for _ in 0..MAX_HOPS {
            match self.moved_to.get(&trace) {
                Some(next) => trace = *next,
                None => break,
            }
        }
        trace
    }

    pub fn sweep(&mut self, now_ns: u64) {
        while self.order.front().is_some_and(|(at, _)| *at <= now_ns) {
            if let Some((_, old)) = self.order.pop_front() {
                self.moved_to.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.moved_to.len()
    }
}
