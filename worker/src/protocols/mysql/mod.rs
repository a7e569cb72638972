//! MySQL and MariaDB client/server protocol from the client's side of a
//! connection: what the instrumented process writes are commands, what it
//! reads are the server's greeting and replies.
//!
//! [`check`] tells from a connection's first bytes whether it is MySQL;
//! [`MysqlConnection`] turns its segments into [`DbOperation`]s. Packets and
//! their fields ([`packet`]) are kept apart from the command/reply state
//! machine ([`connection`]).
//!
//! [`DbOperation`]: crate::protocols::db::DbOperation

#![forbid(unsafe_code)]

pub mod connection;
pub mod packet;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::MysqlConnection;

/// Whether a connection's first bytes are MySQL or MariaDB.
///
/// Client reads (the server speaks first): a packet with sequence id 0 and a
/// length of 30..1024 whose body starts with protocol version 10 and a
/// NUL-terminated server version beginning with a digit (`8.0.36`,
/// `5.5.5-10.11.6-MariaDB`). Client writes (joined after the greeting): a
/// HandshakeResponse41 (sequence 1, CLIENT_PROTOCOL_41 set, the first 19 of
/// its 23 filler bytes zero), or a COM_QUERY (sequence 0, command 3) whose length matches
/// and whose text is printable. A text protocol fails at once: its first
/// bytes would declare a length in the megabytes and a non-zero sequence.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    let bytes = first_bytes;
    if bytes.len() < 5 {
        return Detection::NeedMore;
    }
    let len = usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
    let (seq, body) = (bytes[3], &bytes[4..]);
    match direction {
        Direction::Ingress => {
            if seq != 0 || body[0] != 10 || !(30..1024).contains(&len) {
                return Detection::No;
            }
            let version = &body[1..];
            let Some(end) = memchr::memchr(0, version) else {
                return if version.len() < 64 && version.iter().all(u8::is_ascii_graphic) {
                    Detection::NeedMore
                } else {
                    Detection::No
                };
            };
            let version = &version[..end];
            if version.first().is_some_and(u8::is_ascii_digit)
                && version.iter().all(u8::is_ascii_graphic)
            {
                Detection::Yes
            } else {
                Detection::No
            }
        }
        Direction::Egress => match (seq, body[0]) {
            (1, _) if len >= 32 => {
                if body.len() < 32 {
                    return Detection::NeedMore;
                }
                let capabilities = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                // MariaDB clients put their extended capabilities in the filler's last 4 bytes.
                let filler_zero = body[9..28].iter().all(|b| *b == 0);
                if capabilities & packet::CLIENT_PROTOCOL_41 != 0 && filler_zero && len < 4096 {
                    Detection::Yes
                } else {
                    Detection::No
                }
            }
            (0, packet::COM_QUERY) if len > 1 && len < (1 << 24) - 1 => {
                let text = &body[1..body.len().min(len)];
                let printable = text.iter().all(|b| *b >= 0x20 || b.is_ascii_whitespace());
                let fits = bytes.len() <= 4 + len;
                if printable
                    && fits
                    && text
                        .first()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b"/( \n".contains(b))
                {
                    Detection::Yes
                } else {
                    Detection::No
                }
            }
            _ => Detection::No,
        },
    }
}
