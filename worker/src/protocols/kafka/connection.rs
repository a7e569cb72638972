//! One Kafka connection seen from its client: requests framed out of what
//! it writes, responses out of what it reads, paired by correlation id
//! (a broker answers a connection's requests in order). Produce and Fetch
//! become operations; Metadata responses teach topic ids; every other API
//! (ApiVersions, FindCoordinator, JoinGroup, Heartbeat, OffsetCommit…) is
//! paired and dropped, and counted.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use zerotrace_shared::event::Direction;

use super::fetch::{self, FetchRequest};
use super::header::{self, correlation_id, request_header, response_body_offset};
use super::metadata;
use super::produce::{self, ProduceRequest};
use super::topics::{Partitions, TopicRef};
use crate::protocols::db::BoundedLru;
use crate::protocols::db_framing::{Frame, FrameEvent, FrameFormat, FrameHeader, LengthFramer};
use crate::spans::{MessagingExchange, MessagingOperation, MessagingSystem};

/// Requests waiting for their response per connection; more are dropped and counted.
pub const MAX_IN_FLIGHT: usize = 256;
/// Topic ids remembered per connection (from Metadata responses).
pub const MAX_TOPIC_IDS: usize = 1024;
/// Largest message size believed (the broker's default limit is 100 MiB).
pub const MAX_MESSAGE: u64 = 100 << 20;
/// Bytes of a message kept for parsing (the capture rarely holds more).
const KEEP: usize = 16 << 10;

/// One Produce or Fetch seen through: its span's messaging part and times.
pub type KafkaOperation = crate::protocols::messaging_call::MessagingCall;

/// What a connection could not follow. Counts only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Times a direction lost its framing.
    pub resyncs: u64,
    /// Messages whose size was sane but whose header was not Kafka's.
    pub bad_messages: u64,
    pub unmatched_responses: u64,
    pub pending_dropped: u64,
    /// Requests whose response never came (skipped over, or at the close).
    pub unanswered: u64,
    /// Calls of other APIs, paired and dropped.
    pub other_calls: u64,
}

#[derive(Debug)]
enum Call {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    Metadata,
    Other,
}

#[derive(Debug)]
struct Pending {
    correlation_id: i32,
    api_key: i16,
    api_version: i16,
    client_id: Option<String>,
    start_ns: u64,
    request_bytes: u64,
    cut: bool,
    call: Call,
}

fn size_header(bytes: &[u8]) -> Option<FrameHeader> {
    let size = u64::try_from(i32::from_be_bytes(bytes.try_into().ok()?)).ok()?;
    (4..=MAX_MESSAGE).contains(&size).then_some(FrameHeader {
        tag: 0,
        body_len: size,
    })
}

fn request_format() -> FrameFormat {
    FrameFormat {
        header_len: 4,
        parse_header: size_header,
        keep_body: |_| KEEP,
        // A segment that starts a request (writes are whole requests).
        resync: |segment| {
            (super::check_request(segment) == super::RequestShape::Request).then_some(0)
        },
        tail_resync: |_| None,
    }
}

fn response_format() -> FrameFormat {
    FrameFormat {
        header_len: 4,
        parse_header: size_header,
        keep_body: |_| KEEP,
        // A sane size and a non-negative correlation id; pairing checks the id.
        resync: |segment| {
            let size = size_header(segment.get(..4)?)?;
            let id = correlation_id(segment.get(4..)?)?;
            (size.body_len >= 4 && id >= 0).then_some(0)
        },
        tail_resync: |_| None,
    }
}

/// The decoder of one Kafka client connection.
#[derive(Debug)]
pub struct KafkaConnection {
    requests: LengthFramer,
    responses: LengthFramer,
    pending: VecDeque<Pending>,
    topic_ids: BoundedLru<[u8; 16], String>,
    stats: KafkaStats,
    events: Vec<FrameEvent>,
    ids: Vec<([u8; 16], String)>,
}

impl Default for KafkaConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl KafkaConnection {
    pub fn new() -> Self {
        Self {
            requests: LengthFramer::new(request_format()),
            responses: LengthFramer::new(response_format()),
            pending: VecDeque::new(),
            topic_ids: BoundedLru::new(MAX_TOPIC_IDS),
            stats: KafkaStats::default(),
            events: Vec::new(),
            ids: Vec::new(),
        }
    }

    pub fn stats(&self) -> KafkaStats {
        let mut stats = self.stats;
        stats.resyncs += self.requests.losses + self.responses.losses;
        stats
    }

    /// Topic ids known on this connection.
    pub fn known_topic_ids(&self) -> usize {
        self.topic_ids.len()
    }

