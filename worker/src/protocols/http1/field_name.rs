//! The header fields the decoder reads, matched whatever their case. Each
//! name is known when the program is built, so it is kept in lower case with
//! a mask of its letters: a line's first bytes, with the case bit of those
//! letters set, must equal the name exactly. The compiler unrolls the
//! comparison of a name's fixed length (a few wide compares, no byte loop
//! through `eq_ignore_ascii_case`).

/// A field name in lower case, and `0x20` where it holds a letter.
pub(super) struct FieldName<const N: usize> {
    lower: [u8; N],
    letters: [u8; N],
}

impl<const N: usize> FieldName<N> {
    /// `name` must be in lower case (checked when the constant is built).
    pub(super) const fn new(name: &[u8; N]) -> Self {
        let mut letters = [0u8; N];
        let mut i = 0;
        while i < N {
            let byte = name[i];
            assert!(
                !byte.is_ascii_uppercase(),
                "field names are given in lower case"
            );
            if byte.is_ascii_lowercase() {
                letters[i] = 0x20;
            }
            i += 1;
        }
        Self {
            lower: *name,
            letters,
        }
    }

    /// Whether `field` is this name in any case. Only a letter's case bit
    /// is ignored: `0x20` set on a letter of either case gives its lower
    /// case, and no other byte does, so no other byte can pass.
    fn matches(&self, field: &[u8; N]) -> bool {
        let differ = (field.iter().zip(&self.letters).zip(&self.lower))
            .fold(0u8, |differ, ((byte, letter), lower)| {
                differ | ((byte | letter) ^ lower)
            });
        differ == 0
    }

    /// The trimmed value of `line` when its field name is this one (any
    /// case). RFC 9112 §5.1 allows no whitespace between a name and its
    /// colon.
    pub(super) fn value_of<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let (field, rest) = line.split_first_chunk::<N>()?;
        let value = rest.strip_prefix(b":")?;
        self.matches(field).then(|| value.trim_ascii())
    }
}

pub(super) const HOST: FieldName<4> = FieldName::new(b"host");
pub(super) const TRACEPARENT: FieldName<11> = FieldName::new(b"traceparent");
pub(super) const TRANSFER_ENCODING: FieldName<17> = FieldName::new(b"transfer-encoding");
pub(super) const CONTENT_LENGTH: FieldName<14> = FieldName::new(b"content-length");
pub(super) const CONTENT_TYPE: FieldName<12> = FieldName::new(b"content-type");
pub(super) const USER_AGENT: FieldName<10> = FieldName::new(b"user-agent");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition the masks must agree with.
    fn value_by_eq_ignore_case<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        let (field_name, rest) = line.split_at_checked(name.len())?;
        let value = rest.strip_prefix(b":")?;
        field_name
            .eq_ignore_ascii_case(name)
            .then(|| value.trim_ascii())
    }

    fn both<const N: usize>(
        name: &FieldName<N>,
        line: &[u8],
    ) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            name.value_of(line).map(<[u8]>::to_vec),
            value_by_eq_ignore_case(line, &name.lower).map(<[u8]>::to_vec),
        )
    }

    #[test]
    fn names_match_in_any_case_and_nothing_else_does() {
        assert_eq!(
            CONTENT_LENGTH.value_of(b"Content-Length: 17"),
            Some(&b"17"[..])
        );
        assert_eq!(
            CONTENT_LENGTH.value_of(b"CONTENT-LENGTH:17 "),
            Some(&b"17"[..])
        );
        assert_eq!(HOST.value_of(b"hOsT:  a.example "), Some(&b"a.example"[..]));
        // A byte that is one case bit away from the dash, or from a letter.
        assert_eq!(CONTENT_LENGTH.value_of(b"Content\rLength: 17"), None);
        assert_eq!(CONTENT_LENGTH.value_of(b"Content\x0dlength: 17"), None);
        assert_eq!(HOST.value_of(b"Ho\x13t: a"), None);
        assert_eq!(HOST.value_of(b"Hos\x14: a"), None);
        // No whitespace before the colon; no colon, no field.
        assert_eq!(HOST.value_of(b"Host : a"), None);
        assert_eq!(HOST.value_of(b"Host"), None);
        assert_eq!(HOST.value_of(b"Hostname: a"), None);
    }

    proptest! {
        /// Every name, on lines built near it (its bytes in any case, one
        /// byte changed to anything), answers as `eq_ignore_ascii_case` does.
        #[test]
        fn agrees_with_eq_ignore_ascii_case(
            which in 0usize..6,
            upper in proptest::collection::vec(any::<bool>(), 17),
            change in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
            tail in "[: a-z0-9]{0,6}",
        ) {
            let names: [&[u8]; 6] = [
                b"host", b"traceparent", b"transfer-encoding", b"content-length", b"content-type",
                b"user-agent",
            ];
            let mut line: Vec<u8> = names[which]
                .iter()
                .zip(&upper)
                .map(|(b, up)| if *up { b.to_ascii_uppercase() } else { *b })
                .collect();
            if let Some((at, byte)) = change {
                let i = at.index(line.len());
                line[i] = byte;
            }
            line.extend_from_slice(tail.as_bytes());
            let (ours, theirs) = match which {
                0 => both(&HOST, &line),
                1 => both(&TRACEPARENT, &line),
                2 => both(&TRANSFER_ENCODING, &line),
                3 => both(&CONTENT_LENGTH, &line),
                4 => both(&CONTENT_TYPE, &line),
                _ => both(&USER_AGENT, &line),
            };
            prop_assert_eq!(ours, theirs);
        }

        /// Any bytes at all, against every name.
        #[test]
        fn agrees_on_any_bytes(line in proptest::collection::vec(any::<u8>(), 0..24)) {
            for (ours, theirs) in [
                both(&HOST, &line),
                both(&TRACEPARENT, &line),
                both(&TRANSFER_ENCODING, &line),
                both(&CONTENT_LENGTH, &line),
                both(&CONTENT_TYPE, &line),
            ] {
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
