//! MySQL/MariaDB client/server protocol packets: framing (3-byte length and a
//! sequence id) and the fields of the packets the decoder reads, from bodies
//! that may be cut short by the capture.

#![forbid(unsafe_code)]

use crate::protocols::db::bounded_text;
use crate::protocols::db_framing::{FrameFormat, FrameHeader};

pub const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub const CLIENT_SSL: u32 = 0x0000_0800;
pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;
pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;
/// Status flag: another result set follows this one.
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;

fn header(bytes: &[u8]) -> Option<FrameHeader> {
    let [a, b, c, seq, ..] = *bytes else {
        return None;
    };
    Some(FrameHeader {
        tag: seq,
        body_len: u64::from(u32::from_le_bytes([a, b, c, 0])),
    })
}

/// Body bytes kept of a command: as much as the kernel copies of a segment
/// that starts a query (its head capture), so that a query it copied whole
/// is whole; the text summarized is `2 * MAX_TEXT` of it.
const KEEP_COMMAND: usize = 16 * 1024;

/// Commands (sequence 0) keep their text; replies keep enough for OK/ERR and definitions.
fn keep(seq: u8) -> usize {
    if seq == 0 {
        KEEP_COMMAND
    } else {
        512
    }
}

/// Client packets: a command starts a write, with sequence 0 and a known command byte.
pub const CLIENT_FORMAT: FrameFormat = FrameFormat {
    header_len: 4,
    parse_header: header,
    keep_body: keep,
    resync: |segment| {
        let command =
            matches!(segment, [_, _, _, 0, command, ..] if (0x01..=0x1f).contains(command));
        command.then_some(0)
    },
    tail_resync: |_| None,
};

/// Server packets: a reply starts a read, with a first byte that can begin one.
pub const SERVER_FORMAT: FrameFormat = FrameFormat {
    header_len: 4,
    parse_header: header,
    keep_body: keep,
    resync: |segment| {
        let reply = matches!(segment, [_, _, _, 1, first, ..] if matches!(first, 0x00 | 0xff | 0x01..=0xfa));
        reply.then_some(0)
    },
    tail_resync: ends_with_result_end,
};

/// Where, in a segment's last bytes, server packets start that run to its
/// end with consecutive sequence ids, the last of them ending a result: an
/// EOF or an OK in its place (first byte 0xfe: no row can start so, a
/// length-encoded string of 16 MiB and more) or an ERR. The earliest such
/// start is taken; a false one inside a row can only end on a real packet
/// boundary, at worst adding a guessed row to rows not counted anyway.
fn ends_with_result_end(tail: &[u8]) -> Option<usize> {
    (0..tail.len()).find(|&start| chains_to_result_end(tail, start))
}

fn chains_to_result_end(tail: &[u8], start: usize) -> bool {
    let mut at = start;
    let mut seq: Option<u8> = None;
    loop {
        let Some(h) = tail.get(at..).and_then(header) else {
            return false;
        };
        if seq.is_some_and(|prev| prev.wrapping_add(1) != h.tag) {
            return false;
        }
        seq = Some(h.tag);
        let Some(end) = usize::try_from(h.body_len)
            .ok()
            .and_then(|len| at.checked_add(4)?.checked_add(len))
            .filter(|end| *end <= tail.len())
        else {
            return false;
        };
        if end == tail.len() {
            let first = tail.get(at + 4).copied();
            return h.body_len > 0 && matches!(first, Some(0xfe | 0xff));
        }
        at = end;
    }
}

/// A length-encoded integer at the start of `bytes`, and its size.
pub fn lenenc(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let wide = |n: usize| -> Option<(u64, usize)> {
        let mut value = [0u8; 8];
        value[..n].copy_from_slice(bytes.get(1..1 + n)?);
        Some((u64::from_le_bytes(value), 1 + n))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => wide(2),
        0xfd => wide(3),
        0xfe => wide(8),
        _ => None,
    }
}

fn cstr(bytes: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(0, bytes) {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[]),
    }
}

/// The server's first packet (protocol 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub capabilities: u32,
}

pub fn parse_greeting(body: &[u8]) -> Option<Greeting> {
    let (&10, rest) = body.split_first()? else {
        return None;
    };
    let (version, rest) = cstr(rest);
    // thread id (4), auth data part 1 (8), filler (1), capabilities low (2), charset (1), status (2), capabilities high (2)
    let low = rest
        .get(13..15)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let high = rest
        .get(18..20)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    Some(Greeting {
        server_version: bounded_text(version, 64),
        capabilities: u32::from(low) | (u32::from(high) << 16),
    })
}

/// What the decoder takes from a HandshakeResponse41 (or an SSLRequest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub database: Option<String>,
    /// Only the SSLRequest's 32 bytes: TLS follows.
    pub ssl_request: bool,
}

