//! One MongoDB connection's state, from the client's side: its requests
//! wait for the replies that name them (`responseTo`), so pairing does not
//! depend on order. Drivers send one request at a time on a connection; a
//! reply to a later request means the replies of earlier ones were lost.
//! A request flagged `moreToCome` (an unacknowledged write) gets no reply
//! and ends when written; a reply flagged `moreToCome` (an exhaust cursor,
//! a streaming `hello`) is followed by others answering it, and the
//! operation ends with the last.

#![forbid(unsafe_code)]

use zerotrace_shared::event::Direction;

use super::bson::{self, Elements, Value};
use super::wire::{self, Header, MORE_TO_COME};
use crate::protocols::db::{bounded_text, DbDecoderStats, DbOperation, DbSystem, MAX_PENDING};
use crate::protocols::db_framing::{Frame, FrameEvent, FrameFormat, FrameHeader, LengthFramer};

/// Bytes of a message kept past its length prefix: the header's other
/// fields, and the start of the document read from it (a command's name,
/// collection and `$db` come first in what drivers write; a reply's status
/// fields come first when it failed).
const KEPT_BYTES: usize = 4096;

/// Commands a driver sends by itself to set up and monitor connections
/// (handshake, topology monitoring, authentication): not operations of the
/// application, so no span (OBI leaves them out too).
const DRIVER_COMMANDS: &[&[u8]] = &[
    b"hello",
    b"isMaster",
    b"ismaster",
    b"saslStart",
    b"saslContinue",
    b"authenticate",
    b"getnonce",
];

/// Commands whose first value is a string that is not a collection name.
const NOT_A_COLLECTION: &[&[u8]] = &[b"renameCollection", b"mapreduce.shardedfinish"];

fn length_prefix(bytes: &[u8]) -> Option<FrameHeader> {
    let length = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    (length as usize > wire::HEADER_LEN && length <= wire::MAX_MESSAGE_LEN).then(|| FrameHeader {
        tag: 0,
        body_len: u64::from(length - 4),
    })
}

/// Messages framed by their length; after a loss, framing is regained at a
/// segment that starts with a whole header of the direction's kind.
fn format(resync: fn(&[u8]) -> Option<usize>) -> FrameFormat {
    FrameFormat {
        header_len: 4,
        parse_header: length_prefix,
        keep_body: |_| KEPT_BYTES,
        resync,
        tail_resync: |_| None,
    }
}

fn client_format() -> FrameFormat {
    format(|segment| Header::read(segment).filter(Header::is_request).map(|_| 0))
}

fn server_format() -> FrameFormat {
    format(|segment| Header::read(segment).filter(Header::is_reply).map(|_| 0))
}

/// A request waiting for its reply.
#[derive(Debug)]
struct Pending {
    /// The `responseTo` its next reply carries: the request's id, then, for
    /// a stream of replies, the id of the last reply.
    awaited_id: i32,
    /// `None` for a driver's own command: paired, never a span.
    op: Option<DbOperation>,
    /// A reply came already and more follow (`moreToCome`).
    streaming: bool,
}

/// One MongoDB connection's decoder.
#[derive(Debug)]
pub struct MongoConnection {
    client: LengthFramer,
    server: LengthFramer,
    /// Requests in the order they were written, at most [`MAX_PENDING`].
    pending: Vec<Pending>,
    stats: DbDecoderStats,
    events: Vec<FrameEvent>,
}

impl Default for MongoConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl MongoConnection {
    pub fn new() -> Self {
        Self {
            client: LengthFramer::new(client_format()),
            server: LengthFramer::new(server_format()),
            pending: Vec::new(),
            stats: DbDecoderStats::default(),
            events: Vec::new(),
        }
    }

    /// A connection joined mid-stream: both directions find their framing
    /// at a segment that starts with a message.
    pub fn joined_mid_stream() -> Self {
        Self {
            client: LengthFramer::new_lost(client_format()),
            server: LengthFramer::new_lost(server_format()),
            ..Self::new()
        }
    }

