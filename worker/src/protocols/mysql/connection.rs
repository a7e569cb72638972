//! One MySQL/MariaDB connection's state: the handshake (server version,
//! capabilities, database), prepared statement ids, and the one command in
//! flight with the state of its reply (OK, ERR, a result set's column
//! definitions and rows, a prepare's definitions). The protocol has no
//! pipelining: a command's reply ends before the next command starts.

#![forbid(unsafe_code)]

use std::sync::Arc;

use zerotrace_shared::event::Direction;

use super::packet::{self, *};
use crate::protocols::db::{
    bounded_text, BoundedLru, DbDecoderStats, DbOperation, DbSystem, MAX_TEXT,
};
use crate::protocols::db_framing::{Frame, FrameEvent, LengthFramer};
use crate::protocols::sql_sanitize::{summarize, SqlDialect, SqlSummary};

/// Prepared statements remembered per connection (id → text).
pub const MAX_STATEMENTS: usize = 256;

#[derive(Debug)]
struct Statement {
    summary: SqlSummary,
    cut: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's greeting.
    Greeting,
    /// Greeting seen; the client's HandshakeResponse and the authentication exchange.
    Auth,
    Command,
    /// The login failed, or the greeting was not MySQL: nothing more to decode.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    First,
    ColumnDefs {
        left: u64,
    },
    ColumnsEof,
    Rows,
    /// A prepare's parameter and column definitions (and their EOFs) still to come.
    PrepareDefs {
        left: u64,
    },
    /// LOCAL INFILE: the client sends a file, then the server answers OK or ERR.
    LocalInfile,
}

#[derive(Debug)]
struct Command {
    code: u8,
    statement: Option<Arc<Statement>>,
    /// COM_INIT_DB's database.
    database: Option<String>,
    start_ns: u64,
    request_bytes: u64,
    response_bytes: u64,
    rows: u64,
    /// The server's framing was lost during the reply: rows went by
    /// uncounted, so their count is not the result's.
    rows_lost: bool,
    /// ... and the reply's end may have been in the lost bytes, unless
    /// framing came back at the end of a read that holds it.
    reply_lost: bool,
    affected: Option<u64>,
    partial: bool,
    reply: Reply,
}

/// The decoder for one MySQL or MariaDB connection.
#[derive(Debug)]
pub struct MysqlConnection {
    phase: Phase,
    system: DbSystem,
    server_capabilities: Option<u32>,
    capabilities: u32,
    handshake_seen: bool,
    tls: bool,
    namespace: Option<String>,
    client: LengthFramer,
    server: LengthFramer,
    statements: BoundedLru<u32, Arc<Statement>>,
    current: Option<Command>,
    last_server_ns: u64,
    /// A non-empty server segment was seen.
    server_seen: bool,
    stats: DbDecoderStats,
    events: Vec<FrameEvent>,
}

impl Default for MysqlConnection {
    fn default() -> Self {
        Self::new()
    }
}

fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17, 0x03, 0..=4, ..])
}

fn wire_len(frame: &Frame) -> u64 {
    4 + frame.body_len
}

impl MysqlConnection {
    pub fn new() -> Self {
        Self {
            phase: Phase::Greeting,
            system: DbSystem::Mysql,
            server_capabilities: None,
            capabilities: 0,
            handshake_seen: false,
            tls: false,
            namespace: None,
            client: LengthFramer::new(packet::CLIENT_FORMAT),
            server: LengthFramer::new(packet::SERVER_FORMAT),
            statements: BoundedLru::new(MAX_STATEMENTS),
            current: None,
            last_server_ns: 0,
            server_seen: false,
            stats: DbDecoderStats::default(),
            events: Vec::new(),
        }
    }

