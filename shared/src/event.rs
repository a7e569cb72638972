//! Decoding of the records the BPF programs write (see
//! bpf-programs/include/zerotrace_events.h). Offsets come from the header
//! itself through build.rs, so the two sides cannot drift apart silently.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Struct sizes, field offsets and enum values generated from the C header.
pub mod layout {
    include!(concat!(env!("OUT_DIR"), "/event_layout.rs"));
}

const AF_INET: u16 = 2;

/// Which way bytes moved, seen from the instrumented process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Read by the process.
    Ingress,
    /// Written by the process.
    Egress,
}

/// How the socket came to be, when the kernel saw it happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionRole {
    /// Opened before the agent started: inferred later from the traffic.
    Unknown,
    /// Returned by accept(): this process is the server.
    Server,
    /// Passed to connect(): this process is the client.
    Client,
}

/// The two ends of a TCP connection, from the instrumented process's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnTuple {
    pub local: IpAddr,
    pub local_port: u16,
    pub peer: IpAddr,
    pub peer_port: u16,
}

/// What every record carries: who, when, which socket. Borrowed from the
/// record: the thread's name is read only when asked for ([`Self::comm`]),
/// and copied only when it is not UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventOrigin<'a> {
    pub pid: u32,
    /// The thread, or in a Go program the goroutine, with
    /// [`layout::TID_GOROUTINE`] set (data records of processes the worker
    /// marked Go in the pid bitmap).
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The record's `comm` field (empty in a compact data record).
    comm_field: &'a [u8],
}

impl<'a> EventOrigin<'a> {
    /// The thread's name: up to its NUL, invalid UTF-8 replaced. Most
    /// records' names are never used (a connection's identity record and its
    /// close carry one), so it is decoded here rather than with the record.
    pub fn comm(&self) -> Cow<'a, str> {
        let end = self
            .comm_field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm_field.len());
        String::from_utf8_lossy(&self.comm_field[..end])
    }
}

/// One decoded ring buffer record, borrowing its payload from the record:
/// decoding allocates nothing (the worker's reader keeps records in reused
/// batches, so a data event costs no allocation at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent<'a> {
    /// A read or write of `total_bytes` on a TCP socket, of which `payload` is
    /// the start. `tuple` (and `origin.comm()`) come only with the first event
    /// of a socket a worker sees; later ones refer to it by `sock_id`.
    Data {
        origin: EventOrigin<'a>,
        sock_id: u64,
        role: ConnectionRole,
        direction: Direction,
        tuple: Option<ConnTuple>,
        total_bytes: u64,
        payload: &'a [u8],
        /// Plaintext from a hooked TLS library (SSL_read/SSL_write), not the
        /// socket's bytes.
        tls: bool,
        /// On an HTTP/2 connection: the headers of the frames `payload` does
        /// not hold, in segment order ([`H2FrameNotes`]).
        h2_notes: H2FrameNotes<'a>,
        /// The segment's last bytes, when it is longer than `payload` by
        /// more than these (empty otherwise): they end the segment, after
        /// `total_bytes - payload.len() - tail.len()` bytes not copied.
        tail: &'a [u8],
    },
    /// A socket was accepted or connected.
    Connection {
        origin: EventOrigin<'a>,
        sock_id: u64,
        role: ConnectionRole,
        tuple: ConnTuple,
    },
    /// The instrumented process closed a TCP socket.
    Close {
        origin: EventOrigin<'a>,
        sock_id: u64,
    },
    /// Some process (instrumented or not) listens on a TCP port.
    Listen { origin: EventOrigin<'a>, port: u16 },
    /// An instrumented process exited.
    ProcessExit { origin: EventOrigin<'a> },
    /// A process exec'd a new program. `exec_path`: the path it was exec'd by
    /// (the interpreter's, for a script), sent only for a program the kernel
    /// put in the pid filter at its exec; else empty.
    ProcessExec {
        origin: EventOrigin<'a>,
        exec_path: &'a [u8],
    },
    /// An instrumented process forked; the kernel already instruments the child.
    ProcessFork {
        origin: EventOrigin<'a>,
        child_pid: u32,
        parent_pid: u32,
    },
}

/// Why a record could not be decoded (counted by the worker, never fatal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventDecodeError {
    TooShort {
        len: usize,
        need: usize,
    },
    UnknownKind(u8),
    BadDirection(u8),
    PayloadLength {
        declared: usize,
        present: usize,
    },
    /// The HTTP/2 frame notes at the payload's end are not in order, or do
    /// not fit the payload or the segment.
    BadFrameNotes,
    /// A segment's end copied after its start does not fit the payload or
    /// the segment, or comes with frame notes.
    BadTail,
}

