//! The loader ⇄ worker protocol: a fixed, versioned set of requests carried as
//! postcard messages over a SOCK_SEQPACKET socketpair, with map file
//! descriptors attached (SCM_RIGHTS) to the Hello reply.
//!
//! This enum *is* the loader's attack surface: every variant is validated by
//! the loader's dispatch table before anything happens.

use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::event::ListeningSocket;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u16 = 5;
/// Largest message either side accepts; anything longer is refused unread.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most pids one SetTargets request may carry.
pub const MAX_TARGETS_PER_REQUEST: usize = 1024;
/// Most file descriptors one message may carry.
pub const MAX_FDS_PER_MESSAGE: usize = 8;
/// The TLS library functions the loader attaches to, and nothing else: they
/// carry the plaintext of SSL connections (OpenSSL, BoringSSL, and programs
/// that link them statically such as Node.js).
pub const TLS_SYMBOLS: &[&str] = &["SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"];
/// The Go `crypto/tls` functions the loader hooks in Go executables
/// (`AttachGoTls`), and nothing else: their buffers are the plaintext.
pub const GO_TLS_SYMBOLS: &[&str] = &["crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write"];
/// The Go `net/http` client functions the loader hooks in Go executables
/// (`AttachGoTls` too), and nothing else: where a call starts and which
/// goroutines write and read its connection, so that the kernel names the
/// calling goroutine in the connection's events. No bytes are read.
pub const GO_HTTP_CLIENT_SYMBOLS: &[&str] = &[
    "net/http.(*persistConn).roundTrip",
    "net/http.(*persistConn).writeLoop",
    "net/http.(*persistConn).readLoop",
];
/// Name prefixes of the language runtimes' shared libraries that
/// `DescribeProcess` reports a process maps (the JVM, .NET's CoreCLR,
/// CPython, Ruby, Node.js and PHP embedded in another program): they tell
/// the worker the program's language where the executable's name does not.
pub const RUNTIME_LIBRARY_PREFIXES: &[&str] = &[
    "libjvm.so",
    "libcoreclr.so",
    "libpython",
    "libruby",
    "libnode.so",
    "libphp",
];
/// Longest library path an AttachUprobe request may name (PATH_MAX).
pub const MAX_LIBRARY_PATH_BYTES: usize = 4096;
/// Environment variable through which the worker learns its end of the socketpair.
pub const IPC_FD_ENV: &str = "ZEROTRACE_IPC_FD";

/// Every message on the wire: the protocol version travels with each one.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Envelope<T> {
    pub version: u16,
    pub body: T,
}

/// What the worker may ask of the loader. Nothing else exists.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// First message: answered with the map descriptors and their fds.
    Hello,
    /// Add/remove processes in the kernel pid filter, for kernels where the
    /// worker cannot update the map itself.
    SetTargets { add: Vec<u32>, remove: Vec<u32> },
    /// Every process listening on a TCP port right now (from the BPF iterator).
    ListListeners,
    /// The executable path of a process, which the worker cannot read itself.
    DescribeProcess { pid: u32 },
    /// Loader counters.
    Stats,
    /// Hook `symbol` (one of TLS_SYMBOLS) of `library`, a file that the
    /// instrumented process `pid` maps, to capture TLS plaintext. The loader
    /// finds the file through /proc/PID/maps itself; one hook per library file
    /// serves every process that maps it, and goes when the last of the
    /// processes that asked for it has exited.
    AttachUprobe {
        pid: u32,
        library: String,
        symbol: String,
    },
    /// Hook `symbol` (one of GO_TLS_SYMBOLS or GO_HTTP_CLIENT_SYMBOLS) in the executable of the
    /// instrumented Go process `pid`, which DescribeProcess named `exe_path`.
    /// The loader opens that executable itself through /proc/PID/exe, checks
    /// it is the file named, and finds the function's entry and return
    /// instructions in it; one hook per executable file serves every process
    /// running it, and goes with the last of those that asked.
    AttachGoTls {
        pid: u32,
        exe_path: String,
        symbol: String,
    },
}

/// Which map an fd in the Hello reply is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRole {
    /// The ring buffer of kernel events.
    Events,
    /// tgid → flags: which processes are instrumented.
    PidFilter,
    /// One bit per tgid, set for the processes in the pid filter: the
    /// kernel's cheap first check. The worker maps it and keeps it in step.
    PidBits,
    /// Per-CPU counters (drops, events submitted).
    Counters,
}

