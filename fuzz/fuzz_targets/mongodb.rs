//! The MongoDB decoder on hostile segment sequences, both directions.
#![no_main]

#[path = "db_segments.rs"]
mod db_segments;

use libfuzzer_sys::fuzz_target;
use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::mongodb::{check, MongoConnection};

fuzz_target!(|data: &[u8]| {
    let _ = check(data, Direction::Egress);
    let _ = check(data, Direction::Ingress);
    db_segments::replay(MongoConnection::new(), data);
});
