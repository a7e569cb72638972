//! PostgreSQL v3 messages out of frames: the fields the operation builder
//! needs, read from a body that may be cut short by the capture.

#![forbid(unsafe_code)]

use crate::protocols::db::{bounded_text, MAX_TEXT};
use crate::protocols::db_framing::{FrameFormat, FrameHeader};

/// StartupMessage protocol version 3.0 (and 3.2, PostgreSQL 18).
pub const PROTOCOL_3_0: u32 = 196_608;
pub const PROTOCOL_3_2: u32 = 196_610;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest message accepted as a frame (the server's own limit is 1 GiB).
const MAX_MESSAGE: u64 = 1 << 30;

/// Message types a client sends after the startup phase.
pub const FRONTEND_TYPES: &[u8] = b"QPBDESHCXdcfFp";
/// Message types a server sends.
pub const BACKEND_TYPES: &[u8] = b"RSKZTDCENn123tIsGHWdcAv";

fn header(bytes: &[u8]) -> Option<FrameHeader> {
    let [tag, a, b, c, d, ..] = *bytes else {
        return None;
    };
    let len = u64::from(u32::from_be_bytes([a, b, c, d]));
    (tag.is_ascii_alphanumeric() && (4..=MAX_MESSAGE).contains(&len)).then(|| FrameHeader {
        tag,
        body_len: len - 4,
    })
}

fn plausible(bytes: &[u8], types: &[u8]) -> bool {
    header(bytes).is_some_and(|h| types.contains(&h.tag))
}

/// Body bytes kept of a simple Query or a Parse: as much as the kernel
/// copies of a segment that starts one (its head capture), so that a query
/// the kernel copied whole is whole, and the statements of a batch joined
/// in one query (psycopg2's execute_batch: 100 INSERTs, 6 KB) are all split
/// out; each statement keeps `MAX_TEXT` of its text.
pub const KEEP_QUERY: usize = 16 * 1024;

/// Body bytes kept per message type: text-bearing ones, never rows or copy data.
fn keep(tag: u8) -> usize {
    match tag {
        b'D' | b'd' => 0,
        b'Q' | b'P' => KEEP_QUERY,
        _ => 2 * MAX_TEXT,
    }
}

/// A ReadyForQuery message: the server waits for the client after it.
fn find_ready(segment: &[u8]) -> Option<usize> {
    segment
        .windows(6)
        .position(|w| w[..5] == *b"Z\0\0\0\x05" && matches!(w[5], b'I' | b'T' | b'E'))
}

/// Frontend messages: a client write usually starts at a message.
pub const FRONTEND_FORMAT: FrameFormat = FrameFormat {
    header_len: 5,
    parse_header: header,
    keep_body: keep,
    resync: |segment| plausible(segment, FRONTEND_TYPES).then_some(0),
    tail_resync: |_| None,
};

/// Whether a backend message of type `tag` may declare `len` (the length
/// field, itself included): the fixed-size ones exactly, the short ones within
/// bounds. A read that starts inside a result's rows (`row 1234…`) may begin
/// with a type byte and four bytes of text: these rules turn most such
/// guesses down.
fn backend_len_fits(tag: u8, len: u64) -> bool {
    match tag {
        b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c' => len == 4,
        b'Z' => len == 5,
        b'K' => (12..=268).contains(&len),
        b'C' | b'G' | b'H' | b'W' => (5..=256).contains(&len),
        b'R' => (8..=65_536).contains(&len),
        b'S' | b'E' | b'N' | b'A' | b'v' => (5..=65_536).contains(&len),
        b'T' | b'D' | b't' => len >= 6,
        _ => true,
    }
}

/// Whether a segment read after the framing was lost starts with backend
/// messages: each header within the captured bytes has a server's type and a
/// length that fits it, and the first message ends within them (a guess
/// whose length runs past what can be checked would swallow the answers that
/// follow).
fn starts_backend_messages(segment: &[u8]) -> bool {
    let mut at = 0usize;
    let mut first = true;
    while let Some(rest) = segment.get(at..).filter(|rest| rest.len() >= 5) {
        let Some(h) = header(rest).filter(|h| BACKEND_TYPES.contains(&h.tag)) else {
            return false;
        };
        if !backend_len_fits(h.tag, h.body_len + 4) {
            return false;
        }
        if h.tag == b'Z'
            && rest
                .get(5)
                .is_some_and(|s| !matches!(s, b'I' | b'T' | b'E'))
        {
            return false;
        }
        let next = usize::try_from(h.body_len)
            .ok()
            .and_then(|len| at.checked_add(5)?.checked_add(len));
        match next {
            Some(next) if next <= segment.len() => at = next,
            _ => return !first,
        }
        first = false;
    }
    !first
}

/// Backend messages: resync at a segment that starts with checked messages
/// (reads after a request usually do), else at a ReadyForQuery.
pub const BACKEND_FORMAT: FrameFormat = FrameFormat {
    header_len: 5,
    parse_header: header,
    keep_body: keep,
    resync: |segment| {
        if starts_backend_messages(segment) {
            Some(0)
        } else {
            find_ready(segment)
        }
    },
    tail_resync: ends_an_answer,
};

/// Where, in a segment's last bytes, backend messages start that run to its
/// end and end an answer: a ReadyForQuery (`CommandComplete` `SELECT 5000`,
/// then `Z`), or a CommandComplete or ErrorResponse whose ReadyForQuery the
/// server sent apart (a query that failed after sending rows: its error
/// ends one read, its `Z` is the next). Each message must have a server's
/// type and a length that fits it, the last one a well-formed body; the
/// earliest such start is taken (a false one inside a row can only end on a
/// real message boundary, at worst adding a row's worth of guessed `D`).
fn ends_an_answer(tail: &[u8]) -> Option<usize> {
    (0..tail.len()).find(|&start| chain_ends_an_answer(tail, start))
}

/// Whether backend messages from `start` follow one another to the end of
/// `tail`, the last of them ending an answer (and none before it a `Z`).
fn chain_ends_an_answer(tail: &[u8], start: usize) -> bool {
    let mut at = start;
    loop {
        let Some(h) = tail
            .get(at..)
            .and_then(header)
            .filter(|h| BACKEND_TYPES.contains(&h.tag))
            .filter(|h| backend_len_fits(h.tag, h.body_len + 4))
        else {
            return false;
        };
        let Some(end) = usize::try_from(h.body_len)
            .ok()
            .and_then(|len| at.checked_add(5)?.checked_add(len))
            .filter(|end| *end <= tail.len())
        else {
            return false;
        };
        if end == tail.len() {
            return ends_with(h.tag, &tail[at + 5..]);
        }
        if h.tag == b'Z' {
            return false;
        }
        at = end;
    }
}

/// Whether a whole message of type `tag` with this body ends an answer.
fn ends_with(tag: u8, body: &[u8]) -> bool {
    match (tag, body) {
        (b'Z', [status]) => matches!(status, b'I' | b'T' | b'E'),
        // A command tag: `SELECT 5000`, `INSERT 0 1`, `CREATE TABLE`: upper
        // case words and counts (a row's text cut by the read's end rarely
        // looks like one).
        (b'C', [first, text @ .., 0]) => {
            first.is_ascii_uppercase()
                && text
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
        }
        (b'E', _) => well_formed_error(body),
        _ => false,
    }
}

/// An ErrorResponse body: fields (a type byte, then text up to a NUL) up to
/// the NUL that ends the list, among them a five-character SQLSTATE (`C`).
fn well_formed_error(body: &[u8]) -> bool {
    let mut rest = body;
    let mut sqlstate = false;
    while let [kind, after @ ..] = rest {
        if *kind == 0 {
            return after.is_empty() && sqlstate;
        }
        let Some(nul) = memchr::memchr(0, after) else {
            return false;
        };
        let text = &after[..nul];
        if !kind.is_ascii_alphabetic() || text.iter().any(|b| *b < 0x20 && *b != b'\n') {
            return false;
        }
        sqlstate |= *kind == b'C' && text.len() == 5 && text.iter().all(u8::is_ascii_alphanumeric);
        rest = &after[nul + 1..];
    }
    false
}

/// Reads NUL-terminated strings from a message body.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The next string; `None` when the body ends before its NUL (cut).
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = memchr::memchr(0, self.rest)?;
        let (text, rest) = self.rest.split_at(end);
        self.rest = &rest[1..];
        Some(text)
    }

    /// The next string, or what is left when it was cut.
    fn cstr_or_rest(&mut self) -> &'a [u8] {
        self.cstr()
            .unwrap_or_else(|| std::mem::take(&mut self.rest))
    }
}

