//! A connection's first segments while the protocol registry cannot yet say
//! which protocol they are (a preface or start line cut between writes):
//! held, bounded, and handed to the protocol found, in order, so that it
//! parses the connection from its first byte.

use std::borrow::Cow;

use zerotrace_shared::event::Direction;

use crate::protocols::registry::{detect, Detection, Protocol, ProtocolSelection};
use crate::protocols::session::{ConnectionInfo, DataSegment, FirstBytes};

/// Bytes held, both directions together; past this the registry decides
/// with what it has. Prefaces and start lines are decided well within it.
const MAX_HELD_BYTES: usize = 64;
/// Segments held (writes of nothing count too).
const MAX_HELD_SEGMENTS: usize = 8;

/// One segment held whole (only segments without a gap are held).
#[derive(Debug)]
pub(super) struct HeldSegment {
    pub direction: Direction,
    pub bytes: Vec<u8>,
    pub ts_ns: u64,
}

impl HeldSegment {
    pub fn as_segment(&self) -> DataSegment<'_> {
        DataSegment {
            direction: self.direction,
            captured: &self.bytes,
            missing: 0,
            tail: &[],
            ts_ns: self.ts_ns,
        }
    }
}

/// What the registry made of a segment of an undecided connection.
pub(super) enum FirstBytesDecision {
    /// The connection speaks this protocol: the held segments, then this one, are its.
    Found(Protocol),
    /// Held; ask again with the next segment.
    Held,
    /// No protocol claims this direction's bytes: this many segments
    /// (the held ones of the direction and this one) are dropped.
    Unclaimed(u64),
}

/// The segments held for one connection, oldest first.
#[derive(Debug, Default)]
pub(super) struct Undecided {
    held: Vec<HeldSegment>,
    bytes: usize,
}

impl Undecided {
    /// Asks the registry (the `selection` of it) about `segment` after what `direction` held.
    pub fn decide(
        &mut self,
        conn: &ConnectionInfo,
        segment: &DataSegment<'_>,
        selection: ProtocolSelection,
    ) -> FirstBytesDecision {
        let more_may_come = segment.missing == 0
            && self.bytes + segment.captured.len() <= MAX_HELD_BYTES
            && self.held.len() < MAX_HELD_SEGMENTS;
        let bytes = self.bytes_of(segment.direction, segment.captured);
        let first = FirstBytes::of(conn, segment.direction, &bytes);
        match detect(&first, more_may_come, selection) {
            Detection::Found(protocol) => FirstBytesDecision::Found(protocol),
            Detection::NeedMore => {
                self.bytes += segment.captured.len();
                self.held.push(HeldSegment {
                    direction: segment.direction,
                    bytes: segment.captured.to_vec(),
                    ts_ns: segment.ts_ns,
                });
                FirstBytesDecision::Held
            }
            Detection::Unknown => {
                let before = self.held.len();
                self.held.retain(|h| h.direction != segment.direction);
                self.bytes = self.held.iter().map(|h| h.bytes.len()).sum();
                FirstBytesDecision::Unclaimed((before - self.held.len()) as u64 + 1)
            }
        }
    }

    /// The first bytes to judge for `direction`: what it held, then `captured`.
    pub fn bytes_of<'a>(&self, direction: Direction, captured: &'a [u8]) -> Cow<'a, [u8]> {
        if !self.held.iter().any(|h| h.direction == direction) {
            return Cow::Borrowed(captured);
        }
        let mut bytes: Vec<u8> = self
            .held
            .iter()
            .filter(|h| h.direction == direction)
            .flat_map(|h| h.bytes.iter().copied())
            .collect();
        bytes.extend_from_slice(captured);
        Cow::Owned(bytes)
    }

    /// The held segments, oldest first, for the protocol found.
    pub fn take(&mut self) -> Vec<HeldSegment> {
        self.bytes = 0;
        std::mem::take(&mut self.held)
    }

    /// Directions that hold bytes no protocol claimed before the connection
    /// ended (each counts as one unreadable segment).
    pub fn unclaimed_directions(&self) -> u64 {
        let holds = |d: Direction| {
            self.held
                .iter()
                .any(|h| h.direction == d && !h.bytes.is_empty())
        };
        u64::from(holds(Direction::Ingress)) + u64::from(holds(Direction::Egress))
    }
}
