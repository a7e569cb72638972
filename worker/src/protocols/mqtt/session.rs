//! [`MqttSession`]: MQTT in the protocol registry. Client side only (a
//! broker's own connections are not decoded): one PRODUCER span per
//! PUBLISH the client sends, one CONSUMER span per message delivered to it,
//! and the decoder's losses in the shared counters.

use zerotrace_shared::event::Direction;

use super::connection::{MqttConnection, MqttStats};
use crate::protocols::counters::DecodeCounters;
use crate::protocols::db_session::client_side_check;
use crate::protocols::messaging_call::MessagingCall;
use crate::protocols::session::{
    ConnectionInfo, DataSegment, FirstBytes, ParseOutcome, ProtocolSession, Sink, Verdict,
};

/// One MQTT connection of a client process.
#[derive(Debug)]
pub struct MqttSession {
    decoder: MqttConnection,
}

/// Acknowledgements of no publish are unpaired responses, publishes never
/// acknowledged unanswered requests, dropped ones dropped requests.
fn add_stats(stats: &MqttStats, counters: &mut DecodeCounters) {
    counters.unpaired_responses += stats.unmatched_acks;
    counters.dropped_requests += stats.pending_dropped;
    counters.unanswered_requests += stats.unanswered;
    counters.framing_lost += stats.resyncs;
}

impl MqttSession {
    fn emit(conn: &ConnectionInfo, sink: &mut Sink<'_, Vec<MessagingCall>>) {
        sink.spans
            .extend(sink.scratch.drain(..).map(|call| call.into_span(conn)));
    }
}

impl ProtocolSession for MqttSession {
    /// Operations completed by one segment, before they become spans.
    type Scratch = Vec<MessagingCall>;
    type SwitchTo = std::convert::Infallible;

    fn check(first: &FirstBytes<'_>) -> Verdict {
        client_side_check(first, super::check)
    }

    fn start(_first: &FirstBytes<'_>, conn: &mut ConnectionInfo) -> Self {
        conn.learn_client_direction(Direction::Egress);
        Self {
            decoder: MqttConnection::new(),
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
