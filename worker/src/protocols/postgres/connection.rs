//! One PostgreSQL connection's state: frames both directions, keeps the
//! prepared statements and portals, and pairs frontend requests with the
//! backend's results into operations.
//!
//! The backend answers in order, so requests wait in a queue: a simple query
//! (`Q`, one operation per statement it holds), or the extended protocol's
//! Parse/Bind/Describe/Execute/Close/Sync, where each Execute is one
//! operation. An ErrorResponse fails the request at the head and, as the
//! server does, skips the rest up to the next Sync; ReadyForQuery closes
//! whatever is still open. COPY is part of the statement that started it:
//! one operation, its data counted in its sizes.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;

use zerotrace_shared::event::Direction;

use super::message::{
    self, command_tag_parts, parse_backend, parse_first, parse_frontend, Backend, ErrorFields,
    FirstMessage, Frontend,
};
use crate::protocols::db::{
    bounded_text, BoundedLru, DbDecoderStats, DbOperation, DbSystem, MAX_TEXT,
};
use crate::protocols::db_framing::{Frame, FrameEvent, LengthFramer};
use crate::protocols::sql_sanitize::{split_statements, summarize, SqlDialect, SqlSummary};

/// Prepared statements remembered per connection (protocol-level and SQL `PREPARE`).
pub const MAX_STATEMENTS: usize = 256;
/// Portals remembered per connection (clients mostly use the unnamed one).
const MAX_PORTALS: usize = 32;
/// Longest first (untyped) message gathered: a StartupMessage is at most 10000 bytes.
const MAX_FIRST: usize = 10_000;
/// Statements of one simple query turned into operations; the rest are
/// counted (psycopg2's execute_batch joins 100 by default).
const MAX_STATEMENTS_PER_QUERY: usize = 128;

/// A statement's text, summarized once and shared by every execution.
#[derive(Debug)]
struct Statement {
    summary: SqlSummary,
    /// Its text was cut by the capture.
    cut: bool,
}

#[derive(Debug)]
enum Step {
    /// A simple query: its statements still waiting for a result.
    Simple(VecDeque<Arc<Statement>>),
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
}

#[derive(Debug)]
struct Pending {
    step: Step,
    statement: Option<Arc<Statement>>,
    start_ns: u64,
    request_bytes: u64,
    response_bytes: u64,
    data_rows: u64,
    /// The backend's framing was lost while this waited: DataRows went by
    /// uncounted, so their count is not the result's.
    rows_lost: bool,
    /// ... and its answer may have been in the lost bytes, unless framing
    /// came back at the end of a read that holds it (`regain_at_end`).
    answer_lost: bool,
    partial: bool,
}

impl Pending {
    fn new(
        step: Step,
        statement: Option<Arc<Statement>>,
        start_ns: u64,
        request_bytes: u64,
    ) -> Self {
        Self {
            step,
            statement,
            start_ns,
            request_bytes,
            response_bytes: 0,
            data_rows: 0,
            rows_lost: false,
            answer_lost: false,
            partial: false,
        }
    }

