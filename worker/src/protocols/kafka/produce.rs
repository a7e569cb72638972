//! Produce (API key 0): the topics, partitions and message count of a
//! request, and the error codes of its response.

#![forbid(unsafe_code)]

use super::header::is_flexible;
use super::header::PRODUCE;
use super::records::message_count;
use super::topics::{read_topic, Partitions, TopicRef};
use super::wire::Wire;

/// What a Produce request says, as far as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    pub acks: i16,
    pub topics: Vec<TopicRef>,
    pub partitions: Partitions,
    /// Records in the request, when every batch header was captured.
    pub message_count: Option<u64>,
    /// The request was read whole (not cut by the capture).
    pub complete: bool,
}

/// Topics kept per request: a span names its topic only when there is one,
/// so a second is kept only to know there are several (bounds what each of
/// up to 256 waiting requests holds).
pub const MAX_TOPICS: usize = 2;

/// Reads a Produce request's body (after its header).
pub fn request(body: &[u8], version: i16) -> Option<ProduceRequest> {
    let mut wire = Wire::new(body, is_flexible(PRODUCE, version));
    if version >= 3 {
        wire.nullable_string()?;
    }
    let acks = wire.i16()?;
    wire.i32()?;
    let mut request = ProduceRequest {
        acks,
        topics: Vec::new(),
        partitions: Partitions::default(),
        message_count: Some(0),
        complete: false,
    };
    request.complete = read_topics(&mut wire, version, &mut request).is_some();
    if !request.complete && request.topics.is_empty() {
        return None;
    }
    if !request.complete {
        request.message_count = None;
    }
    Some(request)
}

fn read_topics(wire: &mut Wire<'_>, version: i16, request: &mut ProduceRequest) -> Option<()> {
    for _ in 0..wire.array_len()? {
        let topic = read_topic(wire, version >= 13)?;
        if request.topics.len() < MAX_TOPICS && !request.topics.contains(&topic) {
            request.topics.push(topic);
        }
        for _ in 0..wire.array_len()? {
            request.partitions.note(wire.i32()?);
            let (kept, declared) = wire.bytes_prefix()?;
            let count = message_count(kept, declared);
            request.message_count = request.message_count.zip(count).map(|(a, b)| a + b);
            if kept.len() < declared {
                return None;
            }
            wire.tagged_fields()?;
        }
        wire.tagged_fields()?;
    }
    Some(())
}

/// A Produce response's verdict: the first error code other than 0 (with
/// its partition), else 0; None when no partition's code was captured.
pub fn response(body: &[u8], version: i16) -> Option<i16> {
    let mut wire = Wire::new(body, is_flexible(PRODUCE, version));
    let mut first = None;
    let _ = read_response_topics(&mut wire, version, &mut first);
    first
}

fn read_response_topics(wire: &mut Wire<'_>, version: i16, first: &mut Option<i16>) -> Option<()> {
    for _ in 0..wire.array_len()? {
        read_topic(wire, version >= 13)?;
        for _ in 0..wire.array_len()? {
            wire.i32()?;
            let code = wire.i16()?;
            if first.is_none_or(|c| c == 0) {
                *first = Some(code);
            }
            wire.i64()?;
            if version >= 2 {
                wire.i64()?;
            }
            if version >= 5 {
                wire.i64()?;
            }
            if version >= 8 {
                for _ in 0..wire.array_len()? {
                    wire.i32()?;
                    wire.nullable_string()?;
                    wire.tagged_fields()?;
                }
                wire.nullable_string()?;
            }
            wire.tagged_fields()?;
        }
        wire.tagged_fields()?;
    }
    Some(())
}
