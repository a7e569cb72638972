//! W3C traceparent headers taken from captured requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_worker::spans::ids::TraceParent;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TraceParent::parse(text);
    }
});