impl fmt::Display for EventDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len, need } => write!(f, "record of {len} bytes, need {need}"),
            Self::UnknownKind(k) => write!(f, "unknown event kind {k}"),
            Self::BadDirection(d) => write!(f, "bad direction {d}"),
            Self::PayloadLength { declared, present } => {
                write!(
                    f,
                    "payload declares {declared} bytes, record holds {present}"
                )
            }
            Self::BadFrameNotes => write!(f, "HTTP/2 frame notes out of order or out of bounds"),
            Self::BadTail => write!(f, "segment end out of bounds"),
        }
    }
}

impl std::error::Error for EventDecodeError {}

/// Bounds-checked native-endian reads from a record already checked for length.
struct Record<'a>(&'a [u8]);

impl Record<'_> {
    fn bytes<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(offset..offset + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn u8(&self, offset: usize) -> u8 {
        self.0.get(offset).copied().unwrap_or(0)
    }
    fn u16(&self, offset: usize) -> u16 {
        u16::from_ne_bytes(self.bytes(offset))
    }
    fn u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(offset))
    }
    fn u64(&self, offset: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(offset))
    }
}

fn decode_addr(family: u16, raw: [u8; 16]) -> IpAddr {
    if family == AF_INET {
        return IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]));
    }
    let v6 = Ipv6Addr::from(raw);
    // Dual-stack sockets carry IPv4 peers as ::ffff:a.b.c.d; show them as IPv4.
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The 16 bytes of the `comm` field at `offset` (fewer if the record ends);
/// [`EventOrigin::comm`] reads the name up to its NUL.
fn comm_field(record: &[u8], offset: usize) -> &[u8] {
    let raw = record.get(offset..).unwrap_or_default();
    &raw[..raw.len().min(16)]
}

/// The connection tuple, or None when the record carries none (family 0).
fn decode_tuple(r: &Record<'_>) -> Option<ConnTuple> {
    use layout::*;
    let base = EVENT_TUPLE;
    let family = r.u16(base + TUPLE_FAMILY);
    if family == 0 {
        return None;
    }
    Some(ConnTuple {
        local: decode_addr(family, r.bytes(base + TUPLE_LOCAL_ADDR)),
        local_port: r.u16(base + TUPLE_LOCAL_PORT),
        peer: decode_addr(family, r.bytes(base + TUPLE_PEER_ADDR)),
        peer_port: r.u16(base + TUPLE_PEER_PORT),
    })
}

fn decode_role(raw: u8) -> ConnectionRole {
    match raw as usize {
        layout::ROLE_SERVER => ConnectionRole::Server,
        layout::ROLE_CLIENT => ConnectionRole::Client,
        _ => ConnectionRole::Unknown,
    }
}

