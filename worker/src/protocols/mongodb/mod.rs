//! MongoDB's wire protocol from the client's side of a connection: commands
//! are what the instrumented process writes, replies what it reads.
//!
//! [`check`] tells from a connection's first bytes whether it is MongoDB;
//! [`MongoConnection`] turns its messages into [`DbOperation`]s, one per
//! command the application sent (a driver's handshake, monitoring and
//! authentication commands are paired and left out). The message framing
//! and the documents' layout ([`wire`], [`bson`]) are kept apart from
//! pairing ([`connection`]).
//!
//! [`DbOperation`]: crate::protocols::db::DbOperation

#![forbid(unsafe_code)]

pub mod bson;
pub mod connection;
pub mod wire;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::MongoConnection;
use wire::{Header, OP_COMPRESSED, OP_MSG, OP_QUERY, OP_REPLY};

/// Bytes past the header [`check`] reads of an OP_MSG: flags, the section
/// kind, the document's length and first element's type.
const MSG_CHECKED: usize = wire::HEADER_LEN + 4 + 1 + 4 + 1;

/// Whether a connection's first bytes are MongoDB's.
///
/// Client writes: a request header (a length between 17 bytes and 48 MB,
/// `responseTo` 0) of OP_MSG, OP_QUERY or OP_COMPRESSED, whose content is
/// well formed as far as it goes: OP_MSG's flag bits are ones a sender may
/// set, its first section is a body or a document sequence, a body's
/// document fits the message and starts with an element of a known type;
/// OP_QUERY's collection name is printable text with a `.`;
/// OP_COMPRESSED holds an OP_MSG or OP_QUERY. Client reads (joined
/// mid-stream): a reply header (`responseTo` not 0) of OP_MSG or OP_REPLY,
/// checked the same way. The length is little-endian, unlike PostgreSQL's,
/// MySQL's and Kafka's framing, which are asked before.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    if first_bytes.len() < wire::HEADER_LEN {
        // A length prefix a message may have, so far.
        let plausible = match first_bytes.get(..4) {
            Some(length) => {
                let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]);
                length as usize > wire::HEADER_LEN && length <= wire::MAX_MESSAGE_LEN
            }
            None => !first_bytes.is_empty(),
        };
        return if plausible {
            Detection::NeedMore
        } else {
            Detection::No
        };
    }
    let Some(header) = Header::read(first_bytes) else {
        return Detection::No;
    };
    let body = &first_bytes[wire::HEADER_LEN..];
    let found = match direction {
        Direction::Egress if header.is_request() => request_content(header, body),
        Direction::Ingress if header.is_reply() => reply_content(header, body),
        Direction::Egress | Direction::Ingress => Some(false),
    };
    match found {
        Some(true) => Detection::Yes,
        Some(false) => Detection::No,
        None => Detection::NeedMore,
    }
}

/// Whether a request's body is well formed; `None` when more bytes are needed.
fn request_content(header: Header, body: &[u8]) -> Option<bool> {
    match header.op_code {
        OP_MSG => msg_content(header, body),
        OP_QUERY => {
            let name = body.get(4..)?;
            let Some(nul) = memchr::memchr(0, name) else {
                let printable = name.len() < 256 && name.iter().all(u8::is_ascii_graphic);
                return if printable { None } else { Some(false) };
            };
            let name = &name[..nul];
            Some(name.len() >= 3 && name.iter().all(u8::is_ascii_graphic) && name.contains(&b'.'))
        }
        OP_COMPRESSED => {
            let original = i32::from_le_bytes(body.get(..4)?.try_into().ok()?);
            let compressor = *body.get(8)?;
            Some(matches!(original, OP_MSG | OP_QUERY) && compressor <= 3)
        }
        _ => Some(false),
    }
}

/// Whether a reply's body is well formed; `None` when more bytes are needed.
fn reply_content(header: Header, body: &[u8]) -> Option<bool> {
    match header.op_code {
        OP_MSG => msg_content(header, body),
        OP_REPLY => {
            let flags = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
            let returned = i32::from_le_bytes(body.get(16..20)?.try_into().ok()?);
            Some(flags < 16 && returned >= 0 && header.length >= 36)
        }
        _ => Some(false),
    }
}

fn msg_content(header: Header, body: &[u8]) -> Option<bool> {
    let flags = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    if !wire::valid_msg_flags(flags) || (header.length as usize) < MSG_CHECKED {
        return Some(false);
    }
    let kind = *body.get(4)?;
    let size = i32::from_le_bytes(body.get(5..9)?.try_into().ok()?);
    let room = header.length as usize - wire::HEADER_LEN - 5;
    let sized = usize::try_from(size).is_ok_and(|s| s >= 5 && s <= room);
    match kind {
        0 => {
            let element = *body.get(9)?;
            Some(sized && matches!(element, 0x01..=0x13 | 0x7f | 0xff))
        }
        // A document sequence: its identifier follows (`documents`, `updates`…).
        1 => {
            let identifier = body.get(9..)?;
            let start = identifier.first()?;
            Some(sized && start.is_ascii_alphabetic())
        }
        _ => Some(false),
    }
}
