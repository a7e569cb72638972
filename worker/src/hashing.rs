//! The hash maps of the decode path (series, connections): hashbrown with
//! foldhash, several times cheaper than std's SipHash on short keys.
//!
//! Some keys are chosen by whoever sends the traffic (paths, methods, Host
//! headers), so every map gets its own seed drawn from the operating
//! system's randomness (through std's `RandomState`): colliding keys cannot
//! be computed in advance, which keeps lookups O(1) under hostile traffic.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

/// A hash map with a per-map random foldhash seed.
pub type FastMap<K, V> = hashbrown::HashMap<K, V, FastState>;

/// Builds foldhash hashers from a seed drawn from the OS for each map.
#[derive(Clone, Debug)]
pub struct FastState(SeedableRandomState);

impl Default for FastState {
    fn default() -> Self {
        // std's RandomState keys come from the OS's random source.
        let seed = RandomState::new().hash_one(0x7a65_726f_7472_6163_u64);
        Self(SeedableRandomState::with_seed(
            seed,
            SharedSeed::global_random(),
        ))
    }
}

impl BuildHasher for FastState {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_has_its_own_seed() {
        let (a, b) = (FastState::default(), FastState::default());
        let key = "/api/users/42";
        assert_ne!(a.hash_one(key), b.hash_one(key));
        assert_eq!(a.hash_one(key), a.hash_one(key));
    }
}