/// The parameters of a StartupMessage body (after the length).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Startup {
    pub user: Option<String>,
    pub database: Option<String>,
}

/// What the first (untyped) client message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstMessage {
    Startup(Startup),
    SslRequest,
    GssEncRequest,
    Cancel,
}

/// Parses an untyped message: 4-byte length, 4-byte code, body.
pub fn parse_first(bytes: &[u8]) -> Option<FirstMessage> {
    let [a, b, c, d, e, f, g, h, ref body @ ..] = *bytes else {
        return None;
    };
    let len = u32::from_be_bytes([a, b, c, d]);
    let code = u32::from_be_bytes([e, f, g, h]);
    match code {
        SSL_REQUEST if len == 8 => Some(FirstMessage::SslRequest),
        GSSENC_REQUEST if len == 8 => Some(FirstMessage::GssEncRequest),
        CANCEL_REQUEST if len == 16 => Some(FirstMessage::Cancel),
        PROTOCOL_3_0 | PROTOCOL_3_2 if (9..=10_000).contains(&len) => {
            let mut fields = Fields { rest: body };
            let mut startup = Startup::default();
            while let Some(key) = fields.cstr() {
                if key.is_empty() {
                    break;
                }
                let Some(value) = fields.cstr() else { break };
                match key {
                    b"user" => startup.user = Some(bounded_text(value, 256)),
                    b"database" => startup.database = Some(bounded_text(value, 256)),
                    _ => {}
                }
            }
            Some(FirstMessage::Startup(startup))
        }
        _ => None,
    }
}

