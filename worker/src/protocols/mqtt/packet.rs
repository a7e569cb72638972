//! MQTT control packets (3.1, 3.1.1 and 5.0,
//! <https://docs.oasis-open.org/mqtt/mqtt/v5.0/mqtt-v5.0.html>): the fixed
//! header (type, flags, a variable-length remaining length), the fields the
//! decoder reads of CONNECT, PUBLISH and the acknowledgements. Packets are
//! cut out of a direction's segments by a [`PrefixFramer`] of fixed headers.

#![forbid(unsafe_code)]

pub use crate::protocols::prefix_framer::{Framed, HeaderRead, PrefixFramer, PrefixHeader};

/// One MQTT packet.
pub type Packet = Framed<FixedHeader>;
/// One direction's packets.
pub type PacketReader = PrefixFramer<FixedHeader>;

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const UNSUBSCRIBE: u8 = 10;
/// MQTT 5's protocol level.
pub const LEVEL_5: u8 = 5;
/// The largest remaining length four bytes encode.
pub const MAX_REMAINING: u64 = 268_435_455;

/// A fixed header: the packet's type and flags, its remaining length, and
/// how many bytes the header took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub kind: u8,
    pub flags: u8,
    pub remaining: u64,
    pub len: usize,
}

impl PrefixHeader for FixedHeader {
    /// Not a fixed header: a reserved type, flags its type forbids, or a
    /// remaining length over four bytes.
    fn read(bytes: &[u8]) -> HeaderRead<Self> {
        let Some(&first) = bytes.first() else {
            return HeaderRead::Short;
        };
        let (kind, flags) = (first >> 4, first & 0x0f);
        let flags_ok = match kind {
            0 => false,
            PUBLISH => (flags >> 1) & 0b11 != 0b11,
            PUBREL | SUBSCRIBE | UNSUBSCRIBE => flags == 0b0010,
            _ => flags == 0,
        };
        if !flags_ok {
            return HeaderRead::Invalid;
        }
        let mut remaining = 0u64;
        for (i, &byte) in bytes[1..].iter().take(4).enumerate() {
            remaining |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return HeaderRead::Header(FixedHeader {
                    kind,
                    flags,
                    remaining,
                    len: i + 2,
                });
            }
        }
        if bytes.len() >= 5 {
            HeaderRead::Invalid
        } else {
            HeaderRead::Short
        }
    }

    fn header_len(&self) -> usize {
        self.len
    }

    fn total(&self) -> u64 {
        self.len as u64 + self.remaining
    }
}

impl FixedHeader {
    /// A PUBLISH's quality of service (0, 1 or 2).
    pub fn qos(&self) -> u8 {
        (self.flags >> 1) & 0b11
    }
}

/// A two-byte length-prefixed string at the start of `bytes`, and what follows it.
pub fn string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    Some((bytes.get(2..2 + len)?, &bytes[2 + len..]))
}

/// A variable byte integer at the start of `bytes`, and what follows it.
pub fn variable_int(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// What a CONNECT says: the protocol level and the client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    pub level: u8,
    pub client_id: Option<&'a [u8]>,
}

/// Reads a CONNECT's body: protocol name `MQTT` (levels 4 and 5) or
/// `MQIsdp` (level 3), level, flags, keep-alive, MQTT 5's properties, then
/// the client id. `None` when the protocol name or level is not MQTT's.
pub fn connect(body: &[u8]) -> Option<Connect<'_>> {
    let (name, rest) = string(body)?;
    let level = *rest.first()?;
    let known = matches!((name, level), (b"MQTT", 4 | 5) | (b"MQIsdp", 3));
    if !known {
        return None;
    }
    // Level, connect flags, keep-alive.
    let mut payload = rest.get(4..);
    if level == LEVEL_5 {
        payload = payload
            .and_then(variable_int)
            .and_then(|(len, after)| after.get(usize::try_from(len).ok()?..));
    }
    let client_id = payload.and_then(string).map(|(id, _)| id);
    Some(Connect { level, client_id })
}

