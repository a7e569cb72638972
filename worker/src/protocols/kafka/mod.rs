//! Kafka from the client's side of a connection: requests are what the
//! instrumented process writes, responses what it reads.
//!
//! [`check`] tells from a connection's first bytes whether it is Kafka (a
//! plausible size prefix, API key and version, correlation id and client
//! id; the port is never needed). [`KafkaConnection`] frames the messages,
//! pairs them by correlation id and turns Produce and Fetch into
//! [`KafkaOperation`]s. Primitive reads ([`wire`]), headers ([`header`]),
//! each API's bodies and the pairing are kept apart; in the protocol
//! registry it is a `MessagingSession<KafkaConnection>`.

#![forbid(unsafe_code)]

pub mod connection;
pub mod fetch;
pub mod header;
pub mod metadata;
pub mod produce;
pub mod records;
pub mod topics;
pub mod wire;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::{KafkaConnection, KafkaOperation, KafkaStats};

/// What the start of a client's write looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestShape {
    Request,
    NotRequest,
    /// Consistent so far: more bytes can tell.
    TooShort,
}

/// Size (4), API key and version (2 + 2), correlation id (4), client id length (2).
const FIXED: usize = 14;

/// Whether `bytes` start a Kafka request: a size that covers at least the
/// header, an API key and version in Kafka's ranges, a non-negative
/// correlation id, and a client id that is null or printable ASCII.
pub fn check_request(bytes: &[u8]) -> RequestShape {
    let be16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
    };
    let be32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    // Each field is judged as soon as it is whole.
    let size = be32(0);
    if size.is_some_and(|s| !(10..=connection::MAX_MESSAGE as i32).contains(&s)) {
        return RequestShape::NotRequest;
    }
    // A partial first field: only its high byte can be judged (sizes are < 2^27).
    if size.is_none() && bytes.first().is_some_and(|b| *b != 0) {
        return RequestShape::NotRequest;
    }
    if be16(4).is_some_and(|k| !(0..=header::MAX_API_KEY).contains(&k))
        || be16(6).is_some_and(|v| !(0..=header::MAX_API_VERSION).contains(&v))
        || be32(8).is_some_and(|c| c < 0)
    {
        return RequestShape::NotRequest;
    }
    let (Some(size), Some(id_len)) = (size, be16(12)) else {
        return RequestShape::TooShort;
    };
    if id_len == -1 {
        return RequestShape::Request;
    }
    let Ok(id_len) = usize::try_from(id_len) else {
        return RequestShape::NotRequest;
    };
    if id_len > header::MAX_CLIENT_ID || FIXED - 4 + id_len > size as usize {
        return RequestShape::NotRequest;
    }
    let id = &bytes[FIXED..bytes.len().min(FIXED + id_len)];
    if !header::plausible_client_id(id) {
        return RequestShape::NotRequest;
    }
    if id.len() < id_len {
        return RequestShape::TooShort;
    }
    body_shape(bytes, size as usize)
}

/// Produce and Fetch, the requests a connection may start with that a
/// broker's response also resembles (its correlation id, read as a request
/// header, is API key 0 and a small version): their body must name a topic
/// (and Produce's acks be -1, 0 or 1). A response's body does not.
fn body_shape(bytes: &[u8], size: usize) -> RequestShape {
    let Some(header) = bytes.get(4..).and_then(header::request_header) else {
        return RequestShape::NotRequest;
    };
    let body = bytes.get(4 + header.body_offset..).unwrap_or_default();
    let names_a_topic = match header.api_key {
        header::PRODUCE => produce::request(body, header.api_version)
            .is_some_and(|r| !r.topics.is_empty() && (-1..=1).contains(&r.acks)),
        header::FETCH => {
            fetch::request(body, header.api_version).is_some_and(|r| !r.topics.is_empty())
        }
        _ => true,
    };
    if names_a_topic {
        RequestShape::Request
    } else if bytes.len() < size + 4 {
        RequestShape::TooShort
    } else {
        RequestShape::NotRequest
    }
}

/// Whether a connection's first bytes are Kafka, the direction seen from
/// the client: a client always speaks first, so only its writes are judged.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    if direction == Direction::Ingress || first_bytes.is_empty() {
        return Detection::No;
    }
    match check_request(first_bytes) {
        RequestShape::Request => Detection::Yes,
        RequestShape::NotRequest => Detection::No,
        RequestShape::TooShort => Detection::NeedMore,
    }
}
