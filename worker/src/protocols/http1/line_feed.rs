//! Finding the next line feed of a head. Header lines are mostly short
//! (20–60 bytes), where `memchr`'s setup costs more than the search: the
//! first [`NEAR`] bytes are searched eight at a time in a plain `u64`, and
//! only a longer line (a cookie, a token) is handed to `memchr`.

/// Bytes searched a word at a time before `memchr` takes over.
const NEAR: usize = 64;

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
const LINE_FEEDS: u64 = u64::from_ne_bytes([b'\n'; 8]);

/// The offset of the first `\n` in `bytes`.
pub(super) fn find_line_feed(bytes: &[u8]) -> Option<usize> {
    let near = bytes.get(..NEAR).unwrap_or(bytes);
    let mut words = near.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // A byte of `x` is zero where `word` holds a line feed. The borrow
        // of the subtraction marks the lowest zero byte exactly (bytes above
        // it may be marked falsely, which the lowest set bit ignores).
        let x = word ^ LINE_FEEDS;
        let marks = x.wrapping_sub(ONES) & !x & HIGHS;
        if marks != 0 {
            return Some(offset + (marks.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    if let Some(i) = words.remainder().iter().position(|&b| b == b'\n') {
        return Some(offset + i);
    }
    let far = bytes.get(near.len()..)?;
    memchr::memchr(b'\n', far).map(|i| near.len() + i)
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
        }
    }
}
