//! NATS (the core client protocol, with headers and JetStream's subjects)
//! from the client's side of a connection: what the instrumented process
//! writes are its operations to the server, what it reads the server's.
//!
//! [`check`] tells from a connection's first bytes whether it is NATS (the
//! server's `INFO {…}` greeting, the client's `CONNECT {…}`);
//! [`NatsConnection`] turns its operations into messaging operations
//! ([`line`] reads control lines, [`reader`] frames operations across the
//! capture's gaps, [`connection`] pairs them); in the protocol registry it
//! is a `MessagingSession<NatsConnection>`.

#![forbid(unsafe_code)]

pub mod connection;
pub mod line;
pub mod reader;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::NatsConnection;
use line::Control;
use reader::{OperationReader, ReadEvent};

/// Whether a connection's first bytes are NATS's: the server's greeting
/// `INFO {` read, or the client's `CONNECT {` written (the JSON brace sets
/// it apart from HTTP's CONNECT); or, on a connection opened before the
/// agent, operations the client writes or reads mid-connection
/// ([`mid_stream`]).
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    if starts_with_greeting(first_bytes, direction) {
        return Detection::Yes;
    }
    let greeting = greeting(direction);
    let short = first_bytes.len() < greeting.len()
        && !first_bytes.is_empty()
        && greeting[..first_bytes.len()].eq_ignore_ascii_case(first_bytes);
    if short {
        return Detection::NeedMore;
    }
    mid_stream(first_bytes, direction)
}

/// What a connection's first bytes are from its start: the server's `INFO {`
/// read, the client's `CONNECT {` written.
fn greeting(direction: Direction) -> &'static [u8] {
    match direction {
        Direction::Ingress => b"INFO {",
        Direction::Egress => b"CONNECT {",
    }
}

/// Whether `bytes` start with the connection's greeting on that side
/// (a connection seen from its start, not joined mid-stream).
pub fn starts_with_greeting(bytes: &[u8], direction: Direction) -> bool {
    let greeting = greeting(direction);
    bytes.len() >= greeting.len() && bytes[..greeting.len()].eq_ignore_ascii_case(greeting)
}

/// Whether bytes seen first on a connection joined mid-stream are NATS:
/// whole, well-formed operations of that side running to the bytes' end (a
/// message's payload may run past it), at least one of them a message or a
/// subscription (`PUB`, `HPUB`, `SUB`, `UNSUB` written; `MSG`, `HMSG` read):
/// `PING` alone is Redis's too.
pub fn mid_stream(bytes: &[u8], direction: Direction) -> Detection {
    if !line::starts_with_operation(bytes, direction) {
        let short_start = bytes.len() < 8
            && !bytes.is_empty()
            && line::operations(direction).iter().any(|op| {
                let n = bytes.len().min(op.len());
                op[..n].eq_ignore_ascii_case(&bytes[..n])
            });
        return if short_start {
            Detection::NeedMore
        } else {
            Detection::No
        };
    }
    let mut reader = OperationReader::new(direction, 0);
    let mut events = Vec::new();
    reader.feed(bytes, 0, 0, &mut events);
    if reader.losses > 0 {
        return Detection::No;
    }
    let telling = events.iter().any(|event| {
        matches!(
            event,
            ReadEvent::Operation(op) if matches!(
                op.control,
                Control::Message(_) | Control::Sub { .. } | Control::Unsub { .. }
            )
        )
    });
    if telling || reader.reads_a_message() {
        Detection::Yes
    } else if events.is_empty() && bytes.len() <= line::MAX_LINE {
        // The first line is not whole yet.
        Detection::NeedMore
    } else {
        Detection::No
    }
}
