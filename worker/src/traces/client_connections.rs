//! The connections instrumented processes opened as clients, by their
//! (local, peer) addresses: a server span waits for a caller only when its
//! connection's other end is one of these.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

/// Connections remembered at most (the tracker's own limit); the oldest is
/// forgotten first. A forgotten or stale entry costs at most one span's wait.
const MAX_CONNECTIONS: usize = 65_536;

#[derive(Default)]
pub struct ClientConnections {
    known: HashSet<(SocketAddr, SocketAddr)>,
    order: VecDeque<(SocketAddr, SocketAddr)>,
}

impl ClientConnections {
    pub fn insert(&mut self, local: SocketAddr, peer: SocketAddr) {
        if !self.known.insert((local, peer)) {
            return;
        }
        self.order.push_back((local, peer));
        if self.order.len() > MAX_CONNECTIONS {
            if let Some(oldest) = self.order.pop_front() {
                self.known.remove(&oldest);
            }
        }
    }

    pub fn contains(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.known.contains(&(local, peer))
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}