pub fn parse_handshake_response(body: &[u8]) -> Option<HandshakeResponse> {
    let capabilities = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return None;
    }
    if body.len() == 32 && capabilities & CLIENT_SSL != 0 {
        return Some(HandshakeResponse {
            capabilities,
            database: None,
            ssl_request: true,
        });
    }
    let rest = body.get(32..)?;
    let (_user, rest) = cstr(rest);
    let rest = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let (len, size) = lenenc(rest)?;
        rest.get(size.checked_add(usize::try_from(len).ok()?)?..)?
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let len = usize::from(*rest.first()?);
        rest.get(1 + len..)?
    } else {
        cstr(rest).1
    };
    let database = (capabilities & CLIENT_CONNECT_WITH_DB != 0)
        .then(|| cstr(rest).0)
        .filter(|db| !db.is_empty())
        .map(|db| bounded_text(db, 256));
    Some(HandshakeResponse {
        capabilities,
        database,
        ssl_request: false,
    })
}

/// An ERR packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sqlstate: Option<String>,
    pub message: String,
}

pub fn parse_err(body: &[u8]) -> ErrPacket {
    let code = body
        .get(1..3)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let rest = body.get(3..).unwrap_or_default();
    let (sqlstate, message) = match rest.split_first() {
        Some((b'#', tail)) if tail.len() >= 5 => (Some(bounded_text(&tail[..5], 5)), &tail[5..]),
        _ => (None, rest),
    };
    ErrPacket {
        code,
        sqlstate,
        message: bounded_text(message, 512),
    }
}

/// An OK packet's affected rows and status flags.
pub fn parse_ok(body: &[u8]) -> (Option<u64>, u16) {
    let rest = body.get(1..).unwrap_or_default();
    let Some((affected, size)) = lenenc(rest) else {
        return (None, 0);
    };
    let rest = &rest[size..];
    let status = lenenc(rest)
        .and_then(|(_, size)| rest.get(size..size + 2))
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    (Some(affected), status)
}

/// An EOF packet's status flags.
pub fn parse_eof_status(body: &[u8]) -> u16 {
    body.get(3..5)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

/// Whether a packet in a row stream ends it: EOF (short `0xfe`), or with
/// DEPRECATE_EOF the OK packet that replaces it (`0xfe` header).
pub fn ends_rows(body: &[u8], body_len: u64, deprecate_eof: bool) -> bool {
    body.first() == Some(&0xfe) && (body_len < 9 || (deprecate_eof && body_len < 0xff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_regains_framing_at_the_packets_that_end_a_result() {
        // The end of a row (seq 41), a row (seq 42), then EOF (seq 43).
        let mut tail = b"w number 17".to_vec();
        let row = b"\x0e\0\0\x2a\x02\x31\x38\x0arow number";
        let eof = b"\x05\0\0\x2b\xfe\0\0\x22\0";
        tail.extend_from_slice(row);
        tail.extend_from_slice(eof);
        let start = tail.len() - row.len() - eof.len();
        assert_eq!(ends_with_result_end(&tail), Some(start));
        // The EOF alone is found too.
        assert_eq!(ends_with_result_end(eof), Some(0));
        // An OK in place of the EOF (CLIENT_DEPRECATE_EOF), and an ERR.
        assert_eq!(
            ends_with_result_end(b"xx\x07\0\0\x05\xfe\0\0\x02\0\0\0"),
            Some(2)
        );
        assert_eq!(
            ends_with_result_end(b"\x09\0\0\x05\xff\x15\x04#70100"),
            Some(0)
        );
        // Sequence ids that skip, or a last packet that ends no result: none.
        let mut skipped = row.to_vec();
        skipped.extend_from_slice(b"\x05\0\0\x2c\xfe\0\0\x22\0");
        assert_eq!(ends_with_result_end(&skipped), Some(row.len()));
        assert_eq!(ends_with_result_end(row), None);
    }

    #[test]
    fn length_encoded_integers() {
        assert_eq!(lenenc(&[0x05]), Some((5, 1)));
        assert_eq!(lenenc(&[0xfc, 0x34, 0x12]), Some((0x1234, 3)));
        assert_eq!(lenenc(&[0xfd, 1, 0, 0]), Some((1, 4)));
        assert_eq!(lenenc(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0]), Some((1, 9)));
        assert_eq!(lenenc(&[0xfc, 1]), None);
        assert_eq!(lenenc(&[0xff]), None);
    }

    #[test]
    fn a_huge_auth_length_is_refused() {
        let mut body = vec![0u8; 32];
        body[..4].copy_from_slice(
            &(CLIENT_PROTOCOL_41 | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA).to_le_bytes(),
        );
        body.extend_from_slice(b"user\0\xfe\xff\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(parse_handshake_response(&body), None);
    }

    #[test]
    fn err_packet() {
        let err = parse_err(b"\xff\x7a\x04#42S02Table 'shop.x' doesn't exist");
        assert_eq!((err.code, err.sqlstate.as_deref()), (1146, Some("42S02")));
        assert_eq!(err.message, "Table 'shop.x' doesn't exist");
        let _ = parse_err(b"\xff");
    }
}
