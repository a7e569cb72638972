//! gRPC over HTTP/2: which streams are calls, their service and method (from
//! `:path`), and their status code, per gRPC's PROTOCOL-HTTP2 document.

#![forbid(unsafe_code)]

use super::Http2Exchange;
pub use crate::spans::grpc::status_name;
use crate::spans::GrpcCall;

pub const OK: u32 = 0;
pub const CANCELLED: u32 = 1;
pub const UNKNOWN: u32 = 2;
pub const DEADLINE_EXCEEDED: u32 = 4;
pub const PERMISSION_DENIED: u32 = 7;
pub const RESOURCE_EXHAUSTED: u32 = 8;
pub const UNIMPLEMENTED: u32 = 12;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;
pub const DATA_LOSS: u32 = 15;
pub const UNAUTHENTICATED: u32 = 16;

/// What a request's (or, failing that, a response's) `content-type` says,
/// as far as anything reads it: whether it names gRPC. Nothing exports the
/// text, so it is judged where it is read and not kept (one byte in the
/// message instead of a copy of the value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContentType {
    /// No `content-type` was seen.
    #[default]
    Unknown,
    /// A gRPC one ([`is_grpc_content_type`]).
    Grpc,
    /// Any other.
    Other,
}

impl ContentType {
    /// The kind of a `content-type` value as captured.
    pub fn of(value: &[u8]) -> Self {
        if is_grpc_content_type(value) {
            Self::Grpc
        } else {
            Self::Other
        }
    }