    pub fn stats(&self) -> DbDecoderStats {
        let mut stats = self.stats;
        stats.resyncs += self.client.losses + self.server.losses;
        stats.bytes_skipped += self.client.skipped_bytes + self.server.skipped_bytes;
        stats
    }

    /// Feeds one segment: `captured` bytes, then `gap` bytes not captured.
    pub fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        let mut events = std::mem::take(&mut self.events);
        match direction {
            Direction::Egress => self.client.feed(captured, gap, ts_ns, &mut events),
            Direction::Ingress => self.server.feed(captured, gap, ts_ns, &mut events),
        }
        for event in events.drain(..) {
            match (event, direction) {
                (FrameEvent::Frame(frame), Direction::Egress) => self.on_request(&frame, out),
                (FrameEvent::Frame(frame), Direction::Ingress) => self.on_reply(&frame, out),
                // A lost request is counted by the framer; its reply will
                // name no request. A lost reply leaves its request waiting
                // until the next reply or the close ends it partial.
                (FrameEvent::Lost | FrameEvent::Regained | FrameEvent::EndRegained, _) => {}
            }
        }
        self.events = events;
    }

    /// The connection closed: requests still waiting end partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        for pending in std::mem::take(&mut self.pending) {
            if let Some(mut op) = pending.op {
                op.end_ns = op.end_ns.max(ts_ns);
                // A stream's last reply never came; the others did.
                op.partial |= !pending.streaming;
                self.stats.emit(op, out);
            }
        }
    }

    fn on_request(&mut self, frame: &Frame, out: &mut Vec<DbOperation>) {
        let Some(header) = header_of(frame).filter(Header::is_request) else {
            self.stats.bytes_skipped += frame.body_len + 4;
            return;
        };
        let content = wire::content(header.op_code, &frame.body[wire::HEADER_LEN - 4..]);
        let mut op = DbOperation::new(DbSystem::Mongodb, frame.start_ns);
        op.exchange.request_bytes = u64::from(header.length);
        let driver_command = describe_request(header.op_code, &content, &mut op);
        let op = (!driver_command).then_some(op);
        if header.op_code == wire::OP_MSG && content.flags & MORE_TO_COME != 0 {
            // No reply comes: the operation ends when written.
            if let Some(mut op) = op {
                op.end_ns = frame.end_ns;
                self.stats.emit(op, out);
            }
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.stats.pending_dropped += 1;
            return;
        }
        self.pending.push(Pending {
            awaited_id: header.request_id,
            op,
            streaming: false,
        });
    }

    fn on_reply(&mut self, frame: &Frame, out: &mut Vec<DbOperation>) {
        let Some(header) = header_of(frame).filter(Header::is_reply) else {
            self.stats.bytes_skipped += frame.body_len + 4;
            return;
        };
        let Some(at) = self
            .pending
            .iter()
            .position(|p| p.awaited_id == header.response_to)
        else {
            self.stats.unmatched_replies += 1;
            return;
        };
        // Requests written before this one and still waiting lost their
        // replies (a driver waits for each reply before its next request),
        // unless they are streams, whose replies keep coming.
        let mut index = 0;
        let mut answered = at;
        while index < answered {
            if self.pending[index].streaming {
                index += 1;
                continue;
            }
            let lost = self.pending.remove(index);
            answered -= 1;
            if let Some(mut op) = lost.op {
                op.partial = true;
                op.end_ns = op.end_ns.max(frame.start_ns);
                self.stats.emit(op, out);
            }
        }
        let content = wire::content(header.op_code, &frame.body[wire::HEADER_LEN - 4..]);
        let more = header.op_code == wire::OP_MSG && content.flags & MORE_TO_COME != 0;
        let pending = &mut self.pending[answered];
        if let Some(op) = &mut pending.op {
            op.end_ns = frame.end_ns;
            op.exchange.response_bytes += u64::from(header.length);
            describe_reply(&content, op);
        }
        if more {
            pending.awaited_id = header.request_id;
            pending.streaming = true;
            return;
        }
        let done = self.pending.remove(answered);
        if let Some(op) = done.op {
            self.stats.emit(op, out);
        }
    }
}

