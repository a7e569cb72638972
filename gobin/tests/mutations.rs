//! Damaged Go binaries never make the finder panic or hang: bytes of a real stripped HTTPS
//! server are overwritten where the finder reads (ELF and section headers, the function
//! table's header, entries and records, the build info, the hooked functions' code) and the
//! file is cut, and whatever comes out must be an answer or an error.

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use support::GoProgram;
use zerotrace_gobin::{find_tls_hook_points, GoBinary, TlsHookPoints};

/// The pristine binary and the byte ranges worth damaging.
struct Target {
    bytes: Vec<u8>,
    regions: Vec<(u64, u64)>,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let bytes = GoProgram::HttpsServerStripped.bytes();
        let Ok(binary) = GoBinary::parse(&bytes) else {
            panic!("the stripped server does not parse");
        };
        let elf = binary.elf();
        let section = |name: &str| match elf.section(name) {
            Some(section) => (section.offset, section.size),
            None => panic!("no {name}"),
        };
        let (pclntab, pclntab_len) = section(".gopclntab");
        let (buildinfo, _) = section(".go.buildinfo");
        let header_word = |index: u64| {
            let at = (pclntab + 8 + index * 8) as usize;
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let function_table = pclntab + header_word(7);
        let mut regions = vec![
            (0, 64 + 56 * 16),          // ELF header, program headers
            (624, 64 * 32),             // section headers (Go puts them after the ELF header)
            (pclntab, 128),             // function table header
            (function_table, 64 << 10), // entries and the first `_func` records
            (pclntab, pclntab_len),     // anywhere in the table (names)
            (buildinfo, 64),            // build info header and version
        ];
        if let Ok(TlsHookPoints::Found { points, .. }) = binary.tls_hook_points() {
            for point in points {
                let code = &point.location;
                regions.push((
                    code.entry_file_offset,
                    code.end_file_offset - code.entry_file_offset,
                ));
            }
        }
        Target { bytes, regions }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_go_binaries_give_answers_or_errors(
        writes in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>(), any::<u8>()), 1..24),
        cut in prop::option::weighted(0.2, any::<prop::sample::Index>()),
    ) {
        let target = target();
        let mut bytes = target.bytes.clone();
        for (region, position, value) in writes {
            let (start, len) = target.regions[region.index(target.regions.len())];
            let at = (start + position % len.max(1)) as usize;
            if let Some(byte) = bytes.get_mut(at) {
                *byte = value;
            }
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        // Either outcome is fine; a panic fails the test.
        let _ = find_tls_hook_points(bytes.as_slice());
    }
}
