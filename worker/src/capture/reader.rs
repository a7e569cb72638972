//! The ring reader thread: waits on the ring buffer, decodes records into
//! `KernelEvent`s and hands them on in batches over a bounded channel. It
//! never blocks on the pipeline: when the channel is full the batch is dropped
//! and counted, so the kernel side never waits on user space.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use zerotrace_shared::event::KernelEvent;

use super::ring_buffer::RingBuffer;

/// Data events do not wake us (BPF_RB_NO_WAKEUP below a threshold), so the
/// reader also drains on this period.
const POLL_PERIOD: Duration = Duration::from_millis(25);
/// Most events per batch handed to the pipeline.
const MAX_BATCH: usize = 4096;

#[derive(Default)]
pub struct ReaderCounters {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    pub events_dropped_pipeline_full: AtomicU64,
}

pub fn run(
    mut ring: RingBuffer,
    sink: SyncSender<Vec<KernelEvent>>,
    counters: Arc<ReaderCounters>,
    stop: Arc<AtomicBool>,
) {
    let mut batch: Vec<KernelEvent> = Vec::with_capacity(256);
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
            ring.consume(|record| {
                counters.records.fetch_add(1, Ordering::Relaxed);
                match KernelEvent::decode(record) {
                    Ok(event) => batch.push(event),
                    Err(_) => {
                        counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            if batch.is_empty() {
                break;
            }
            let full = batch.len() >= MAX_BATCH;
            let outgoing = std::mem::replace(&mut batch, Vec::with_capacity(256));
            let count = outgoing.len() as u64;
            match sink.try_send(outgoing) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    counters
                        .events_dropped_pipeline_full
                        .fetch_add(count, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
            if !full && ring.pending_bytes() == 0 {
                break;
            }
        }
    }
}
