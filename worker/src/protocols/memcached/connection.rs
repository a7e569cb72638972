//! One memcached connection's state: commands wait in order for their
//! replies (the text protocol answers in order; `noreply` commands get no
//! reply and end when sent). Retrieval commands and `stats` answer with
//! several lines up to `END`; the others with one line.

#![forbid(unsafe_code)]

use zerotrace_shared::event::Direction;

use super::line::{Line, LineEvent, LineReader};
use crate::protocols::db::{bounded_text, DbDecoderStats, DbOperation, DbSystem, PendingQueue};

/// Keys shown in the query text of a multi-key retrieval before `…`.
const MAX_SHOWN_KEYS: usize = 16;

/// Commands whose arguments after the key are followed by a data block.
fn is_storage(command: &[u8]) -> bool {
    matches!(
        command,
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas"
    )
}

/// Commands answered by lines up to `END`.
fn is_multi_line(command: &str) -> bool {
    matches!(command, "get" | "gets" | "gat" | "gats" | "stats")
}

/// Data bytes (with CRLF) after a command line: the `<bytes>` of a storage command.
pub fn command_data(line: &[u8]) -> Option<u64> {
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    if !is_storage(words.next()?) {
        return None;
    }
    let bytes = words.nth(3)?;
    std::str::from_utf8(bytes)
        .ok()?
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_add(2))
}

/// Data bytes (with CRLF) after a reply line: the `<bytes>` of `VALUE <key> <flags> <bytes> [<cas>]`.
pub fn reply_data(line: &[u8]) -> Option<u64> {
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    if words.next()? != b"VALUE" {
        return None;
    }
    let bytes = words.nth(2)?;
    std::str::from_utf8(bytes)
        .ok()?
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_add(2))
}

/// Command words, lower case as the protocol has them.
pub const COMMANDS: &[&str] = &[
    "get",
    "gets",
    "gat",
    "gats",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "delete",
    "incr",
    "decr",
    "touch",
    "flush_all",
    "version",
    "stats",
    "verbosity",
    "quit",
    "mn",
    "mg",
    "ms",
    "md",
    "ma",
    "me",
    "shutdown",
    "cache_memlimit",
];

/// Reply words a read can start with.
pub const REPLIES: &[&str] = &[
    "VALUE",
    "END",
    "STORED",
    "NOT_STORED",
    "EXISTS",
    "NOT_FOUND",
    "DELETED",
    "TOUCHED",
    "OK",
    "ERROR",
    "CLIENT_ERROR",
    "SERVER_ERROR",
    "STAT",
    "VERSION",
    "MN",
    "HD",
    "VA",
    "EN",
    "NF",
    "NS",
    "EX",
];

