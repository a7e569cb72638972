//! The trace export's memory of connection attributes: the bytes it wrote
//! for a connection's scheme, server, protocol and peer
//! ([`AttributeSink::connection_block`](crate::semconv::attribute::AttributeSink::connection_block)),
//! nine of an HTTP server span's ~15 attributes. Every request on a
//! keep-alive connection has the same ones, so they are written once per
//! connection and copied after.
//!
//! * 256 direct-mapped slots, picked by a hash of the key's addresses and
//!   flags with the decode path's OS-seeded foldhash (`hashing.rs`).
//! * A slot answers only for a key equal to the one it holds: a collision,
//!   by chance or forced with crafted Host headers, costs one write, never a
//!   wrong attribute.
//! * Bounded: each slot holds one key (its Host at most 512 bytes, as the
//!   decoder cuts it) and the bytes written for it (a few hundred); a slot
//!   taken over reuses its buffers.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

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
            // The versions are literals: equal pointers, nearly always.
            && (std::ptr::eq(self.protocol_version, key.protocol_version)
                || self.protocol_version == key.protocol_version)
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

/// An address and port folded into one word for the slot's hash.
fn address_word(address: SocketAddr) -> u64 {
    let ip = match address.ip() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits >> 64) as u64 ^ bits as u64
        }
    };
    ip.rotate_left(16) ^ u64::from(address.port())
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
    /// The slot of `key`: its addresses, flags and Host length, hashed as
    /// a few words (the derived hash of two `SocketAddr`s and the Host's
    /// bytes cost more than the rest of a hit). Keys that differ only in
    /// their Host's bytes share a slot; the compare still tells them apart.
    fn slot_of(&self, key: &ConnectionKey<'_>) -> usize {
        let mut hasher = self.state.build_hasher();
        hasher.write_u64(address_word(key.local));
        hasher.write_u64(address_word(key.peer));
        hasher.write_u64(
            u64::from(key.outgoing)
                | u64::from(key.tls) << 1
                | (key.protocol_version.len() as u64) << 2
                | (key.host.map_or(0, |h| h.len() + 1) as u64) << 8,
        );
        hasher.finish() as usize & (SLOTS - 1)
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