    /// `mysql`, or `mariadb` when the greeting's server version says so.
    pub fn system(&self) -> DbSystem {
        self.system
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The client sent an SSLRequest: TLS follows, then the handshake response.
    pub fn tls_requested(&self) -> bool {
        self.tls
    }

    pub fn stats(&self) -> DbDecoderStats {
        let mut stats = self.stats;
        stats.resyncs += self.client.losses + self.server.losses;
        stats.bytes_skipped += self.client.skipped_bytes + self.server.skipped_bytes;
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
    /// [`crate::protocols::db::DbConnection::feed_with_tail`]): a result's
    /// end is found there after its rows were lost.
    fn feed_segment(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        tail: &[u8],
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        if self.phase == Phase::Closed || (self.tls && is_tls_record(captured)) {
            self.stats.bytes_skipped += captured.len() as u64 + gap;
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        match direction {
            Direction::Egress => {
                self.client.feed(captured, gap, ts_ns, &mut events);
                for event in events.drain(..) {
                    match event {
                        FrameEvent::Frame(frame) => self.on_client(&frame, out),
                        FrameEvent::Lost => self.mark_partial(),
                        FrameEvent::Regained | FrameEvent::EndRegained => {}
                    }
                }
            }
            Direction::Ingress => {
                self.last_server_ns = ts_ns;
                let first_read = !self.server_seen;
                self.server_seen |= !captured.is_empty();
                if self.phase == Phase::Greeting
                    && first_read
                    && captured.len() >= 5
                    && !matches!(captured, [_, _, _, 0, 10, ..])
                {
                    // Not a greeting: joined mid-stream.
                    self.phase = Phase::Command;
                    self.server = LengthFramer::new_lost(packet::SERVER_FORMAT);
                }
                let skipped_before = self.server.skipped_bytes;
                self.server
                    .feed_with_tail(captured, gap, tail, ts_ns, &mut events);
                // Bytes read without framing belong to the reply being read.
                if let Some(command) = &mut self.current {
                    command.response_bytes += self.server.skipped_bytes - skipped_before;
                }
                for event in events.drain(..) {
                    match event {
                        FrameEvent::Frame(frame) => self.on_server(&frame, out),
                        FrameEvent::Lost => {
                            if let Some(command) = &mut self.current {
                                command.reply_lost = true;
                                command.rows_lost = true;
                            }
                        }
                        // The tail holds the last rows and the result's end:
                        // read on as rows (a loss in the column definitions,
                        // or before a later result set, stays partial).
                        FrameEvent::Regained => {}
                        FrameEvent::EndRegained => {
                            if let Some(command) = &mut self.current {
                                if command.reply == Reply::Rows {
                                    command.reply_lost = false;
                                }
                            }
                        }
                    }
                }
            }
        }
        self.events = events;
    }

    /// The connection closed: a command still waiting ends partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        if let Some(mut command) = self.current.take() {
            command.partial = true;
            self.finish_command(command, ts_ns, None, out);
        }
    }

    fn mark_partial(&mut self) {
        if let Some(command) = &mut self.current {
            command.partial = true;
        }
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities & CLIENT_DEPRECATE_EOF != 0
    }

    fn statement(text: &[u8], cut: bool) -> Arc<Statement> {
        let text = String::from_utf8_lossy(&text[..text.len().min(2 * MAX_TEXT)]);
        Arc::new(Statement {
            summary: summarize(&text, SqlDialect::Mysql, MAX_TEXT),
            cut,
        })
    }

    fn on_client(&mut self, frame: &Frame, out: &mut Vec<DbOperation>) {
        let body = frame.body.as_slice();
        match self.phase {
            Phase::Greeting | Phase::Auth if !self.handshake_seen && frame.tag >= 1 => {
                if let Some(response) = parse_handshake_response(body) {
                    self.capabilities =
                        response.capabilities & self.server_capabilities.unwrap_or(u32::MAX);
                    if response.ssl_request {
                        self.tls = true;
                    } else {
                        self.handshake_seen = true;
                        self.namespace = response.database;
                    }
                    self.phase = Phase::Auth;
                    return;
                }
                if self.phase == Phase::Auth {
                    return;
                }
                self.phase = Phase::Command;
            }
            Phase::Auth => return,
            Phase::Greeting => self.phase = Phase::Command,
            Phase::Command | Phase::Closed => {}
        }
        if frame.tag != 0 {
            // LOCAL INFILE data, or the rest of a packet over 16 MiB.
            if let Some(command) = &mut self.current {
                command.request_bytes += wire_len(frame);
            }
            return;
        }
        if let Some(mut open) = self.current.take() {
            // A new command while the last one is open: its reply was lost to the capture.
            open.partial = true;
            self.finish_command(open, self.last_server_ns, None, out);
        }
        let Some((&code, args)) = body.split_first() else {
            return;
        };
        let mut command = Command {
            code,
            statement: None,
            database: None,
            start_ns: frame.start_ns,
            request_bytes: wire_len(frame),
            response_bytes: 0,
            rows: 0,
            rows_lost: false,
            reply_lost: false,
            affected: None,
            partial: frame.cut,
            reply: Reply::First,
        };
        match code {
            COM_QUERY | COM_STMT_PREPARE => {
                let text = if code == COM_QUERY && self.capabilities & CLIENT_QUERY_ATTRIBUTES != 0
                {
                    Self::skip_query_attributes(args)
                } else {
                    Some(args)
                };
                command.statement = text.map(|text| Self::statement(text, frame.cut));
            }
            COM_STMT_EXECUTE => {
                let id = args
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                command.statement = id.and_then(|id| self.statements.get(&id).cloned());
            }
            COM_STMT_CLOSE => {
                if let Some(b) = args.get(..4) {
                    self.statements
                        .remove(&u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
                return;
            }
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            COM_INIT_DB => command.database = Some(bounded_text(args, 256)),
            COM_CHANGE_USER => {
                self.phase = Phase::Auth;
                return;
            }
            _ => {}
        }
        self.current = Some(command);
    }

    /// The query text after MySQL 8's query attributes (none are sent by most clients).
    fn skip_query_attributes(args: &[u8]) -> Option<&[u8]> {
        let (count, size) = lenenc(args)?;
        let (_sets, size2) = lenenc(&args[size..])?;
        (count == 0).then(|| &args[size + size2..])
    }

    fn on_server(&mut self, frame: &Frame, out: &mut Vec<DbOperation>) {
        let body = frame.body.as_slice();
        match self.phase {
            Phase::Greeting => {
                match parse_greeting(body) {
                    Some(greeting) => {
                        if greeting.server_version.contains("MariaDB") {
                            self.system = DbSystem::Mariadb;
                        }
                        self.server_capabilities = Some(greeting.capabilities);
                        self.phase = Phase::Auth;
                    }
                    None => self.phase = Phase::Closed,
                }
                return;
            }
            Phase::Auth => {
                match body.first() {
                    Some(0x00) => self.phase = Phase::Command,
                    Some(0xff) => self.phase = Phase::Closed,
                    _ => {} // auth switch, more auth data
                }
                return;
            }
            Phase::Command | Phase::Closed => {}
        }
        let deprecate_eof = self.deprecate_eof();
        let Some(command) = &mut self.current else {
            self.stats.unmatched_replies += 1;
            return;
        };
        command.response_bytes += wire_len(frame);
        command.partial |= frame.cut && matches!(command.reply, Reply::First);
        let first = body.first().copied();
        if first == Some(0xff)
            && !matches!(
                command.reply,
                Reply::ColumnDefs { .. } | Reply::PrepareDefs { .. }
            )
        {
            let error = parse_err(body);
            if let Some(command) = self.current.take() {
                self.finish_command(command, frame.end_ns, Some(error), out);
            }
            return;
        }
        let mut done = false;
        match command.reply {
            Reply::First => match first {
                Some(0x00) if command.code == COM_STMT_PREPARE => {
                    let field = |at: usize| {
                        body.get(at..at + 2)
                            .map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])))
                    };
                    let (columns, params) = (field(5), field(7));
                    if let (Some(id), Some(statement)) = (body.get(1..5), command.statement.clone())
                    {
                        self.statements
                            .insert(u32::from_le_bytes([id[0], id[1], id[2], id[3]]), statement);
                    }
                    let eofs = if deprecate_eof {
                        0
                    } else {
                        u64::from(params > 0) + u64::from(columns > 0)
                    };
                    let left = params + columns + eofs;
                    let Some(command) = &mut self.current else {
                        return;
                    };
                    if left == 0 {
                        done = true;
                    } else {
                        command.reply = Reply::PrepareDefs { left };
                    }
                }
                Some(0x00) => {
                    let (affected, status) = parse_ok(body);
                    command.affected = Some(command.affected.unwrap_or(0) + affected.unwrap_or(0));
                    done = status & SERVER_MORE_RESULTS_EXISTS == 0;
                }
                Some(0xfb) => command.reply = Reply::LocalInfile,
                _ => match lenenc(body) {
                    Some((0, _)) | None => {
                        command.partial = true;
                        done = true;
                    }
                    Some((columns, _)) => command.reply = Reply::ColumnDefs { left: columns },
                },
            },
            Reply::ColumnDefs { left } => {
                command.reply = match (left.saturating_sub(1), deprecate_eof) {
                    (0, true) => Reply::Rows,
                    (0, false) => Reply::ColumnsEof,
                    (left, _) => Reply::ColumnDefs { left },
                };
            }
            Reply::ColumnsEof => {
                if first != Some(0xfe) {
                    command.rows += 1;
                }
                command.reply = Reply::Rows;
            }
            Reply::Rows => {
                if ends_rows(body, frame.body_len, deprecate_eof) {
                    let status = if deprecate_eof {
                        parse_ok(body).1
                    } else {
                        parse_eof_status(body)
                    };
                    if status & SERVER_MORE_RESULTS_EXISTS == 0 {
                        done = true;
                    } else {
                        command.reply = Reply::First;
                    }
                } else {
                    command.rows += 1;
                }
            }
            Reply::PrepareDefs { left } => {
                if left <= 1 {
                    done = true;
                } else {
                    command.reply = Reply::PrepareDefs { left: left - 1 };
                }
            }
            Reply::LocalInfile => {
                let (affected, _) = parse_ok(body);
                command.affected = affected;
                done = true;
            }
        }
        if done {
            if let Some(command) = self.current.take() {
                self.finish_command(command, frame.end_ns, None, out);
            }
        }
    }

    fn finish_command(
        &mut self,
        command: Command,
        end_ns: u64,
        error: Option<ErrPacket>,
        out: &mut Vec<DbOperation>,
    ) {
        if error.is_none() {
            if let Some(database) = &command.database {
                self.namespace = Some(database.clone());
            }
        }
        let makes_operation = match command.code {
            COM_QUERY | COM_STMT_EXECUTE | COM_INIT_DB => true,
            COM_STMT_PREPARE => error.is_some(),
            _ => false,
        };
        if !makes_operation {
            return;
        }
        let mut op = DbOperation::new(self.system, command.start_ns);
        op.end_ns = end_ns.max(command.start_ns);
        op.exchange.namespace = self.namespace.clone();
        op.exchange.request_bytes = command.request_bytes;
        op.exchange.response_bytes = command.response_bytes;
        op.partial = command.partial || command.reply_lost;
        if let Some(database) = &command.database {
            op.exchange.operation = "USE".to_string();
            op.exchange.query_text = Some(format!("USE {database}"));
        }
        match &command.statement {
            Some(statement) => {
                op.exchange.operation = statement.summary.operation.clone().unwrap_or_default();
                op.exchange.collection = statement.summary.collection.clone();
                op.exchange.query_text = (!statement.summary.sanitized.is_empty())
                    .then(|| statement.summary.sanitized.clone());
                op.partial |= statement.cut;
                if error.is_none() && op.exchange.operation == "USE" {
                    let database = statement.summary.sanitized.split_ascii_whitespace().nth(1);
                    self.namespace =
                        database.map(|db| db.trim_matches('`').trim_end_matches(';').to_string());
                }
            }
            None if command.database.is_none() => op.partial = true,
            None => {}
        }
        op.exchange.rows = if command.rows_lost {
            None
        } else if command.rows > 0 || matches!(command.reply, Reply::Rows) {
            op.exchange.rows_returned = true;
            Some(command.rows)
        } else {
            command.affected
        };
        if let Some(error) = error {
            op.exchange.rows = None;
            op.exchange.rows_returned = false;
            op.exchange.status_code = Some(error.code.to_string());
            op.exchange.error_type = Some(error.code.to_string());
            op.exchange.error_message = Some(match error.sqlstate {
                Some(state) => format!("{state}: {}", error.message),
                None => error.message,
            });
        }
        self.stats.emit(op, out);
    }
}

impl crate::protocols::db::DbConnection for MysqlConnection {
    fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        MysqlConnection::feed(self, direction, captured, gap, ts_ns, out)
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
        MysqlConnection::finish(self, ts_ns, out)
    }
}
