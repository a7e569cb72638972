//! Who and where a span of an HTTP exchange (HTTP/1 or HTTP/2, a gRPC call
//! too) happened: from the connection.

use std::net::SocketAddr;

use zerotrace_shared::event::ConnectionRole;

use super::session::ConnectionInfo;
use crate::spans::{SpanKind, SpanOrigin};

pub use crate::spans::http::UNKNOWN_REQUEST_FIELD;

/// Who and where a span on `conn` happened; what, when and how big come
/// from the exchange.
pub(super) fn origin_of(conn: &ConnectionInfo) -> SpanOrigin {
    SpanOrigin {
        kind: match conn.role {
            ConnectionRole::Client => SpanKind::Client,
            _ => SpanKind::Server,
        },
        pid: conn.pid,
        process_name: conn.process_name.clone(),
        local: SocketAddr::new(conn.tuple.local, conn.tuple.local_port),
        peer: SocketAddr::new(conn.tuple.peer, conn.tuple.peer_port),
        tls: conn.tls,
    }
}
