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
/// level 4 or 5, or `MQIsdp` at level 3); or, on a connection opened before
/// the agent (clients keep theirs for days), packets a client writes mid-
/// connection ([`mid_stream`]).
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    if first_bytes.first().is_some_and(|b| *b != 0x10) {
        return mid_stream(first_bytes, direction);
    }
    if direction == Direction::Ingress {
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

/// Whether a client's write, seen first on a connection joined mid-stream,
/// is MQTT: packets of the types a client writes mid-connection (PUBLISH,
/// SUBSCRIBE, the acknowledgements of QoS 1 and 2, PINGREQ), each whole and
/// well formed, running to the segment's end (a PUBLISH whose payload the
/// capture cut may end it, its topic whole). A PUBLISH's topic is printable
/// text without wildcards; a packet id is not 0. A read is never taken for
/// a first sign: a broker reads what a client writes, and what a client
/// reads (a PUBLISH) a broker writes too.
pub fn mid_stream(bytes: &[u8], direction: Direction) -> Detection {
    if direction == Direction::Ingress || bytes.is_empty() {
        return Detection::No;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = match FixedHeader::read(rest) {
            HeaderRead::Header(header) => header,
            HeaderRead::Short if rest.len() == bytes.len() => return Detection::NeedMore,
            HeaderRead::Short | HeaderRead::Invalid => return Detection::No,
        };
        let total = usize::try_from(header.total()).unwrap_or(usize::MAX);
        let body = &rest[header.len..rest.len().min(total)];
        let whole = total <= rest.len();
        let ok = match header.kind {
            packet::PUBLISH => packet::publish(&header, body).is_some_and(|p| {
                let printable = std::str::from_utf8(p.topic).is_ok_and(|t| {
                    !t.is_empty() && !t.contains(['#', '+']) && !t.chars().any(char::is_control)
                });
                printable && p.packet_id != Some(0)
            }),
            packet::SUBSCRIBE => {
                let first_filter = |rest: &[u8]| {
                    packet::string(rest).is_some_and(|(filter, after)| {
                        !filter.is_empty()
                            && std::str::from_utf8(filter).is_ok()
                            && !after.is_empty()
                    })
                };
                // MQTT 5 puts its properties between the packet id and the filters.
                let after_properties = |rest: &[u8]| {
                    packet::variable_int(rest)
                        .and_then(|(len, rest)| rest.get(usize::try_from(len).ok()?..))
                        .is_some_and(first_filter)
                };
                whole
                    && body.len() >= 5
                    && u16::from_be_bytes([body[0], body[1]]) != 0
                    && (first_filter(&body[2..]) || after_properties(&body[2..]))
            }
            packet::PUBACK | packet::PUBREC | packet::PUBREL | packet::PUBCOMP => {
                whole
                    && (2..=4).contains(&header.remaining)
                    && u16::from_be_bytes([body[0], body[1]]) != 0
            }
            // PINGREQ.
            12 => header.remaining == 0,
            _ => false,
        };
        if !ok {
            return Detection::No;
        }
        if !whole {
            // Only a PUBLISH may run past the capture.
            return if header.kind == packet::PUBLISH {
                Detection::Yes
            } else {
                Detection::No
            };
        }
        rest = &rest[total..];
    }
    Detection::Yes
}
