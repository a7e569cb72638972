//! AMQP 0-9-1 (RabbitMQ) from the client's side of a connection: what the
//! instrumented process writes are its frames to the broker, what it reads
//! the broker's.
//!
//! [`check`] tells from a connection's first bytes whether it is AMQP 0-9-1
//! (the client's protocol header); [`AmqpConnection`] follows its channels
//! and turns publishes and deliveries into messaging operations ([`frame`]
//! reads frames and method arguments, [`connection`] pairs them). In the
//! protocol registry it is a `MessagingSession<AmqpConnection>`.

#![forbid(unsafe_code)]

pub mod connection;
pub mod frame;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::AmqpConnection;

/// Whether a connection's first bytes are AMQP 0-9-1's: the client's
/// protocol header `AMQP\0\0\x09\x01`. AMQP 1.0 (`AMQP\0\x01\0\0`, or
/// `\x03` for SASL) is another protocol and is not taken. A connection
/// whose header was not seen (opened before the agent) is not decoded, and
/// a read never starts one.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    let header = frame::PROTOCOL_HEADER.as_slice();
    if direction == Direction::Ingress {
        return Detection::No;
    }
    if first_bytes.starts_with(header) {
        Detection::Yes
    } else if !first_bytes.is_empty() && header.starts_with(first_bytes) {
        Detection::NeedMore
    } else {
        Detection::No
    }
}
