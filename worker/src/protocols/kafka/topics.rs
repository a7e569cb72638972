//! How Produce and Fetch name topics (a name, or from Fetch v13 and
//! Produce v13 on a topic id resolved through Metadata), and the
//! partitions one request touches.

#![forbid(unsafe_code)]

use super::wire::Wire;

/// Longest topic name kept (Kafka allows 249 characters).
pub const MAX_TOPIC_NAME: usize = 249;

/// A topic as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(String),
    Id([u8; 16]),
}

/// Reads a topic name (a string) or, when `by_id`, a topic id (a UUID).
pub fn read_topic(wire: &mut Wire<'_>, by_id: bool) -> Option<TopicRef> {
    if by_id {
        return wire.uuid().map(TopicRef::Id);
    }
    let name = wire.string()?;
    let name = &name[..name.len().min(MAX_TOPIC_NAME)];
    Some(TopicRef::Name(String::from_utf8_lossy(name).into_owned()))
}

/// The partitions a request touches: the one, or how many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Partitions {
    first: Option<i32>,
    pub count: u32,
}

impl Partitions {
    pub fn note(&mut self, partition: i32) {
        if self.first.is_none() {
            self.first = Some(partition);
        }
        self.count = self.count.saturating_add(1);
    }

    /// The partition, when the request touched exactly one.
    pub fn single(&self) -> Option<i32> {
        (self.count == 1).then_some(self.first).flatten()
    }
}
