//! Request and status lines, judged as they arrive (possibly incomplete).

use super::near_byte::{find_line_feed, find_space};
use super::MAX_METHOD;

/// A parsed start line, as positions in the head (the line begins at 0):
/// nothing is copied until the message is built.
#[derive(Debug, Clone, Copy)]
pub(super) struct StartLine {
    pub(super) kind: LineKind,
    pub(super) minor: u8,
    /// Just past the line's line feed; the bytes' length while the line is
    /// incomplete. The header fields start here.
    pub(super) end: usize,
}

impl StartLine {
    pub(super) fn is_request(&self) -> bool {
        matches!(self.kind, LineKind::Request { .. })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum LineKind {
    /// The method is `head[..method_len]`, the target the `target_len`
    /// bytes after the space that follows it.
    Request {
        method_len: usize,
        target_len: usize,
    },
    Response {
        status: u16,
    },
}
/// Verdict on a (possibly partial) start line.
#[derive(Debug)]
pub(super) enum Parse {
    Bad,
    /// Valid so far; carries what is known once method+target or status are in.
    More(Option<StartLine>),
    Line(StartLine),
}

enum Version {
    Bad,
    Prefix,
    Minor(u8),
}
/// Whether a segment seen while resyncing visibly begins a new message.
pub(super) fn starts_message(captured: &[u8], missing: u64) -> bool {
    match check_start(skip_blank_lines(captured)) {
        Parse::Line(_) => true,
        // A start line longer than the capture still counts.
        Parse::More(Some(_)) => missing > 0,
        _ => false,
    }
}

/// Whether bytes start with an interim (1xx but not 101) status line.
pub(super) fn is_interim_response(bytes: &[u8]) -> bool {
    match check_start(bytes) {
        Parse::Line(start) | Parse::More(Some(start)) => matches!(
            start.kind,
            LineKind::Response { status } if status < 200 && status != 101
        ),
        _ => false,
    }
}
pub(super) fn skip_blank_lines(bytes: &[u8]) -> &[u8] {
    let blank = bytes
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    bytes.get(blank..).unwrap_or_default()
}

/// Judges the start line at the beginning of `buf`, which may be incomplete.
pub(super) fn check_start(buf: &[u8]) -> Parse {
    let (line, complete, end) = match find_line_feed(buf) {
        Some(i) => (buf.get(..i).unwrap_or_default(), true, i + 1),
        None => (buf, false, buf.len()),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // A line that starts `HTTP/` is no request line (its method would be
    // `HTTP`, followed by `/`, not a space), and any other is no status line
    // but for a prefix of `HTTP`, which both parsers judge alike: one
    // parser is asked.
    let parse = if line.starts_with(b"HTTP/") {
        status_line(line, complete)
    } else {
        request_line(line, complete)
    };
    match parse {
        Parse::Line(start) => Parse::Line(StartLine { end, ..start }),
        Parse::More(known) => Parse::More(known.map(|start| StartLine { end, ..start })),
        Parse::Bad => Parse::Bad,
    }
}

/// Running out of bytes is fine for a line still arriving, fatal for a whole one.
fn cut_short(complete: bool, known: Option<StartLine>) -> Parse {
    if complete {
        Parse::Bad
    } else {
        Parse::More(known)
    }
}

/// A start line that parsed fully, though more bytes of it may still come.
pub(super) fn parsed(complete: bool, start: StartLine) -> Parse {
    if complete {
        Parse::Line(start)
    } else {
        Parse::More(Some(start))
    }
}

/// `METHOD SP target SP HTTP/1.x`
fn request_line(line: &[u8], complete: bool) -> Parse {
    let method_len = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let (method, rest) = line.split_at_checked(method_len).unwrap_or((line, &[]));
    if method_len > MAX_METHOD {
        return Parse::Bad;
    }
    if rest.is_empty() {
        return cut_short(complete, None);
    }
    let Some(rest) = rest.strip_prefix(b" ").filter(|_| !method.is_empty()) else {
        return Parse::Bad;
    };
    let target_len = target_length(rest);
    let (target, rest) = rest.split_at_checked(target_len).unwrap_or((rest, &[]));
    match (target.is_empty(), rest.is_empty()) {
        (true, true) => return cut_short(complete, None),
        (true, false) => return Parse::Bad,
        _ => {}
    }
    // Every request-target form (RFC 9112 §3.2) starts with `/`, `*`, a
    // scheme or host name, or an IP literal's `[`: a line whose "target"
    // starts otherwise (NATS's `INFO {…}`) is no request line.
    if target
        .first()
        .is_some_and(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'/' | b'*' | b'[')))
    {
        return Parse::Bad;
    }
    let start = StartLine {
        kind: LineKind::Request {
            method_len: method.len(),
            target_len: target.len(),
        },
        minor: 1,
        end: 0,
    };
    if rest.is_empty() {
        return cut_short(complete, Some(start));
    }
    match rest.strip_prefix(b" ").map(match_version) {
        Some(Version::Minor(minor)) => parsed(complete, StartLine { minor, ..start }),
        Some(Version::Prefix) => cut_short(complete, Some(start)),
        _ => Parse::Bad,
    }
}

/// How many bytes at the start of `rest` are visible non-space characters
/// (the request target). Usually they run to the next space: that space is
/// found ([`find_space`]) and the bytes before it checked in one branch-free pass
/// (which the compiler vectorises); anything else takes the byte-by-byte walk.
fn target_length(rest: &[u8]) -> usize {
    let is_target = |b: u8| b > b' ' && b != 0x7f;
    if let Some(space) = find_space(rest) {
        let before = rest.get(..space).unwrap_or_default();
        if before.iter().fold(true, |all, &b| all & is_target(b)) {
            return space;
        }
    }
    rest.iter().take_while(|&&b| is_target(b)).count()
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`
fn status_line(line: &[u8], complete: bool) -> Parse {
    let (version, rest) = line.split_at_checked(8).unwrap_or((line, &[]));
    let minor = match match_version(version) {
        Version::Minor(minor) => minor,
        Version::Prefix => return cut_short(complete, None),
        Version::Bad => return Parse::Bad,
    };
    if rest.is_empty() {
        return cut_short(complete, None);
    }
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Parse::Bad;
    };
    let digits = rest
        .iter()
        .take(3)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let (code, reason) = rest.split_at_checked(digits).unwrap_or((rest, &[]));
    match (digits, reason.is_empty()) {
        (3, _) => {}
        (_, true) => return cut_short(complete, None),
        (_, false) => return Parse::Bad,
    }
    // Three digits cannot overflow u16.
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    let reason_ok = reason.is_empty()
        || reason
            .strip_prefix(b" ")
            .is_some_and(|r| r.iter().all(|&b| is_text(b)));
    if !(100..=599).contains(&status) || !reason_ok {
        return Parse::Bad;
    }
    parsed(
        complete,
        StartLine {
            kind: LineKind::Response { status },
            minor,
            end: 0,
        },
    )
}

/// Matches `HTTP/1.0` or `HTTP/1.1`, or a prefix of them.
fn match_version(v: &[u8]) -> Version {
    const NAME: &[u8] = b"HTTP/1.";
    match v.split_at_checked(NAME.len()) {
        Some((name, [d @ (b'0' | b'1')])) if name == NAME => Version::Minor(d - b'0'),
        _ if v.len() <= NAME.len() && NAME.starts_with(v) => Version::Prefix,
        _ => Version::Bad,
    }
}

/// Visible characters, spaces and tabs.
pub(super) fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::{check_start, request_line, status_line, target_length, Parse, StartLine};
    use proptest::prelude::*;

    /// The verdict of both parsers on one line (as `check_start` once combined them).
    fn either(request: Parse, status: Parse) -> Parse {
        match (request, status) {
            (Parse::Line(start), _) | (_, Parse::Line(start)) => Parse::Line(start),
            (Parse::More(a), Parse::More(b)) => Parse::More(a.or(b)),
            (Parse::More(known), Parse::Bad) | (Parse::Bad, Parse::More(known)) => {
                Parse::More(known)
            }
            (Parse::Bad, Parse::Bad) => Parse::Bad,
        }
    }

    /// What `check_start` shortcuts: both parsers asked about every line.
    fn both_asked(buf: &[u8]) -> Parse {
        let (line, complete, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true, i + 1),
            None => (buf, false, buf.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match either(request_line(line, complete), status_line(line, complete)) {
            Parse::Line(start) => Parse::Line(StartLine { end, ..start }),
            Parse::More(known) => Parse::More(known.map(|start| StartLine { end, ..start })),
            Parse::Bad => Parse::Bad,
        }
    }

    #[test]
    fn the_header_fields_start_where_the_start_line_ends() {
        for (head, want) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], 16),
            (b"HTTP/1.1 200 OK\nServer: x\n\n", 16),
            (b"HEAD /x HTTP/1.0\r\n", 18),
        ] {
            match check_start(head) {
                Parse::Line(start) => assert_eq!(start.end, want, "{head:?}"),
                other => panic!("{head:?}: {other:?}"),
            }
        }
        match check_start(b"GET /long-target") {
            Parse::More(Some(start)) => assert_eq!(start.end, 16),
            other => panic!("{other:?}"),
        }
    }

    /// Every request-target form starts with `/`, `*`, a scheme or host, or
    /// `[`; a line whose target starts otherwise is refused even while it
    /// is still arriving (NATS's greeting `INFO {"server_id":…`).
    #[test]
    fn a_target_in_no_request_target_form_is_no_request_line() {
        for line in [
            &b"GET /x HTTP/1.1\r\n"[..],
            b"OPTIONS * HTTP/1.1\r\n",
            b"GET http://a/ HTTP/1.1\r\n",
            b"CONNECT a.example:443 HTTP/1.1\r\n",
            b"CONNECT [::1]:443 HTTP/1.1\r\n",
        ] {
            assert!(matches!(check_start(line), Parse::Line(_)), "{line:?}");
        }
        for line in [
            &b"INFO {\"server_id\":\"N"[..],
            b"CONNECT {\"verbose\":false} HTTP/1.1\r\n",
        ] {
            assert!(matches!(check_start(line), Parse::Bad), "{line:?}");
        }
    }

    /// The definition `target_length` shortcuts.
    fn walked(rest: &[u8]) -> usize {
        rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count()
    }

    #[test]
    fn target_ends_at_the_first_space_or_control_byte() {
        for (rest, want) in [
            (&b"/a/b HTTP/1.1"[..], 4),
            (b"/a\tb HTTP/1.1", 2),
            (b"/a\x7fb c", 2),
            (b"/no-space-yet", 13),
            (b" HTTP/1.1", 0),
            (b"", 0),
        ] {
            assert_eq!((target_length(rest), walked(rest)), (want, want));
        }
    }

    /// Bytes that build start lines of either kind, and near misses.
    fn start_line_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"HTTP/1.1 ".to_vec()),
            Just(b"HTTP/1.0".to_vec()),
            Just(b"HTTP/".to_vec()),
            Just(b"HTTP".to_vec()),
            Just(b"H".to_vec()),
            Just(b"HEAD".to_vec()),
            Just(b"GET".to_vec()),
            Just(b" ".to_vec()),
            Just(b"/".to_vec()),
            Just(b"200".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..3),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn one_parser_judges_as_both_would(buf in start_line_bytes()) {
            prop_assert_eq!(format!("{:?}", check_start(&buf)), format!("{:?}", both_asked(&buf)));
        }

        #[test]
        fn target_length_is_the_walk(
            rest in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'\t'), Just(0x7f_u8), Just(b'/'), any::<u8>()],
                0..80,
            )
        ) {
            prop_assert_eq!(target_length(&rest), walked(&rest));
        }
    }
}