impl crate::protocols::db::DbConnection for MongoConnection {
    fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        MongoConnection::feed(self, direction, captured, gap, ts_ns, out);
    }
    fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        MongoConnection::finish(self, ts_ns, out);
    }
}

/// A whole frame's header (its length prefix, then what the framer kept).
fn header_of(frame: &Frame) -> Option<Header> {
    let length = u32::try_from(frame.body_len + 4).ok()?;
    let mut bytes = [0u8; wire::HEADER_LEN];
    bytes[..4].copy_from_slice(&length.to_le_bytes());
    bytes[4..].copy_from_slice(frame.body.get(..wire::HEADER_LEN - 4)?);
    Header::read(&bytes)
}

/// Fills `op` from a request; true when it is a driver's own command.
fn describe_request(op_code: i32, content: &wire::Content<'_>, op: &mut DbOperation) -> bool {
    let exchange = &mut op.exchange;
    if content.compressed {
        // Compression is negotiated in `hello`; nothing of the command is
        // readable, but it is an operation of the application.
        return false;
    }
    let document = content.document.and_then(bson::document);
    let Some((elements, _whole)) = document else {
        op.partial = true;
        return false;
    };
    let mut elements = elements;
    // A legacy query's command may be wrapped: `{$query: {...}, $readPreference}`.
    let wrapped = elements.clone().next().filter(|e| e.key == b"$query");
    if let Some(Value::Document(inner)) = wrapped.map(|e| e.value) {
        if let Some((inner, _)) = bson::document(inner) {
            elements = inner;
        }
    }
    let Some(first) = elements.clone().next() else {
        op.partial = true;
        return false;
    };
    if op_code == wire::OP_QUERY {
        // `db.$cmd` for a command; a legacy query names `db.collection`.
        let full = content.full_collection.unwrap_or_default();
        let (database, collection) = match memchr::memchr(b'.', full) {
            Some(dot) => (&full[..dot], &full[dot + 1..]),
            None => (full, &b""[..]),
        };
        if !database.is_empty() {
            exchange.namespace = Some(bounded_text(database, 256));
        }
        if collection != b"$cmd" {
            exchange.operation = "find".into();
            exchange.collection = Some(bounded_text(collection, 256));
            return false;
        }
    }
    if DRIVER_COMMANDS.contains(&first.key) {
        return true;
    }
    exchange.operation = bounded_text(first.key, 128);
    match first.value {
        Value::String(name) if !NOT_A_COLLECTION.contains(&first.key) && !name.is_empty() => {
            exchange.collection = Some(bounded_text(name, 256));
        }
        _ => {}
    }
    for element in elements.skip(1) {
        match (element.key, element.value) {
            (b"$db", Value::String(db)) => exchange.namespace = Some(bounded_text(db, 256)),
            // getMore names its collection apart from its cursor id.
            (b"collection", Value::String(name)) if first.key == b"getMore" => {
                exchange.collection = Some(bounded_text(name, 256));
            }
            _ => {}
        }
    }
    false
}

