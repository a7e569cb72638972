//! A batch of raw ring buffer records, copied back to back into one buffer.
//!
//! The reader thread fills a batch and hands it to the pipeline, which
//! decodes each record in place (`KernelEvent` borrows its payload) and sends
//! the emptied batch back to be filled again. So once the buffers have grown
//! to the traffic's size, moving a record from the kernel to the decoder costs
//! one copy and no allocation: before, each data record cost two (its payload
//! and its thread name), allocated on one thread and freed on the other.

/// Records copied from the ring buffer, in order.
#[derive(Debug, Default)]
pub struct RecordBatch {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes` (the next one starts there).
    ends: Vec<usize>,
}

impl RecordBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// Appends a copy of one record.
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held, all records together.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Forgets the records, keeping the buffers for the next batch.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The records, in the order they were pushed.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| self.bytes.get(start..end).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_whole_and_in_order_including_empty_ones() {
        let mut batch = RecordBatch::default();
        batch.push(b"first");
        batch.push(b"");
        batch.push(b"third record");
        let records: Vec<&[u8]> = batch.records().collect();
        assert_eq!(records, [&b"first"[..], b"", b"third record"]);
        assert_eq!((batch.len(), batch.byte_len()), (3, 17));
    }

    #[test]
    fn a_cleared_batch_is_empty_and_keeps_its_buffers() {
        let mut batch = RecordBatch::with_capacity(4, 64);
        batch.push(&[7; 40]);
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.records().count(), 0);
        assert!(batch.bytes.capacity() >= 64 && batch.ends.capacity() >= 4);
        batch.push(b"again");
        assert_eq!(batch.records().collect::<Vec<_>>(), [&b"again"[..]]);
    }
}
