//! MongoDB's wire protocol
//! (<https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/>):
//! the 16-byte header every message starts with, and the one document a
//! message carries that the decoder reads: OP_MSG's body section, OP_QUERY's
//! query (drivers still send their first `hello` this way) and OP_REPLY's
//! first document. All integers are little-endian.

#![forbid(unsafe_code)]

/// The header's size: messageLength, requestID, responseTo, opCode.
pub const HEADER_LEN: usize = 16;
/// The largest message a server accepts (`maxMessageSizeBytes`).
pub const MAX_MESSAGE_LEN: u32 = 48_000_000;

pub const OP_REPLY: i32 = 1;
pub const OP_UPDATE: i32 = 2001;
pub const OP_INSERT: i32 = 2002;
pub const OP_QUERY: i32 = 2004;
pub const OP_GET_MORE: i32 = 2005;
pub const OP_DELETE: i32 = 2006;
pub const OP_KILL_CURSORS: i32 = 2007;
pub const OP_COMPRESSED: i32 = 2012;
pub const OP_MSG: i32 = 2013;

/// OP_MSG flag: a checksum ends the message.
pub const CHECKSUM_PRESENT: u32 = 1;
/// OP_MSG flag: another message follows without waiting (a request that
/// gets no reply, or one reply of a stream).
pub const MORE_TO_COME: u32 = 1 << 1;
/// The OP_MSG flags a sender may set in the low 16 bits (receivers must
/// refuse others); the high bits are optional (`exhaustAllowed`).
const REQUIRED_FLAGS: u32 = CHECKSUM_PRESENT | MORE_TO_COME;

/// A message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The whole message's length, header included.
    pub length: u32,
    pub request_id: i32,
    /// The request a reply answers; 0 in a request.
    pub response_to: i32,
    pub op_code: i32,
}

impl Header {
    /// Reads a header, or `None` when `bytes` cannot start a message: fewer
    /// than 16 bytes, a length no message has, or an unknown opcode.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let word = |at: usize| -> Option<i32> {
            Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let header = Header {
            length: u32::try_from(word(0)?).ok()?,
            request_id: word(4)?,
            response_to: word(8)?,
            op_code: word(12)?,
        };
        let known = matches!(
            header.op_code,
            OP_REPLY
                | OP_UPDATE
                | OP_INSERT
                | OP_QUERY
                | OP_GET_MORE
                | OP_DELETE
                | OP_KILL_CURSORS
                | OP_COMPRESSED
                | OP_MSG
        );
        let sized = header.length > HEADER_LEN as u32 && header.length <= MAX_MESSAGE_LEN;
        (known && sized).then_some(header)
    }

    /// Whether a client writes messages of this opcode.
    pub fn is_request(&self) -> bool {
        self.op_code != OP_REPLY && self.response_to == 0
    }

    /// Whether a server writes messages of this opcode (OP_MSG both ways).
    pub fn is_reply(&self) -> bool {
        matches!(self.op_code, OP_REPLY | OP_MSG | OP_COMPRESSED) && self.response_to != 0
    }
}

/// What a message carries that the decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Content<'a> {
    /// OP_MSG's flag bits (0 for other opcodes).
    pub flags: u32,
    /// The command or reply document, as far as it was captured: OP_MSG's
    /// body section, OP_QUERY's query, OP_REPLY's first document.
    pub document: Option<&'a [u8]>,
    /// OP_QUERY's `fullCollectionName` (`db.$cmd` for a command).
    pub full_collection: Option<&'a [u8]>,
    /// The message is compressed (snappy, zlib, zstd): nothing in it is read.
    pub compressed: bool,
}

/// The content of a message of `op_code` whose bytes after the header are
/// `body` (cut where the capture or the kept prefix ends).
pub fn content(op_code: i32, body: &[u8]) -> Content<'_> {
    match op_code {
        OP_MSG => op_msg(body),
        OP_QUERY => op_query(body),
        OP_REPLY => Content {
            // responseFlags, cursorID, startingFrom, numberReturned.
            document: body.get(20..).filter(|d| !d.is_empty()),
            ..Content::default()
        },
        OP_COMPRESSED => {
            // originalOpcode, uncompressedSize, compressorId; compressor 0
            // (noop) leaves the original message's body as it was.
            let original = body
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_le_bytes);
            match (original, body.get(8)) {
                (Some(original), Some(0)) if original != OP_COMPRESSED => {
                    content(original, body.get(9..).unwrap_or_default())
                }
                _ => Content {
                    compressed: true,
                    ..Content::default()
                },
            }
        }
        _ => Content::default(),
    }
}