    fn makes_operation(&self) -> bool {
        matches!(self.step, Step::Simple(_) | Step::Execute)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet: the first client write tells what this is.
    Start,
    /// SSLRequest or GSSENCRequest sent; the server answers with one byte.
    EncryptionRequested,
    /// Messages flow.
    Ready,
    /// A CancelRequest connection, or an encryption the decoder cannot see into.
    Ignored,
}

/// Extended-protocol messages written since the last Execute.
#[derive(Debug, Default)]
struct Batch {
    start_ns: u64,
    bytes: u64,
    partial: bool,
}

/// The decoder for one PostgreSQL connection.
#[derive(Debug)]
pub struct PostgresConnection {
    phase: Phase,
    /// The server accepted SSL: ciphertext may reach us besides the plaintext hooks' copy.
    tls: bool,
    frontend: LengthFramer,
    backend: LengthFramer,
    namespace: Option<String>,
    statements: BoundedLru<Vec<u8>, Arc<Statement>>,
    portals: BoundedLru<Vec<u8>, Option<Arc<Statement>>>,
    pending: VecDeque<Pending>,
    batch: Batch,
    stats: DbDecoderStats,
    events: Vec<FrameEvent>,
    /// The backend lost framing since the last request: results of what is
    /// pending may have been in the lost bytes.
    backend_lost: bool,
    /// Framing came back at the end of a read whose results cannot be told
    /// apart from those lost before them (`regain_at_end`): they are not
    /// paired, and the next ReadyForQuery closes what waits, partial.
    answers_unpaired: bool,
    last_backend_ns: u64,
    /// The client's first message while it is still arriving.
    first: Vec<u8>,
}

impl Default for PostgresConnection {
    fn default() -> Self {
        Self::new()
    }
}

/// A statement's text, at most twice [`MAX_TEXT`] bytes of it (the summary
/// keeps [`MAX_TEXT`]).
fn sql_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    text_upto(bytes, 2 * MAX_TEXT)
}

/// A simple query's text, all of what the framer keeps of it
/// (`message::KEEP_QUERY`): it is split into statements before each is
/// cut to its summary.
fn query_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    text_upto(bytes, message::KEEP_QUERY)
}

/// At most `max` bytes of `bytes` as text; valid UTF-8, the usual case, is
/// borrowed after the fast check.
fn text_upto(bytes: &[u8], max: usize) -> std::borrow::Cow<'_, str> {
    let bytes = &bytes[..bytes.len().min(max)];
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The one statement of a query string without `;`, or whose only `;` ends
/// it; None when it may hold several (split them).
fn single_statement(text: &str) -> Option<&str> {
    match memchr::memchr(b';', text.as_bytes()) {
        None => Some(text),
        Some(at) if text[at + 1..].trim().is_empty() => Some(&text[..at]),
        Some(_) => None,
    }
}

/// A TLS record header: never the start of a PostgreSQL message.
fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17, 0x03, 0..=4, ..])
}

/// Whether a backend frame is an operation's result (or its failure).
fn answers_one(event: &FrameEvent) -> bool {
    matches!(event, FrameEvent::Frame(f) if matches!(f.tag, b'C' | b'I' | b's' | b'E'))
}

fn wire_len(frame: &Frame) -> u64 {
    5 + frame.body_len
}

impl PostgresConnection {
    pub fn new() -> Self {
        Self {
            phase: Phase::Start,
            tls: false,
            frontend: LengthFramer::new(message::FRONTEND_FORMAT),
            backend: LengthFramer::new(message::BACKEND_FORMAT),
            namespace: None,
            statements: BoundedLru::new(MAX_STATEMENTS),
            portals: BoundedLru::new(MAX_PORTALS),
            pending: VecDeque::new(),
            batch: Batch::default(),
            stats: DbDecoderStats::default(),
            events: Vec::new(),
            backend_lost: false,
            answers_unpaired: false,
            last_backend_ns: 0,
            first: Vec::new(),
        }
    }

    /// `db.namespace` from the StartupMessage (the database, else the user).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// What was lost so far.
    /// The server accepted the client's SSLRequest: TLS follows, then the
    /// StartupMessage.
    pub fn tls_accepted(&self) -> bool {
        self.tls
    }

    pub fn stats(&self) -> DbDecoderStats {
        let mut stats = self.stats;
        stats.resyncs += self.frontend.losses + self.backend.losses;
        stats.bytes_skipped += self.frontend.skipped_bytes + self.backend.skipped_bytes;
        stats.statements_evicted += self.statements.evicted();
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
        self.feed_segment(direction, captured, gap, &[], ts_ns, out);
    }

