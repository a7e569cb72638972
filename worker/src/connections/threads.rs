//! Which thread moved a connection's bytes when: the last few runs of
//! segments (one direction, one thread), so that a span, once built, is told
//! the thread that read or wrote its request's first bytes and its
//! response's last bytes — for every protocol alike, from its timestamps.

use zerotrace_shared::event::Direction;

use crate::spans::{ExchangeThreads, Span};

/// Runs remembered per connection: a span is stamped right after the
/// segment that completes it, so its request is a few runs back at most;
/// an exchange older than this (a long HTTP/2 stream) gets no thread.
const RUNS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// Timestamp of the run's first segment.
    first_ts_ns: u64,
    tid: u32,
    egress: bool,
}

/// The connection's latest runs, oldest overwritten first.
#[derive(Debug, Default)]
pub(super) struct ThreadRuns {
    runs: [Run; RUNS],
    /// Runs written so far (the next slot is `written % RUNS`).
    written: usize,
}

impl ThreadRuns {
    /// A segment of `direction` by thread `tid` at `ts_ns`.
    pub(super) fn note(&mut self, direction: Direction, tid: u32, ts_ns: u64) {
        let egress = direction == Direction::Egress;
        if let Some(last) = self.latest() {
            if last.egress == egress && last.tid == tid {
                return;
            }
        }
        self.runs[self.written % RUNS] = Run {
            first_ts_ns: ts_ns,
            tid,
            egress,
        };
        self.written += 1;
    }

    fn latest(&self) -> Option<&Run> {
        self.written
            .checked_sub(1)
            .map(|last| &self.runs[last % RUNS])
    }

    /// The thread whose segment of `direction` at `ts_ns` was part of: the
    /// latest run of that direction started at or before it (runs are kept
    /// newest first, so the first found is it), 0 when it was overwritten.
    pub(super) fn thread_at(&self, direction: Direction, ts_ns: u64) -> u32 {
        let egress = direction == Direction::Egress;
        (0..self.written.min(RUNS))
            .map(|back| &self.runs[(self.written - 1 - back) % RUNS])
            .find(|run| run.egress == egress && run.first_ts_ns <= ts_ns)
            .map_or(0, |run| run.tid)
    }

    /// Sets `span`'s threads: the request's first bytes at its start, the
    /// response's last bytes at its end (for a delivery, the message read
    /// and the acknowledgement written).
    pub(super) fn stamp(&self, span: &mut Span) {
        let (request, response) = if span.starts_with_a_read() {
            (Direction::Ingress, Direction::Egress)
        } else {
            (Direction::Egress, Direction::Ingress)
        };
        span.threads = ExchangeThreads {
            request_first: self.thread_at(request, span.start_monotonic_ns),
            response_last: self.thread_at(response, span.end_monotonic_ns),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_overwritten_by_newer_ones_gives_no_thread() {
        let mut runs = ThreadRuns::default();
        runs.note(Direction::Ingress, 7, 10);
        // Same direction and thread: one run.
        runs.note(Direction::Ingress, 7, 11);
        assert_eq!(runs.thread_at(Direction::Ingress, 11), 7);
        assert_eq!(runs.thread_at(Direction::Egress, 11), 0);
        for i in 0..RUNS as u64 {
            let direction = if i % 2 == 0 {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            runs.note(direction, 8 + i as u32, 20 + i);
        }
        // The run that held ts 10 is gone: no guess from a newer one.
        assert_eq!(runs.thread_at(Direction::Ingress, 10), 0);
        assert_eq!(runs.thread_at(Direction::Egress, 20), 8);
    }
}
