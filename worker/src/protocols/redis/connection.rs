//! One Redis connection's state: commands the client wrote wait in order for
//! their replies (Redis answers in order, pipelined or not), each pair is one
//! operation.
//!
//! Out-of-band data is not a reply: RESP3 pushes (`>`; invalidations,
//! pub/sub messages) and attributes (`|`) are skipped, and so are RESP2
//! pub/sub messages once the connection subscribed. In a transaction, each
//! command answered `+QUEUED` waits for EXEC, whose reply array holds their
//! results in order; `SELECT n` sets the namespace of what follows.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use zerotrace_shared::event::Direction;

use super::resp::{RespChild, RespEvent, RespReader, RespValue, Side};
use crate::protocols::db::{bounded_text, DbDecoderStats, DbOperation, DbSystem, PendingQueue};

/// Arguments shown as `?` in the query text before it is cut with `…`.
const MAX_SHOWN_ARGS: u64 = 16;

#[derive(Debug)]
struct Command {
    name: String,
    text: String,
    namespace: Option<String>,
    start_ns: u64,
    request_bytes: u64,
    /// Bytes of its reply read while the replies' framing was lost.
    unframed_reply_bytes: u64,
    partial: bool,
    /// Sent between MULTI and EXEC/DISCARD: answered `+QUEUED`, run by EXEC.
    in_transaction: bool,
    /// The namespace to go back to if this `SELECT` fails.
    select_previous: Option<Option<String>>,
}

/// The decoder for one Redis connection.
#[derive(Debug)]
pub struct RedisConnection {
    commands: RespReader,
    replies: RespReader,
    pending: PendingQueue<Command>,
    /// Transaction commands answered `+QUEUED`, waiting for EXEC's reply.
    queued: VecDeque<Command>,
    in_transaction: bool,
    namespace: Option<String>,
    subscribed: bool,
    /// Replies lost their framing: what is pending may have been answered in the lost bytes.
    replies_lost: bool,
    /// Commands lost their framing: replies may pair with the wrong command until idle.
    commands_lost: bool,
    last_reply_ns: u64,
    stats: DbDecoderStats,
    events: Vec<RespEvent>,
}

impl Default for RedisConnection {
    fn default() -> Self {
        Self::new()
    }
}

/// Commands whose arguments are all hidden (credentials, scripts).
fn hides_all_arguments(name: &str) -> bool {
    matches!(
        name,
        "AUTH" | "HELLO" | "MIGRATE" | "EVAL" | "EVAL_RO" | "EVALSHA" | "EVALSHA_RO" | "SCRIPT"
    )
}

