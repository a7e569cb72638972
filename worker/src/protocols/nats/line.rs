//! NATS control lines (the client protocol's text operations, ending in
//! CRLF): which operation, and the fields the decoder uses. Operation names
//! are case-insensitive; fields are separated by runs of spaces or tabs
//! (clients write `PUB subject  5`, an empty reply field between two
//! spaces). Facts from the NATS client protocol reference.

#![forbid(unsafe_code)]

use zerotrace_shared::event::Direction;

/// Longest control line read: nats-server's default `max_control_line`.
pub const MAX_LINE: usize = 4096;
/// Largest payload size believed: nats-server's `max_payload` tops out at 64 MiB.
const MAX_PAYLOAD: u64 = 64 << 20;

/// One control line of either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The server's greeting (`INFO {json}`).
    Info,
    /// The client's `CONNECT {json}`: its `name`, and whether it asked for
    /// `+OK` after each operation.
    Connect {
        name: Option<String>,
        verbose: bool,
    },
    /// `PUB`/`HPUB` written, `MSG`/`HMSG` read: a message and its payload.
    Message(MessageLine),
    /// `SUB <subject> [queue group] <sid>`.
    Sub {
        subject: String,
        sid: String,
    },
    /// `UNSUB <sid> [max messages]`: with a maximum, the subscription ends
    /// after that many messages.
    Unsub {
        sid: String,
        after_max: bool,
    },
    Ping,
    Pong,
    Ok,
    /// `-ERR 'text'`: the text inside the quotes.
    Err(String),
}

/// A message's control line: `PUB <subject> [reply] <size>`, `HPUB <subject>
/// [reply] <header size> <size>`, `MSG <subject> <sid> [reply] <size>`,
/// `HMSG <subject> <sid> [reply] <header size> <size>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLine {
    pub subject: String,
    /// The subscription a message read came by (`MSG`, `HMSG`).
    pub sid: Option<String>,
    pub reply: Option<String>,
    /// Bytes of headers at the payload's start (0 without headers).
    pub header_size: u64,
    /// The payload's size, headers included; CRLF follows it.
    pub size: u64,
}

/// The operations each side writes: what the client writes, then what the server writes.
const CLIENT_OPS: [&[u8]; 7] = [
    b"CONNECT", b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG",
];
const SERVER_OPS: [&[u8]; 7] = [b"INFO", b"MSG", b"HMSG", b"PING", b"PONG", b"+OK", b"-ERR"];

/// The operation names a side writes, `direction` seen from the client.
pub fn operations(direction: Direction) -> &'static [&'static [u8]] {
    match direction {
        Direction::Egress => &CLIENT_OPS,
        Direction::Ingress => &SERVER_OPS,
    }
}

/// Whether `bytes` start with one of the side's operation names followed by
/// a separator or the line's end (what a segment that starts a line looks like).
pub fn starts_with_operation(bytes: &[u8], direction: Direction) -> bool {
    operations(direction).iter().any(|op| {
        bytes.len() > op.len()
            && bytes[..op.len()].eq_ignore_ascii_case(op)
            && matches!(bytes[op.len()], b' ' | b'\t' | b'\r' | b'\n')
    })
}

/// One control line (without its CRLF) of the side `direction`; `None` when
/// it is not one that side writes, or malformed.
pub fn parse(line: &[u8], direction: Direction) -> Option<Control> {
    let (op, rest) = split_op(line);
    let is = |name: &str| op.eq_ignore_ascii_case(name.as_bytes());
    let fields = || {
        rest.split(|b| *b == b' ' || *b == b'\t')
            .filter(|f| !f.is_empty())
    };
    match direction {
        Direction::Egress if is("PUB") => message(fields(), false, false).map(Control::Message),
        Direction::Egress if is("HPUB") => message(fields(), false, true).map(Control::Message),
        Direction::Egress if is("CONNECT") => connect(rest),
        Direction::Egress if is("SUB") => subscription(fields()),
        Direction::Egress if is("UNSUB") => unsubscription(fields()),
        Direction::Ingress if is("MSG") => message(fields(), true, false).map(Control::Message),
        Direction::Ingress if is("HMSG") => message(fields(), true, true).map(Control::Message),
        Direction::Ingress if is("INFO") => json_object(rest).then_some(Control::Info),
        Direction::Ingress if is("+OK") => rest.is_empty().then_some(Control::Ok),
        Direction::Ingress if is("-ERR") => Some(Control::Err(error_text(rest))),
        _ if is("PING") => fields().next().is_none().then_some(Control::Ping),
        _ if is("PONG") => fields().next().is_none().then_some(Control::Pong),
        _ => None,
    }
}

/// The operation name, and what follows its separator.
fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => (&line[..at], trim_start(&line[at..])),
        None => (line, &[]),
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let at = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[at..]
}