    /// [`Self::feed`] with the segment's last bytes copied apart (see
    /// [`crate::protocols::db::DbConnection::feed_with_tail`]): the server's
    /// answers are followed into them, or found there after a loss.
    fn feed_segment(
        &mut self,
        direction: Direction,
        captured: &[u8],
        missing: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        match direction {
            Direction::Egress => self.feed_frontend(captured, missing, ts_ns, out),
            Direction::Ingress => self.feed_backend(captured, missing, tail, ts_ns, out),
        }
    }

    /// The connection closed: what still waits for a result ends partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        while let Some(pending) = self.pending.pop_front() {
            self.close_unanswered(pending, ts_ns, out);
        }
    }

    fn feed_frontend(&mut self, captured: &[u8], gap: u64, ts_ns: u64, out: &mut Vec<DbOperation>) {
        if self.phase == Phase::Ignored || (self.tls && is_tls_record(captured)) {
            self.stats.bytes_skipped += captured.len() as u64 + gap;
            return;
        }
        if self.phase == Phase::Start {
            // The untyped first message, gathered across segments up to its length.
            self.first
                .extend_from_slice(&captured[..captured.len().min(MAX_FIRST - self.first.len())]);
            let declared = self
                .first
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let complete = declared.is_some_and(|len| self.first.len() >= len.min(MAX_FIRST));
            let typed = self.first.first().is_some_and(|b| *b != 0);
            if !complete && !typed && gap == 0 && self.first.len() < MAX_FIRST {
                return;
            }
            let untyped =
                self.first.first() == Some(&0) && declared.is_none_or(|len| len <= MAX_FIRST);
            let first = std::mem::take(&mut self.first);
            if !untyped {
                // A message type byte: joined mid-stream.
                self.phase = Phase::Ready;
                return self.feed_frontend(&first, gap, ts_ns, out);
            }
            match parse_first(&first) {
                Some(FirstMessage::SslRequest | FirstMessage::GssEncRequest) => {
                    self.phase = Phase::EncryptionRequested;
                    return;
                }
                Some(FirstMessage::Cancel) => {
                    self.phase = Phase::Ignored;
                    return;
                }
                Some(FirstMessage::Startup(startup)) => {
                    self.namespace = startup.database.or(startup.user);
                    self.phase = Phase::Ready;
                    return;
                }
                // Joined mid-stream: typed messages from here on.
                None => {
                    self.phase = Phase::Ready;
                    return self.feed_frontend(&first, gap, ts_ns, out);
                }
            }
        }
        if self.phase == Phase::EncryptionRequested {
            // The answer was not seen; a plaintext startup may still follow.
            self.phase = Phase::Start;
            return self.feed_frontend(captured, gap, ts_ns, out);
        }
        let mut events = std::mem::take(&mut self.events);
        self.frontend.feed(captured, gap, ts_ns, &mut events);
        for event in events.drain(..) {
            match event {
                FrameEvent::Frame(frame) => {
                    if std::mem::take(&mut self.backend_lost) {
                        // A client that writes again has read its results (ping-pong): those
                        // lost with the backend's framing end where the backend was last seen.
                        while let Some(pending) = self.pending.pop_front() {
                            self.close_unanswered_if_open(pending, self.last_backend_ns, out);
                        }
                    }
                    self.on_frontend(&frame);
                }
                FrameEvent::Lost => {
                    self.batch.partial = true;
                    self.pending.iter_mut().for_each(|p| p.partial = true);
                }
                FrameEvent::Regained | FrameEvent::EndRegained => {}
            }
        }
        self.events = events;
    }

    fn feed_backend(
        &mut self,
        captured: &[u8],
        gap: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        let mut input = captured;
        if self.tls && is_tls_record(input) {
            self.stats.bytes_skipped += input.len() as u64 + gap;
            return;
        }
        match self.phase {
            Phase::Ignored => return,
            Phase::EncryptionRequested => {
                match input.first() {
                    Some(b'S' | b'G') => {
                        self.tls = true;
                        self.phase = Phase::Start;
                    }
                    Some(b'N') => self.phase = Phase::Start,
                    _ => {}
                }
                input = input.get(1..).unwrap_or_default();
                if input.is_empty() {
                    return;
                }
            }
            Phase::Start => {
                // The server spoke first: joined mid-stream.
                self.phase = Phase::Ready;
                self.backend = LengthFramer::new_lost(message::BACKEND_FORMAT);
            }
            Phase::Ready => {}
        }
        if self.tls && is_tls_record(input) {
            self.stats.bytes_skipped += input.len() as u64 + gap;
            return;
        }
        self.last_backend_ns = ts_ns;
        let mut events = std::mem::take(&mut self.events);
        let skipped_before = self.backend.skipped_bytes;
        self.backend
            .feed_with_tail(input, gap, tail, ts_ns, &mut events);
        // Bytes read without framing are the answer being read: the result
        // lost before a resync, or the rest of a segment after a loss.
        if let Some(front) = self.pending.front_mut() {
            front.response_bytes += self.backend.skipped_bytes - skipped_before;
        }
        for (i, event) in events.iter().enumerate() {
            match event {
                FrameEvent::Frame(frame) => self.on_backend(frame, out),
                FrameEvent::Lost => {
                    self.backend_lost = true;
                    self.answers_unpaired = false;
                    self.pending.iter_mut().for_each(|p| {
                        p.answer_lost = true;
                        p.rows_lost = true;
                    });
                }
                FrameEvent::Regained => self.regain_for_one_result(),
                FrameEvent::EndRegained => {
                    let answers = events.get(i + 1..).unwrap_or_default();
                    self.regain_at_end(answers.iter().filter(|e| answers_one(e)).count());
                }
            }
        }
        events.clear();
        self.events = events;
    }

    /// The backend's framing came back at the end of a read, with `answers`
    /// operation results (CommandComplete, EmptyQueryResponse,
    /// PortalSuspended, ErrorResponse) in the messages that run to its end.
    /// When the requests pending are one batch (up to its Sync, or one
    /// simple query) awaiting exactly that many results, none was in the
    /// lost bytes: they held rows and notices only, and the operations are
    /// whole. Otherwise the results are not paired at all.
    fn regain_at_end(&mut self, answers: usize) {
        if answers > 0 && self.awaited_in_one_batch() == Some(answers) {
            self.answers_not_lost();
        } else {
            // Earlier results were lost too: pairing these with the oldest
            // requests would give them another request's tag or error.
            self.answers_unpaired = true;
        }
    }

    /// The backend's framing came back at a read that starts with messages
    /// (or at a ReadyForQuery amid one). When one request waits for one
    /// result, the next result is its: the client writes nothing else
    /// before it has read that one (a write would have closed it, its
    /// answer lost), so the bytes lost held rows and notices only.
    fn regain_for_one_result(&mut self) {
        if self.awaited_in_one_batch() == Some(1) {
            self.answers_not_lost();
        }
    }

    /// The lost bytes held no result of what is pending.
    fn answers_not_lost(&mut self) {
        self.pending.iter_mut().for_each(|p| p.answer_lost = false);
        self.backend_lost = false;
    }

    /// The results the pending requests await, when they are one batch (up
    /// to its Sync, or one simple query).
    fn awaited_in_one_batch(&self) -> Option<usize> {
        let mut awaited = 0;
        for (i, pending) in self.pending.iter().enumerate() {
            match &pending.step {
                Step::Simple(statements) => awaited += statements.len(),
                Step::Execute => {
                    awaited += 1;
                    continue;
                }
                Step::Sync => {}
                _ => continue,
            }
            return (i + 1 == self.pending.len()).then_some(awaited);
        }
        None
    }

    fn statement(text: &[u8], cut: bool) -> Arc<Statement> {
        let text = sql_text(text);
        Self::statement_of_text(&text, cut)
    }

    fn statement_of_text(text: &str, cut: bool) -> Arc<Statement> {
        Arc::new(Statement {
            summary: summarize(text, SqlDialect::Postgres, MAX_TEXT),
            cut,
        })
    }

    fn push(&mut self, pending: Pending) {
        self.stats.push_pending(&mut self.pending, pending);
    }

    fn on_frontend(&mut self, frame: &Frame) {
        let bytes = wire_len(frame);
        if self.batch.bytes == 0 {
            self.batch.start_ns = frame.start_ns;
        }
        match parse_frontend(frame.tag, &frame.body) {
            Frontend::Query { text } => {
                let statements = self.simple_statements(text, frame.cut);
                let mut pending =
                    Pending::new(Step::Simple(statements), None, frame.start_ns, bytes);
                pending.partial = frame.cut;
                self.push(pending);
            }
            Frontend::Parse {
                statement: name,
                text,
            } => {
                let statement = Self::statement(text, frame.cut);
                self.statements
                    .insert(name.to_vec(), Arc::clone(&statement));
                self.batch.bytes += bytes;
                self.push(Pending::new(
                    Step::Parse,
                    Some(statement),
                    frame.start_ns,
                    0,
                ));
            }
            Frontend::Bind {
                portal,
                statement: name,
            } => {
                let statement = self.statements.get(&name.to_vec()).cloned();
                self.portals.insert(portal.to_vec(), statement.clone());
                self.batch.bytes += bytes;
                self.push(Pending::new(Step::Bind, statement, frame.start_ns, 0));
            }
            Frontend::Describe => {
                self.batch.bytes += bytes;
                self.push(Pending::new(Step::Describe, None, frame.start_ns, 0));
            }
            Frontend::Execute { portal } => {
                let statement = self.portals.get(&portal.to_vec()).cloned().flatten();
                let mut pending = Pending::new(
                    Step::Execute,
                    statement,
                    self.batch.start_ns,
                    self.batch.bytes + bytes,
                );
                pending.partial = self.batch.partial || frame.cut;
                self.batch = Batch::default();
                self.push(pending);
            }
            Frontend::Sync => {
                match self.pending.iter_mut().rev().find(|p| p.makes_operation()) {
                    Some(last) => {
                        last.request_bytes += bytes + std::mem::take(&mut self.batch.bytes)
                    }
                    None => self.batch.bytes = 0,
                }
                self.batch.partial = false;
                self.push(Pending::new(Step::Sync, None, frame.start_ns, 0));
            }
            Frontend::Close { statement } => {
                if let Some(name) = statement {
                    self.statements.remove(&name.to_vec());
                }
                self.batch.bytes += bytes;
                self.push(Pending::new(Step::Close, None, frame.start_ns, 0));
            }
            Frontend::CopyData | Frontend::CopyDone | Frontend::CopyFail => {
                if let Some(copy) = self.pending.iter_mut().find(|p| p.makes_operation()) {
                    copy.request_bytes += bytes;
                }
            }
            Frontend::Flush => self.batch.bytes += bytes,
            Frontend::Terminate | Frontend::Other => {}
        }
    }

    /// The statements of a simple query, with SQL `PREPARE`/`EXECUTE`/`DEALLOCATE` applied.
    fn simple_statements(&mut self, text: &[u8], cut: bool) -> VecDeque<Arc<Statement>> {
        let text = query_text(text);
        let parts = match single_statement(&text) {
            // Most queries hold one statement: no need to split them first.
            Some(only) => {
                let statement = Self::statement_of_text(only, cut);
                if statement.summary.sanitized.is_empty() {
                    // Only spaces and comments: nothing runs.
                    return VecDeque::new();
                }
                return VecDeque::from([self.apply_sql_prepare(only, statement)]);
            }
            None => split_statements(&text, SqlDialect::Postgres),
        };
        let count = parts.len();
        if count > MAX_STATEMENTS_PER_QUERY {
            self.stats.pending_dropped += (count - MAX_STATEMENTS_PER_QUERY) as u64;
        }
        let mut statements = VecDeque::new();
        for (index, part) in parts.into_iter().take(MAX_STATEMENTS_PER_QUERY).enumerate() {
            let statement = Self::statement_of_text(part, cut && index + 1 == count);
            statements.push_back(self.apply_sql_prepare(part, statement));
        }
        statements
    }

    /// `PREPARE name AS …` remembers the text; `EXECUTE name` becomes that text.
    fn apply_sql_prepare(&mut self, sql: &str, statement: Arc<Statement>) -> Arc<Statement> {
        let mut words = sql.split_ascii_whitespace();
        let verb = words.next().unwrap_or_default();
        let name = |word: Option<&str>| -> Option<Vec<u8>> {
            let word = word?.split('(').next()?.trim_end_matches(';');
            (!word.is_empty()).then(|| word.to_ascii_lowercase().into_bytes())
        };
        if verb.eq_ignore_ascii_case("PREPARE") {
            let Some(key) = name(words.next()) else {
                return statement;
            };
            let lower = sql.to_ascii_lowercase();
            let body = lower
                .find(" as ")
                .or_else(|| lower.find("\nas "))
                .map(|at| &sql[at + 4..]);
            if let Some(body) = body {
                self.statements
                    .insert(key, Self::statement(body.as_bytes(), statement.cut));
            }
        } else if verb.eq_ignore_ascii_case("EXECUTE") {
            if let Some(prepared) =
                name(words.next()).and_then(|key| self.statements.get(&key).cloned())
            {
                return prepared;
            }
        } else if verb.eq_ignore_ascii_case("DEALLOCATE") {
            match words.next() {
                Some(word) if word.eq_ignore_ascii_case("PREPARE") => {
                    if let Some(key) = name(words.next()) {
                        self.statements.remove(&key);
                    }
                }
                Some(word) if word.trim_end_matches(';').eq_ignore_ascii_case("ALL") => {
                    self.statements.clear()
                }
                word => {
                    if let Some(key) = name(word) {
                        self.statements.remove(&key);
                    }
                }
            }
        }
        statement
    }

    fn operation(
        &self,
        pending: &Pending,
        statement: Option<&Statement>,
        end_ns: u64,
        tag: Option<&[u8]>,
    ) -> DbOperation {
        let mut op = DbOperation::new(DbSystem::Postgresql, pending.start_ns);
        op.end_ns = end_ns;
        op.exchange.namespace = self.namespace.clone();
        op.exchange.request_bytes = pending.request_bytes;
        op.exchange.response_bytes = pending.response_bytes;
        op.partial = pending.partial || pending.answer_lost || statement.is_none_or(|s| s.cut);
        let (tag_operation, tag_rows) = tag.map(command_tag_parts).unwrap_or_default();
        if let Some(statement) = statement {
            op.exchange.operation = statement.summary.operation.clone().unwrap_or_default();
            op.exchange.collection = statement.summary.collection.clone();
            op.exchange.query_text = (!statement.summary.sanitized.is_empty())
                .then(|| statement.summary.sanitized.clone());
        }
        if op.exchange.operation.is_empty() {
            op.exchange.operation = bounded_text(tag_operation, 64);
        }
        let counted = pending.data_rows > 0 && !pending.rows_lost;
        op.exchange.rows = tag_rows.or(counted.then_some(pending.data_rows));
        // A query's rows, or those a `RETURNING` sent back; other tags
        // count the rows affected.
        op.exchange.rows_returned =
            matches!(tag_operation, b"SELECT" | b"FETCH") || pending.data_rows > 0;
        op
    }

    fn emit(&mut self, op: DbOperation, out: &mut Vec<DbOperation>) {
        self.stats.emit(op, out);
    }

    fn fail(op: &mut DbOperation, error: ErrorFields) {
        op.exchange.error_type = Some(
            error
                .sqlstate
                .clone()
                .unwrap_or_else(|| "_OTHER".to_string()),
        );
        op.exchange.status_code = error.sqlstate;
        // `ERROR: relation "x" does not exist`, as psql shows it.
        op.exchange.error_message = match (error.severity, error.message) {
            (Some(severity), Some(message)) => Some(format!("{severity}: {message}")),
            (_, message) => message,
        };
    }

    /// A request that got no result (lost to the capture, or the connection ended).
    fn close_unanswered(&mut self, mut pending: Pending, end_ns: u64, out: &mut Vec<DbOperation>) {
        pending.partial = true;
        match std::mem::replace(&mut pending.step, Step::Sync) {
            Step::Simple(statements) => {
                for statement in statements {
                    let op = self.operation(&pending, Some(&statement), end_ns, None);
                    self.emit(op, out);
                    pending.request_bytes = 0;
                }
            }
            Step::Execute => {
                let op = self.operation(&pending, pending.statement.as_deref(), end_ns, None);
                self.emit(op, out);
            }
            _ => {}
        }
    }

    /// Drops acknowledgement steps at the head (their answers were lost),
    /// carrying their response bytes to what follows.
    fn skip_to_operation(&mut self) {
        while let Some(front) = self.pending.front() {
            if front.makes_operation() || matches!(front.step, Step::Sync) {
                break;
            }
            let carried = front.response_bytes;
            self.pending.pop_front();
            if let Some(next) = self.pending.front_mut() {
                next.response_bytes += carried;
            }
        }
    }

    fn on_backend(&mut self, frame: &Frame, out: &mut Vec<DbOperation>) {
        let end_ns = frame.end_ns;
        if let Some(front) = self.pending.front_mut() {
            front.response_bytes += wire_len(frame);
        }
        if self.answers_unpaired {
            if frame.tag != b'Z' {
                return;
            }
            self.answers_unpaired = false;
        }
        match parse_backend(frame.tag, &frame.body) {
            Backend::ReadyForQuery => {
                while let Some(pending) = self.pending.pop_front() {
                    let ends_batch = matches!(pending.step, Step::Sync | Step::Simple(_));
                    self.close_unanswered_if_open(pending, end_ns, out);
                    if ends_batch {
                        break;
                    }
                }
            }
            Backend::ParseComplete => self.acknowledge(|s| matches!(s, Step::Parse)),
            Backend::BindComplete => self.acknowledge(|s| matches!(s, Step::Bind)),
            Backend::CloseComplete => self.acknowledge(|s| matches!(s, Step::Close)),
            Backend::RowDescription | Backend::NoData => {
                self.acknowledge(|s| matches!(s, Step::Describe))
            }
            Backend::DataRow => {
                if let Some(front) = self.pending.front_mut() {
                    front.data_rows += 1;
                }
            }
            Backend::CommandComplete { tag } => self.complete(Some(tag), end_ns, frame.cut, out),
            Backend::EmptyQuery | Backend::PortalSuspended => {
                self.complete(None, end_ns, frame.cut, out)
            }
            Backend::Error(error) => self.on_error(error, end_ns, out),
            Backend::CopyIn | Backend::CopyOut | Backend::Other => {}
        }
    }

    fn close_unanswered_if_open(
        &mut self,
        pending: Pending,
        end_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        let open = match &pending.step {
            Step::Simple(statements) => !statements.is_empty(),
            Step::Execute => true,
            _ => false,
        };
        if open {
            self.close_unanswered(pending, end_ns, out);
        }
    }

    fn acknowledge(&mut self, is_step: fn(&Step) -> bool) {
        if self.pending.front().is_some_and(|p| is_step(&p.step)) {
            let carried = self.pending.pop_front().map_or(0, |p| p.response_bytes);
            if let Some(next) = self.pending.front_mut() {
                next.response_bytes += carried;
            }
        }
    }

    fn complete(&mut self, tag: Option<&[u8]>, end_ns: u64, cut: bool, out: &mut Vec<DbOperation>) {
        self.skip_to_operation();
        let Some(mut pending) = self.pending.pop_front() else {
            return self.unmatched(tag, None, end_ns, out);
        };
        match &mut pending.step {
            Step::Execute => {
                pending.partial |= cut;
                let op = self.operation(&pending, pending.statement.as_deref(), end_ns, tag);
                self.emit(op, out);
            }
            Step::Simple(statements) => {
                let statement = statements.pop_front();
                if statement.is_none() && tag.is_none() {
                    // An empty query string: nothing ran.
                    self.pending.push_front(pending);
                    return;
                }
                let mut op = self.operation(&pending, statement.as_deref(), end_ns, tag);
                op.partial |= cut || statement.is_none();
                self.emit(op, out);
                // The next statement starts where this one ended; the query's bytes were counted once.
                pending.start_ns = end_ns;
                pending.request_bytes = 0;
                pending.response_bytes = 0;
                pending.data_rows = 0;
                self.pending.push_front(pending);
            }
            _ => {
                // A Sync at the head: this result answers a request we did not see.
                self.pending.push_front(pending);
                self.unmatched(tag, None, end_ns, out);
            }
        }
    }

    /// A result with no request seen (joined mid-stream, or the request lost).
    fn unmatched(
        &mut self,
        tag: Option<&[u8]>,
        error: Option<ErrorFields>,
        end_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        self.stats.unmatched_replies += 1;
        let mut pending = Pending::new(Step::Execute, None, end_ns, 0);
        pending.partial = true;
        let mut op = self.operation(&pending, None, end_ns, tag);
        if let Some(error) = error {
            Self::fail(&mut op, error);
        }
        self.emit(op, out);
    }

    fn on_error(&mut self, error: ErrorFields, end_ns: u64, out: &mut Vec<DbOperation>) {
        let Some(mut pending) = self.pending.pop_front() else {
            // Before any request: a failed login. Not an operation.
            self.stats.unmatched_replies += 1;
            return;
        };
        match &mut pending.step {
            Step::Simple(statements) => {
                let statement = statements.pop_front();
                // The server runs none of the statements after a failed one.
                statements.clear();
                let mut op = self.operation(&pending, statement.as_deref(), end_ns, None);
                Self::fail(&mut op, error);
                self.emit(op, out);
                self.pending.push_front(pending);
            }
            Step::Sync => {
                self.pending.push_front(pending);
                self.unmatched(None, Some(error), end_ns, out);
            }
            _ => {
                // Parse, Bind, Describe or Execute failed: one failed operation for
                // the batch, the rest of it is skipped by the server up to Sync.
                let execute = self
                    .pending
                    .iter()
                    .position(|p| matches!(p.step, Step::Sync))
                    .and_then(|sync| {
                        self.pending
                            .iter()
                            .take(sync)
                            .find(|p| matches!(p.step, Step::Execute))
                            .map(|p| p.request_bytes)
                    });
                pending.request_bytes += execute.unwrap_or(0);
                let mut op = self.operation(&pending, pending.statement.as_deref(), end_ns, None);
                Self::fail(&mut op, error);
                self.emit(op, out);
                while self
                    .pending
                    .front()
                    .is_some_and(|p| !matches!(p.step, Step::Sync))
                {
                    self.pending.pop_front();
                }
            }
        }
    }
}

impl crate::protocols::db::DbConnection for PostgresConnection {
    fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        PostgresConnection::feed(self, direction, captured, gap, ts_ns, out)
    }

    fn feed_with_tail(
        &mut self,
        direction: Direction,
        captured: &[u8],
        missing: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        self.feed_segment(direction, captured, missing, tail, ts_ns, out)
    }

    fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        PostgresConnection::finish(self, ts_ns, out)
    }
}
