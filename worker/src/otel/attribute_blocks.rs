//! The trace export's memory of connection attributes: the bytes it wrote
//! for a connection's scheme, server, protocol and peer
//! ([`AttributeSink::connection_block`](crate::semconv::attribute::AttributeSink::connection_block)),
//! nine of an HTTP server span's ~15 attributes. Every request on a
//! keep-alive connection has the same ones, so they are written once per
//! connection and copied after.
//!
//! * 256 direct-mapped slots, picked by a hash of the whole key with the
//!   decode path's OS-seeded foldhash (`hashing.rs`).
//! * A slot answers only for a key equal to the one it holds: a collision,
//!   by chance or forced with crafted Host headers, costs one write, never a
//!   wrong attribute.
//! * Bounded: each slot holds one key (its Host at most 512 bytes, as the
//!   decoder cuts it) and the bytes written for it (a few hundred); a slot
//!   taken over reuses its buffers.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use crate::hashing::FastState;
use crate::semconv::attribute::ConnectionKey;

/// Slots kept; a power of two.
pub const SLOTS: usize = 256;

/// A [`ConnectionKey`] owned, with the bytes written for it.
struct Block {
    outgoing: bool,
    tls: bool,
    local: SocketAddr,
    peer: SocketAddr,
    host: Option<String>,
    protocol_version: &'static str,
    bytes: Vec<u8>,
}

impl Block {
    fn holds(&self, key: &ConnectionKey<'_>) -> bool {
        self.outgoing == key.outgoing
            && self.tls == key.tls
            && self.local == key.local
            && self.peer == key.peer
            && self.protocol_version == key.protocol_version
            && self.host.as_deref() == key.host
    }

    /// Takes `key` and `bytes` in, keeping the buffers' allocations.
    fn refill(&mut self, key: &ConnectionKey<'_>, bytes: &[u8]) {
        self.outgoing = key.outgoing;
        self.tls = key.tls;
        self.local = key.local;
        self.peer = key.peer;
        self.protocol_version = key.protocol_version;
        match (&mut self.host, key.host) {
            (Some(host), Some(new)) => {
                host.clear();
                host.push_str(new);
            }
            (host, new) => *host = new.map(str::to_owned),
        }
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
    }
}

pub struct AttributeBlocks {
    slots: Vec<Option<Block>>,
    state: FastState,
}

impl Default for AttributeBlocks {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| None).collect(),
            state: FastState::default(),
        }
    }
}

impl AttributeBlocks {
    fn slot_of(&self, key: &ConnectionKey<'_>) -> usize {
        self.state.hash_one(key) as usize & (SLOTS - 1)
    }

    /// The bytes written for `key`, if this memory holds them.
    pub fn get(&self, key: &ConnectionKey<'_>) -> Option<&[u8]> {
        match self.slots.get(self.slot_of(key)) {
            Some(Some(block)) if block.holds(key) => Some(&block.bytes),
            _ => None,
        }
    }

    /// Remembers `bytes` as what was written for `key` (in its slot, in
    /// place of what the slot held).
    pub fn insert(&mut self, key: &ConnectionKey<'_>, bytes: &[u8]) {
        let index = self.slot_of(key);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        match slot {
            Some(block) => block.refill(key, bytes),
            None => {
                *slot = Some(Block {
                    outgoing: key.outgoing,
                    tls: key.tls,
                    local: key.local,
                    peer: key.peer,
                    host: key.host.map(str::to_owned),
                    protocol_version: key.protocol_version,
                    bytes: bytes.to_vec(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
