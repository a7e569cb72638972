//! How many messages a `records` field holds: the record batches (magic 2)
//! it carries, each header saying its record count. Older message sets
//! (magic 0 and 1) and batches the capture cut short give no count.

#![forbid(unsafe_code)]

/// Where a batch's fields sit: its length, its magic byte and its record count.
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const COUNT_AT: usize = 57;
/// Batches walked in one field; past it the count is not known.
const MAX_BATCHES: usize = 1000;

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let field: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_be_bytes(field))
}

/// The records in `kept`, the captured start of a field declared
/// `declared` bytes long; None when a batch header was not captured or the
/// batches are not magic 2.
pub fn message_count(kept: &[u8], declared: usize) -> Option<u64> {
    let mut at = 0usize;
    let mut count = 0u64;
    for _ in 0..MAX_BATCHES {
        if at >= declared {
            return Some(count);
        }
        let batch = kept.get(at..)?;
        let length = usize::try_from(be_i32(batch, BATCH_LENGTH_AT)?).ok()?;
        if *batch.get(MAGIC_AT)? != 2 {
            return None;
        }
        let records = u64::try_from(be_i32(batch, COUNT_AT)?).ok()?;
        let end = at.checked_add(BATCH_LENGTH_AT + 4)?.checked_add(length)?;
        if end > declared {
            // A partial batch at the end of a fetch (the broker cuts at max bytes): not delivered.
            return Some(count);
        }
        count += records;
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: i32) -> Vec<u8> {
        let mut b = vec![0u8; 61];
        b[8..12].copy_from_slice(&49i32.to_be_bytes());
        b[16] = 2;
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn batches_are_summed_and_what_was_not_captured_is_unknown() {
        let two = [batch(3), batch(4)].concat();
        assert_eq!(message_count(&two, two.len()), Some(7));
        assert_eq!(message_count(&two[..70], two.len()), None);
        assert_eq!(message_count(&[], 0), Some(0));
        let mut old = batch(1);
        old[16] = 1;
        assert_eq!(message_count(&old, old.len()), None);
        // A trailing partial batch is not counted.
        assert_eq!(message_count(&two, two.len() - 1), Some(3));
    }
}
