//! The fixed allow-list of Go functions the loader's Go hooks may attach to (`crypto/tls`'s
//! data path, and `net/http`'s client connection), and what was found of them in one
//! executable. The loader attaches only to names on this list, whatever a worker asks for.

use crate::buildinfo::GoVersion;
use crate::GoFunction;

/// A Go function on the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookedFunction {
    /// `(*Conn).Write(b []byte) (int, error)`: plaintext about to be encrypted (at entry).
    ConnWrite,
    /// `(*Conn).Read(b []byte) (int, error)`: plaintext just decrypted (at each return).
    ConnRead,
    /// `(*Conn).Close() error`: forget what was tied to this `Conn`, whose address the
    /// garbage collector may reuse for a new one.
    ConnClose,
    /// `net/http.(*persistConn).roundTrip`: runs on the goroutine that makes an HTTP/1 call
    /// (receiver in RAX), which hands the request to the connection's `writeLoop`.
    PersistConnRoundTrip,
    /// `net/http.(*persistConn).writeLoop`: the goroutine that writes a client
    /// connection's requests, for its whole life (receiver in RAX).
    PersistConnWriteLoop,
    /// `net/http.(*persistConn).readLoop`: the goroutine that reads its responses.
    PersistConnReadLoop,
}

impl HookedFunction {
    /// Every function on the allow-list.
    pub const ALL: [HookedFunction; 6] = [
        Self::ConnWrite,
        Self::ConnRead,
        Self::ConnClose,
        Self::PersistConnRoundTrip,
        Self::PersistConnWriteLoop,
        Self::PersistConnReadLoop,
    ];

    /// The function's name in the Go symbol table.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::ConnWrite => "crypto/tls.(*Conn).Write",
            Self::ConnRead => "crypto/tls.(*Conn).Read",
            Self::ConnClose => "crypto/tls.(*Conn).Close",
            Self::PersistConnRoundTrip => "net/http.(*persistConn).roundTrip",
            Self::PersistConnWriteLoop => "net/http.(*persistConn).writeLoop",
            Self::PersistConnReadLoop => "net/http.(*persistConn).readLoop",
        }
    }

    /// The allow-listed function with this symbol name, if any (the loader's check).
    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|function| function.symbol() == symbol)
    }
}

/// One allow-listed function found in the executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHookPoint {
    /// Which function.
    pub function: HookedFunction,
    /// Where it is: entry, end and return instructions as file offsets.
    pub location: GoFunction,
    /// `Read` only: the one `CALL runtime.memmove` in it, which copies the decrypted
    /// plaintext into `b` (source in RBX, length in RCX at the call): a hook there sees the
    /// bytes `Read` returns without a hook on its returns (which uprobes step out of line).
    pub copy_call_file_offset: Option<u64>,
}

/// What the TLS hooks can do with one executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsHookPoints {
    /// A Go program with register-ABI calls and `crypto/tls`: the functions found (at least
    /// one of `Write` and `Read`; `Close` may be missing if the linker dropped it).
    Found {
        /// From the build info, when it has one.
        go_version: Option<GoVersion>,
        /// In allow-list order.
        points: Vec<TlsHookPoint>,
    },
    /// Not a Go program (an ELF without `.gopclntab`).
    NotGo,
    /// Go older than 1.17 (arguments on the stack, which the hooks do not read), or a Go
    /// whose version cannot be told and whose table layout is also written by Go 1.16: not
    /// hooked.
    RegisterAbiMissing {
        /// From the build info, when it has one.
        go_version: Option<GoVersion>,
    },
    /// A Go program that does not link `crypto/tls` (or whose linker dropped both `Read`
    /// and `Write`).
    NoCryptoTls {
        /// From the build info, when it has one.
        go_version: Option<GoVersion>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_round_trips_and_refuses_other_names() {
        for function in HookedFunction::ALL {
            assert_eq!(
                HookedFunction::from_symbol(function.symbol()),
                Some(function)
            );
        }
        assert_eq!(
            HookedFunction::from_symbol("crypto/tls.(*Conn).Handshake"),
            None
        );
        assert_eq!(HookedFunction::from_symbol("SSL_write"), None);
        assert_eq!(HookedFunction::from_symbol(""), None);
    }
}
