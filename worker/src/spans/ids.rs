//! Trace and span ids: random generation, the W3C `traceparent` header, and
//! the ids a span is given when it is built.

use std::cell::Cell;

use super::SpanKind;

/// Identity of one span in its trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// The sampled flag of the incoming context, for parent-based samplers.
    pub parent_sampled: Option<bool>,
    /// Whether its process's own sampler (an `instrument` entry's `sampler`)
    /// keeps its trace; `None`: the trace export's sampler decides. Set as
    /// the span leaves for its destinations.
    pub service_sampled: Option<bool>,
}

impl SpanIds {
    /// A server span, or a consumer span of a message that carried a
    /// context, joins the sender's trace as its child. A client (or producer)
    /// span whose request carries a traceparent *is* the span that header
    /// names (the callee will see it as its parent), so it takes those ids.
    /// Without a context, a new trace.
    pub fn assign(kind: SpanKind, traceparent: Option<&str>) -> Self {
        match traceparent.and_then(TraceParent::parse) {
            Some(tp) if matches!(kind, SpanKind::Client | SpanKind::Producer) => Self {
                trace_id: tp.trace_id,
                span_id: tp.parent_span_id,
                parent_span_id: None,
                parent_sampled: Some(tp.sampled),
                service_sampled: None,
            },
            Some(tp) => Self {
                trace_id: tp.trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(tp.parent_span_id),
                parent_sampled: Some(tp.sampled),
                service_sampled: None,
            },
            None => Self {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent_span_id: None,
                parent_sampled: None,
                service_sampled: None,
            },
        }
    }
}

/// W3C trace context carried by a request (`traceparent` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    pub sampled: bool,
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl TraceParent {
    /// Parses `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`;
    /// all-zero ids and version ff are invalid (W3C Trace Context).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = hex_bytes::<16>(parts.next()?)?;
        let parent_span_id = hex_bytes::<8>(parts.next()?)?;
        let flags = hex_bytes::<1>(parts.next()?)?;
        let version = hex_bytes::<1>(version)?;
        // Version 00 has exactly four fields; later versions may append more.
        if version[0] == 0xff || (version[0] == 0 && parts.next().is_some()) {
            return None;
        }
        if trace_id == [0; 16] || parent_span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_span_id,
            sampled: flags[0] & 1 == 1,
        })
    }
}

thread_local! {
    static RNG_STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into our buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let fallback = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(std::process::id());
    if n == 8 {
        u64::from_ne_bytes(bytes)
    } else {
        fallback
    }
}

/// splitmix64: fast, well-distributed ids (not for secrets).
fn next_u64() -> u64 {
    RNG_STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&next_u64().to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

pub fn new_span_id() -> [u8; 8] {
    let id = next_u64();
    (if id == 0 { 1 } else { id }).to_be_bytes()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparents() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let tp = tp.unwrap_or_else(|| panic!("valid header rejected"));
        assert_eq!(to_hex(&tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&tp.parent_span_id), "00f067aa0ba902b7");
        assert!(tp.sampled);
        let unsampled =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert_eq!(unsampled.map(|t| t.sampled), Some(false));
    }

    #[test]
    fn rejects_invalid_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn servers_join_the_incoming_trace_and_clients_are_the_span_it_names() {
        let header = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let server = SpanIds::assign(SpanKind::Server, header);
        assert_eq!(to_hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            server.parent_span_id.map(|p| to_hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(server.parent_sampled, Some(true));
        let client = SpanIds::assign(SpanKind::Client, header);
        assert_eq!(to_hex(&client.span_id), "00f067aa0ba902b7");
        assert_eq!(client.parent_span_id, None);
        let fresh = SpanIds::assign(SpanKind::Server, None);
        assert_ne!(fresh.trace_id, [0; 16]);
        assert_eq!((fresh.parent_span_id, fresh.parent_sampled), (None, None));
    }

    #[test]
    fn ids_are_random_and_non_zero() {
        let a = new_trace_id();
        let b = new_trace_id();
        assert_ne!(a, b);
        assert_ne!(new_span_id(), [0; 8]);
    }
}
