//! Finding the next line feed of a head, or the space after a request
//! target. Both are mostly near (header lines are 20–60 bytes, targets
//! often shorter), where `memchr`'s setup costs more than the search: the
//! first [`NEAR`] bytes are searched eight at a time in a plain `u64`, and
//! only what lies further (a cookie, a token, a long query) is handed to
//! `memchr`.

/// Bytes searched a word at a time before `memchr` takes over.
const NEAR: usize = 64;

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The offset of the first `\n` in `bytes`.
pub(super) fn find_line_feed(bytes: &[u8]) -> Option<usize> {
    find_near::<b'\n'>(bytes)
}

/// The offset of the first space in `bytes`.
pub(super) fn find_space(bytes: &[u8]) -> Option<usize> {
    find_near::<b' '>(bytes)
}

/// The offset of the first `BYTE` in `bytes`.
#[inline(always)]
fn find_near<const BYTE: u8>(bytes: &[u8]) -> Option<usize> {
    let wanted = u64::from_ne_bytes([BYTE; 8]);
    let near = bytes.get(..NEAR).unwrap_or(bytes);
    let mut words = near.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // A byte of `x` is zero where `word` holds the wanted byte. The
        // borrow of the subtraction marks the lowest zero byte exactly (bytes
        // above it may be marked falsely, which the lowest set bit ignores).
        let x = word ^ wanted;
        let marks = x.wrapping_sub(ONES) & !x & HIGHS;
        if marks != 0 {
            return Some(offset + (marks.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    if let Some(i) = words.remainder().iter().position(|&b| b == BYTE) {
        return Some(offset + i);
    }
    let far = bytes.get(near.len()..)?;
    memchr::memchr(BYTE, far).map(|i| near.len() + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_line_feed_is_found_in_each_stretch() {
        for (bytes, want) in [
            (&b""[..], None),
            (b"\n", Some(0)),
            (b"Host: a\r\n", Some(8)),
            (b"no line feed at all", None),
            // A byte just above a line feed's value, and one just below.
            (b"\x0b\x09\x0a", Some(2)),
        ] {
            assert_eq!(find_line_feed(bytes), want, "{bytes:?}");
        }
        let mut long = vec![b'a'; 200];
        long[150] = b'\n';
        long[180] = b'\n';
        assert_eq!(find_line_feed(&long), Some(150));
        long[63] = b'\n';
        assert_eq!(find_line_feed(&long), Some(63));
        long[64] = b'\n';
        long[63] = b'a';
        assert_eq!(find_line_feed(&long), Some(64));
        let mut target = vec![b'/'; 100];
        assert_eq!(find_space(&target), None);
        target[70] = b' ';
        assert_eq!(find_space(&target), Some(70));
        target[3] = b' ';
        assert_eq!(find_space(&target), Some(3));
        assert_eq!(find_space(b"/ HTTP/1.1"), Some(1));
    }

    proptest! {
        #[test]
        fn it_finds_what_memchr_finds(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(0x0b_u8), Just(0x8a_u8), any::<u8>()],
                0..160,
            ),
            spread in 1_usize..40,
        ) {
            // Line feeds are rare in most inputs: keep every `spread`th.
            let bytes: Vec<u8> = bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| if b == b'\n' && i % spread != 0 { b'x' } else { b })
                .collect();
            prop_assert_eq!(find_line_feed(&bytes), memchr::memchr(b'\n', &bytes));
            // The same bytes with spaces where the line feeds were.
            let spaced: Vec<u8> = bytes.iter().map(|&b| match b {
                b'\n' => b' ',
                b' ' => b'x',
                other => other,
            }).collect();
            prop_assert_eq!(find_space(&spaced), memchr::memchr(b' ', &spaced));
        }
    }
}
