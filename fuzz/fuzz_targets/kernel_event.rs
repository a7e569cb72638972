//! Ring buffer records from the kernel, as untrusted bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::{decode_listeners, KernelEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(KernelEvent::Data {
        payload,
        total_bytes,
        h2_notes,
        ..
    }) = KernelEvent::decode(data)
    {
        // The pieces an HTTP/2 segment is read as stand for the whole
        // segment, each for at least its own bytes.
        let pieces = h2_notes.pieces(payload, total_bytes);
        assert_eq!(pieces.iter().map(|(_, n)| n).sum::<u64>(), total_bytes);
        assert!(pieces.iter().all(|(bytes, n)| bytes.len() as u64 <= *n));
    }
    let _ = decode_listeners(data);
});
