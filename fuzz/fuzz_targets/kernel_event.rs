//! Ring buffer records from the kernel, as untrusted bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::{decode_listeners, KernelEvent};

fuzz_target!(|data: &[u8]| {
    let _ = KernelEvent::decode(data);
    let _ = decode_listeners(data);
});
