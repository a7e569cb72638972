//! MQTT control packets (3.1, 3.1.1 and 5.0,
//! <https://docs.oasis-open.org/mqtt/mqtt/v5.0/mqtt-v5.0.html>): the fixed
//! header (type, flags, a variable-length remaining length), the fields the
//! decoder reads of CONNECT, PUBLISH and the acknowledgements, and a reader
//! that cuts one direction's segments into packets, following a packet's
//! remaining length across the bytes the capture did not copy.

#![forbid(unsafe_code)]

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
/// Bytes of a packet kept past its fixed header: a PUBLISH's topic and
/// packet id, an acknowledgement's reason come first.
const KEPT_BYTES: usize = 1024;

/// A fixed header: the packet's type and flags, its remaining length, and
/// how many bytes the header took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub kind: u8,
    pub flags: u8,
    pub remaining: u64,
    pub len: usize,
}

/// What [`FixedHeader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead {
    Header(FixedHeader),
    /// The bytes end inside the header.
    Short,
    /// Not a fixed header: a reserved type, flags its type forbids, or a
    /// remaining length over four bytes.
    Invalid,
}

impl FixedHeader {
    pub fn read(bytes: &[u8]) -> HeaderRead {
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

    /// A PUBLISH's quality of service (0, 1 or 2).
    pub fn qos(&self) -> u8 {
        (self.flags >> 1) & 0b11
    }
}

/// One packet: its header, the first bytes after it, and whether the rest
/// was not all captured (or not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub header: FixedHeader,
    pub body: Vec<u8>,
    pub cut: bool,
    /// Timestamps of the segments holding the packet's first and last bytes.
    pub start_ns: u64,
    pub end_ns: u64,
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
/// MQTT 5.
pub fn ack(body: &[u8], level: u8) -> Option<(u16, u8)> {
    let id = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let reason = match level {
        LEVEL_5 => body.get(2).copied().unwrap_or(0),
        _ => 0,
    };
    Some((id, reason))
}

/// What [`PacketReader::feed`] hands out besides packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent {
    Packet(Packet),
    /// The bytes were not packets, or a gap hid a fixed header: nothing is
    /// read until a segment starts with a packet again.
    Lost,
}

/// One direction's packets out of its segments.
#[derive(Debug, Default)]
pub struct PacketReader {
    /// The current packet's first bytes: its fixed header and at most
    /// [`KEPT_BYTES`] after it.
    start: Vec<u8>,
    /// The current packet's header, once whole.
    header: Option<FixedHeader>,
    /// Bytes of the current packet seen so far, kept or not.
    seen: u64,
    start_ts: u64,
    lost: bool,
    /// Times the framing was lost.
    pub losses: u64,
    /// Bytes passed over while lost.
    pub skipped_bytes: u64,
}

impl PacketReader {
    /// Reads `captured`, then `gap` bytes not captured; hands out each
    /// packet once its last byte was seen.
    pub fn feed(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<ReadEvent>) {
        let mut input = captured;
        if self.lost {
            if !matches!(FixedHeader::read(input), HeaderRead::Header(_)) {
                self.skipped_bytes += input.len() as u64 + gap;
                return;
            }
            self.lost = false;
        }
        while !input.is_empty() {
            if self.seen == 0 {
                self.start_ts = ts_ns;
            }
            let header = match self.header {
                Some(header) => header,
                None => match FixedHeader::read(&self.start) {
                    HeaderRead::Header(header) => {
                        self.header = Some(header);
                        header
                    }
                    HeaderRead::Short => {
                        // One byte more of the header.
                        self.start.push(input[0]);
                        self.seen += 1;
                        input = &input[1..];
                        continue;
                    }
                    HeaderRead::Invalid => {
                        self.skipped_bytes += self.start.len() as u64 + input.len() as u64 + gap;
                        return self.lose(out);
                    }
                },
            };
            let total = header.len as u64 + header.remaining;
            let need = total - self.seen;
            let take = usize::try_from(need).unwrap_or(usize::MAX).min(input.len());
            let room = (header.len + KEPT_BYTES).saturating_sub(self.start.len());
            self.start.extend_from_slice(&input[..take.min(room)]);
            self.seen += take as u64;
            input = &input[take..];
            if self.seen == total {
                self.hand_out(header, ts_ns, out);
            }
        }
        // A header read by its last byte, of a packet with nothing after it
        // (PINGREQ, DISCONNECT).
        if self.header.is_none() {
            if let HeaderRead::Header(header) = FixedHeader::read(&self.start) {
                self.header = Some(header);
                if self.seen == header.len as u64 + header.remaining {
                    self.hand_out(header, ts_ns, out);
                }
            }
        }
        if gap == 0 {
            return;
        }
        if self.seen == 0 {
            // Between packets: the gap hides the next header.
            self.skipped_bytes += gap;
            return self.lose(out);
        }
        // A header still unread is one the gap hides.
        let header = match self.header {
            Some(header) => header,
            None => match FixedHeader::read(&self.start) {
                HeaderRead::Header(header) => header,
                HeaderRead::Short | HeaderRead::Invalid => {
                    self.skipped_bytes += self.start.len() as u64 + gap;
                    return self.lose(out);
                }
            },
        };
        self.header = Some(header);
        let need = header.len as u64 + header.remaining - self.seen;
        self.seen += gap.min(need);
        if gap >= need {
            self.hand_out(header, ts_ns, out);
        }
        if gap > need {
            // Past the packet's end: the next header is in the gap.
            self.skipped_bytes += gap - need;
            self.lose(out);
        }
    }

    fn hand_out(&mut self, header: FixedHeader, ts_ns: u64, out: &mut Vec<ReadEvent>) {
        let mut body = std::mem::take(&mut self.start);
        let total = header.len as u64 + header.remaining;
        let cut = (body.len() as u64) < total;
        body.drain(..header.len.min(body.len()));
        out.push(ReadEvent::Packet(Packet {
            header,
            body,
            cut,
            start_ns: self.start_ts,
            end_ns: ts_ns,
        }));
        self.header = None;
        self.seen = 0;
    }

    fn lose(&mut self, out: &mut Vec<ReadEvent>) {
        self.start.clear();
        self.header = None;
        self.seen = 0;
        if !self.lost {
            self.lost = true;
            self.losses += 1;
            out.push(ReadEvent::Lost);
        }
    }
}
