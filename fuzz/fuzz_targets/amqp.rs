//! The AMQP 0-9-1 decoder on hostile segment sequences, both directions: frame
//! headers and sizes, publishes, deliveries, acknowledgements, channel closes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::amqp::{check, AmqpConnection};

fuzz_target!(|data: &[u8]| {
    let _ = check(data, Direction::Egress);
    let mut connection = AmqpConnection::new();
    let mut out = Vec::new();
    let mut ts = 0u64;
    // Layout: [control][len][len bytes]... control: bit0 = client write,
    // bit1 = a gap follows (as the database targets').
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (captured, next) = tail.split_at(len);
        let direction = if control & 1 == 1 { Direction::Egress } else { Direction::Ingress };
        let gap = if control & 2 == 2 { u64::from(*control) * 37 } else { 0 };
        ts += 1;
        connection.feed(direction, captured, gap, ts, &mut out);
        rest = next;
    }
    connection.finish(ts + 1, &mut out);
    assert!(out.iter().all(|call| call.end_ns >= call.start_ns));
});