/// Whether OP_MSG flag bits are ones a sender may set.
pub fn valid_msg_flags(flags: u32) -> bool {
    flags & 0xffff & !REQUIRED_FLAGS == 0
}

fn op_msg(body: &[u8]) -> Content<'_> {
    let Some(flags) = body
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    else {
        return Content::default();
    };
    let mut sections = &body[4..];
    let mut document = None;
    // Exactly one body section (kind 0); document sequences (kind 1: a
    // size, an identifier, documents) may come before it.
    while let Some((&kind, rest)) = sections.split_first() {
        match kind {
            0 => {
                document = Some(rest).filter(|d| !d.is_empty());
                break;
            }
            1 => {
                let size = rest
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_le_bytes)
                    .and_then(|s| usize::try_from(s).ok());
                match size.and_then(|s| rest.get(s..)) {
                    Some(after) if size.is_some_and(|s| s >= 4) => sections = after,
                    _ => break,
                }
            }
            _ => break,
        }
    }
    Content {
        flags,
        document,
        ..Content::default()
    }
}

fn op_query(body: &[u8]) -> Content<'_> {
    // flags, fullCollectionName, numberToSkip, numberToReturn, query.
    let Some((name, after)) = body.get(4..).and_then(super::bson::cstring) else {
        return Content::default();
    };
    Content {
        full_collection: Some(name),
        document: after.get(8..).filter(|d| !d.is_empty()),
        ..Content::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_needs_a_known_opcode_and_a_possible_length() {
        let header = |length: u32, op: i32| {
            let mut bytes = length.to_le_bytes().to_vec();
            bytes.extend_from_slice(&7i32.to_le_bytes());
            bytes.extend_from_slice(&0i32.to_le_bytes());
            bytes.extend_from_slice(&op.to_le_bytes());
            bytes
        };
        let read = Header::read(&header(100, OP_MSG)).unwrap_or_else(|| panic!("no header"));
        assert_eq!(
            (read.length, read.request_id, read.op_code),
            (100, 7, OP_MSG)
        );
        assert!(read.is_request() && !read.is_reply());
        assert_eq!(Header::read(&header(16, OP_MSG)), None);
        assert_eq!(Header::read(&header(MAX_MESSAGE_LEN + 1, OP_MSG)), None);
        assert_eq!(Header::read(&header(100, 2003)), None);
        assert_eq!(Header::read(&header(100, OP_MSG)[..15]), None);
        assert_eq!(Header::read(&header(u32::MAX, OP_MSG)), None);
    }

    #[test]
    fn an_op_msg_body_is_found_after_document_sequences() {
        // flags, a kind-1 section of 9 bytes ("docs\0" and nothing), the body.
        let mut body = 2u32.to_le_bytes().to_vec();
        body.push(1);
        body.extend_from_slice(&9i32.to_le_bytes());
        body.extend_from_slice(b"docs\0");
        body.push(0);
        body.extend_from_slice(b"\x05\0\0\0\0");
        let content = content(OP_MSG, &body);
        assert_eq!(content.flags, MORE_TO_COME);
        assert_eq!(content.document, Some(&b"\x05\0\0\0\0"[..]));
        // A sequence whose size runs past the capture hides the body.
        assert_eq!(super::content(OP_MSG, &body[..10]).document, None);
    }

    #[test]
    fn a_noop_compressed_message_is_read_and_others_are_not() {
        let mut body = OP_QUERY.to_le_bytes().to_vec();
        body.extend_from_slice(&30i32.to_le_bytes());
        body.push(0);
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(b"admin.$cmd\0");
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(b"\x05\0\0\0\0");
        let read = content(OP_COMPRESSED, &body);
        assert_eq!(read.full_collection, Some(&b"admin.$cmd"[..]));
        assert_eq!(read.document, Some(&b"\x05\0\0\0\0"[..]));
        body[8] = 2; // zlib
        assert!(content(OP_COMPRESSED, &body).compressed);
    }
}
