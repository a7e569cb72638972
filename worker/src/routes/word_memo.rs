//! Path segments the route heuristic already found to read like words, so
//! that each word (`users`, `orders`, `sessions`) is judged once rather than
//! on every request: judging one takes a letter-pair score over its letters,
//! a few hundred instructions, and real paths repeat their words on nearly
//! every request. Identifiers (numbers, UUIDs, hashes, tokens) are not
//! remembered: they rarely repeat, and most are ruled out at their first
//! character anyway.
//!
//! Direct-mapped and bounded: [`SLOTS`] slots of one segment each, a word
//! replacing whatever its slot held. A slot answers only for the exact bytes
//! it holds, so a collision costs a judgement, never a wrong answer; slots
//! are chosen by the decode path's seeded hash (`hashing.rs`), so paths
//! cannot be made in advance to evict a service's words.

use std::hash::BuildHasher;

use crate::hashing::FastState;

/// Slots (a power of two); 6 KiB in all.
const SLOTS: usize = 256;
/// Longer segments are judged every time.
const MAX_LEN: usize = 23;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// 0: empty.
    len: u8,
    bytes: [u8; MAX_LEN],
}

/// Word-like segments seen lately; see the module documentation.
#[derive(Debug, Clone)]
pub struct WordMemo {
    slots: Box<[Slot]>,
    hasher: FastState,
}

impl Default for WordMemo {
    fn default() -> Self {
        Self {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            hasher: FastState::default(),
        }
    }
}

impl WordMemo {
    /// Whether `segment` reads like a word: remembered, or as `judge` says
    /// (and then remembered if it does).
    pub fn is_word(&mut self, segment: &str, judge: impl FnOnce(&str) -> bool) -> bool {
        let bytes = segment.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_LEN {
            return judge(segment);
        }
        let index = self.slot_of(bytes);
        let Some(slot) = self.slots.get_mut(index) else {
            return judge(segment);
        };
        if usize::from(slot.len) == bytes.len() && slot.bytes.get(..bytes.len()) == Some(bytes) {
            return true;
        }
        let word = judge(segment);
        if let (true, Some(stored)) = (word, slot.bytes.get_mut(..bytes.len())) {
            stored.copy_from_slice(bytes);
            slot.len = bytes.len() as u8;
        }
        word
    }

    fn slot_of(&self, bytes: &[u8]) -> usize {
        (self.hasher.hash_one(bytes) >> 56) as usize & (SLOTS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_word_is_judged_once_and_an_identifier_every_time() {
        let judged = std::cell::Cell::new(0);
        let judge = |word: bool| {
            let judged = &judged;
            move |_: &str| {
                judged.set(judged.get() + 1);
                word
            }
        };
        let mut memo = WordMemo::default();
        assert!(memo.is_word("orders", judge(true)));
        assert!(memo.is_word("orders", judge(true)));
        assert_eq!(judged.get(), 1);
        assert!(!memo.is_word("8f14e45f", judge(false)));
        assert!(!memo.is_word("8f14e45f", judge(false)));
        assert_eq!(judged.get(), 3);
        // Too long to remember: judged each time.
        let long = "averyveryverylongwordindeed";
        assert!(memo.is_word(long, judge(true)));
        assert!(memo.is_word(long, judge(true)));
        assert_eq!(judged.get(), 5);
    }

    #[test]
    fn segments_sharing_a_slot_are_told_apart_by_their_bytes() {
        let first = "aaaa";
        let mut memo = WordMemo::default();
        // Another five letters in the same slot (one in 256 is). The slots
        // follow a per-process seed: 676 candidates missed every slot of
        // `first` about once in 14 runs, 17,576 miss it about once in 10^29.
        let collider = (b'a'..=b'z')
            .flat_map(|a| (b'a'..=b'z').map(move |b| (a, b)))
            .flat_map(|(a, b)| (b'a'..=b'z').map(move |c| [a, b, c, b'x', b'y']))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .find(|s| memo.slot_of(s.as_bytes()) == memo.slot_of(first.as_bytes()))
            .unwrap_or_else(|| panic!("no segment shares a slot with {first}"));
        assert!(memo.is_word(first, |_| true));
        // The slot holds `first`: the collider is judged, and found not a word.
        assert!(!memo.is_word(&collider, |_| false));
        assert!(memo.is_word(first, |_| panic!("remembered")));
        // A word in the slot replaces the one there.
        assert!(memo.is_word(&collider, |_| true));
        assert!(memo.is_word(&collider, |_| panic!("remembered")));
        assert!(memo.is_word(first, |_| true));
    }

    proptest! {
        /// Whatever the order and repetition of segments, the memo answers
        /// as the judge would.
        #[test]
        fn the_memo_answers_as_the_judge(segments in proptest::collection::vec("[a-c0-2]{1,4}|[a-z]{20,26}", 1..300)) {
            let judge = |s: &str| s.bytes().all(|b| b.is_ascii_alphabetic()) && !s.len().is_multiple_of(3);
            let mut memo = WordMemo::default();
            for segment in &segments {
                prop_assert_eq!(memo.is_word(segment, judge), judge(segment));
            }
        }
    }
}
