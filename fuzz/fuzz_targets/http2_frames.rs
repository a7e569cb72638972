//! HTTP/2 framing and stream tracking on hostile segment sequences: both
//! directions interleaved, each segment captured bytes plus an uncaptured
//! gap, timestamps that may repeat. Layout in `zerotrace_fuzz::h2_segments`;
//! the leading byte can start with an h2c `Upgrade` request (bit 0, bit 1 =
//! its client direction).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_fuzz::h2_segments;
use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::http2::{Http2Connection, Http2Exchange, MAX_STREAMS};

fn direction(egress: bool) -> Direction {
    if egress {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let mut conn = Http2Connection::new();
    if options & 1 != 0 {
        let request = Http2Exchange {
            method: Some("GET".into()),
            path: Some("/".into()),
            start_ts_ns: 1,
            end_ts_ns: 1,
            ..Http2Exchange::default()
        };
        conn.upgraded_request(direction(options & 2 != 0), request);
    }
    let mut out = Vec::new();
    let mut ts = 1u64;
    for segment in h2_segments(rest) {
        if !segment.same_ts {
            ts += 1;
        }
        conn.feed(
            direction(segment.egress),
            segment.captured,
            segment.missing,
            ts,
            &mut out,
        );
        assert!(conn.open_streams() <= MAX_STREAMS);
        let _ = conn.is_hpack_synced(Direction::Ingress);
        let _ = conn.client_direction();
    }
    conn.finish(ts + 1, &mut out);
    assert_eq!(conn.open_streams(), 0);
    for ex in &out {
        assert_ne!(ex.stream_id, 0, "stream 0 carries no exchange");
        assert!(ex.start_ts_ns <= ex.end_ts_ns, "{ex:?}");
        assert!(ex.end_ts_ns <= ts + 1, "{ex:?}");
    }
    let _ = conn.stats();
});
