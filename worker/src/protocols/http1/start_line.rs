//! Request and status lines, judged as they arrive (possibly incomplete).

use memchr::memchr;

use super::MAX_METHOD;

/// A parsed start line, as positions in the head (the line begins at 0):
/// nothing is copied until the message is built.
#[derive(Debug, Clone, Copy)]
pub(super) struct StartLine {
    pub(super) kind: LineKind,
    pub(super) minor: u8,
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
    let (line, complete) = match memchr(b'\n', buf) {
        Some(i) => (buf.get(..i).unwrap_or_default(), true),
        None => (buf, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match (request_line(line, complete), status_line(line, complete)) {
        (Parse::Line(start), _) | (_, Parse::Line(start)) => Parse::Line(start),
        (Parse::More(a), Parse::More(b)) => Parse::More(a.or(b)),
        (Parse::More(known), Parse::Bad) | (Parse::Bad, Parse::More(known)) => Parse::More(known),
        (Parse::Bad, Parse::Bad) => Parse::Bad,
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
    let start = StartLine {
        kind: LineKind::Request {
            method_len: method.len(),
            target_len: target.len(),
        },
        minor: 1,
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
/// found by `memchr` and the bytes before it checked in one branch-free pass
/// (which the compiler vectorises); anything else takes the byte-by-byte walk.
fn target_length(rest: &[u8]) -> usize {
    let is_target = |b: u8| b > b' ' && b != 0x7f;
    if let Some(space) = memchr(b' ', rest) {
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
    use super::target_length;
    use proptest::prelude::*;

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

    proptest! {
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
