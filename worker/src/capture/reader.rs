//! The ring reader thread: waits on the ring buffer, copies its records into
//! a [`RecordBatch`] and hands full batches on over a bounded channel; the
//! pipeline decodes them and sends the emptied batches back for reuse. It
//! never blocks on the pipeline: when the channel is full the batch is dropped
//! and counted, so the kernel side never waits on user space.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::record_batch::RecordBatch;
use super::ring_buffer::RingBuffer;

/// Data events do not wake us (BPF_RB_NO_WAKEUP below a threshold), so the
/// reader also drains on this period.
const POLL_PERIOD: Duration = Duration::from_millis(25);
/// Most records per batch handed to the pipeline.
const MAX_BATCH: usize = 4096;
/// Most bytes per batch (records are at most a few hundred bytes).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// What a new batch is sized for; reused batches keep what they grew to.
const NEW_BATCH_RECORDS: usize = 256;
const NEW_BATCH_BYTES: usize = 64 << 10;

#[derive(Default)]
pub struct ReaderCounters {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    pub events_dropped_pipeline_full: AtomicU64,
}

/// Runs until `stop` is set or the pipeline hangs up. `emptied` brings back
/// the batches the pipeline is done with.
pub fn run(
    mut ring: RingBuffer,
    sink: SyncSender<RecordBatch>,
    emptied: Receiver<RecordBatch>,
    counters: Arc<ReaderCounters>,
    stop: Arc<AtomicBool>,
) {
    let next_batch = || {
        emptied
            .try_recv()
            .unwrap_or_else(|_| RecordBatch::with_capacity(NEW_BATCH_RECORDS, NEW_BATCH_BYTES))
    };
    let mut batch = next_batch();
    while !stop.load(Ordering::Relaxed) {
        {
            let mut fds = [PollFd::new(ring.fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(POLL_PERIOD).unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => std::thread::sleep(POLL_PERIOD),
            }
        }
        loop {
            let copied = ring.consume(|record| {
                batch.push(record);
                batch.len() < MAX_BATCH && batch.byte_len() < MAX_BATCH_BYTES
            });
            counters.records.fetch_add(copied as u64, Ordering::Relaxed);
            if batch.is_empty() {
                break;
            }
            let full = batch.len() >= MAX_BATCH || batch.byte_len() >= MAX_BATCH_BYTES;
            let count = batch.len() as u64;
            match sink.try_send(std::mem::replace(&mut batch, next_batch())) {
                Ok(()) => {}
                Err(TrySendError::Full(mut dropped)) => {
                    counters
                        .events_dropped_pipeline_full
                        .fetch_add(count, Ordering::Relaxed);
                    dropped.clear();
                    batch = dropped;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
            if !full && ring.pending_bytes() == 0 {
                break;
            }
        }
    }
}
