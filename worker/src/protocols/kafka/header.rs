//! Kafka request and response headers: which API a request calls, at which
//! version, under which correlation id and client id; and which header and
//! body versions are flexible (compact fields, tagged fields).

#![forbid(unsafe_code)]

use super::wire::Wire;

/// The API keys the decoder reads the bodies of.
pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const METADATA: i16 = 3;
pub const API_VERSIONS: i16 = 18;

/// The highest API key Apache Kafka 4.x defines, with margin.
pub const MAX_API_KEY: i16 = 90;
/// The highest version of any API, with margin.
pub const MAX_API_VERSION: i16 = 30;
/// Longest client id kept.
pub const MAX_CLIENT_ID: usize = 256;

/// The first flexible version of the APIs whose bodies are read (for the
/// others only the header's fixed start is read, which does not depend on it).
pub fn is_flexible(api_key: i16, api_version: i16) -> bool {
    let first = match api_key {
        PRODUCE => 9,
        FETCH => 12,
        METADATA => 9,
        API_VERSIONS => 3,
        _ => return false,
    };
    api_version >= first
}

/// A request's header (v1 or v2: v0 lacks the client id and is sent only
/// by ControlledShutdown v0, a broker's request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// Where the request's body starts in the message.
    pub body_offset: usize,
}

/// Whether a client id is printable ASCII, as clients set them.
pub fn plausible_client_id(id: &[u8]) -> bool {
    id.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

/// Reads a request header at the start of a message (after its size).
pub fn request_header(message: &[u8]) -> Option<RequestHeader> {
    let mut wire = Wire::new(message, false);
    let api_key = wire.i16()?;
    let api_version = wire.i16()?;
    let correlation_id = wire.i32()?;
    if !(0..=MAX_API_KEY).contains(&api_key) || !(0..=MAX_API_VERSION).contains(&api_version) {
        return None;
    }
    // The client id is a classic nullable string in both v1 and v2.
    let client_id = wire.nullable_string()?;
    if client_id.is_some_and(|id| !plausible_client_id(id)) {
        return None;
    }
    let client_id = client_id
        .map(|id| String::from_utf8_lossy(&id[..id.len().min(MAX_CLIENT_ID)]).into_owned());
    wire.flexible = is_flexible(api_key, api_version);
    wire.tagged_fields()?;
    Some(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
        body_offset: wire.position(),
    })
}

/// Where a response's body starts, after its correlation id (and, for a
/// flexible response other than ApiVersions', its tagged fields).
pub fn response_body_offset(message: &[u8], api_key: i16, api_version: i16) -> Option<usize> {
    let flexible = is_flexible(api_key, api_version) && api_key != API_VERSIONS;
    let mut wire = Wire::new(message, flexible);
    wire.i32()?;
    wire.tagged_fields()?;
    Some(wire.position())
}

/// A response's correlation id.
pub fn correlation_id(message: &[u8]) -> Option<i32> {
    Wire::new(message, false).i32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_header_and_a_flexible_v2_header() {
        let v1 = b"\x00\x03\x00\x05\x00\x00\x00\x07\x00\x04app1rest";
        let header = request_header(v1).unwrap_or_else(|| panic!("v1"));
        assert_eq!(
            (header.api_key, header.api_version, header.correlation_id),
            (3, 5, 7)
        );
        assert_eq!(header.client_id.as_deref(), Some("app1"));
        assert_eq!(&v1[header.body_offset..], b"rest");
        let v2 = b"\x00\x01\x00\x0c\x00\x00\x00\x01\xff\xff\x00body";
        let header = request_header(v2).unwrap_or_else(|| panic!("v2"));
        assert_eq!(header.client_id, None);
        assert_eq!(&v2[header.body_offset..], b"body");
        assert_eq!(
            request_header(b"\x00\x01\x00\x0c\x00\x00\x00\x01\x00\x02\x01\x02"),
            None
        );
        assert_eq!(
            request_header(b"\x01\x00\x00\x01\x00\x00\x00\x01\xff\xff"),
            None
        );
    }
}
