//! The Kafka decoder on hostile segment sequences, both directions: framing,
//! headers, Produce/Fetch/Metadata bodies, pairing by correlation id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::kafka::{check, KafkaConnection};

fuzz_target!(|data: &[u8]| {
    let _ = check(data, Direction::Egress);
    let mut connection = KafkaConnection::new();
    let mut out = Vec::new();
    let mut ts = 0u64;
    // Layout: [control][len hi][len lo][len bytes]... control: bit0 = client
    // write, bit1 = a gap follows. Two length bytes: Kafka messages are big.
    let mut rest = data;
    while let [control, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (captured, next) = tail.split_at(len);
        let direction = if control & 1 == 1 { Direction::Egress } else { Direction::Ingress };
        let gap = if control & 2 == 2 { u64::from(*control) * 37 } else { 0 };
        ts += 1;
        connection.feed(direction, captured, gap, ts, &mut out);
        rest = next;
    }
    connection.finish(ts + 1, &mut out);
    assert!(out.iter().all(|op| op.end_ns >= op.start_ns));
    assert!(connection.known_topic_ids() <= zerotrace_worker::protocols::kafka::connection::MAX_TOPIC_IDS);
});
