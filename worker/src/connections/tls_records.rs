//! Recognises TLS records, so that the socket bytes of an encrypted
//! connection are skipped rather than taken for an unknown protocol.

/// Whether bytes start with a TLS record header: content type 20-23
/// (change_cipher_spec, alert, handshake, application_data), major version 3,
/// minor 0-4, and a length a record may have. No HTTP message starts so.
pub(super) fn is_tls_record(bytes: &[u8]) -> bool {
    match bytes {
        [content_type, 3, minor, len_hi, len_lo, ..] => {
            (20..=23).contains(content_type)
                && *minor <= 4
                && u16::from_be_bytes([*len_hi, *len_lo]) <= 16384 + 2048
        }
        _ => false,
    }
}