/// What a reply says of its operation: a failure (`ok: 0`, write errors, a
/// write concern error), the documents a cursor returned, the documents a
/// write touched.
fn describe_reply(content: &wire::Content<'_>, op: &mut DbOperation) {
    let Some((elements, _)) = content.document.and_then(bson::document) else {
        // A compressed reply, or one cut before its document: nothing is
        // known of the outcome.
        op.partial |= !content.compressed;
        return;
    };
    let exchange = &mut op.exchange;
    let mut ok = None;
    let mut failure: Option<Failure> = None;
    for element in elements {
        match (element.key, element.value) {
            (b"ok", value) => ok = value.as_i64(),
            (b"code" | b"errmsg" | b"codeName" | b"$err", _) => {
                failure.get_or_insert_with(Failure::default).read(element)
            }
            (b"writeErrors", Value::Array(errors)) => {
                let first = bson::document(errors).and_then(|(e, _)| e.into_iter().next());
                if let Some(Value::Document(error)) = first.map(|e| e.value) {
                    if let Some((fields, _)) = bson::document(error) {
                        failure
                            .get_or_insert_with(Failure::default)
                            .read_all(fields);
                    }
                }
            }
            (b"writeConcernError", Value::Document(error)) => {
                if let Some((fields, _)) = bson::document(error) {
                    failure
                        .get_or_insert_with(Failure::default)
                        .read_all(fields);
                }
            }
            (b"n", value) if is_write(&exchange.operation) => {
                exchange.rows = value.as_i64().and_then(|n| u64::try_from(n).ok());
                exchange.rows_returned = false;
            }
            (b"cursor", Value::Document(cursor)) => {
                if let Some(count) = batch_size(cursor) {
                    exchange.rows = Some(exchange.rows.unwrap_or(0) + count);
                    exchange.rows_returned = true;
                }
            }
            _ => {}
        }
    }
    // A failure says `ok: 0`, or has a code (a write error's, with `ok: 1`),
    // or is a legacy reply's `$err`. A reply cut before its `ok` (it comes
    // last, after a cursor's documents) succeeded: failures are short.
    let failed = ok == Some(0)
        || failure
            .as_ref()
            .is_some_and(|f| f.code.is_some() || f.legacy);
    if !failed {
        return;
    }
    let failure = failure.unwrap_or_default();
    let code = failure.code.map(|c| c.to_string());
    exchange.error_type = Some(
        code.clone()
            .or(failure.name.clone())
            .unwrap_or_else(|| "_OTHER".into()),
    );
    exchange.status_code = code;
    exchange.error_message = match (failure.name, failure.message) {
        (Some(name), Some(message)) => Some(format!("{name}: {message}")),
        (name, message) => message.or(name),
    };
}

/// The operations whose reply's `n` counts the documents they wrote.
fn is_write(operation: &str) -> bool {
    matches!(operation, "insert" | "update" | "delete")
}

/// The number of documents in a cursor's `firstBatch` or `nextBatch`, when
/// the whole batch was captured.
fn batch_size(cursor: &[u8]) -> Option<u64> {
    let (fields, _) = bson::document(cursor)?;
    for field in fields {
        if let (b"firstBatch" | b"nextBatch", Value::Array(batch)) = (field.key, field.value) {
            let (documents, whole) = bson::document(batch)?;
            return whole.then(|| documents.count() as u64);
        }
    }
    None
}

/// A failure's fields, from a reply or its first write error.
#[derive(Debug, Default)]
struct Failure {
    code: Option<i64>,
    name: Option<String>,
    message: Option<String>,
    /// A legacy reply's `$err`: a failure without `ok`.
    legacy: bool,
}

impl Failure {
    fn read(&mut self, element: bson::Element<'_>) {
        match (element.key, element.value) {
            (b"code", value) => self.code = value.as_i64().or(self.code),
            (b"codeName", Value::String(name)) => self.name = Some(bounded_text(name, 128)),
            (b"errmsg", Value::String(text)) => {
                self.message = Some(bounded_text(text, crate::protocols::db::MAX_TEXT))
            }
            (b"$err", Value::String(text)) => {
                self.legacy = true;
                self.message = Some(bounded_text(text, crate::protocols::db::MAX_TEXT));
            }
            _ => {}
        }
    }

    fn read_all(&mut self, fields: Elements<'_>) {
        for field in fields {
            self.read(field);
        }
    }
}
