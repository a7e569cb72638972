//! [`KafkaSession`]: Kafka in the protocol registry. Client side only (a
//! broker's own connections are not decoded): one PRODUCER span per
//! Produce, one CONSUMER span per Fetch, and the decoder's losses in the
//! shared counters.

use zerotrace_shared::event::Direction;

use super::connection::{KafkaConnection, KafkaOperation, KafkaStats};
use crate::protocols::counters::DecodeCounters;
use crate::protocols::db_session::client_side_check;
use crate::protocols::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};

/// One Kafka connection of a client process.
#[derive(Debug)]
pub struct KafkaSession {
    decoder: KafkaConnection,
}

/// Unpaired responses, dropped and unanswered requests go where the other
/// protocols' do; a loss of framing is a framing loss, a message that is not
/// Kafka's a garbage segment.
fn add_stats(stats: &KafkaStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_responses;
    counters.dropped_requests += stats.pending_dropped;
    counters.unanswered_requests += stats.unanswered;
    counters.framing_lost += stats.resyncs;
    counters.garbage_segments += stats.bad_messages;
}

impl KafkaSession {
    fn emit(conn: &ConnectionInfo, sink: &mut Sink<'_, Vec<KafkaOperation>>) {
        sink.spans
            .extend(sink.scratch.drain(..).map(|op| op.into_span(conn)));
    }
}

impl ProtocolSession for KafkaSession {
    /// Operations completed by one segment, before they become spans.
    type Scratch = Vec<KafkaOperation>;
    type SwitchTo = std::convert::Infallible;

    fn check(first: &FirstBytes<'_>) -> Verdict {
        client_side_check(first, super::check)
    }

    fn start(_first: &FirstBytes<'_>, conn: &mut ConnectionInfo) -> Self {
        conn.learn_client_direction(Direction::Egress);
        Self {
            decoder: KafkaConnection::new(),
        }
    }

    fn parse(
        &mut self,
        segment: DataSegment<'_>,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) -> ParseOutcome<Self::SwitchTo> {
        self.decoder.feed(
            segment.direction,
            segment.captured,
            segment.missing,
            segment.ts_ns,
            sink.scratch,
        );
        Self::emit(conn, sink);
        ParseOutcome::Parsed
    }

    fn finish(
        &mut self,
        ts_ns: u64,
        conn: &mut ConnectionInfo,
        sink: &mut Sink<'_, Self::Scratch>,
    ) {
        self.decoder.finish(ts_ns, sink.scratch);
        Self::emit(conn, sink);
        self.abandon(sink.counters);
    }

    fn abandon(&self, counters: &mut DecodeCounters) {
        add_stats(&self.decoder.stats(), counters);
    }

    fn add_live_counts(&self, counters: &mut DecodeCounters) {
        add_stats(&self.decoder.stats(), counters);
    }
}
