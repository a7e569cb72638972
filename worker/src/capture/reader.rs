//! Reading the ring buffer on the pipeline's own thread: wait until it holds
//! records (or the poll period passes), then hand each record, in place, to a
//! [`RecordSink`], in runs that each end with [`RecordSink::end_run`].
//!
//! A record is handed over where the kernel wrote it and its space is freed
//! only after the sink returns, so it is never copied on its way to the
//! decoder. (Until 2026-12-03 a reader thread copied records into batches
//! for the pipeline thread: that was a copy, a second cache miss on every
//! record as the other thread read what the reader had just written, and a
//! wake-up per batch; docs/benchmarks.md has the measurement.) The ring
//! buffer itself is what absorbs a pipeline that falls behind: a record that
//! finds it full is counted by the kernel side as lost, never waited for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::ring_buffer::RingBuffer;

/// Data events do not wake us (BPF_RB_NO_WAKEUP below a threshold), so the
/// ring is also drained on this period.
pub const POLL_PERIOD: Duration = Duration::from_millis(25);
/// Most records in one run: the sink's per-run work (spans out to their
/// destinations) is not put off longer than that under a flood.
pub const MAX_RUN: usize = 4096;

/// Records read from the ring buffer, and those that could not be decoded.
#[derive(Default)]
pub struct ReaderCounters {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
}

/// Where the records go.
pub trait RecordSink {
    /// Takes one record, which lives only for the call; false when it cannot
    /// be decoded.
    fn record(&mut self, record: &[u8]) -> bool;
    /// A run of records is over.
    fn end_run(&mut self);
}

/// A sink that takes every record and decodes none: the worker's floor for
/// benchmarks (`ZEROTRACE_BENCH_FLOOR=drain`), the ring read and nothing else.
pub struct DiscardRecords;

impl RecordSink for DiscardRecords {
    fn record(&mut self, record: &[u8]) -> bool {
        std::hint::black_box(record);
        true
    }

    fn end_run(&mut self) {}
}

/// Returns when the ring holds records or after `period`.
pub fn wait_for_records(ring: &RingBuffer, period: Duration) {
    if ring.pending_bytes() > 0 {
        return;
    }
    let mut fds = [PollFd::new(ring.fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(period).unwrap_or(PollTimeout::NONE);
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(_) => std::thread::sleep(period),
    }
}

/// Hands every record committed so far to `sink`, in runs of at most
/// [`MAX_RUN`]; returns how many were consumed.
pub fn drain(
    ring: &mut RingBuffer,
    sink: &mut impl RecordSink,
    counters: &ReaderCounters,
) -> usize {
    let mut total = 0;
    loop {
        let mut undecodable = 0;
        let mut taken = 0;
        let consumed = ring.consume(|record| {
            if !sink.record(record) {
                undecodable += 1;
            }
            taken += 1;
            taken < MAX_RUN
        });
        counters
            .records
            .fetch_add(consumed as u64, Ordering::Relaxed);
        counters
            .decode_errors
            .fetch_add(undecodable, Ordering::Relaxed);
        if consumed == 0 {
            return total;
        }
        sink.end_run();
        total += consumed;
        if consumed < MAX_RUN {
            return total;
        }
    }
}
