//! The HPACK decoder, two ways (leading byte, bit 0):
//! - hostile: arbitrary header blocks, interleaved with desyncs and
//!   SETTINGS_HEADER_TABLE_SIZE changes; checks the table accounting;
//! - round trip: the input drives an encoder (indexed static and dynamic
//!   fields, literals of every kind, literal and indexed names, size
//!   updates, Huffman values); every block must decode to exactly the
//!   fields encoded, leaving the table the encoder expects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_fuzz::{static_table, HpackEncoder, Indexing, Input, HUFFMAN_EXAMPLES};
use zerotrace_worker::protocols::hpack::{
    HpackDecoder, HpackError, MAX_HEADER_LIST, MAX_TABLE_SIZE,
};

const SIZES: [usize; 8] = [0, 1, 64, 256, 4096, 16_384, 65_536, 1 << 20];

fn check_table(decoder: &HpackDecoder) {
    assert!(decoder.table_size() <= decoder.max_table_size());
    assert!(decoder.max_table_size() <= MAX_TABLE_SIZE);
    let sum: usize = decoder.table().map(|(n, v)| n.len() + v.len() + 32).sum();
    assert_eq!(sum, decoder.table_size());
}

fn hostile(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let size = SIZES.get(usize::from(setup & 7)).copied().unwrap_or(4096);
    let mut decoder = if setup & 8 != 0 {
        HpackDecoder::new(size)
    } else {
        HpackDecoder::new_desynced(size)
    };
    // Layout: [op][len hi][len lo][len bytes]...
    while let [op, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        match op & 3 {
            0 | 1 => {
                let was_synced = decoder.is_synced();
                let mut out = Vec::new();
                match decoder.decode(bytes, &mut out) {
                    Ok(decoded) => {
                        if was_synced {
                            assert_eq!(decoded.unknown_fields, 0);
                            assert!(decoder.is_synced());
                        }
                    }
                    Err(_) => assert!(!decoder.is_synced()),
                }
                let list: usize = out.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
                assert!(list <= MAX_HEADER_LIST);
            }
            2 => decoder.desync(),
            _ => {
                let mut raw = [0u8; 4];
                for (slot, b) in raw.iter_mut().zip(bytes) {
                    *slot = *b;
                }
                let before = decoder.max_table_size();
                decoder.allow_table_size(u32::from_be_bytes(raw) as usize);
                assert!(decoder.max_table_size() >= before);
            }
        }
        check_table(&decoder);
    }
}

/// Decodes `block` and checks it against what was encoded. Returns false
/// once the decoder rightly refused the block (it is then desynced).
fn check_block(
    decoder: &mut HpackDecoder,
    encoder: &HpackEncoder,
    block: &[u8],
    expected: &[(String, String)],
) -> bool {
    let mut out = Vec::new();
    let list: usize = expected.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
    let result = decoder.decode(block, &mut out);
    if list > MAX_HEADER_LIST {
        assert_eq!(result, Err(HpackError::HeaderListTooLarge));
        return false;
    }
    let decoded = result.unwrap_or_else(|e| panic!("valid block refused: {e} ({block:02x?})"));
    assert_eq!(decoded.unknown_fields, 0);
    assert_eq!(out, expected);
    assert!(decoder.is_synced());
    assert!(
        decoder.table().eq(encoder.table()),
        "table differs after {block:02x?}"
    );
    assert_eq!(decoder.table_size(), encoder.size());
    assert_eq!(decoder.max_table_size(), encoder.max_size());
    check_table(decoder);
    true
}

fn round_trip(data: &[u8]) {
    let mut input = Input(data);
    let mut encoder = HpackEncoder::new(4096);
    let mut decoder = HpackDecoder::new(4096);
    let statics = static_table();
    assert_eq!(statics.len(), 61);
    let mut block = Vec::new();
    let mut expected: Vec<(String, String)> = Vec::new();
    while !input.is_empty() {
        let op = input.byte();
        match op & 7 {
            0 => {
                let index = usize::from(input.byte()) % statics.len() + 1;
                encoder.indexed(&mut block, index);
                if let Some(field) = statics.get(index - 1) {
                    expected.push(field.clone());
                }
            }
            1 if encoder.table_len() > 0 => {
                let index = statics.len() + 1 + usize::from(input.byte()) % encoder.table_len();
                encoder.indexed(&mut block, index);
                if let Some((n, v)) = encoder.field(index) {
                    expected.push((n.to_owned(), v.to_owned()));
                }
            }
            2..=4 => {
                let indexing = match op & 7 {
                    2 => Indexing::Incremental,
                    3 => Indexing::Without,
                    _ => Indexing::Never,
                };
                let how = input.byte();
                let (name, name_index) = match how & 3 {
                    1 => {
                        let index = usize::from(how >> 2) % statics.len() + 1;
                        let name = statics.get(index - 1).map(|(n, _)| n.clone());
                        (name.unwrap_or_default(), Some(index))
                    }
                    2 if encoder.table_len() > 0 => {
                        let index = statics.len() + 1 + usize::from(how >> 2) % encoder.table_len();
                        let name = encoder.field(index).map(|(n, _)| n.to_owned());
                        (name.unwrap_or_default(), Some(index))
                    }
                    _ => (input.string(), None),
                };
                let value = if op & 0x80 != 0 {
                    let example = HUFFMAN_EXAMPLES
                        .get(usize::from(op >> 3 & 7))
                        .copied()
                        .unwrap_or(("", &[]));
                    encoder.literal_huffman(&mut block, &name, name_index, example, indexing);
                    example.0.to_owned()
                } else {
                    let value = input.string();
                    encoder.literal(&mut block, &name, name_index, &value, indexing);
                    value
                };
                expected.push((name, value));
            }
            5 if expected.is_empty() => {
                let size = if op & 0x80 != 0 {
                    SIZES.get(usize::from(op >> 3 & 7)).copied().unwrap_or(0)
                } else {
                    usize::from(u16::from_be_bytes([input.byte(), input.byte()]))
                };
                encoder.size_update(&mut block, size);
            }
            7 => {
                let (name, value) = (input.string(), input.string());
                encoder.field_by_choice(&mut block, &name, &value, op >> 3);
                expected.push((name, value));
            }
            _ => {
                if !check_block(&mut decoder, &encoder, &block, &expected) {
                    return;
                }
                block.clear();
                expected.clear();
            }
        }
    }
    check_block(&mut decoder, &encoder, &block, &expected);
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => round_trip(rest),
        Some((_, rest)) => hostile(rest),
        None => {}
    }
});