impl<'a> KernelEvent<'a> {
    /// Decodes one ring buffer record. Never panics, whatever the bytes.
    pub fn decode(record: &'a [u8]) -> Result<Self, EventDecodeError> {
        use layout::*;
        let r = Record(record);
        let kind = r.u8(EVENT_KIND);
        let flags = r.u8(EVENT_FLAGS) as usize;
        // A DATA record without the identity flag stops where `tuple` would
        // start; every other record is a whole header.
        let compact = kind as usize == KIND_DATA && flags & EVENT_FLAG_IDENTITY == 0;
        let header = if compact {
            EVENT_COMPACT_SIZE
        } else {
            EVENT_SIZE
        };
        if record.len() < header {
            return Err(EventDecodeError::TooShort {
                len: record.len(),
                need: header,
            });
        }
        let origin = EventOrigin {
            pid: r.u32(EVENT_PID),
            tid: r.u32(EVENT_TID),
            ts_ns: r.u64(EVENT_TS_NS),
            comm_field: if compact {
                &[]
            } else {
                comm_field(record, EVENT_COMM)
            },
        };
        let sock_id = r.u64(EVENT_SOCK_ID);
        let event = match kind as usize {
            KIND_DATA => {
                let direction = match r.u8(EVENT_DIRECTION) as usize {
                    DIR_INGRESS => Direction::Ingress,
                    DIR_EGRESS => Direction::Egress,
                    other => return Err(EventDecodeError::BadDirection(other as u8)),
                };
                let declared = r.u32(EVENT_CAPTURED_LEN) as usize;
                let present = record.len() - header;
                let payload = record
                    .get(header..header.saturating_add(declared))
                    .ok_or(EventDecodeError::PayloadLength { declared, present })?;
                let (payload, h2_notes) = if flags & EVENT_FLAG_H2_NOTES != 0 {
                    H2FrameNotes::split(payload, r.u64(EVENT_BYTES))?
                } else {
                    (payload, H2FrameNotes::default())
                };
                let (payload, tail) = if flags & EVENT_FLAG_TAIL != 0 {
                    split_tail(payload, r.u64(EVENT_BYTES), !h2_notes.is_empty())?
                } else {
                    (payload, &[][..])
                };
                KernelEvent::Data {
                    origin,
                    sock_id,
                    role: decode_role(r.u8(EVENT_ROLE)),
                    direction,
                    tuple: if compact { None } else { decode_tuple(&r) },
                    total_bytes: r.u64(EVENT_BYTES).max(payload.len() as u64),
                    payload,
                    tls: flags & EVENT_FLAG_TLS != 0,
                    h2_notes,
                    tail,
                }
            }
            KIND_CONNECTION => KernelEvent::Connection {
                origin,
                sock_id,
                role: decode_role(r.u8(EVENT_ROLE)),
                tuple: decode_tuple(&r).unwrap_or(ConnTuple {
                    local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    local_port: 0,
                    peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    peer_port: 0,
                }),
            },
            KIND_CLOSE => KernelEvent::Close { origin, sock_id },
            KIND_LISTEN => KernelEvent::Listen {
                port: r.u16(EVENT_TUPLE + TUPLE_LOCAL_PORT),
                origin,
            },
            KIND_PROCESS_EXIT => KernelEvent::ProcessExit { origin },
            KIND_PROCESS_EXEC => {
                let declared = r.u32(EVENT_CAPTURED_LEN) as usize;
                let present = record.len() - header;
                if declared > EXEC_PATH_MAX {
                    return Err(EventDecodeError::PayloadLength { declared, present });
                }
                let exec_path = record
                    .get(header..header + declared)
                    .ok_or(EventDecodeError::PayloadLength { declared, present })?;
                KernelEvent::ProcessExec { origin, exec_path }
            }
            KIND_PROCESS_FORK => KernelEvent::ProcessFork {
                child_pid: origin.pid,
                parent_pid: r.u64(EVENT_BYTES) as u32,
                origin,
            },
            _ => return Err(EventDecodeError::UnknownKind(kind)),
        };
        Ok(event)
    }
}

/// The headers of an HTTP/2 segment's frames that its captured bytes do not
/// hold (large DATA frames, and what follows them past the capture): where
/// each starts in the segment and its 9 bytes, and for a header block the
/// copy could not hold whole, its body too. The kernel walks the frames of
/// an HTTP/2 connection's segments and appends these notes to the copy, so
/// that the decoder keeps the frame boundaries, sees the END_STREAM flags of
/// what was not copied, and decodes header blocks past the copy (a gRPC
/// reply's trailers after a large message).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2FrameNotes<'a> {
    /// `layout::H2_NOTE_SIZE` bytes per note.
    raw: &'a [u8],
    /// The bodies of the notes marked `layout::H2_NOTE_BODY`, in their order.
    bodies: &'a [u8],
}

/// A note for [`H2FrameNotes::encode_with_bodies`]: offset, header, body.
#[doc(hidden)]
pub type NoteToEncode<'a> = (u32, [u8; 9], Option<&'a [u8]>);

/// One noted frame: its offset in the segment, its header, and its body
/// when the kernel copied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2FrameNote<'a> {
    pub offset: u64,
    pub header: &'a [u8],
    pub body: Option<&'a [u8]>,
}

/// A note's offset and whether its body follows the copy, from its first
/// four bytes.
fn note_offset(note: &[u8]) -> (u64, bool) {
    let word = u32::from_le_bytes([note[0], note[1], note[2], note[3]]);
    let flag = layout::H2_NOTE_BODY as u32;
    (u64::from(word & !flag), word & flag != 0)
}

/// The payload length a frame header declares.
fn frame_length(header: &[u8]) -> u64 {
    u64::from(header[0]) << 16 | u64::from(header[1]) << 8 | u64::from(header[2])
}

/// Splits a payload that ends with its segment's last [`layout::TAIL_LEN`]
/// bytes into the copied bytes and that tail, checking that the segment is
/// longer than both by at least one byte (the kernel copies a shorter one
/// whole).
fn split_tail(
    payload: &[u8],
    segment_len: u64,
    has_notes: bool,
) -> Result<(&[u8], &[u8]), EventDecodeError> {
    let copied_len = payload
        .len()
        .checked_sub(layout::TAIL_LEN)
        .filter(|copied| !has_notes && segment_len > (copied + layout::TAIL_LEN) as u64)
        .ok_or(EventDecodeError::BadTail)?;
    Ok(payload.split_at(copied_len))
}