fn is_subscription(name: &[u8]) -> bool {
    [
        &b"subscribe"[..],
        b"psubscribe",
        b"ssubscribe",
        b"unsubscribe",
        b"punsubscribe",
        b"sunsubscribe",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

fn is_pubsub_message(name: &[u8]) -> bool {
    [&b"message"[..], b"pmessage", b"smessage"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// `db.query.text` for a command: its name, its first argument (the key),
/// and `?` for every other argument, as the conventions' `SET mykey ?`.
fn query_text(name: &str, children: &[RespChild], count: u64) -> String {
    let mut text = name.to_string();
    for (index, child) in children
        .iter()
        .enumerate()
        .skip(1)
        .take(MAX_SHOWN_ARGS as usize)
    {
        text.push(' ');
        if index == 1 && !hides_all_arguments(name) {
            text.push_str(&bounded_text(&child.text, 128));
        } else {
            text.push('?');
        }
    }
    if count > MAX_SHOWN_ARGS + 1 {
        text.push_str(" …");
    }
    text
}

/// The error prefix of an error reply (`ERR`, `WRONGTYPE`), its status code.
fn error_prefix(text: &[u8]) -> String {
    let word = text.split(|b| *b == b' ').next().unwrap_or_default();
    bounded_text(word, 32)
}

impl RedisConnection {
    /// A connection seen from its start: the database is 0 until a `SELECT`.
    pub fn new() -> Self {
        Self::with_namespace(Some("0".to_string()), false)
    }

    /// A connection joined mid-stream: the database is unknown, and both
    /// directions wait for a segment that starts a value.
    pub fn joined_mid_stream() -> Self {
        Self::with_namespace(None, true)
    }

    fn with_namespace(namespace: Option<String>, lost: bool) -> Self {
        let reader = |side| {
            if lost {
                RespReader::new_lost(side)
            } else {
                RespReader::new(side)
            }
        };
        Self {
            commands: reader(Side::Commands),
            replies: reader(Side::Replies),
            pending: PendingQueue::default(),
            queued: VecDeque::new(),
            in_transaction: false,
            namespace,
            subscribed: false,
            replies_lost: false,
            commands_lost: false,
            last_reply_ns: 0,
            stats: DbDecoderStats::default(),
            events: Vec::new(),
        }
    }

    pub fn stats(&self) -> DbDecoderStats {
        let mut stats = self.stats;
        stats.resyncs += self.commands.losses + self.replies.losses;
        stats.bytes_skipped += self.commands.skipped_bytes + self.replies.skipped_bytes;
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
            Direction::Egress => {
                self.replies.peer_spoke();
                let skipped_before = self.commands.skipped_bytes;
                self.commands.feed(captured, gap, ts_ns, &mut events);
                // Unframed bytes are the rest of the command being written.
                let skipped = self.commands.skipped_bytes - skipped_before;
                for event in events.drain(..) {
                    match event {
                        RespEvent::Value(value) => self.on_command(&value, out),
                        RespEvent::Lost => {
                            self.commands_lost = true;
                            self.pending.iter_mut().for_each(|c| c.partial = true);
                        }
                    }
                }
                if let Some(command) = self.pending.back_mut() {
                    command.request_bytes += skipped;
                }
            }
            Direction::Ingress => {
                self.last_reply_ns = ts_ns;
                self.commands.peer_spoke();
                let skipped_before = self.replies.skipped_bytes;
                self.replies.feed(captured, gap, ts_ns, &mut events);
                // Unframed bytes are the reply being read.
                if let Some(command) = self.pending.front_mut() {
                    command.unframed_reply_bytes += self.replies.skipped_bytes - skipped_before;
                }
                for event in events.drain(..) {
                    match event {
                        RespEvent::Value(value) => self.on_reply(&value, out),
                        RespEvent::Lost => {
                            self.replies_lost = true;
                            self.pending.iter_mut().for_each(|c| c.partial = true);
                        }
                    }
                }
                if self.pending.is_empty() {
                    self.commands_lost = false;
                }
            }
        }
        self.events = events;
    }

    /// The connection closed: commands still waiting end partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        self.close_all_pending(ts_ns, out);
        while let Some(command) = self.queued.pop_front() {
            self.emit_unanswered(command, ts_ns, out);
        }
    }

    fn close_all_pending(&mut self, end_ns: u64, out: &mut Vec<DbOperation>) {
        self.pending.forget_dropped();
        while let Some(command) = self.pending.pop_front() {
            if command.name == "EXEC" {
                while let Some(queued) = self.queued.pop_front() {
                    self.emit_unanswered(queued, end_ns, out);
                }
            } else if command.name == "DISCARD" {
                self.queued.clear();
            }
            self.emit_unanswered(command, end_ns, out);
        }
    }

    fn emit_unanswered(&mut self, command: Command, end_ns: u64, out: &mut Vec<DbOperation>) {
        let mut op = self.operation(&command, end_ns);
        op.partial = true;
        self.emit(op, out);
    }

    fn operation(&self, command: &Command, end_ns: u64) -> DbOperation {
        let mut op = DbOperation::new(DbSystem::Redis, command.start_ns);
        op.end_ns = end_ns.max(command.start_ns);
        op.exchange.operation = command.name.clone();
        op.exchange.query_text = Some(command.text.clone());
        op.exchange.namespace = command.namespace.clone();
        op.exchange.request_bytes = command.request_bytes;
        op.exchange.response_bytes = command.unframed_reply_bytes;
        op.partial = command.partial || self.commands_lost;
        op
    }

    fn emit(&mut self, op: DbOperation, out: &mut Vec<DbOperation>) {
        self.stats.emit(op, out);
    }

    fn on_command(&mut self, value: &RespValue, out: &mut Vec<DbOperation>) {
        if std::mem::take(&mut self.replies_lost) {
            // A client that writes again has read its replies (ping-pong): those lost
            // with the replies' framing end where replies were last seen.
            self.close_all_pending(self.last_reply_ns, out);
        }
        let Some(first) = value.children.first() else {
            return;
        };
        if !matches!(value.kind, b'*' | b'i') {
            return;
        }
        let name = bounded_text(&first.text, 32).to_ascii_uppercase();
        let text = query_text(&name, &value.children, value.child_count);
        let mut command = Command {
            text,
            namespace: self.namespace.clone(),
            start_ns: value.start_ns,
            request_bytes: value.wire_bytes,
            unframed_reply_bytes: 0,
            partial: value.cut,
            in_transaction: self.in_transaction
                && !matches!(name.as_str(), "EXEC" | "DISCARD" | "MULTI"),
            select_previous: None,
            name,
        };
        match command.name.as_str() {
            "MULTI" => self.in_transaction = true,
            "EXEC" | "DISCARD" => self.in_transaction = false,
            "SELECT" => {
                if let Some(db) = value.children.get(1) {
                    // Commands pipelined after SELECT run in the new database.
                    command.select_previous =
                        Some(self.namespace.replace(bounded_text(&db.text, 16)));
                }
            }
            _ => {}
        }
        self.pending.push(&mut self.stats, command);
    }

    fn on_reply(&mut self, reply: &RespValue, out: &mut Vec<DbOperation>) {
        let first_child = reply
            .children
            .first()
            .map(|c| c.text.as_slice())
            .unwrap_or_default();
        let front_subscribes = self
            .pending
            .front()
            .is_some_and(|c| is_subscription(c.name.as_bytes()));
        match reply.kind {
            // An attribute precedes the reply it describes.
            b'|' => return,
            b'>' if !(is_subscription(first_child) && front_subscribes) => return,
            b'*' if self.subscribed
                && (is_pubsub_message(first_child)
                    || (is_subscription(first_child) && !front_subscribes)) =>
            {
                return;
            }
            _ => {}
        }
        let Some(command) = self.pending.answer(&mut self.stats) else {
            return;
        };
        let error = matches!(reply.kind, b'-' | b'!');
        if command.in_transaction && !error {
            // `+QUEUED`: its result comes in EXEC's reply.
            self.stats.push_pending(&mut self.queued, command);
            return;
        }
        if is_subscription(command.name.as_bytes()) {
            self.subscribed = true;
        }
        if error {
            if let Some(previous) = command.select_previous.clone() {
                self.namespace = previous;
            }
        }
        match command.name.as_str() {
            "EXEC" => self.exec_results(reply, out),
            "DISCARD" => self.queued.clear(),
            _ => {}
        }
        let mut op = self.operation(&command, reply.end_ns);
        op.exchange.response_bytes += reply.wire_bytes;
        op.partial |= reply.cut;
        if error {
            Self::fail(&mut op, &reply.text);
        }
        self.emit(op, out);
    }

    fn fail(op: &mut DbOperation, text: &[u8]) {
        let prefix = error_prefix(text);
        op.exchange.status_code = Some(prefix.clone());
        op.exchange.error_type = Some(prefix);
        op.exchange.error_message = Some(bounded_text(text, 256));
    }

    /// EXEC's reply: one element per queued command, in order; an error or a
    /// null (a WATCH that failed) applies to all of them.
    fn exec_results(&mut self, reply: &RespValue, out: &mut Vec<DbOperation>) {
        let mut children = reply.children.iter();
        while let Some(command) = self.queued.pop_front() {
            let mut op = self.operation(&command, reply.end_ns);
            op.partial |= reply.cut;
            match reply.kind {
                b'-' | b'!' => Self::fail(&mut op, &reply.text),
                b'*' if !reply.null => match children.next() {
                    Some(child) if matches!(child.kind, b'-' | b'!') => {
                        Self::fail(&mut op, &child.text)
                    }
                    Some(_) => {}
                    // Past the children kept: its result is not known.
                    None => op.partial = true,
                },
                _ => {}
            }
            self.emit(op, out);
        }
    }
}

impl crate::protocols::db::DbConnection for RedisConnection {
    fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        RedisConnection::feed(self, direction, captured, gap, ts_ns, out)
    }

    fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        RedisConnection::finish(self, ts_ns, out)
    }
}