fn first_word(line: &[u8]) -> &[u8] {
    line.split(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
        .next()
        .unwrap_or_default()
}

fn starts_command(segment: &[u8]) -> bool {
    let word = first_word(segment);
    COMMANDS.iter().any(|c| c.as_bytes() == word)
}

fn starts_reply(segment: &[u8]) -> bool {
    let word = first_word(segment);
    REPLIES.iter().any(|r| r.as_bytes() == word)
        || (!word.is_empty() && word.iter().all(u8::is_ascii_digit))
}

/// Keys of a `get`/`gets` (after the name) or `gat`/`gats` (after the
/// expiration time); 0 for other commands.
fn retrieval_keys(words: &[&[u8]]) -> u64 {
    let before_keys = match words.first().copied() {
        Some(b"get" | b"gets") => 1,
        Some(b"gat" | b"gats") => 2,
        _ => return 0,
    };
    words.len().saturating_sub(before_keys) as u64
}

#[derive(Debug)]
struct Command {
    name: String,
    text: String,
    start_ns: u64,
    request_bytes: u64,
    response_bytes: u64,
    hits: u64,
    /// Keys a retrieval command asked for: it cannot hit more.
    keys: u64,
    /// The replies' framing was lost while this waited: VALUE lines may
    /// have gone by uncounted, so `hits` is the reply's only if it reached
    /// `keys`.
    hits_lost: bool,
    partial: bool,
}

/// The decoder for one memcached connection (text protocol).
#[derive(Debug)]
pub struct MemcachedConnection {
    commands: LineReader,
    replies: LineReader,
    pending: PendingQueue<Command>,
    replies_lost: bool,
    last_reply_ns: u64,
    stats: DbDecoderStats,
    events: Vec<LineEvent>,
}

impl Default for MemcachedConnection {
    fn default() -> Self {
        Self::new()
    }
}

/// `db.query.text`: the command and its keys (retrievals) or its key with `?`
/// for the other arguments (`set user:1 ? ? ?`).
fn query_text(words: &[&[u8]]) -> String {
    let Some((name, args)) = words.split_first() else {
        return String::new();
    };
    let name = bounded_text(name, 32);
    let mut text = name.clone();
    let (keys, hidden): (usize, usize) = match name.as_str() {
        "get" | "gets" => (args.len(), 0),
        // gat <exptime> <key>*
        "gat" | "gats" => (0, 0),
        _ => (1, args.len().saturating_sub(1)),
    };
    if matches!(name.as_str(), "gat" | "gats") {
        for (index, arg) in args.iter().enumerate().take(MAX_SHOWN_KEYS + 1) {
            text.push(' ');
            text.push_str(&if index == 0 {
                "?".to_string()
            } else {
                bounded_text(arg, 250)
            });
        }
    } else {
        for arg in args.iter().take(keys.min(MAX_SHOWN_KEYS)) {
            text.push(' ');
            text.push_str(&bounded_text(arg, 250));
        }
        for arg in args.iter().skip(keys).take(hidden) {
            text.push(' ');
            // `noreply` is no value: keep it.
            text.push_str(if *arg == b"noreply" { "noreply" } else { "?" });
        }
    }
    if args.len() > MAX_SHOWN_KEYS + 1 {
        text.push_str(" …");
    }
    text
}

impl MemcachedConnection {
    pub fn new() -> Self {
        Self {
            commands: LineReader::new(command_data, starts_command),
            replies: LineReader::new(reply_data, starts_reply),
            pending: PendingQueue::default(),
            replies_lost: false,
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
                        LineEvent::Line(line) => self.on_command(&line, out),
                        LineEvent::Lost => self.pending.iter_mut().for_each(|c| c.partial = true),
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
                    command.response_bytes += self.replies.skipped_bytes - skipped_before;
                }
                for event in events.drain(..) {
                    match event {
                        LineEvent::Line(line) => self.on_reply(&line, out),
                        LineEvent::Lost => {
                            self.replies_lost = true;
                            self.pending.iter_mut().for_each(|c| {
                                c.partial = true;
                                c.hits_lost = true;
                            });
                        }
                    }
                }
            }
        }
        self.events = events;
    }

    /// The connection closed: commands still waiting end partial.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        while let Some(mut command) = self.pending.pop_front() {
            command.partial = true;
            self.emit(command, ts_ns, None, out);
        }
    }

    fn on_command(&mut self, line: &Line, out: &mut Vec<DbOperation>) {
        if std::mem::take(&mut self.replies_lost) {
            // The client writes again: the replies lost with the framing were read.
            let end = self.last_reply_ns;
            self.pending.forget_dropped();
            while let Some(command) = self.pending.pop_front() {
                self.emit(command, end, None, out);
            }
        }
        let words: Vec<&[u8]> = line
            .text
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        let Some(name) = words.first() else { return };
        let name = bounded_text(name, 32);
        let keys = retrieval_keys(&words);
        // A retrieval's keys past the line's kept text are counted, not shown:
        // only a line of another command is the less for it.
        let overflow_lost = line.overflowed && keys == 0;
        let command = Command {
            text: query_text(&words),
            start_ns: line.start_ns,
            request_bytes: line.wire_bytes,
            response_bytes: 0,
            hits: 0,
            keys: keys + line.words_not_kept,
            hits_lost: false,
            partial: line.cut || overflow_lost,
            name,
        };
        if command.name == "quit" {
            return;
        }
        if words.last().is_some_and(|w| *w == b"noreply") {
            // No reply will come: it ends when it is sent.
            let end = line.end_ns;
            return self.emit(command, end, None, out);
        }
        self.pending.push(&mut self.stats, command);
    }

    fn on_reply(&mut self, line: &Line, out: &mut Vec<DbOperation>) {
        let word = first_word(&line.text);
        if self.pending.answering_dropped() && matches!(word, b"VALUE" | b"STAT") {
            return; // a line of a dropped retrieval's reply: its END passes it
        }
        let Some(command) = self.pending.front_mut() else {
            self.pending.answer(&mut self.stats);
            return;
        };
        command.response_bytes += line.wire_bytes;
        command.partial |= line.cut || line.overflowed;
        let error = matches!(word, b"ERROR" | b"CLIENT_ERROR" | b"SERVER_ERROR");
        if is_multi_line(&command.name) && !error {
            match word {
                b"END" => {}
                b"VALUE" => {
                    command.hits += 1;
                    return;
                }
                _ => return, // STAT lines
            }
        }
        let Some(command) = self.pending.answer(&mut self.stats) else {
            return;
        };
        self.emit(command, line.end_ns, Some(&line.text), out);
    }

    fn emit(
        &mut self,
        command: Command,
        end_ns: u64,
        reply: Option<&[u8]>,
        out: &mut Vec<DbOperation>,
    ) {
        let mut op = DbOperation::new(DbSystem::Memcached, command.start_ns);
        op.end_ns = end_ns.max(command.start_ns);
        op.exchange.request_bytes = command.request_bytes;
        op.exchange.response_bytes = command.response_bytes;
        op.partial = command.partial || (reply.is_none() && !command.text.ends_with("noreply"));
        if matches!(command.name.as_str(), "get" | "gets" | "gat" | "gats")
            && (reply.is_some() || command.hits > 0)
            && (!command.hits_lost || command.hits >= command.keys)
        {
            op.exchange.rows = Some(command.hits);
            op.exchange.rows_returned = true;
        }
        if let Some(reply) = reply {
            let word = bounded_text(first_word(reply), 32);
            match word.as_str() {
                "ERROR" | "CLIENT_ERROR" | "SERVER_ERROR" => {
                    op.exchange.error_type = Some(word.clone());
                    op.exchange.status_code = Some(word);
                    op.exchange.error_message = Some(bounded_text(reply, 256));
                }
                "END" | "OK" | "VERSION" | "MN" => {}
                _ if word.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => op.exchange.status_code = Some(word),
            }
        }
        op.exchange.operation = command.name;
        op.exchange.query_text = Some(command.text);
        self.stats.emit(op, out);
    }
}

impl crate::protocols::db::DbConnection for MemcachedConnection {
    fn feed(
        &mut self,
        direction: Direction,
        captured: &[u8],
        gap: u64,
        ts_ns: u64,
        out: &mut Vec<DbOperation>,
    ) {
        MemcachedConnection::feed(self, direction, captured, gap, ts_ns, out)
    }

    fn finish(&mut self, ts_ns: u64, out: &mut Vec<DbOperation>) {
        MemcachedConnection::finish(self, ts_ns, out)
    }
}
