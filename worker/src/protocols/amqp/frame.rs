//! AMQP 0-9-1 frames (<https://www.rabbitmq.com/resources/specs/amqp0-9-1.pdf>,
//! section 4.2.3): type, channel, size, payload, frame-end 0xCE; and the
//! fields of the methods the decoder reads. All integers are big-endian.

#![forbid(unsafe_code)]

use crate::protocols::prefix_framer::{HeaderRead, PrefixHeader};

/// What a client writes before its first frame.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const METHOD: u8 = 1;
pub const HEADER: u8 = 2;
pub const BODY: u8 = 3;
pub const HEARTBEAT: u8 = 8;
/// The byte every frame ends with.
pub const FRAME_END: u8 = 0xce;
/// The largest frame believed (RabbitMQ's `frame_max` default is 128 KiB).
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// (class, method) ids of the methods read.
pub const CONNECTION_CLOSE: (u16, u16) = (10, 50);
pub const CHANNEL_CLOSE: (u16, u16) = (20, 40);
pub const BASIC_CONSUME: (u16, u16) = (60, 20);
pub const BASIC_CONSUME_OK: (u16, u16) = (60, 21);
pub const BASIC_PUBLISH: (u16, u16) = (60, 40);
pub const BASIC_RETURN: (u16, u16) = (60, 50);
pub const BASIC_DELIVER: (u16, u16) = (60, 60);
pub const BASIC_GET_OK: (u16, u16) = (60, 71);
pub const BASIC_ACK: (u16, u16) = (60, 80);
pub const BASIC_REJECT: (u16, u16) = (60, 90);
pub const BASIC_NACK: (u16, u16) = (60, 120);
pub const CONFIRM_SELECT: (u16, u16) = (85, 10);

/// A frame header: its type, channel and payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub channel: u16,
    pub size: u32,
}

impl PrefixHeader for FrameHeader {
    /// Not a frame: an unknown type, or a size past any `frame_max`.
    fn read(bytes: &[u8]) -> HeaderRead<Self> {
        let Some(header) = bytes.get(..7) else {
            return match bytes.first() {
                Some(kind) if !matches!(*kind, METHOD | HEADER | BODY | HEARTBEAT) => {
                    HeaderRead::Invalid
                }
                _ => HeaderRead::Short,
            };
        };
        let kind = header[0];
        let channel = u16::from_be_bytes([header[1], header[2]]);
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
        if !matches!(kind, METHOD | HEADER | BODY | HEARTBEAT) || size > MAX_FRAME {
            return HeaderRead::Invalid;
        }
        HeaderRead::Header(FrameHeader {
            kind,
            channel,
            size,
        })
    }

    fn header_len(&self) -> usize {
        7
    }

    /// Header, payload and frame-end.
    fn total(&self) -> u64 {
        7 + u64::from(self.size) + 1
    }
}

/// Reads the fields of a method's arguments in order.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.rest.get(..n)?;
        self.rest = &self.rest[n..];
        Some(taken)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }

    /// A long string (or table, or array): a 32-bit length, then that many bytes.
    pub fn long_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    /// A short string: one length byte, then that many bytes.
    pub fn short_str(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.u8()?);
        self.take(len)
    }
}

/// A method frame's (class, method) ids and its arguments.
pub fn method(payload: &[u8]) -> Option<((u16, u16), Args<'_>)> {
    let mut args = Args::new(payload);
    let class = args.u16()?;
    let method = args.u16()?;
    Some(((class, method), args))
}

/// A content header frame's body size.
pub fn body_size(payload: &[u8]) -> Option<u64> {
    // Class id and weight, then the body size.
    let mut args = Args::new(payload.get(4..)?);
    args.u64()
}

/// What the trace linking reads of a content header's properties (class
/// `basic`): the `traceparent` of its headers table, and the RPC pair
/// `reply-to` and `correlation-id`. Fields the capture cut off are `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkProperties<'a> {
    pub traceparent: Option<&'a [u8]>,
    pub reply_to: Option<&'a [u8]>,
    pub correlation_id: Option<&'a [u8]>,
}

/// The `basic` class's property flags, first bit first: each field present
/// follows the flags in this order.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;

/// A content header frame's [`LinkProperties`] (AMQP 0-9-1 §4.2.6.1: class,
/// weight, body size, property flags, then the properties present).
pub fn link_properties(payload: &[u8]) -> LinkProperties<'_> {
    let mut found = LinkProperties::default();
    let Some(rest) = payload.get(12..) else {
        return found;
    };
    let mut args = Args::new(rest);
    let Some(flags) = args.u16() else {
        return found;
    };
    for flag in [CONTENT_TYPE, CONTENT_ENCODING] {
        if flags & flag != 0 && args.short_str().is_none() {
            return found;
        }
    }
    if flags & HEADERS != 0 {
        let Some(table) = args.long_bytes() else {
            return found;
        };
        found.traceparent = table_string(table, b"traceparent");
    }
    for flag in [DELIVERY_MODE, PRIORITY] {
        if flags & flag != 0 && args.u8().is_none() {
            return found;
        }
    }
    if flags & CORRELATION_ID != 0 {
        found.correlation_id = args.short_str();
    }
    if flags & REPLY_TO != 0 {
        found.reply_to = args.short_str();
    }
    found
}

/// The long-string value of `name` in a field table, if it is one.
fn table_string<'a>(table: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut fields = Args::new(table);
    loop {
        let field = fields.short_str()?;
        let kind = fields.u8()?;
        if kind == b'S' {
            let value = fields.long_bytes()?;
            if field == name {
                return Some(value);
            }
            continue;
        }
        let fixed = match kind {
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'V' => 0,
            b'x' | b'A' | b'F' => {
                fields.long_bytes()?;
                continue;
            }
            // Not a type of 0-9-1 or RabbitMQ's: the rest cannot be read.
            _ => return None,
        };
        fields.take(fixed)?;
    }
}
