//! The Go hook finder (`zerotrace-gobin`), which the privileged loader runs on other users'
//! executables, two ways (leading byte, bit 0):
//! - raw: the input is the whole file;
//! - framed: the input's pieces become the `.gopclntab`, `.go.buildinfo` and `.text` of a
//!   well-formed x86-64 ELF, so the fuzzer reaches the function table, the build info and
//!   the instruction decoder instead of stopping at the ELF header.
//!
//! Either way the answer may be anything but a panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerotrace_gobin::{find_tls_hook_points, GoBinary};

const BASE: u64 = 0x40_0000;

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}
fn push_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}
fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// An ELF with one loaded segment (the whole file at `BASE`) and the given sections.
fn elf_with(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut names = vec![0u8];
    let mut body = Vec::new();
    let mut headers = Vec::new();
    let data_start = 64 + 56;
    for (name, bytes) in sections {
        let name_offset = names.len() as u32;
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        headers.push((name_offset, (data_start + body.len()) as u64, bytes.len() as u64));
        body.extend_from_slice(bytes);
    }
    let names_offset = (data_start + body.len()) as u64;
    headers.push((0, names_offset, names.len() as u64));
    body.extend_from_slice(&names);
    let section_table = (data_start + body.len()) as u64;
    let file_len = section_table + 64 * (headers.len() as u64 + 1);

    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    push_u16(&mut out, 2); // ET_EXEC
    push_u16(&mut out, 62); // x86-64
    push_u32(&mut out, 1);
    push_u64(&mut out, BASE);
    push_u64(&mut out, 64); // program headers
    push_u64(&mut out, section_table);
    push_u32(&mut out, 0);
    for value in [64u16, 56, 1, 64, headers.len() as u16 + 1, headers.len() as u16] {
        push_u16(&mut out, value);
    }
    push_u32(&mut out, 1); // PT_LOAD
    push_u32(&mut out, 7);
    push_u64(&mut out, 0);
    push_u64(&mut out, BASE);
    push_u64(&mut out, BASE);
    push_u64(&mut out, file_len);
    push_u64(&mut out, file_len);
    push_u64(&mut out, 0x1000);
    out.extend_from_slice(&body);
    out.extend_from_slice(&[0u8; 64]); // section 0
    for (index, (name, offset, size)) in headers.iter().enumerate() {
        push_u32(&mut out, *name);
        push_u32(&mut out, if index + 1 == headers.len() { 3 } else { 1 });
        push_u64(&mut out, 0);
        push_u64(&mut out, BASE + offset);
        push_u64(&mut out, *offset);
        push_u64(&mut out, *size);
        push_u32(&mut out, 0);
        push_u32(&mut out, 0);
        push_u64(&mut out, 1);
        push_u64(&mut out, 0);
    }
    out
}

fn framed(data: &[u8]) {
    // [pclntab len: u16][buildinfo len: u8][pclntab][buildinfo][text]
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let pclntab_len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
    let (pclntab, rest) = rest.split_at(pclntab_len);
    let buildinfo_len = usize::from(*c).min(rest.len());
    let (buildinfo, text) = rest.split_at(buildinfo_len);
    let file = elf_with(&[
        (".text", text),
        (".gopclntab", pclntab),
        (".go.buildinfo", buildinfo),
    ]);
    let _ = find_tls_hook_points(file.as_slice());
    if let Ok(binary) = GoBinary::parse(&file) {
        let _ = binary.function("main.main");
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => framed(rest),
        Some((_, rest)) => {
            let _ = find_tls_hook_points(rest);
        }
        None => {}
    }
});
