//! MQTT (3.1, 3.1.1, 5.0) from the client's side of a connection: what the
//! instrumented process writes are its packets to the broker, what it reads
//! the broker's.
//!
//! [`check`] tells from a connection's first bytes whether it is MQTT (a
//! client's CONNECT); [`MqttConnection`] turns its packets into messaging
//! operations ([`packet`] reads packets, [`connection`] pairs them); in
//! the protocol registry it is a `MessagingSession<MqttConnection>`.

#![forbid(unsafe_code)]

pub mod connection;
pub mod packet;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::MqttConnection;
use packet::{FixedHeader, HeaderRead, PrefixHeader};

/// Whether a connection's first bytes are MQTT's: the client's CONNECT (a
/// fixed header of type 1 with no flags, then the protocol name `MQTT` at
/// level 4 or 5, or `MQIsdp` at level 3). Nothing else starts a connection
/// as surely: a connection whose CONNECT was not seen (opened before the
/// agent) is not decoded, and a read never starts one.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    if direction == Direction::Ingress || first_bytes.first().is_some_and(|b| *b != 0x10) {
        return Detection::No;
    }
    let header = match FixedHeader::read(first_bytes) {
        HeaderRead::Header(header) => header,
        HeaderRead::Short => return Detection::NeedMore,
        HeaderRead::Invalid => return Detection::No,
    };
    let body = &first_bytes[header.len..];
    // Protocol name and level: `\0\x04MQTT\x04`, `\0\x04MQTT\x05`, `\0\x06MQIsdp\x03`.
    let known: [&[u8]; 3] = [b"\0\x04MQTT\x04", b"\0\x04MQTT\x05", b"\0\x06MQIsdp\x03"];
    let fits = |name: &[u8]| header.remaining >= name.len() as u64 + 5;
    if known
        .iter()
        .any(|name| body.starts_with(name) && fits(name))
    {
        return Detection::Yes;
    }
    if known
        .iter()
        .any(|name| body.len() < name.len() && name.starts_with(body))
    {
        return Detection::NeedMore;
    }
    Detection::No
}