/// A frontend message, with the fields the decoder uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend<'a> {
    Query {
        text: &'a [u8],
    },
    Parse {
        statement: &'a [u8],
        text: &'a [u8],
    },
    Bind {
        portal: &'a [u8],
        statement: &'a [u8],
    },
    Describe,
    Execute {
        portal: &'a [u8],
    },
    Sync,
    Flush,
    Close {
        statement: Option<&'a [u8]>,
    },
    Terminate,
    CopyData,
    CopyDone,
    CopyFail,
    Other,
}

pub fn parse_frontend(tag: u8, body: &[u8]) -> Frontend<'_> {
    let mut fields = Fields { rest: body };
    match tag {
        b'Q' => Frontend::Query {
            text: fields.cstr_or_rest(),
        },
        b'P' => {
            let statement = fields.cstr_or_rest();
            Frontend::Parse {
                statement,
                text: fields.cstr_or_rest(),
            }
        }
        b'B' => {
            let portal = fields.cstr_or_rest();
            Frontend::Bind {
                portal,
                statement: fields.cstr_or_rest(),
            }
        }
        b'D' => Frontend::Describe,
        b'E' => Frontend::Execute {
            portal: fields.cstr_or_rest(),
        },
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'C' => {
            let kind = body.first().copied();
            let mut fields = Fields {
                rest: body.get(1..).unwrap_or_default(),
            };
            Frontend::Close {
                statement: (kind == Some(b'S')).then(|| fields.cstr_or_rest()),
            }
        }
        b'X' => Frontend::Terminate,
        b'd' => Frontend::CopyData,
        b'c' => Frontend::CopyDone,
        b'f' => Frontend::CopyFail,
        _ => Frontend::Other,
    }
}

/// The fields of an ErrorResponse the decoder keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    pub severity: Option<String>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
}

/// A backend message, with the fields the decoder uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend<'a> {
    ReadyForQuery,
    RowDescription,
    DataRow,
    CommandComplete {
        tag: &'a [u8],
    },
    EmptyQuery,
    PortalSuspended,
    Error(ErrorFields),
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    CopyIn,
    CopyOut,
    /// Messages that do not move an operation along (notices, parameters…).
    Other,
}

pub fn parse_backend(tag: u8, body: &[u8]) -> Backend<'_> {
    match tag {
        b'Z' => Backend::ReadyForQuery,
        b'T' => Backend::RowDescription,
        b'D' => Backend::DataRow,
        b'C' => Backend::CommandComplete {
            tag: Fields { rest: body }.cstr_or_rest(),
        },
        b'I' => Backend::EmptyQuery,
        b's' => Backend::PortalSuspended,
        b'E' => Backend::Error(parse_error(body)),
        b'1' => Backend::ParseComplete,
        b'2' => Backend::BindComplete,
        b'3' => Backend::CloseComplete,
        b'n' => Backend::NoData,
        b'G' => Backend::CopyIn,
        b'H' => Backend::CopyOut,
        _ => Backend::Other,
    }
}

fn parse_error(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut rest = body;
    while let [code, tail @ ..] = rest {
        if *code == 0 {
            break;
        }
        let mut reader = Fields { rest: tail };
        let value = reader.cstr_or_rest();
        match code {
            b'V' => fields.severity = Some(bounded_text(value, 16)),
            b'S' if fields.severity.is_none() => fields.severity = Some(bounded_text(value, 16)),
            b'C' if value.len() == 5 => fields.sqlstate = Some(bounded_text(value, 5)),
            b'M' => fields.message = Some(bounded_text(value, 512)),
            _ => {}
        }
        rest = reader.rest;
    }
    fields
}

/// Operation and row count from a CommandComplete tag (`INSERT 0 1`, `SELECT 5`, `CREATE TABLE`).
pub fn command_tag(tag: &[u8]) -> (String, Option<u64>) {
    let (operation, rows) = command_tag_parts(tag);
    (bounded_text(operation, 64), rows)
}

