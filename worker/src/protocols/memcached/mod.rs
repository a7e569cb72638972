//! memcached's text protocol from the client's side of a connection:
//! commands are what the instrumented process writes, replies what it reads.
//!
//! [`check`] tells from a connection's first bytes whether it is memcached;
//! [`MemcachedConnection`] turns its segments into [`DbOperation`]s, one per
//! command. Lines and data blocks ([`line`]) are kept apart from pairing
//! commands with replies ([`connection`]).
//!
//! [`DbOperation`]: crate::protocols::db::DbOperation

#![forbid(unsafe_code)]

pub mod connection;
pub mod line;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::MemcachedConnection;
use connection::{command_data, COMMANDS};

/// Whether a connection's first bytes are memcached's text protocol.
///
/// Client writes: a line that starts with a lower-case command word of the
/// protocol (`get`, `set`, `delete`, `incr`, `version`, `stats`, the meta
/// commands `mg`/`ms`…), followed by a space or the line's end, printable up
/// to its CRLF; a storage command must also have its four numeric fields
/// (`set <key> <flags> <exptime> <bytes>`). Client reads (joined
/// mid-stream): a `VALUE <key> <flags> <bytes>` line, or exactly one of the
/// one-word replies that no other common protocol sends alone (`STORED`,
/// `NOT_STORED`, `DELETED`, `TOUCHED`, `NOT_FOUND`, `EXISTS`, `END`), or
/// `VERSION <n>`. Redis's inline commands are upper case and memcached's
/// are not, so the two never both match. The binary protocol (magic `0x80`)
/// is not decoded.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    let Some(end) = memchr::memchr(b'\n', first_bytes) else {
        let plausible = first_bytes.len() < 256
            && first_bytes
                .iter()
                .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r')
            && match direction {
                Direction::Egress => {
                    let word: Vec<u8> = first_bytes
                        .iter()
                        .take_while(|b| **b != b' ')
                        .copied()
                        .collect();
                    COMMANDS.iter().any(|c| {
                        c.as_bytes().starts_with(&word)
                            || (word.starts_with(c.as_bytes()) && word.len() == c.len())
                    })
                }
                Direction::Ingress => true,
            };
        return if plausible && !first_bytes.is_empty() {
            Detection::NeedMore
        } else {
            Detection::No
        };
    };
    let Some(line) = first_bytes[..end].strip_suffix(b"\r") else {
        return Detection::No;
    };
    if !line.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Detection::No;
    }
    let mut words = line.split(|b| *b == b' ');
    let word = words.next().unwrap_or_default();
    let found = match direction {
        Direction::Egress => {
            COMMANDS.iter().any(|c| c.as_bytes() == word)
                && (command_data(line).is_some()
                    || !matches!(
                        word,
                        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas"
                    ))
                && !(matches!(
                    word,
                    b"get" | b"gets" | b"delete" | b"incr" | b"decr" | b"touch"
                ) && line.len() == word.len())
        }
        Direction::Ingress => match word {
            b"STORED" | b"NOT_STORED" | b"DELETED" | b"TOUCHED" | b"NOT_FOUND" | b"EXISTS"
            | b"END" => line.len() == word.len(),
            b"VERSION" => words
                .next()
                .is_some_and(|v| v.first().is_some_and(u8::is_ascii_digit)),
            b"VALUE" => connection::reply_data(line).is_some(),
            _ => false,
        },
    };
    if found {
        Detection::Yes
    } else {
        Detection::No
    }
}
