//! Whether a client span and a server span are the two ends of one request.

use crate::spans::http::UNKNOWN_REQUEST_FIELD;
use crate::spans::Span;

/// Nanoseconds during which both spans were open (0: disjoint).
pub fn overlap_ns(a: &Span, b: &Span) -> u64 {
    let start = a.start_monotonic_ns.max(b.start_monotonic_ns);
    let end = a.end_monotonic_ns.min(b.end_monotonic_ns);
    // Zero-length spans (one event) still overlap a span that encloses them.
    if start <= end {
        (end - start).max(1)
    } else {
        0
    }
}

/// Both sides saw the same method and target (a side that lost one to the
/// capture does not contradict the other).
pub fn same_request(server: &Span, client: &Span) -> bool {
    match (server.http(), client.http()) {
        (Some(s), Some(c)) => agree(&s.method, &c.method) && agree(&s.target, &c.target),
        (None, None) => true,
        _ => false,
    }
}

fn agree(a: &str, b: &str) -> bool {
    a == b || a == UNKNOWN_REQUEST_FIELD || b == UNKNOWN_REQUEST_FIELD
}