    /// Feeds one segment: `captured` bytes, then `gap` bytes not captured.
    pub fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<KafkaOperation>,
    ) {
        let mut events = std::mem::take(&mut self.events);
        match direction {
            Direction::Egress => {
                self.requests.feed(captured, gap, ts_ns, &mut events);
                for event in events.drain(..) {
                    if let FrameEvent::Frame(frame) = event {
                        self.on_request(frame, out);
                    }
                }
            }
            Direction::Ingress => {
                self.responses.feed(captured, gap, ts_ns, &mut events);
                for event in events.drain(..) {
                    if let FrameEvent::Frame(frame) = event {
                        self.on_response(&frame, out);
                    }
                }
            }
        }
        self.events = events;
    }

    /// The connection closed: requests still waiting are counted, not emitted
    /// (a consumer's long poll is cut by the close).
    pub fn finish(&mut self, _ts_ns: u64, _out: &mut Vec<KafkaOperation>) {
        self.stats.unanswered += self.pending.len() as u64;
        self.pending.clear();
    }

    fn on_request(&mut self, frame: Frame, out: &mut Vec<KafkaOperation>) {
        let Some(header) = request_header(&frame.body) else {
            self.stats.bad_messages += 1;
            return;
        };
        let body = frame.body.get(header.body_offset..).unwrap_or_default();
        let call = match header.api_key {
            header::PRODUCE => match produce::request(body, header.api_version) {
                Some(request) => Call::Produce(request),
                None => Call::Other,
            },
            header::FETCH => match fetch::request(body, header.api_version) {
                Some(request) => Call::Fetch(request),
                None => Call::Other,
            },
            header::METADATA => Call::Metadata,
            _ => Call::Other,
        };
        let pending = Pending {
            correlation_id: header.correlation_id,
            api_key: header.api_key,
            api_version: header.api_version,
            client_id: header.client_id,
            start_ns: frame.start_ns,
            request_bytes: frame.body_len + 4,
            cut: frame.cut,
            call,
        };
        // acks=0: the broker sends no response; the send is done once written.
        if matches!(&pending.call, Call::Produce(p) if p.acks == 0) {
            let end = frame.end_ns;
            out.push(self.operation(pending, None, end, 0, false));
            return;
        }
        if self.pending.len() >= MAX_IN_FLIGHT {
            self.stats.pending_dropped += 1;
            return;
        }
        self.pending.push_back(pending);
    }

    fn on_response(&mut self, frame: &Frame, out: &mut Vec<KafkaOperation>) {
        let Some(id) = correlation_id(&frame.body) else {
            self.stats.bad_messages += 1;
            return;
        };
        let Some(index) = self.pending.iter().position(|p| p.correlation_id == id) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        // Answered in order: those before it will not be.
        self.stats.unanswered += index as u64;
        self.pending.drain(..index);
        let Some(pending) = self.pending.pop_front() else {
            return;
        };
        let body = response_body_offset(&frame.body, pending.api_key, pending.api_version)
            .and_then(|at| frame.body.get(at..))
            .unwrap_or_default();
        let response_bytes = frame.body_len + 4;
        if matches!(pending.call, Call::Metadata) {
            self.learn_topic_ids(body, pending.api_version);
        }
        if matches!(pending.call, Call::Metadata | Call::Other) {
            self.stats.other_calls += 1;
            return;
        }
        let op = self.operation(pending, Some(body), frame.end_ns, response_bytes, frame.cut);
        out.push(op);
    }

    fn learn_topic_ids(&mut self, body: &[u8], version: i16) {
        let mut ids = std::mem::take(&mut self.ids);
        metadata::topic_ids(body, version, &mut ids);
        for (id, name) in ids.drain(..) {
            self.topic_ids.insert(id, name);
        }
        self.ids = ids;
    }

    fn resolve(&mut self, topics: &[TopicRef]) -> Option<String> {
        match topics {
            [TopicRef::Name(name)] => Some(name.clone()),
            [TopicRef::Id(id)] => self.topic_ids.get(id).cloned(),
            _ => None,
        }
    }

    /// The operation of `pending`, answered by `response` (None: no response
    /// comes) at `end_ns`.
    fn operation(
        &mut self,
        pending: Pending,
        response: Option<&[u8]>,
        end_ns: u64,
        response_bytes: u64,
        response_cut: bool,
    ) -> KafkaOperation {
        let (operation, topics, partitions, count, mut error, mut partial) = match pending.call {
            Call::Produce(request) => {
                let error = response.and_then(|body| produce::response(body, pending.api_version));
                let partial = !request.complete || (response.is_some() && error.is_none());
                (
                    MessagingOperation::Send,
                    request.topics,
                    request.partitions,
                    request.message_count,
                    error,
                    partial,
                )
            }
            Call::Fetch(request) => {
                let answer = fetch::response(response.unwrap_or_default(), pending.api_version);
                let (topics, partitions) = if request.topics.is_empty() {
                    (answer.topics, answer.partitions)
                } else {
                    (request.topics, request.partitions)
                };
                let partial = answer.error_code.is_none();
                (
                    MessagingOperation::Poll,
                    topics,
                    partitions,
                    answer.message_count,
                    answer.error_code,
                    partial,
                )
            }
            Call::Metadata | Call::Other => (
                MessagingOperation::Send,
                Vec::new(),
                Partitions::default(),
                None,
                None,
                true,
            ),
        };
        partial |= pending.cut || response_cut;
        if error == Some(0) {
            error = None;
        }
        let mut exchange = MessagingExchange::new(MessagingSystem::Kafka, operation);
        exchange.destination = self.resolve(&topics);
        exchange.partition = partitions.single();
        exchange.client_id = pending.client_id;
        exchange.message_count = count;
        exchange.error_code = error;
        exchange.request_bytes = pending.request_bytes;
        exchange.response_bytes = response_bytes;
        KafkaOperation {
            exchange: exchange.named(),
            start_ns: pending.start_ns,
            end_ns: end_ns.max(pending.start_ns),
            partial,
        }
    }
}
