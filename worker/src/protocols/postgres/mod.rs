//! PostgreSQL frontend/backend protocol v3, seen from the client side of a
//! connection: what the instrumented process writes are frontend messages,
//! what it reads are backend messages.
//!
//! [`check`] tells from a connection's first bytes whether it is PostgreSQL;
//! [`PostgresConnection`] turns its segments into [`DbOperation`]s. Parsing
//! (frames → messages, [`message`]) is kept apart from pairing requests with
//! their results ([`connection`]).
//!
//! [`DbOperation`]: crate::protocols::db::DbOperation

#![forbid(unsafe_code)]

pub mod connection;
pub mod message;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::PostgresConnection;
use message::{FirstMessage, BACKEND_TYPES};

/// Whether a connection's first bytes are PostgreSQL.
///
/// Client writes: an untyped first message whose 4-byte length fits its code —
/// an SSLRequest or GSSENCRequest (length 8, codes 80877103/80877104), a
/// CancelRequest (length 16, 80877102), or a StartupMessage (length 9..10000,
/// protocol 196608 or 196610) whose first parameter name is a NUL-terminated
/// lower-case word. A connection joined mid-stream is also recognised by a
/// `Q` or `P` message whose big-endian length is plausible and whose text is
/// NUL-terminated where the length says. Client reads: an Authentication
/// request (`R`, length 8..2048, a known method code), or a run of
/// well-formed backend messages that contains a ReadyForQuery (`Z`, length 5,
/// status `I`/`T`/`E`). Text protocols fail these checks at once: their
/// length bytes would be printable and so declare megabytes.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    match direction {
        Direction::Egress => check_frontend(first_bytes),
        Direction::Ingress => check_backend(first_bytes),
    }
}

fn be32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn check_frontend(bytes: &[u8]) -> Detection {
    if bytes.len() < 8 {
        // An untyped first message starts with a zero length byte; typed ones with a letter.
        let fits = bytes
            .first()
            .is_none_or(|b| *b == 0 || matches!(b, b'Q' | b'P'));
        return if fits {
            Detection::NeedMore
        } else {
            Detection::No
        };
    }
    match message::parse_first(bytes) {
        Some(FirstMessage::SslRequest | FirstMessage::GssEncRequest | FirstMessage::Cancel) => {
            return Detection::Yes
        }
        Some(FirstMessage::Startup(_)) => {
            let params = &bytes[8..];
            let name_len = params
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                .count();
            return match params.get(name_len) {
                Some(0) if name_len > 0 => Detection::Yes,
                None if params.len() < 64 => Detection::NeedMore,
                _ => Detection::No,
            };
        }
        None => {}
    }
    // Joined mid-stream: a simple query or a Parse.
    let (tag, len) = (bytes[0], be32(&bytes[1..]).unwrap_or(0) as usize);
    if !matches!(tag, b'Q' | b'P') || !(5..=(1 << 20)).contains(&len) {
        return Detection::No;
    }
    let body = &bytes[5..bytes.len().min(1 + len)];
    let nul_at = memchr::memchr(0, body);
    let text_ok = |text: &[u8]| text.iter().all(|b| *b >= 0x20 || b.is_ascii_whitespace());
    match (tag, nul_at) {
        (b'Q', Some(at)) if at + 6 == 1 + len && text_ok(&body[..at]) => Detection::Yes,
        (b'Q', None) if bytes.len() < 1 + len && text_ok(body) => Detection::Yes,
        (b'P', Some(at)) if text_ok(&body[..at]) => {
            let text = &body[at + 1..];
            let text_end = memchr::memchr(0, text).unwrap_or(text.len());
            if text_ok(&text[..text_end]) && text_end > 0 {
                Detection::Yes
            } else {
                Detection::No
            }
        }
        _ => Detection::No,
    }
}

fn check_backend(bytes: &[u8]) -> Detection {
    if bytes.len() < 5 {
        let fits = bytes.first().is_none_or(|b| BACKEND_TYPES.contains(b));
        return if fits {
            Detection::NeedMore
        } else {
            Detection::No
        };
    }
    if bytes[0] == b'R' {
        let len = be32(&bytes[1..]).unwrap_or(0);
        let Some(method) = be32(&bytes[5..]) else {
            return Detection::NeedMore;
        };
        return if (8..=2048).contains(&len) && matches!(method, 0 | 2 | 3 | 5 | 6..=12) {
            Detection::Yes
        } else {
            Detection::No
        };
    }
    let mut at = 0usize;
    while at + 5 <= bytes.len() {
        let tag = bytes[at];
        let len = be32(&bytes[at + 1..]).unwrap_or(0) as usize;
        if !BACKEND_TYPES.contains(&tag) || !(4..=(1 << 30)).contains(&len) {
            return Detection::No;
        }
        if tag == b'Z' {
            let ready = len == 4 + 1
                && bytes
                    .get(at + 5)
                    .is_none_or(|s| matches!(s, b'I' | b'T' | b'E'));
            return if ready { Detection::Yes } else { Detection::No };
        }
        at += 1 + len;
    }
    if bytes.len() < 64 {
        Detection::NeedMore
    } else {
        Detection::No
    }
}
