//! The NATS decoder on hostile segment sequences, both directions: control
//! lines, payload sizes, headers, replies, JetStream answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::nats::{check, NatsConnection};

fuzz_target!(|data: &[u8]| {
    let _ = check(data, Direction::Egress);
    let _ = check(data, Direction::Ingress);
    let mut connection = NatsConnection::new();
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
