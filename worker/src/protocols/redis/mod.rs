//! Redis: RESP2 and RESP3 from the client's side of a connection — commands
//! are what the instrumented process writes, replies what it reads.
//!
//! [`check`] tells from a connection's first bytes whether it is Redis;
//! [`RedisConnection`] turns its segments into [`DbOperation`]s, one per
//! command. Reading values ([`resp`]) is kept apart from pairing commands
//! with replies ([`connection`]).
//!
//! [`DbOperation`]: crate::protocols::db::DbOperation

#![forbid(unsafe_code)]

pub mod connection;
pub mod resp;

#[cfg(test)]
mod tests;

use zerotrace_shared::event::Direction;

use crate::protocols::db::Detection;
pub use connection::RedisConnection;

/// Commands recognised in the inline form (`PING\r\n`) as a connection's first write.
const INLINE_FIRST: &[&str] = &[
    "PING",
    "HELLO",
    "AUTH",
    "SELECT",
    "GET",
    "SET",
    "INFO",
    "ECHO",
    "QUIT",
    "EXISTS",
    "DEL",
    "INCR",
    "KEYS",
    "CLIENT",
    "COMMAND",
    "MONITOR",
    "SUBSCRIBE",
    "FLUSHALL",
    "FLUSHDB",
    "DBSIZE",
];

/// `<prefix><digits>\r\n` at the start of `bytes`: the length of that line,
/// `Err(true)` if more bytes could still make one, `Err(false)` if not.
fn counted_line(bytes: &[u8], prefix: u8) -> Result<usize, bool> {
    if bytes.first().is_some_and(|b| *b != prefix) {
        return Err(false);
    }
    let digits = bytes
        .iter()
        .skip(1)
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .count();
    if digits > 10 {
        return Err(false);
    }
    match (bytes.get(1 + digits), bytes.get(2 + digits)) {
        (Some(b'\r'), Some(b'\n')) if digits > 0 => Ok(3 + digits),
        (None, _) | (Some(b'\r'), None) => Err(true),
        _ => Err(false),
    }
}

/// Whether a connection's first bytes are Redis.
///
/// Client writes: a RESP command, `*<n>\r\n$<len>\r\n` (an array of bulk
/// strings), or an inline command (`PING\r\n`, `HELLO 3\r\n`…) from a short
/// list of commands a client sends first, in upper case (memcached's text
/// protocol uses the same words in lower case), on a line with no control bytes
/// that does not end like an HTTP request line. Client reads (joined
/// mid-stream): a bulk or aggregate header followed by a well-formed line,
/// or exactly `+OK\r\n`, `+PONG\r\n`, `+QUEUED\r\n`, or an error line with a
/// Redis prefix (`-ERR `, `-WRONGTYPE `, `-NOAUTH `…). Other text protocols
/// (HTTP, SMTP, POP3's `+OK ` greeting with text) fail these checks.
pub fn check(first_bytes: &[u8], direction: Direction) -> Detection {
    match direction {
        Direction::Egress => check_command(first_bytes),
        Direction::Ingress => check_reply(first_bytes),
    }
}

fn check_command(bytes: &[u8]) -> Detection {
    match counted_line(bytes, b'*') {
        Ok(header) => {
            return match counted_line(&bytes[header..], b'$') {
                Ok(_) => Detection::Yes,
                Err(true) => Detection::NeedMore,
                Err(false) => Detection::No,
            };
        }
        Err(true) => return Detection::NeedMore,
        Err(false) if bytes.first() == Some(&b'*') => return Detection::No,
        Err(false) => {}
    }
    let Some(end) = memchr::memchr(b'\n', bytes) else {
        return if bytes.len() < 64
            && bytes
                .iter()
                .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r')
        {
            let word: Vec<u8> = bytes
                .iter()
                .take_while(|b| b.is_ascii_alphabetic())
                .copied()
                .collect();
            let prefix_of_known = INLINE_FIRST.iter().any(|c| c.as_bytes().starts_with(&word));
            if prefix_of_known && !bytes.is_empty() {
                Detection::NeedMore
            } else {
                Detection::No
            }
        } else {
            Detection::No
        };
    };
    let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
    let word_len = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    // Upper case only: memcached's commands are the same words in lower case.
    let word = String::from_utf8_lossy(&line[..word_len]).into_owned();
    // No command a client sends first takes a JSON object: `INFO {` is a
    // NATS server's greeting.
    let json = line[word_len..].starts_with(b" {");
    let printable = !json && line.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    let http = line.len() >= 9 && line[line.len() - 9..].starts_with(b" HTTP/");
    if printable && !http && INLINE_FIRST.contains(&word.as_str()) {
        Detection::Yes
    } else {
        Detection::No
    }
}

fn check_reply(bytes: &[u8]) -> Detection {
    const EXACT: [&[u8]; 3] = [b"+OK\r\n", b"+PONG\r\n", b"+QUEUED\r\n"];
    const ERRORS: [&[u8]; 7] = [
        b"-ERR ",
        b"-WRONGTYPE ",
        b"-NOAUTH ",
        b"-WRONGPASS ",
        b"-NOPERM ",
        b"-MOVED ",
        b"-NOSCRIPT ",
    ];
    if EXACT.contains(&bytes) || ERRORS.iter().any(|e| bytes.starts_with(e)) {
        return Detection::Yes;
    }
    if EXACT
        .iter()
        .chain(ERRORS.iter())
        .any(|e| e.starts_with(bytes))
        && !bytes.is_empty()
    {
        return Detection::NeedMore;
    }
    for prefix in [b'*', b'%', b'~', b'$'] {
        match counted_line(bytes, prefix) {
            Ok(header) => {
                let rest = &bytes[header..];
                return match rest.first() {
                    None => Detection::NeedMore,
                    Some(_) if prefix == b'$' => Detection::Yes,
                    Some(b) if resp::TYPE_BYTES.contains(b) => Detection::Yes,
                    Some(_) => Detection::No,
                };
            }
            Err(true) => return Detection::NeedMore,
            Err(false) => {}
        }
    }
    Detection::No
}