/// What a PUBLISH says: its topic and, at QoS 1 and 2, its packet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    pub topic: &'a [u8],
    pub packet_id: Option<u16>,
}

pub fn publish<'a>(header: &FixedHeader, body: &'a [u8]) -> Option<Publish<'a>> {
    let (topic, rest) = string(body)?;
    let packet_id = match header.qos() {
        0 => None,
        _ => Some(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
    };
    Some(Publish { topic, packet_id })
}

/// An acknowledgement's (PUBACK, PUBREC, PUBREL, PUBCOMP) packet id and
/// reason code: 0 (success) when MQTT 5 leaves it out, and always before
/// MQTT 5, whose acknowledgements are the packet id alone (so a connection
/// joined mid-stream, whose level is unknown, reads them right too).
pub fn ack(body: &[u8]) -> Option<(u16, u8)> {
    let id = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    Some((id, body.get(2).copied().unwrap_or(0)))
}

/// What trace linking reads of an MQTT 5 PUBLISH's properties: a
/// `traceparent` user property (an SDK's instrumentation writes one), and
/// the request/response pair, response topic and correlation data. Fields
/// the capture cut off are `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkProperties<'a> {
    pub traceparent: Option<&'a [u8]>,
    pub response_topic: Option<&'a [u8]>,
    pub correlation_data: Option<&'a [u8]>,
}

/// Property identifiers a PUBLISH may carry (MQTT 5 §3.3.2.3).
const PAYLOAD_FORMAT: u64 = 0x01;
const MESSAGE_EXPIRY: u64 = 0x02;
const CONTENT_TYPE: u64 = 0x03;
const RESPONSE_TOPIC: u64 = 0x08;
const CORRELATION_DATA: u64 = 0x09;
const SUBSCRIPTION_ID: u64 = 0x0b;
const TOPIC_ALIAS: u64 = 0x23;
const USER_PROPERTY: u64 = 0x26;

/// The [`LinkProperties`] of an MQTT 5 PUBLISH's body (topic, packet id at
/// QoS 1 and 2, then the properties' length and the properties).
pub fn publish_link_properties<'a>(header: &FixedHeader, body: &'a [u8]) -> LinkProperties<'a> {
    let mut found = LinkProperties::default();
    let Some((_, rest)) = string(body) else {
        return found;
    };
    let rest = if header.qos() > 0 {
        rest.get(2..)
    } else {
        Some(rest)
    };
    let Some((len, rest)) = rest.and_then(variable_int) else {
        return found;
    };
    // Cut by the capture: as far as it goes.
    let mut properties = rest
        .get(..usize::try_from(len).unwrap_or(usize::MAX))
        .unwrap_or(rest);
    while let Some((id, rest)) = variable_int(properties) {
        let fixed = match id {
            PAYLOAD_FORMAT => 1,
            TOPIC_ALIAS => 2,
            MESSAGE_EXPIRY => 4,
            SUBSCRIPTION_ID => {
                let Some((_, next)) = variable_int(rest) else {
                    break;
                };
                properties = next;
                continue;
            }
            CONTENT_TYPE | RESPONSE_TOPIC | CORRELATION_DATA => {
                let Some((value, next)) = string(rest) else {
                    break;
                };
                match id {
                    RESPONSE_TOPIC => found.response_topic = Some(value),
                    CORRELATION_DATA => found.correlation_data = Some(value),
                    _ => {}
                }
                properties = next;
                continue;
            }
            USER_PROPERTY => {
                let Some((name, next)) = string(rest) else {
                    break;
                };
                let Some((value, next)) = string(next) else {
                    break;
                };
                if name == b"traceparent" {
                    found.traceparent = Some(value);
                }
                properties = next;
                continue;
            }
            // Not a PUBLISH property: the rest cannot be read.
            _ => break,
        };
        let Some(next) = rest.get(fixed..) else {
            break;
        };
        properties = next;
    }
    found
}
