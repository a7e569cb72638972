//! HTTP/2 over cleartext by Upgrade (RFC 7540 §3.2): an HTTP/1.1 request
//! asks for `h2c`, a `101 Switching Protocols` grants it, and HTTP/2 frames
//! follow the 101's head on the same connection.

/// When `bytes` start with a `101 Switching Protocols` response that switches
/// to `h2c`, the offset just past its head (where the server's first HTTP/2
/// frames start, if any were written with it).
pub fn switch_offset(bytes: &[u8]) -> Option<usize> {
    let status_line = b"HTTP/1.1 101";
    // Every HTTP/1 segment comes here: the status code, which has no case,
    // rules nearly all of them out before the case-blind compare.
    if bytes.get(9..12) != Some(b"101")
        || !bytes
            .get(..status_line.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(status_line))
    {
        return None;
    }
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = bytes.get(..end)?;
    let upgrades_to_h2c = head.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = line.split_at(colon);
        name.trim_ascii().eq_ignore_ascii_case(b"upgrade")
            && value
                .get(1..)
                .unwrap_or_default()
                .trim_ascii()
                .eq_ignore_ascii_case(b"h2c")
    });
    upgrades_to_h2c.then_some((end + 4).min(bytes.len()))
}