/// [`command_tag`] without allocating: the operation's bytes and the row count.
pub fn command_tag_parts(tag: &[u8]) -> (&[u8], Option<u64>) {
    let tag = &tag[..tag.len().min(64)];
    let operation = tag.split(|b| *b == b' ').next().unwrap_or_default();
    let counted = matches!(
        operation,
        b"SELECT" | b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" | b"FETCH" | b"MOVE" | b"COPY"
    );
    let rows = if counted {
        tag.rsplit(|b| *b == b' ')
            .next()
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse().ok())
    } else {
        None
    };
    (operation, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_regains_framing_at_the_messages_that_end_an_answer() {
        let complete = b"C\0\0\0\x10SELECT 5000\0";
        let ready = b"Z\0\0\0\x05I";
        // Row bytes, then CommandComplete and ReadyForQuery.
        let mut tail = b"filler   \0\0\0\x01 ".to_vec();
        let start = tail.len();
        tail.extend_from_slice(complete);
        tail.extend_from_slice(ready);
        assert_eq!(ends_an_answer(&tail), Some(start));
        // CommandComplete alone at the end (its Z read apart), and a
        // ReadyForQuery alone.
        assert_eq!(ends_an_answer(&tail[..tail.len() - 6]), Some(start));
        assert_eq!(ends_an_answer(b"xxxxZ\0\0\0\x05T"), Some(4));
        // The error of a query that failed after sending rows, as
        // PostgreSQL 15 sends it, its ReadyForQuery read apart.
        let error =
            b"E\0\0\0\x41SERROR\0VERROR\0C22012\0Mdivision by zero\0Fint.c\0L869\0Rint4div\0\0";
        let mut failed = b"xxxx\0\0\0\x011".to_vec();
        failed.extend_from_slice(error);
        assert_eq!(ends_an_answer(&failed), Some(9));
        // Cut: no start. A bad status, or a tag that is no command's: none.
        assert_eq!(ends_an_answer(&tail[..tail.len() - 1]), None);
        assert_eq!(ends_an_answer(&failed[..failed.len() - 1]), None);
        let mut bad = tail.clone();
        bad.pop();
        bad.push(b'X');
        assert_eq!(ends_an_answer(&bad), None);
        assert_eq!(ends_an_answer(b"C\0\0\0\x08x\x01y\0"), None);
        assert_eq!(ends_an_answer(b"C\0\0\0\x0bAbcdef\0"), None);
        // An error without its SQLSTATE is no error of the server's.
        assert_eq!(ends_an_answer(b"E\0\0\0\x0eSERROR\0Mx\0\0"), None);
        // A message whose length does not land on the next breaks the chain.
        let mut broken = b"C\0\0\0\x11SELECT 5000\0".to_vec();
        broken.extend_from_slice(ready);
        assert_eq!(ends_an_answer(&broken), Some(broken.len() - 6));
    }

    #[test]
    fn lengths_below_four_are_not_headers() {
        // Found by the fuzz target: the body length was computed before the check.
        assert_eq!(header(b"T\0\0\0\0"), None);
        assert_eq!(
            header(b"T\0\0\0\x04"),
            Some(FrameHeader {
                tag: b'T',
                body_len: 0
            })
        );
    }

    #[test]
    fn command_tags() {
        assert_eq!(command_tag(b"INSERT 0 3"), ("INSERT".into(), Some(3)));
        assert_eq!(command_tag(b"SELECT 12"), ("SELECT".into(), Some(12)));
        assert_eq!(command_tag(b"CREATE TABLE"), ("CREATE".into(), None));
    }

    #[test]
    fn error_fields() {
        let body = b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0";
        let fields = parse_error(body);
        assert_eq!(fields.sqlstate.as_deref(), Some("42P01"));
        assert_eq!(fields.severity.as_deref(), Some("ERROR"));
        assert_eq!(
            fields.message.as_deref(),
            Some("relation \"x\" does not exist")
        );
        let _ = parse_error(b"SERR");
    }

    #[test]
    fn startup_parameters() {
        let mut msg = vec![0, 0, 0, 0, 0, 3, 0, 0];
        msg.extend_from_slice(b"user\0bob\0database\0shop\0\0");
        let len = u32::try_from(msg.len()).unwrap_or_default().to_be_bytes();
        msg[..4].copy_from_slice(&len);
        let Some(FirstMessage::Startup(s)) = parse_first(&msg) else {
            panic!("not a startup")
        };
        assert_eq!(
            (s.user.as_deref(), s.database.as_deref()),
            (Some("bob"), Some("shop"))
        );
    }
}
