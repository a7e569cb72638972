//! The span of an HTTP exchange (HTTP/1 or HTTP/2, a gRPC call too): who and
//! where from the connection, what from the exchange.

use std::net::SocketAddr;

use zerotrace_shared::event::ConnectionRole;

use super::session::ConnectionInfo;
use crate::spans::{HttpSpan, SpanKind};

/// What a span says for a request's method or path the capture did not
/// show (lost to a gap or to lost HPACK state), as OBI does.
pub const UNKNOWN_REQUEST_FIELD: &str = "*";

fn socket_addr(addr: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

/// The span of one exchange on `conn`: who and where from the connection,
/// what from the exchange; timing, sizes and headers are filled in by the caller.
pub(super) fn span_on(
    conn: &ConnectionInfo,
    method: String,
    target: String,
    status: u16,
) -> HttpSpan {
    HttpSpan {
        kind: match conn.role {
            ConnectionRole::Client => SpanKind::Client,
            _ => SpanKind::Server,
        },
        pid: conn.pid,
        process_name: conn.process_name.clone(),
        local: socket_addr(conn.tuple.local, conn.tuple.local_port),
        peer: socket_addr(conn.tuple.peer, conn.tuple.peer_port),
        method,
        target,
        status,
        protocol_version: "1.1",
        start_monotonic_ns: 0,
        end_monotonic_ns: 0,
        request_body_bytes: 0,
        response_body_bytes: 0,
        host: None,
        traceparent: None,
        truncated: false,
        route: None,
        grpc: None,
        tls: conn.tls,
    }
}