impl<'a> H2FrameNotes<'a> {
    /// Splits a payload into the copied bytes and the notes after them
    /// (their count is the last byte; the bodies of marked notes come
    /// between the copy and the notes), checking that the notes are in
    /// order and lie, bodies included, within the `segment_len` bytes of the
    /// segment. Notes of frames the copy holds are allowed (the kernel does
    /// not sort them out).
    fn split(payload: &'a [u8], segment_len: u64) -> Result<(&'a [u8], Self), EventDecodeError> {
        let (&count, rest) = payload
            .split_last()
            .ok_or(EventDecodeError::BadFrameNotes)?;
        let size = usize::from(count) * layout::H2_NOTE_SIZE;
        if count == 0 || usize::from(count) > layout::H2_NOTES || size > rest.len() {
            return Err(EventDecodeError::BadFrameNotes);
        }
        let (before, raw) = rest.split_at(rest.len() - size);
        let mut next = 0;
        let mut bodies = 0u64;
        for note in raw.chunks_exact(layout::H2_NOTE_SIZE) {
            let (offset, has_body) = note_offset(note);
            let body = if has_body {
                frame_length(&note[4..])
            } else {
                0
            };
            if offset < next
                || body > layout::H2_BODY_MAX as u64
                || offset.saturating_add(9 + body) > segment_len
            {
                return Err(EventDecodeError::BadFrameNotes);
            }
            next = offset + 9 + body;
            bodies += body;
        }
        let bodies = usize::try_from(bodies)
            .ok()
            .filter(|b| *b <= layout::H2_BODIES_ROOM && *b <= before.len())
            .ok_or(EventDecodeError::BadFrameNotes)?;
        let (copied, bodies) = before.split_at(before.len() - bodies);
        Ok((copied, Self { raw, bodies }))
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Each noted frame: its offset in the segment and its header.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        self.notes().map(|note| (note.offset, note.header))
    }

    /// Each noted frame, with its body when the kernel copied it.
    pub fn notes(&self) -> impl Iterator<Item = H2FrameNote<'a>> + 'a {
        let mut bodies = self.bodies;
        self.raw
            .chunks_exact(layout::H2_NOTE_SIZE)
            .map(move |note| {
                let (offset, has_body) = note_offset(note);
                let header = &note[4..];
                let body = has_body.then(|| {
                    let len = usize::try_from(frame_length(header)).unwrap_or(usize::MAX);
                    let (body, rest) = bodies.split_at(len.min(bodies.len()));
                    bodies = rest;
                    body
                });
                H2FrameNote {
                    offset,
                    header,
                    body,
                }
            })
    }

    /// The segment as the pieces the decoder reads: the copied bytes, then
    /// each noted frame past them (its header, and its body when the kernel
    /// copied it), each with the count of the segment's bytes it stands for
    /// (itself and the uncaptured bytes up to the next piece). Notes of
    /// frames the copy holds are dropped; a frame the copy cuts ends the
    /// copied piece where it starts.
    pub fn pieces(&self, copied: &'a [u8], segment_len: u64) -> Vec<(&'a [u8], u64)> {
        let mut pieces = Vec::with_capacity(self.raw.len() / layout::H2_NOTE_SIZE + 1);
        let mut start = 0u64;
        let mut bytes = copied;
        let mut in_copy = true;
        for note in self.notes() {
            let held = note.offset + 9 + note.body.map_or(0, |b| b.len() as u64);
            if held <= copied.len() as u64 {
                continue;
            }
            if in_copy {
                // usize: offset < copied.len() here, or the slice stays whole.
                let kept = usize::try_from(note.offset).unwrap_or(usize::MAX);
                bytes = copied.get(..kept).unwrap_or(copied);
                in_copy = false;
            }
            pieces.push((bytes, note.offset.saturating_sub(start)));
            start = note.offset;
            bytes = note.header;
            if let Some(body) = note.body {
                pieces.push((note.header, 9));
                start = note.offset + 9;
                bytes = body;
            }
        }
        pieces.push((bytes, segment_len.saturating_sub(start)));
        pieces
    }

    /// Notes as the kernel writes them, for tests: `(offset, header)` pairs.
    #[doc(hidden)]
    pub fn encode(notes: &[(u32, [u8; 9])]) -> Vec<u8> {
        let with: Vec<_> = notes.iter().map(|(o, h)| (*o, *h, None)).collect();
        Self::encode_with_bodies(&with)
    }

