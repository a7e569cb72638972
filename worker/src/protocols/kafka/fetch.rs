//! Fetch (API key 1): the topics and partitions a consumer asks for (names,
//! or topic ids from v13 on), and in the response the error codes and the
//! number of messages delivered, as far as the capture kept them.

#![forbid(unsafe_code)]

use super::header::{is_flexible, FETCH};
use super::produce::MAX_TOPICS;
use super::records::message_count;
use super::topics::{read_topic, Partitions, TopicRef};
use super::wire::Wire;

/// What a Fetch request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRequest {
    pub topics: Vec<TopicRef>,
    pub partitions: Partitions,
}

/// Reads a Fetch request's body (after its header).
pub fn request(body: &[u8], version: i16) -> Option<FetchRequest> {
    let mut wire = Wire::new(body, is_flexible(FETCH, version));
    // From v15 the replica id moved into a tagged field of the header's body.
    if version <= 14 {
        wire.i32()?;
    }
    wire.skip(8)?; // max_wait_ms, min_bytes
    if version >= 3 {
        wire.i32()?;
    }
    if version >= 4 {
        wire.i8()?;
    }
    if version >= 7 {
        wire.skip(8)?; // session id and epoch
    }
    let mut request = FetchRequest::default();
    let _ = read_topics(&mut wire, version, &mut request);
    Some(request)
}

fn read_topics(wire: &mut Wire<'_>, version: i16, request: &mut FetchRequest) -> Option<()> {
    for _ in 0..wire.array_len()? {
        let topic = read_topic(wire, version >= 13)?;
        if request.topics.len() < MAX_TOPICS && !request.topics.contains(&topic) {
            request.topics.push(topic);
        }
        for _ in 0..wire.array_len()? {
            request.partitions.note(wire.i32()?);
            if version >= 9 {
                wire.i32()?;
            }
            wire.i64()?;
            if version >= 12 {
                wire.i32()?;
            }
            if version >= 5 {
                wire.i64()?;
            }
            wire.i32()?;
            wire.tagged_fields()?;
        }
        wire.tagged_fields()?;
    }
    Some(())
}

/// What a Fetch response says, as far as captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchResponse {
    /// The first error code other than 0 (top level, then partitions), else 0.
    pub error_code: Option<i16>,
    /// Topics answered (the request's may be empty in an incremental fetch session).
    pub topics: Vec<TopicRef>,
    pub partitions: Partitions,
    /// Messages delivered, when every partition's batches were captured.
    pub message_count: Option<u64>,
}

impl FetchResponse {
    fn note_error(&mut self, code: i16) {
        if self.error_code.is_none_or(|c| c == 0) {
            self.error_code = Some(code);
        }
    }
}

/// Reads a Fetch response's body (after its header).
pub fn response(body: &[u8], version: i16) -> FetchResponse {
    let mut wire = Wire::new(body, is_flexible(FETCH, version));
    let mut response = FetchResponse {
        message_count: Some(0),
        ..FetchResponse::default()
    };
    if read_response(&mut wire, version, &mut response).is_none() {
        response.message_count = None;
    }
    response
}

fn read_response(wire: &mut Wire<'_>, version: i16, response: &mut FetchResponse) -> Option<()> {
    if version >= 1 {
        wire.i32()?;
    }
    if version >= 7 {
        let code = wire.i16()?;
        response.note_error(code);
        wire.i32()?;
    }
    for _ in 0..wire.array_len()? {
        let topic = read_topic(wire, version >= 13)?;
        if response.topics.len() < MAX_TOPICS && !response.topics.contains(&topic) {
            response.topics.push(topic);
        }
        for _ in 0..wire.array_len()? {
            response.partitions.note(wire.i32()?);
            let code = wire.i16()?;
            response.note_error(code);
            wire.i64()?;
            if version >= 4 {
                wire.i64()?;
            }
            if version >= 5 {
                wire.i64()?;
            }
            if version >= 4 {
                for _ in 0..wire.array_len()? {
                    wire.skip(16)?;
                    wire.tagged_fields()?;
                }
            }
            if version >= 11 {
                wire.i32()?;
            }
            let (kept, declared) = wire.bytes_prefix()?;
            let count = message_count(kept, declared);
            response.message_count = response.message_count.zip(count).map(|(a, b)| a + b);
            if kept.len() < declared {
                return None;
            }
            wire.tagged_fields()?;
        }
        wire.tagged_fields()?;
    }
    Some(())
}
