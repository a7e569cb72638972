//! Request/response pairing across both directions of many connections.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::{ConnTuple, ConnectionRole, Direction};
use zerotrace_worker::connections::{ConnectionTracker, Segment};

fuzz_target!(|data: &[u8]| {
    let mut tracker = ConnectionTracker::new();
    let mut spans = Vec::new();
    let tuple = ConnTuple {
        local: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local_port: 8080,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        peer_port: 40000,
    };
    let process_name: Arc<str> = Arc::from("fuzz");
    let mut ts = 0u64;
    // Layout: [control][len][bytes]...; control picks socket, direction, role, gap, close.
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (segment, next) = tail.split_at(len);
        // A segment with a gap keeps up to 128 of its last bytes as the
        // kernel's copy of the segment's end (DataSegment::tail).
        let gap = control & 0x8 != 0;
        let (payload, end) = if gap {
            segment.split_at(segment.len() - (segment.len() / 2).min(128))
        } else {
            (segment, &[][..])
        };
        ts += 1_000;
        let sock_id = u64::from(control & 0x3);
        if control & 0x80 == 0x80 {
            tracker.close(sock_id, ts, &mut spans);
        } else {
            tracker.on_data(
                Segment {
                    sock_id,
                    pid: 1,
                    process_name: &process_name,
                    role: match control >> 4 & 0x3 {
                        1 => ConnectionRole::Server,
                        2 => ConnectionRole::Client,
                        _ => ConnectionRole::Unknown,
                    },
                    direction: if control & 0x4 == 0 { Direction::Ingress } else { Direction::Egress },
                    tuple: (control & 0x40 == 0).then_some(tuple),
                    ts_ns: ts,
                    tid: u32::from(control & 0x3),
                    payload,
                    total_bytes: segment.len() as u64 + if gap { 4096 } else { 0 },
                    tls: control & 0x20 == 0x20,
                    tail: end,
                },
                &mut spans,
            );
        }
        rest = next;
    }
    tracker.expire_idle(u64::MAX, &mut spans);
});