    /// Notes as the kernel writes them, for tests, some with their frame's
    /// body: the bodies, then the notes (marked when their body is there),
    /// then the count.
    #[doc(hidden)]
    pub fn encode_with_bodies(notes: &[NoteToEncode<'_>]) -> Vec<u8> {
        let mut raw: Vec<u8> = notes
            .iter()
            .filter_map(|n| n.2)
            .flatten()
            .copied()
            .collect();
        for (offset, header, body) in notes {
            let mark = if body.is_some() {
                layout::H2_NOTE_BODY as u32
            } else {
                0
            };
            raw.extend_from_slice(&(offset | mark).to_le_bytes());
            raw.extend_from_slice(header);
        }
        raw.push(notes.len() as u8);
        raw
    }
}

/// One listening socket reported by the listener iterator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ListeningSocket {
    pub pid: u32,
    pub port: u16,
}

/// Splits the iterator's output into records; a trailing partial record is ignored.
pub fn decode_listeners(bytes: &[u8]) -> Vec<ListeningSocket> {
    use layout::*;
    bytes
        .chunks_exact(LISTENER_SIZE)
        .map(|chunk| {
            let r = Record(chunk);
            ListeningSocket {
                pid: r.u32(LISTENER_PID),
                port: r.u16(LISTENER_PORT),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::layout::*;
    use super::*;

    const AF_INET6: u16 = 10;

    fn record(kind: usize, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; EVENT_SIZE];
        r[EVENT_KIND] = kind as u8;
        r[EVENT_DIRECTION] = DIR_EGRESS as u8;
        r[EVENT_ROLE] = ROLE_SERVER as u8;
        r[EVENT_PID..EVENT_PID + 4].copy_from_slice(&4242u32.to_ne_bytes());
        r[EVENT_CAPTURED_LEN..EVENT_CAPTURED_LEN + 4]
            .copy_from_slice(&(payload.len() as u32).to_ne_bytes());
        r[EVENT_BYTES..EVENT_BYTES + 8].copy_from_slice(&9000u64.to_ne_bytes());
        r[EVENT_TUPLE + TUPLE_FAMILY..EVENT_TUPLE + TUPLE_FAMILY + 2]
            .copy_from_slice(&AF_INET.to_ne_bytes());
        r[EVENT_TUPLE + TUPLE_LOCAL_ADDR..EVENT_TUPLE + TUPLE_LOCAL_ADDR + 4]
            .copy_from_slice(&[127, 0, 0, 1]);
        r[EVENT_TUPLE + TUPLE_LOCAL_PORT..EVENT_TUPLE + TUPLE_LOCAL_PORT + 2]
            .copy_from_slice(&8080u16.to_ne_bytes());
        r[EVENT_COMM..EVENT_COMM + 5].copy_from_slice(b"nginx");
        if kind == KIND_DATA {
            r[EVENT_FLAGS] = EVENT_FLAG_IDENTITY as u8;
        }
        r.extend_from_slice(payload);
        r
    }

    /// A DATA record as the kernel writes it once the socket is known: the
    /// header up to the tuple, then the payload.
    fn compact_record(payload: &[u8]) -> Vec<u8> {
        let mut r = record(KIND_DATA, payload);
        r.drain(EVENT_COMPACT_SIZE..EVENT_SIZE);
        r[EVENT_FLAGS] = 0;
        r
    }

    #[test]
    fn a_compact_data_record_has_its_payload_after_the_short_header() {
        let raw = compact_record(b"GET / HTTP/1.1\r\n");
        assert!(raw.len() < EVENT_SIZE, "shorter than a whole header");
        let Ok(KernelEvent::Data {
            origin,
            sock_id,
            role,
            tuple,
            total_bytes,
            payload,
            tls,
            ..
        }) = KernelEvent::decode(&raw)
        else {
            panic!("not a data event");
        };
        assert_eq!((origin.pid, origin.comm().as_ref()), (4242, ""));
        assert_eq!((sock_id, role, tuple), (0, ConnectionRole::Server, None));
        assert_eq!((total_bytes, tls), (9000, false));
        assert!(std::ptr::eq(payload, &raw[EVENT_COMPACT_SIZE..]));
        assert_eq!(payload, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn a_compact_record_cut_inside_its_header_or_payload_is_refused() {
        let raw = compact_record(b"abc");
        assert!(matches!(
            KernelEvent::decode(&raw[..EVENT_COMPACT_SIZE - 1]),
            Err(EventDecodeError::TooShort { .. })
        ));
        assert!(matches!(
            KernelEvent::decode(&raw[..EVENT_COMPACT_SIZE + 2]),
            Err(EventDecodeError::PayloadLength { .. })
        ));
        // Other kinds are whole headers, whatever their flags say.
        let mut close = record(KIND_CLOSE, b"");
        close.truncate(EVENT_COMPACT_SIZE);
        assert!(matches!(
            KernelEvent::decode(&close),
            Err(EventDecodeError::TooShort { .. })
        ));
    }

    #[test]
    fn an_exec_record_carries_the_path_it_was_exec_d_by_within_its_bound() {
        let path = b"/usr/local/bin/fetcher";
        let raw = record(KIND_PROCESS_EXEC, path);
        let Ok(KernelEvent::ProcessExec { origin, exec_path }) = KernelEvent::decode(&raw) else {
            panic!("not an exec event");
        };
        assert_eq!((origin.pid, exec_path), (4242, &path[..]));
        let without = record(KIND_PROCESS_EXEC, b"");
        let Ok(KernelEvent::ProcessExec { exec_path, .. }) = KernelEvent::decode(&without) else {
            panic!("not an exec event");
        };
        assert!(exec_path.is_empty());
        // A length past the record, or past the kernel's bound, is refused.
        assert!(matches!(
            KernelEvent::decode(&raw[..raw.len() - 1]),
            Err(EventDecodeError::PayloadLength { .. })
        ));
        let long = record(KIND_PROCESS_EXEC, &[b'a'; EXEC_PATH_MAX + 1]);
        assert!(matches!(
            KernelEvent::decode(&long),
            Err(EventDecodeError::PayloadLength { .. })
        ));
    }

    /// A 9,000-byte read: its first 512 bytes, then its last TAIL_LEN.
    fn tailed_record(copied: usize, segment_len: u64) -> Vec<u8> {
        let mut payload = vec![b'x'; copied];
        payload.extend(std::iter::repeat_n(b'z', TAIL_LEN));
        let mut raw = record(KIND_DATA, &payload);
        raw[EVENT_FLAGS] |= EVENT_FLAG_TAIL as u8;
        raw[EVENT_BYTES..EVENT_BYTES + 8].copy_from_slice(&segment_len.to_ne_bytes());
        raw
    }

    #[test]
    fn a_segment_s_end_copied_after_its_start_is_apart_from_it() {
        let raw = tailed_record(512, 9_000);
        let Ok(KernelEvent::Data {
            payload,
            tail,
            total_bytes,
            ..
        }) = KernelEvent::decode(&raw)
        else {
            panic!("not a data event");
        };
        assert_eq!(
            (payload.len(), tail.len(), total_bytes),
            (512, TAIL_LEN, 9_000)
        );
        assert!(payload.iter().all(|b| *b == b'x') && tail.iter().all(|b| *b == b'z'));
        // Without the flag, the same bytes are one copy.
        let mut plain = tailed_record(512, 9_000);
        plain[EVENT_FLAGS] &= !(EVENT_FLAG_TAIL as u8);
        let Ok(KernelEvent::Data { payload, tail, .. }) = KernelEvent::decode(&plain) else {
            panic!("not a data event");
        };
        assert_eq!((payload.len(), tail.len()), (512 + TAIL_LEN, 0));
    }

    #[test]
    fn a_tail_that_does_not_fit_its_segment_or_comes_with_notes_is_refused() {
        // The kernel copies a segment at most TAIL_LEN longer than its copy whole.
        let whole = (512 + TAIL_LEN) as u64;
        for raw in [tailed_record(512, whole), tailed_record(512, 100)] {
            assert_eq!(
                KernelEvent::decode(&raw).err(),
                Some(EventDecodeError::BadTail)
            );
        }
        let mut shorter = tailed_record(0, 9_000);
        shorter.truncate(EVENT_SIZE + TAIL_LEN - 1);
        shorter[EVENT_CAPTURED_LEN..EVENT_CAPTURED_LEN + 4]
            .copy_from_slice(&((TAIL_LEN - 1) as u32).to_ne_bytes());
        assert_eq!(
            KernelEvent::decode(&shorter).err(),
            Some(EventDecodeError::BadTail)
        );
        let mut noted = bodied_record(&[(16_393, DATA_END, None)]);
        noted[EVENT_FLAGS] |= EVENT_FLAG_TAIL as u8;
        assert_eq!(
            KernelEvent::decode(&noted).err(),
            Some(EventDecodeError::BadTail)
        );
    }

    /// An HTTP/2 segment of 20,000 bytes: a 512-byte copy, then a DATA
    /// frame at 16,393 and a HEADERS frame at 19,000 that it does not hold.
    fn noted_record(notes: &[(u32, [u8; 9])]) -> Vec<u8> {
        let with: Vec<NoteToEncode<'_>> = notes.iter().map(|(o, h)| (*o, *h, None)).collect();
        bodied_record(&with)
    }

    const DATA_END: [u8; 9] = [0, 0x0b, 0xaf, 0, 1, 0, 0, 0, 1];
    const HEADERS: [u8; 9] = [0, 0x03, 0xe8, 1, 4, 0, 0, 0, 3];
    /// 50 bytes of header block: END_STREAM | END_HEADERS (trailers).
    const TRAILERS: [u8; 9] = [0, 0, 50, 1, 5, 0, 0, 0, 3];

    fn bodied_record(notes: &[NoteToEncode<'_>]) -> Vec<u8> {
        let mut payload = vec![b'x'; 512];
        payload.extend_from_slice(&H2FrameNotes::encode_with_bodies(notes));
        let mut raw = record(KIND_DATA, &payload);
        raw[EVENT_FLAGS] |= EVENT_FLAG_H2_NOTES as u8;
        raw[EVENT_BYTES..EVENT_BYTES + 8].copy_from_slice(&20_000u64.to_ne_bytes());
        raw
    }

    #[test]
    fn a_header_block_past_the_copy_comes_with_its_body() {
        // DATA at 16,393 up to 19,393; trailers there, their body carried.
        let body = [b'b'; 50];
        let raw = bodied_record(&[(16_393, DATA_END, None), (19_393, TRAILERS, Some(&body))]);
        let pieces = pieces_of(&raw);
        assert_eq!(
            lengths(&pieces),
            vec![(512, 16_393), (9, 3_000), (9, 9), (50, 598)]
        );
        assert_eq!(pieces[2].0, TRAILERS);
        assert_eq!(pieces[3].0, body);
        // The copied bytes are those before the bodies.
        let Ok(KernelEvent::Data { payload, .. }) = KernelEvent::decode(&raw) else {
            panic!("not a data event");
        };
        assert!(payload.iter().all(|b| *b == b'x'));
    }

    #[test]
    fn a_body_that_overlaps_the_next_frame_or_the_segment_s_end_is_refused() {
        let body = [b'b'; 50];
        for notes in [
            // The trailers' body would run into the next frame.
            vec![(19_393, TRAILERS, Some(&body[..])), (19_420, HEADERS, None)],
            // Past the segment's 20,000 bytes.
            vec![(19_960, TRAILERS, Some(&body[..]))],
        ] {
            assert_eq!(
                KernelEvent::decode(&bodied_record(&notes)).err(),
                Some(EventDecodeError::BadFrameNotes)
            );
        }
    }

    /// The pieces a noted record is read as: their bytes, and the bytes of
    /// the segment each stands for.
    fn pieces_of(raw: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let Ok(KernelEvent::Data {
            payload,
            total_bytes,
            h2_notes,
            ..
        }) = KernelEvent::decode(raw)
        else {
            panic!("not a data event");
        };
        assert_eq!((payload.len(), total_bytes), (512, 20_000));
        let pieces = h2_notes.pieces(payload, total_bytes);
        pieces.iter().map(|(b, n)| (b.to_vec(), *n)).collect()
    }

    fn lengths(pieces: &[(Vec<u8>, u64)]) -> Vec<(usize, u64)> {
        pieces.iter().map(|(b, n)| (b.len(), *n)).collect()
    }

    #[test]
    fn frame_notes_become_pieces_of_the_segment() {
        let pieces = pieces_of(&noted_record(&[(16_393, DATA_END), (19_000, HEADERS)]));
        let lengths = lengths(&pieces);
        assert_eq!(lengths, vec![(512, 16_393), (9, 2_607), (9, 1_000)]);
        assert_eq!(pieces[1].0, DATA_END);
        assert_eq!(pieces[2].0, HEADERS);
        assert_eq!(lengths.iter().map(|(_, n)| n).sum::<u64>(), 20_000);
    }

    #[test]
    fn frame_notes_the_copy_holds_are_dropped_and_a_cut_header_ends_the_copy() {
        // A note at 100 is in the 512 copied bytes; one at 508 is cut by them.
        let raw = noted_record(&[(100, HEADERS), (508, DATA_END), (19_000, HEADERS)]);
        let pieces = pieces_of(&raw);
        assert_eq!(lengths(&pieces), vec![(508, 508), (9, 18_492), (9, 1_000)]);
        assert_eq!(pieces[1].0, DATA_END);
    }

    #[test]
    fn frame_notes_out_of_order_or_bounds_are_refused() {
        for notes in [
            vec![(19_000, HEADERS), (16_393, DATA_END)],
            vec![(19_995, DATA_END)],
            vec![(16_393, DATA_END), (16_395, HEADERS)],
        ] {
            assert_eq!(
                KernelEvent::decode(&noted_record(&notes)).err(),
                Some(EventDecodeError::BadFrameNotes),
                "{notes:?}"
            );
        }
        // A count larger than the payload, or zero.
        for count in [0u8, 200] {
            let mut raw = noted_record(&[(16_393, DATA_END)]);
            let last = raw.len() - 1;
            raw[last] = count;
            assert_eq!(
                KernelEvent::decode(&raw).err(),
                Some(EventDecodeError::BadFrameNotes)
            );
        }
    }

    #[test]
    fn the_tls_flag_marks_library_plaintext() {
        let mut raw = record(KIND_DATA, b"GET / HTTP/1.1\r\n");
        assert!(matches!(
            KernelEvent::decode(&raw),
            Ok(KernelEvent::Data { tls: false, .. })
        ));
        raw[EVENT_FLAGS] |= EVENT_FLAG_TLS as u8;
        assert!(matches!(
            KernelEvent::decode(&raw),
            Ok(KernelEvent::Data { tls: true, .. })
        ));
    }

    #[test]
    fn decodes_a_data_record() {
        let raw = record(KIND_DATA, b"HTTP/1.1 200 OK\r\n");
        let ev = KernelEvent::decode(&raw);
        match ev {
            Ok(KernelEvent::Data {
                origin,
                role,
                direction,
                tuple,
                total_bytes,
                payload,
                ..
            }) => {
                assert_eq!(origin.pid, 4242);
                assert_eq!(origin.comm(), "nginx");
                assert_eq!(role, ConnectionRole::Server);
                assert_eq!(direction, Direction::Egress);
                let tuple = tuple.unwrap_or_else(|| panic!("no tuple"));
                assert_eq!(tuple.local, IpAddr::V4(Ipv4Addr::LOCALHOST));
                assert_eq!(tuple.local_port, 8080);
                assert_eq!(total_bytes, 9000);
                assert_eq!(payload, b"HTTP/1.1 200 OK\r\n");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_data_record_is_decoded_without_copies() {
        let raw = record(KIND_DATA, b"GET / HTTP/1.1\r\n");
        let Ok(KernelEvent::Data {
            origin, payload, ..
        }) = KernelEvent::decode(&raw)
        else {
            panic!("not a data event");
        };
        assert!(matches!(origin.comm(), Cow::Borrowed("nginx")));
        assert!(std::ptr::eq(payload, &raw[EVENT_SIZE..]));
    }

    #[test]
    fn a_thread_name_that_is_not_utf8_is_replaced_not_refused() {
        let mut raw = record(KIND_CLOSE, b"");
        raw[EVENT_COMM..EVENT_COMM + 16].copy_from_slice(b"ab\xffcdefghijklmno");
        let Ok(KernelEvent::Close { origin, .. }) = KernelEvent::decode(&raw) else {
            panic!("not a close event");
        };
        assert_eq!(origin.comm(), "ab\u{fffd}cdefghijklmno");
    }

    #[test]
    fn rejects_a_payload_longer_than_the_record() {
        let mut r = record(KIND_DATA, b"abc");
        r.truncate(EVENT_SIZE + 1);
        assert!(matches!(
            KernelEvent::decode(&r),
            Err(EventDecodeError::PayloadLength { .. })
        ));
    }

    #[test]
    fn rejects_unknown_kinds_and_short_records() {
        assert!(matches!(
            KernelEvent::decode(&record(200, b"")),
            Err(EventDecodeError::UnknownKind(200))
        ));
        assert!(matches!(
            KernelEvent::decode(&[1, 2, 3]),
            Err(EventDecodeError::TooShort { .. })
        ));
    }

    #[test]
    fn maps_v4_in_v6_addresses_to_v4() {
        let mut raw = [0u8; 16];
        raw[10] = 0xff;
        raw[11] = 0xff;
        raw[12..].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(
            decode_addr(AF_INET6, raw),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_records(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = KernelEvent::decode(&bytes);
            let _ = decode_listeners(&bytes);
        }
    }
}
