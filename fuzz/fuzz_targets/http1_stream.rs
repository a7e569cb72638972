//! The HTTP/1 stream parser on hostile segment sequences: each chunk of input
//! is a segment (captured bytes + a gap), with expect_response_to calls mixed in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_worker::protocols::http1::Http1Stream;

fuzz_target!(|data: &[u8]| {
    let mut stream = Http1Stream::new();
    let mut out = Vec::new();
    let mut ts = 0u64;
    // Layout: [control byte][len byte][len bytes]... control: bit0 = gap,
    // bit1 = expect a response (bit2: to HEAD), bit3 = with a gap, the
    // captured bytes' second half is the segment's end copied apart.
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (captured, next) = tail.split_at(len);
        let gap = if control & 1 == 1 { u64::from(*control) * 97 } else { 0 };
        if control & 2 == 2 {
            stream.expect_response_to(if control & 4 == 4 { "HEAD" } else { "GET" });
        }
        ts += 1;
        if control & 8 == 8 && gap > 0 {
            let (first, end) = captured.split_at(captured.len() / 2);
            stream.feed_with_tail(first, gap + end.len() as u64, end, ts, &mut out);
        } else {
            stream.feed(captured, gap, ts, &mut out);
        }
        rest = next;
    }
    stream.finish(ts + 1, &mut out);
    let _ = stream.garbage_segments();
});
