//! Metadata (API key 3) responses, read only for what Fetch v13+ needs:
//! the topic id of each topic name (ids exist from Metadata v10 on).

#![forbid(unsafe_code)]

use super::header::{is_flexible, METADATA};
use super::topics::MAX_TOPIC_NAME;
use super::wire::Wire;

/// The (topic id, name) pairs a Metadata response holds, as far as captured.
pub fn topic_ids(body: &[u8], version: i16, out: &mut Vec<([u8; 16], String)>) {
    if version < 10 {
        return;
    }
    let mut wire = Wire::new(body, is_flexible(METADATA, version));
    let _ = read(&mut wire, version, out);
}

fn read(wire: &mut Wire<'_>, version: i16, out: &mut Vec<([u8; 16], String)>) -> Option<()> {
    wire.i32()?; // throttle_time_ms (v3+)
    for _ in 0..wire.array_len()? {
        wire.i32()?;
        wire.string()?;
        wire.i32()?;
        wire.nullable_string()?;
        wire.tagged_fields()?;
    }
    wire.nullable_string()?; // cluster id
    wire.i32()?; // controller id
    for _ in 0..wire.array_len()? {
        wire.i16()?;
        let name = wire.nullable_string()?;
        let id = wire.uuid()?;
        if let Some(name) = name {
            let name = &name[..name.len().min(MAX_TOPIC_NAME)];
            if id != [0; 16] {
                out.push((id, String::from_utf8_lossy(name).into_owned()));
            }
        }
        wire.i8()?;
        for _ in 0..wire.array_len()? {
            wire.skip(10)?; // error code, partition index, leader id
            if version >= 7 {
                wire.i32()?;
            }
            wire.skip_array(4)?;
            wire.skip_array(4)?;
            if version >= 5 {
                wire.skip_array(4)?;
            }
            wire.tagged_fields()?;
        }
        if version >= 8 {
            wire.i32()?;
        }
        wire.tagged_fields()?;
    }
    Some(())
}
