//! The HPACK decoder: RFC 7541 Appendix C examples, Huffman, limits,
//! desynced tables and property tests.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| {
            let text = std::str::from_utf8(p).unwrap_or_else(|e| panic!("{e}"));
            u8::from_str_radix(text, 16).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn decode(decoder: &mut HpackDecoder, block: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let decoded = decoder
        .decode(&hex(block), &mut out)
        .unwrap_or_else(|e| panic!("decode failed: {e}"));
    assert_eq!(decoded.unknown_fields, 0);
    out
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn check_table(decoder: &HpackDecoder, expected: &[(&str, &str)], size: usize) {
    let table: Vec<(&str, &str)> = decoder.table().collect();
    assert_eq!(table, expected);
    assert_eq!(decoder.table_size(), size);
}

#[test]
fn a_cut_block_yields_only_the_fields_it_holds_whole() {
    // RFC 7541 C.3.1 (GET http://www.example.com/), cut inside the
    // authority's value: the three static fields are exact, the cut one
    // is not guessed, and the table is unknown afterwards.
    let block = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
    for cut in 0..block.len() {
        let mut d = HpackDecoder::new(4096);
        let mut out = Vec::new();
        let decoded = d.decode_prefix(&block[..cut], &mut out);
        let expected = fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
        assert_eq!(out, expected[..cut.min(3)], "cut at {cut}");
        assert_eq!(decoded.unknown_fields, 0);
        assert!(!d.is_synced());
        assert_eq!(d.table().count(), 0);
    }
    // Entries inserted after the loss are known again.
    let mut d = HpackDecoder::new(4096);
    d.decode_prefix(&block[..5], &mut Vec::new());
    let out = decode(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be",
    );
    assert_eq!(
        out,
        fields(&[
            ("custom-key", "custom-header"),
            ("custom-key", "custom-header")
        ])
    );
}

#[test]
fn c1_integers() {
    let mut b: &[u8] = &[0x0a];
    assert_eq!(take_int(&mut b, 5), Ok(10));
    let mut b: &[u8] = &[0x1f, 0x9a, 0x0a];
    assert_eq!(take_int(&mut b, 5), Ok(1337));
    assert!(b.is_empty());
    let mut b: &[u8] = &[0x2a];
    assert_eq!(take_int(&mut b, 8), Ok(42));
    let mut b: &[u8] = &[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(take_int(&mut b, 5), Err(HpackError::IntegerOverflow));
    let mut b: &[u8] = &[0x1f, 0x9a];
    assert_eq!(take_int(&mut b, 5), Err(HpackError::Truncated));
}

#[test]
fn c2_1_literal_with_indexing() {
    let mut d = HpackDecoder::new(4096);
    let out = decode(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
    );
    assert_eq!(out, fields(&[("custom-key", "custom-header")]));
    check_table(&d, &[("custom-key", "custom-header")], 55);
}

#[test]
fn c2_2_literal_without_indexing() {
    let mut d = HpackDecoder::new(4096);
    let out = decode(&mut d, "040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(out, fields(&[(":path", "/sample/path")]));
    check_table(&d, &[], 0);
}

#[test]
fn c2_3_literal_never_indexed() {
    let mut d = HpackDecoder::new(4096);
    let out = decode(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert_eq!(out, fields(&[("password", "secret")]));
    check_table(&d, &[], 0);
}

#[test]
fn c2_4_indexed() {
    let mut d = HpackDecoder::new(4096);
    assert_eq!(decode(&mut d, "82"), fields(&[(":method", "GET")]));
    check_table(&d, &[], 0);
}

const REQ1: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQ2: [(&str, &str); 5] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQ3: [(&str, &str); 5] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

fn requests(blocks: [&str; 3]) {
    let mut d = HpackDecoder::new(4096);
    assert_eq!(decode(&mut d, blocks[0]), fields(&REQ1));
    check_table(&d, &[(":authority", "www.example.com")], 57);
    assert_eq!(decode(&mut d, blocks[1]), fields(&REQ2));
    check_table(
        &d,
        &[
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ],
        110,
    );
    assert_eq!(decode(&mut d, blocks[2]), fields(&REQ3));
    check_table(
        &d,
        &[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ],
        164,
    );
}

#[test]
fn c3_requests_without_huffman() {
    requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn c4_requests_with_huffman() {
    requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

fn responses(blocks: [&str; 3]) {
    let mut d = HpackDecoder::new(256);
    let resp1 = [
        (":status", "302"),
        ("cache-control", "private"),
        ("date", DATE1),
        ("location", LOCATION),
    ];
    assert_eq!(decode(&mut d, blocks[0]), fields(&resp1));
    check_table(
        &d,
        &[
            ("location", LOCATION),
            ("date", DATE1),
            ("cache-control", "private"),
            (":status", "302"),
        ],
        222,
    );
    let resp2 = [
        (":status", "307"),
        ("cache-control", "private"),
        ("date", DATE1),
        ("location", LOCATION),
    ];
    assert_eq!(decode(&mut d, blocks[1]), fields(&resp2));
    check_table(
        &d,
        &[
            (":status", "307"),
            ("location", LOCATION),
            ("date", DATE1),
            ("cache-control", "private"),
        ],
        222,
    );
    let resp3 = [
        (":status", "200"),
        ("cache-control", "private"),
        ("date", DATE2),
        ("location", LOCATION),
        ("content-encoding", "gzip"),
        ("set-cookie", COOKIE),
    ];
    assert_eq!(decode(&mut d, blocks[2]), fields(&resp3));
    check_table(
        &d,
        &[
            ("set-cookie", COOKIE),
            ("content-encoding", "gzip"),
            ("date", DATE2),
        ],
        215,
    );
}

#[test]
fn c5_responses_without_huffman() {
    responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman() {
    responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}

#[test]
fn size_update_evicts_and_must_lead_the_block() {
    let mut d = HpackDecoder::new(4096);
    decode(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
    );
    // Size update to 0 then back to 4096: table emptied.
    assert_eq!(
        decode(&mut d, "20 3fe1 1f 82"),
        fields(&[(":method", "GET")])
    );
    check_table(&d, &[], 0);
    assert_eq!(d.max_table_size(), 4096);
    let mut out = Vec::new();
    assert_eq!(
        d.decode(&hex("82 20"), &mut out),
        Err(HpackError::LateSizeUpdate)
    );
    assert!(!d.is_synced());
}

#[test]
fn size_update_is_clamped() {
    let mut d = HpackDecoder::new(1 << 20);
    assert_eq!(d.max_table_size(), MAX_TABLE_SIZE);
    // 1 MiB size update.
    decode(&mut d, "3fe1 ff3f");
    assert_eq!(d.max_table_size(), MAX_TABLE_SIZE);
}

#[test]
fn oversized_entry_empties_table() {
    let mut d = HpackDecoder::new(64);
    decode(&mut d, "4001 6101 62");
    check_table(&d, &[("a", "b")], 34);
    let long = format!("4001 6120 {}", "61".repeat(32));
    decode(&mut d, &long);
    check_table(&d, &[], 0);
}

#[test]
fn bad_index_in_synced_decoder_is_an_error_and_desyncs() {
    let mut d = HpackDecoder::new(4096);
    let mut out = Vec::new();
    assert_eq!(d.decode(&hex("80"), &mut out), Err(HpackError::BadIndex(0)));
    let mut d = HpackDecoder::new(4096);
    assert_eq!(
        d.decode(&hex("be"), &mut out),
        Err(HpackError::BadIndex(62))
    );
    assert!(!d.is_synced());
    assert!(out.is_empty());
}

#[test]
fn desynced_decoder_never_returns_stale_entries() {
    let mut d = HpackDecoder::new(4096);
    decode(&mut d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
    // A block was lost: whatever it inserted shifted the indices.
    d.desync();
    assert!(!d.is_synced());
    let mut out = Vec::new();
    // 0xbe = index 62, which now holds something unknown.
    let decoded = d
        .decode(&hex("8286 84be"), &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.unknown_fields, 1);
    assert_eq!(
        out,
        fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/")])
    );
    // New insertions are known again and referable.
    out.clear();
    decode(&mut d, "4001 6101 62");
    let decoded = d
        .decode(&hex("be bf"), &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, fields(&[("a", "b")]));
    assert_eq!(decoded.unknown_fields, 1);
    // A literal with an unknown name inserts an unknown entry: the
    // known entries can no longer be located.
    out.clear();
    let decoded = d
        .decode(&hex("7f00 0178 be"), &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.unknown_fields, 2);
    assert!(out.is_empty());
}

#[test]
fn string_and_list_limits() {
    let mut d = HpackDecoder::new(4096);
    let mut out = Vec::new();
    // Literal name with a declared length of 20000.
    assert_eq!(
        d.decode(&hex("007f a19c 01"), &mut out),
        Err(HpackError::StringTooLong)
    );
    let mut d = HpackDecoder::new(4096);
    let mut block = Vec::new();
    let value = vec![b'x'; 8000];
    for _ in 0..9 {
        // content-type (31) without indexing, 8000-byte value.
        block.extend_from_slice(&[0x0f, 0x10, 0x7f, 0xc1, 0x3d]);
        block.extend_from_slice(&value);
    }
    assert_eq!(
        d.decode(&block, &mut out),
        Err(HpackError::HeaderListTooLarge)
    );
    assert_eq!(out.len(), 8);
}

proptest! {
    #[test]
    fn arbitrary_blocks_never_panic(
        blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        max in 0usize..5000,
    ) {
        let mut d = HpackDecoder::new(max);
        let mut out = Vec::new();
        for block in &blocks {
            let _ = d.decode(block, &mut out);
            prop_assert!(d.table_size() <= d.max_table_size());
            prop_assert!(d.max_table_size() <= MAX_TABLE_SIZE);
        }
    }

    #[test]
    fn mutated_examples_never_panic(flip in 0usize..400, byte in any::<u8>()) {
        let mut block = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf \
             88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b");
        if let Some(b) = block.get_mut(flip % 40) {
            *b = byte;
        }
        let mut d = HpackDecoder::new(4096);
        let mut out = Vec::new();
        let _ = d.decode(&block, &mut out);
        let _ = d.decode(&block, &mut out);
    }
}
