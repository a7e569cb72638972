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
/// protocol header `AMQP\0\0\x09\x01` (AMQP 1.0's, `AMQP\0\x01\0\0` or
/// `\x03` for SASL, is another protocol and is not taken); or, on a
/// connection opened before the agent (services keep theirs for days), a
/// whole frame that ends with the frame-end byte: a heartbeat, or a method
/// only that side sends (`basic.publish`, the client's `basic.ack`…;
/// `basic.deliver`, the broker's confirmations… on reads).
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    let header = frame::PROTOCOL_HEADER.as_slice();
    if direction == Direction::Egress {
        if first_bytes.starts_with(header) {
            return Detection::Yes;
        }
        if !first_bytes.is_empty() && header.starts_with(first_bytes) {
            return Detection::NeedMore;
        }
    }
    mid_stream_frame(first_bytes, direction)
}

/// Methods a client sends (the egress side of a connection joined mid-stream).
const CLIENT_METHODS: &[(u16, u16)] = &[
    frame::BASIC_PUBLISH,
    frame::BASIC_ACK,
    frame::BASIC_REJECT,
    frame::BASIC_NACK,
    frame::BASIC_CONSUME,
    (60, 10), // basic.qos
    (60, 30), // basic.cancel
    (60, 70), // basic.get
    (20, 10), // channel.open
    (40, 10), // exchange.declare
    (50, 10), // queue.declare
    (50, 20), // queue.bind
    frame::CONFIRM_SELECT,
];

/// Methods only a broker sends.
const BROKER_METHODS: &[(u16, u16)] = &[
    frame::BASIC_DELIVER,
    frame::BASIC_ACK,
    frame::BASIC_NACK,
    frame::BASIC_RETURN,
    frame::BASIC_CONSUME_OK,
    frame::BASIC_GET_OK,
    (60, 72), // basic.get-empty
    (20, 11), // channel.open-ok
    (50, 11), // queue.declare-ok
];

/// A first frame of a connection joined mid-stream, whole in `bytes`.
fn mid_stream_frame(bytes: &[u8], direction: Direction) -> Detection {
    use crate::protocols::prefix_framer::{HeaderRead, PrefixHeader};
    let header = match frame::FrameHeader::read(bytes) {
        HeaderRead::Header(header) => header,
        HeaderRead::Short => return Detection::NeedMore,
        HeaderRead::Invalid => return Detection::No,
    };
    let end = 7 + header.size as usize;
    let Some(&last) = bytes.get(end) else {
        // Only small frames are judged: a method frame fits the capture.
        return if header.size < 256 {
            Detection::NeedMore
        } else {
            Detection::No
        };
    };
    if last != frame::FRAME_END {
        return Detection::No;
    }
    let known = match header.kind {
        frame::HEARTBEAT => header.channel == 0 && header.size == 0,
        frame::METHOD => frame::method(&bytes[7..end]).is_some_and(|(id, _)| {
            let methods = match direction {
                Direction::Egress => CLIENT_METHODS,
                Direction::Ingress => BROKER_METHODS,
            };
            header.channel > 0 && methods.contains(&id)
        }),
        _ => false,
    };
    if known {
        Detection::Yes
    } else {
        Detection::No
    }
}