/// A message line's fields: the subject, a sid when the server writes it,
/// an optional reply subject, a header size when headers come, the size.
fn message<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
    with_sid: bool,
    with_headers: bool,
) -> Option<MessageLine> {
    let fields: Vec<&[u8]> = fields.take(6).collect();
    let fixed = 2 + usize::from(with_sid) + usize::from(with_headers);
    if fields.len() != fixed && fields.len() != fixed + 1 {
        return None;
    }
    let subject = subject(fields[0])?;
    let sid = if with_sid {
        Some(sid(fields[1])?)
    } else {
        None
    };
    let reply = if fields.len() == fixed + 1 {
        Some(self::subject(fields[1 + usize::from(with_sid)])?)
    } else {
        None
    };
    let size = number(fields[fields.len() - 1])?;
    let header_size = if with_headers {
        number(fields[fields.len() - 2])?
    } else {
        0
    };
    if header_size > size {
        return None;
    }
    Some(MessageLine {
        subject,
        sid,
        reply,
        header_size,
        size,
    })
}

/// SUB's subject and sid (a queue group may come between them).
fn subscription<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Option<Control> {
    let fields: Vec<&[u8]> = fields.take(4).collect();
    if !(2..=3).contains(&fields.len()) {
        return None;
    }
    Some(Control::Sub {
        subject: subject(fields[0])?,
        sid: sid(fields[fields.len() - 1])?,
    })
}

/// UNSUB's sid, and whether a maximum follows it.
fn unsubscription<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Option<Control> {
    let fields: Vec<&[u8]> = fields.take(3).collect();
    match fields[..] {
        [sid_field] => Some(Control::Unsub {
            sid: sid(sid_field)?,
            after_max: false,
        }),
        [sid_field, max] => {
            number(max)?;
            Some(Control::Unsub {
                sid: sid(sid_field)?,
                after_max: true,
            })
        }
        _ => None,
    }
}

/// A subscription id: letters and digits, at most 32 of them.
fn sid(field: &[u8]) -> Option<String> {
    let ok = field.len() <= 32 && field.iter().all(u8::is_ascii_alphanumeric);
    ok.then(|| String::from_utf8_lossy(field).into_owned())
}

/// A subject: printable text without spaces (the split took those).
fn subject(field: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(field).ok()?;
    if text.chars().any(char::is_control) {
        return None;
    }
    Some(text.to_owned())
}

fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = std::str::from_utf8(field).ok()?.parse().ok()?;
    (value <= MAX_PAYLOAD).then_some(value)
}

fn json_object(rest: &[u8]) -> bool {
    rest.first() == Some(&b'{')
}

/// CONNECT's JSON: the client's `name` and `verbose`. A line cut by the
/// capture has neither.
fn connect(rest: &[u8]) -> Option<Control> {
    if !json_object(rest) {
        return None;
    }
    let (name, verbose) = match serde_json::from_slice::<serde_json::Value>(rest) {
        Ok(value) => (
            value
                .get("name")
                .and_then(|n| n.as_str())
                .filter(|n| !n.is_empty())
                .map(|n| crate::protocols::db::bounded_text(n.as_bytes(), 256)),
            value.get("verbose").and_then(|v| v.as_bool()) == Some(true),
        ),
        Err(_) => (None, false),
    };
    Some(Control::Connect { name, verbose })
}

/// `-ERR`'s text, its single quotes taken off.
fn error_text(rest: &[u8]) -> String {
    let text = String::from_utf8_lossy(rest);
    let text = text.trim();
    let text = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(text);
    text.chars().take(256).collect()
}

/// The server's status in a message's headers (`NATS/1.0 503`, `NATS/1.0
/// 100 Idle Heartbeat`), when the captured headers hold it.
pub fn header_status(headers: &[u8]) -> Option<u16> {
    let rest = headers.strip_prefix(b"NATS/1.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The value of the header `name` (case-insensitive) in a message's header
/// block (`NATS/1.0\r\nName: value\r\n…\r\n\r\n`), when the captured
/// bytes hold its whole line.
pub fn header_value<'a>(headers: &'a [u8], name: &str) -> Option<&'a str> {
    headers
        .split(|b| *b == b'\n')
        .skip(1)
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .filter_map(|line| line.strip_suffix(b"\r"))
        .find_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let (key, value) = line.split_at(colon);
            if !key.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            std::str::from_utf8(&value[1..]).ok().map(str::trim)
        })
}

/// The subject a publish was refused for: `-ERR 'Permissions Violation for
/// Publish to "locked.door"'`.
pub fn refused_publish(error: &str) -> Option<&str> {
    let subject = error.strip_prefix("Permissions Violation for Publish to ")?;
    Some(subject.trim_matches('"'))
}

/// A JetStream API reply's error code (`{"type":…,"error":{"code":404,…}}`),
/// or a JetStream publish's (`{"error":{"code":503,…}}`), from the payload's
/// first bytes.
pub fn jetstream_error(payload: &[u8]) -> Option<u16> {
    let is_jetstream = payload.starts_with(b"{\"type\":\"io.nats.jetstream.api.")
        || payload.starts_with(b"{\"error\":");
    if !is_jetstream {
        return None;
    }
    const KEY: &[u8] = b"\"error\":{\"code\":";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .take(4)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}