/// A map handed to the worker; the fds follow in the same order.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapDescriptor {
    pub role: MapRole,
    pub max_entries: u32,
    pub key_size: u32,
    pub value_size: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProcessDescription {
    pub pid: u32,
    pub exe_path: String,
    /// Mapped TLS libraries (libssl.so*), as named in /proc/PID/maps; empty
    /// when there are none or the maps are unreadable.
    pub tls_libraries: Vec<String>,
    /// Mapped language runtime libraries ([`RUNTIME_LIBRARY_PREFIXES`]), as
    /// named in /proc/PID/maps; empty when there are none or the maps are
    /// unreadable.
    pub runtime_libraries: Vec<String>,
    /// The executable has the sections Go's linker writes (`.go.buildinfo`
    /// or `.gopclntab`): a Go program. False when it is not, or unreadable.
    pub go_executable: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderStats {
    pub requests_served: u64,
    pub requests_refused: u64,
    pub worker_restarts: u64,
    /// TLS hooks attached now: one per library function (entry and return
    /// count as one) and one per Go executable's `crypto/tls` function.
    pub uprobes_attached: u64,
}

/// Why the loader said no. All but InvalidField and Failed are protocol
/// violations: the loader kills and replaces the worker after replying.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The envelope's version is not ours.
    UnsupportedVersion { supported: u16 },
    /// Not a message of this protocol (unknown tag, bad encoding, trailing bytes).
    Malformed,
    /// Longer than MAX_MESSAGE_BYTES, or carrying file descriptors.
    Oversize,
    /// A known request whose field failed validation.
    InvalidField { field: String, reason: String },
    /// A valid request that is not allowed at this point of the session.
    NotPermittedNow,
    /// Valid and permitted, but the loader could not do it.
    Failed { reason: String },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Hello {
        loader_pid: u32,
        maps: Vec<MapDescriptor>,
    },
    TargetsSet,
    Listeners(Vec<ListeningSocket>),
    Process(ProcessDescription),
    Stats(LoaderStats),
    /// The hook is in place (`new`: this request attached it; otherwise it was
    /// already there for another process).
    UprobeAttached {
        new: bool,
    },
    /// The library file has no such function (e.g. an executable without
    /// OpenSSL linked in): nothing was attached. An answer, not a refusal.
    SymbolAbsent,
    /// `AttachGoTls`: the executable is not a Go program, or its Go is older
    /// than 1.17 (arguments on the stack): nothing was attached, and asking
    /// again for this executable gives the same answer.
    GoTlsUnsupported {
        /// The executable is not Go at all (the usual answer, not worth a warning).
        not_go: bool,
        reason: String,
    },
    Refused(Refusal),
}

/// Encodes `body` in a versioned envelope.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(&Envelope {
        version: PROTOCOL_VERSION,
        body,
    })
}

/// Why a received message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    WrongVersion(u16),
    Malformed,
}

/// Decodes a whole message; trailing bytes make it malformed.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    // The version is the first field: read it alone so a newer peer gets a
    // version error rather than "malformed".
    let (version, _) =
        postcard::take_from_bytes::<u16>(bytes).map_err(|_| DecodeError::Malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::WrongVersion(version));
    }
    let (envelope, rest) =
        postcard::take_from_bytes::<Envelope<T>>(bytes).map_err(|_| DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed);
    }
    Ok(envelope.body)
}

/// One datagram received from the socketpair.
#[derive(Debug)]
pub struct ReceivedMessage {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// The datagram was longer than MAX_MESSAGE_BYTES (its tail was discarded).
    pub truncated: bool,
}

/// Sends one message with optional fds attached.
pub fn send_message(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(socket.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one message. `Ok(None)` means the peer closed the socket.
pub fn recv_message(socket: BorrowedFd<'_>) -> nix::Result<Option<ReceivedMessage>> {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    let (len, flags, raw_fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut raw_fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    raw_fds.extend(fds);
                }
            }
        }
        (msg.bytes, msg.flags, raw_fds)
    };
    // SAFETY: SCM_RIGHTS installed these descriptors in our table just now and
    // nothing else refers to them; each is wrapped exactly once.
    let fds = raw_fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if len == 0 && !flags.contains(MsgFlags::MSG_TRUNC) {
        return Ok(None);
    }
    buf.truncate(len);
    Ok(Some(ReceivedMessage {
        bytes: buf,
        fds,
        truncated: flags.contains(MsgFlags::MSG_TRUNC) || flags.contains(MsgFlags::MSG_CTRUNC),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Hello,
            Request::SetTargets {
                add: vec![1, 2],
                remove: vec![3],
            },
            Request::ListListeners,
            Request::DescribeProcess { pid: 7 },
            Request::Stats,
            Request::AttachUprobe {
                pid: 9,
                library: "/usr/lib/libssl.so.3".into(),
                symbol: "SSL_read".into(),
            },
            Request::AttachGoTls {
                pid: 10,
                exe_path: "/usr/local/bin/server".into(),
                symbol: "crypto/tls.(*Conn).Read".into(),
            },
        ] {
            let bytes = encode(&request).unwrap_or_default();
            assert_eq!(decode::<Request>(&bytes), Ok(request));
        }
    }

    #[test]
    fn unknown_tags_trailing_bytes_and_versions_are_rejected() {
        let mut unknown = encode(&Request::Stats).unwrap_or_default();
        if let Some(tag) = unknown.last_mut() {
            *tag = 99;
        }
        assert_eq!(decode::<Request>(&unknown), Err(DecodeError::Malformed));

        let mut trailing = encode(&Request::Hello).unwrap_or_default();
        trailing.push(0);
        assert_eq!(decode::<Request>(&trailing), Err(DecodeError::Malformed));

        let old = postcard::to_stdvec(&Envelope {
            version: PROTOCOL_VERSION + 1,
            body: Request::Hello,
        })
        .unwrap_or_default();
        assert_eq!(
            decode::<Request>(&old),
            Err(DecodeError::WrongVersion(PROTOCOL_VERSION + 1))
        );
        assert_eq!(decode::<Request>(&[]), Err(DecodeError::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Reply>(&bytes);
        }
    }
}
