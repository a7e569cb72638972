//! Loader/worker protocol messages, as a compromised peer could send them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::ipc::{decode, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Request>(data);
    let _ = decode::<Reply>(data);
});