    /// This one when one was seen, else `other`.
    pub fn or(self, other: Self) -> Self {
        match self {
            Self::Unknown => other,
            known => known,
        }
    }
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc;…` —
/// not `application/grpc-web*`, which is another protocol.
pub fn is_grpc_content_type(content_type: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let content_type = content_type.trim_ascii_start();
    let Some((prefix, rest)) = content_type.split_at_checked(GRPC.len()) else {
        return false;
    };
    prefix.eq_ignore_ascii_case(GRPC) && matches!(rest.first(), None | Some(b'+' | b';' | b' '))
}

/// `/package.Service/Method` → (`package.Service`, `Method`).
pub fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let valid = |part: &str| !part.is_empty() && !part.contains(['/', '?', '#']);
    (valid(service) && valid(method)).then_some((service, method))
}

/// The status a client derives from a non-200 `:status` when no
/// `grpc-status` came (gRPC's "HTTP to gRPC status code mapping").
pub fn status_from_http(status: u16) -> u32 {
    match status {
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// The status a client derives from RST_STREAM when no `grpc-status` came
/// (gRPC's "Errors" table; STREAM_CLOSED maps to none).
pub fn status_from_reset(error_code: u32) -> Option<u32> {
    match error_code {
        0x5 => None,                     // STREAM_CLOSED
        0x7 => Some(UNAVAILABLE),        // REFUSED_STREAM
        0x8 => Some(CANCELLED),          // CANCEL
        0xb => Some(RESOURCE_EXHAUSTED), // ENHANCE_YOUR_CALM
        0xc => Some(PERMISSION_DENIED),  // INADEQUATE_SECURITY
        _ => Some(INTERNAL),
    }
}

/// `grpc-timeout`: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), in ns.
pub fn timeout_ns(value: &str) -> Option<u64> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    let unit_ns: u64 = match value.as_bytes().last()? {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    amount.checked_mul(unit_ns)
}

/// A client that resets a stream once its `grpc-timeout` has run out saw
/// DEADLINE_EXCEEDED, not CANCELLED (as does the server, which knows the
/// deadline too). 5 % slack: the client's clock started before its HEADERS write.
fn deadline_passed(exchange: &Http2Exchange) -> bool {
    let Some(timeout) = exchange.grpc_timeout.as_deref().and_then(timeout_ns) else {
        return false;
    };
    let elapsed = exchange.end_ts_ns.saturating_sub(exchange.start_ts_ns);
    u128::from(elapsed) * 20 >= u128::from(timeout) * 19
}

/// `grpc-message` is percent-encoded UTF-8; invalid escapes are kept as sent.
pub fn decode_message(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gRPC call an HTTP/2 stream carried, if it was one: its content-type
/// says so or, when the content-type was not decoded (HPACK desync), a
/// `grpc-status` came back.
pub fn call_of(exchange: &Http2Exchange) -> Option<GrpcCall> {
    let is_grpc = match exchange.content_type {
        ContentType::Grpc => true,
        ContentType::Other => false,
        ContentType::Unknown => exchange.grpc_status.is_some(),
    };
    if !is_grpc {
        return None;
    }
    let (service, method) = service_and_method(exchange.path.as_deref()?)?;
    let status_code = exchange.grpc_status.or_else(|| match exchange.status {
        Some(status) if status > 200 => Some(status_from_http(status)),
        _ if exchange.reset_by_client && deadline_passed(exchange) => Some(DEADLINE_EXCEEDED),
        _ => exchange.reset_code.and_then(status_from_reset),
    });
    Some(GrpcCall {
        service: service.to_owned(),
        method: method.to_owned(),
        status_code,
        message: exchange.grpc_message.as_deref().map(decode_message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(content_type: &str, path: &str) -> Http2Exchange {
        Http2Exchange {
            method: Some("POST".into()),
            path: Some(path.into()),
            content_type: ContentType::of(content_type.as_bytes()),
            status: Some(200),
            ..Default::default()
        }
    }

    #[test]
    fn grpc_content_types_are_recognized_and_grpc_web_is_not() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;charset=utf-8",
            "application/grpc+json",
        ] {
            assert!(is_grpc_content_type(yes.as_bytes()), "{yes}");
            assert_eq!(ContentType::of(yes.as_bytes()), ContentType::Grpc);
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web-text+proto",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc_content_type(no.as_bytes()), "{no}");
            assert_eq!(ContentType::of(no.as_bytes()), ContentType::Other);
        }
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            service_and_method("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter", "SayHello"))
        );
        assert_eq!(service_and_method("/Svc/M"), Some(("Svc", "M")));
        for bad in ["", "/", "//M", "/Svc/", "/a/b/c", "Svc/M", "/Svc"] {
            assert_eq!(service_and_method(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_comes_from_trailers_then_http_status_then_reset() {
        let mut ok = exchange("application/grpc", "/pkg.Svc/Get");
        ok.grpc_status = Some(0);
        let call = call_of(&ok).unwrap_or_else(|| panic!("not a call"));
        assert_eq!(
            (call.service.as_str(), call.method.as_str()),
            ("pkg.Svc", "Get")
        );
        assert_eq!(call.status_code, Some(OK));

        let mut not_found = exchange("application/grpc", "/pkg.Svc/Get");
        not_found.grpc_status = Some(5);
        not_found.grpc_message = Some("no %E2%9C%93 here 100%".into());
        let call = call_of(&not_found).unwrap_or_else(|| panic!("not a call"));
        assert_eq!(call.status_code, Some(5));
        assert_eq!(call.message.as_deref(), Some("no ✓ here 100%"));

        let mut proxy_error = exchange("application/grpc", "/pkg.Svc/Get");
        proxy_error.status = Some(503);
        assert_eq!(
            call_of(&proxy_error).and_then(|c| c.status_code),
            Some(UNAVAILABLE)
        );
        proxy_error.status = Some(404);
        assert_eq!(
            call_of(&proxy_error).and_then(|c| c.status_code),
            Some(UNIMPLEMENTED)
        );

        let mut cancelled = exchange("application/grpc", "/pkg.Svc/Watch");
        cancelled.reset = true;
        cancelled.reset_code = Some(0x8);
        assert_eq!(
            call_of(&cancelled).and_then(|c| c.status_code),
            Some(CANCELLED)
        );
        // The client gave up when its deadline ran out.
        let mut late = exchange("application/grpc", "/pkg.Svc/Watch");
        late.reset = true;
        late.reset_code = Some(0x8);
        late.reset_by_client = true;
        late.grpc_timeout = Some("250m".into());
        late.end_ts_ns = 251_000_000;
        assert_eq!(
            call_of(&late).and_then(|c| c.status_code),
            Some(DEADLINE_EXCEEDED)
        );
        late.end_ts_ns = 100_000_000; // cancelled well before the deadline
        assert_eq!(call_of(&late).and_then(|c| c.status_code), Some(CANCELLED));
        late.end_ts_ns = 251_000_000;
        late.reset_by_client = false; // the server's own reset: its error code says
        assert_eq!(call_of(&late).and_then(|c| c.status_code), Some(CANCELLED));
        // Neither trailers nor a reset seen: unknown, not guessed.
        let unfinished = exchange("application/grpc", "/pkg.Svc/Watch");
        assert_eq!(call_of(&unfinished).map(|c| c.status_code), Some(None));
    }

    #[test]
    fn non_grpc_exchanges_are_not_calls() {
        assert_eq!(call_of(&exchange("text/html", "/pkg.Svc/Get")), None);
        assert_eq!(call_of(&exchange("application/grpc", "/index.html")), None);
        let mut no_type = exchange("application/grpc", "/pkg.Svc/Get");
        no_type.content_type = ContentType::Unknown;
        assert_eq!(call_of(&no_type), None);
        // The content-type was lost to an HPACK desync, but grpc-status came.
        no_type.grpc_status = Some(0);
        assert_eq!(call_of(&no_type).map(|c| c.method), Some("Get".into()));
    }

    #[test]
    fn grpc_timeouts_parse_with_their_units() {
        assert_eq!(timeout_ns("250m"), Some(250_000_000));
        assert_eq!(timeout_ns("5S"), Some(5_000_000_000));
        assert_eq!(timeout_ns("1H"), Some(3_600_000_000_000));
        assert_eq!(timeout_ns("99999999n"), Some(99_999_999));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "10"] {
            assert_eq!(timeout_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_names_cover_every_code() {
        assert_eq!(status_name(0), "OK");
        assert_eq!(status_name(5), "NOT_FOUND");
        assert_eq!(status_name(16), "UNAUTHENTICATED");
        assert_eq!(status_name(99), "CODE_99");
        assert_eq!(decode_message("bad %zz and %4"), "bad %zz and %4");
    }
}
